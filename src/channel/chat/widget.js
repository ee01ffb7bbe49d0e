// kefu's chat widget on any site: <script src="https://KEFU/widget.js" async></script>
// (optional data-lang="en" or "zh", data-label="..."). A button opens the widget
// in a frame served by kefu itself, so the page needs no other set-up; the frame
// may use the microphone for the call button. kefu's `[widget] allowed_origins`
// says which sites may frame it.
(() => {
  const me = document.currentScript;
  if (!me) return;
  const base = new URL(me.src).origin;
  const lang = me.dataset.lang;
  const frame = document.createElement('iframe');
  frame.id = 'kefu-widget';
  frame.title = '在线客服 · Customer service';
  frame.allow = 'microphone; autoplay';
  frame.style.cssText = 'position:fixed;right:16px;bottom:76px;width:360px;height:540px;max-height:80vh;' +
    'max-width:calc(100vw - 32px);border:0;border-radius:12px;box-shadow:0 4px 24px rgba(0,0,0,.25);' +
    'display:none;z-index:2147483000;background:#fff';
  const button = document.createElement('button');
  button.id = 'kefu-open';
  button.type = 'button';
  button.textContent = me.dataset.label || '💬 客服 · Help';
  button.style.cssText = 'position:fixed;right:16px;bottom:16px;z-index:2147483000;padding:12px 18px;' +
    'border:0;border-radius:24px;background:#e8590c;color:#fff;font:600 15px system-ui,sans-serif;cursor:pointer';
  button.addEventListener('click', () => {
    // The conversation starts when the visitor first opens the widget.
    if (!frame.src) frame.src = `${base}/chat${lang ? `?lang=${encodeURIComponent(lang)}` : ''}`;
    frame.style.display = frame.style.display === 'none' ? 'block' : 'none';
  });
  const add = () => document.body.append(frame, button);
  if (document.body) add(); else document.addEventListener('DOMContentLoaded', add);
})();
