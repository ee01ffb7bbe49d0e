// kefu's one-line snippet on another site, in headless Chromium (Debian's
// /usr/bin/chromium): a page served here on http://localhost:PORT (an allowed
// origin) and on http://127.0.0.1:PORT (not allowed) loads
// <script src="KEFU/widget.js">. On the allowed page the button opens the widget
// in a frame, it greets and answers, and the page's own cross-origin call to the
// chat API passes CORS; on the other, the frame is refused and CORS blocks.
// Usage: node embed.mjs http://127.0.0.1:KEFU_PORT PORT SHOT.png
import http from 'node:http';
import { launch } from './chromium.mjs';

const [base, port, shot] = process.argv.slice(2);
const page = `<!doctype html><html><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>A shop</h1><script src="${base}/widget.js" data-lang="en" async></script></body></html>`;
const site = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(page);
}).listen(Number(port), '127.0.0.1');
await new Promise((r) => site.once('listening', r));
const browser = await launch();
const apiCall = (p) => p.evaluate(async (base) => {
  try {
    const r = await fetch(`${base}/api/chat/conversations`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"lang":"en"}',
    });
    return r.status;
  } catch (e) {
    return String(e);
  }
}, base);
try {
  const allowed = await browser.newPage();
  await allowed.goto(`http://localhost:${port}/`);
  await allowed.click('#kefu-open');
  const frame = allowed.frameLocator('#kefu-widget');
  const greeting = await frame.locator('.turn.bot').first().textContent({ timeout: 15000 });
  await frame.locator('#text').fill('What time do you close?');
  await frame.locator('#text').press('Enter');
  const answer = await frame.locator('.turn.bot').nth(1).textContent({ timeout: 15000 });
  const callButton = await frame.locator('#call').isVisible();
  const allowedApi = await apiCall(allowed);
  await allowed.screenshot({ path: shot });

  const other = await browser.newPage();
  await other.goto(`http://127.0.0.1:${port}/`);
  await other.click('#kefu-open');
  const refusedFrame = await other.frameLocator('#kefu-widget').locator('.turn.bot').first()
    .waitFor({ timeout: 3000 }).then(() => false, () => true);
  const otherApi = await apiCall(other);
  console.log(JSON.stringify({ greeting, answer, callButton, allowedApi, refusedFrame, otherApi }));
} finally {
  await browser.close();
  site.close();
}
