// Calls the hotline from kefu's chat widget in headless Chromium (Debian's
// /usr/bin/chromium): a fake microphone plays FILE.wav, the page clicks the call
// button, listens to what kefu plays (the level of the remote track, measured in
// the page, and the first 3.5 s recorded there as samples), presses KEYS on the widget's keypad (RTCDTMFSender, RFC 4733) and
// listens for LISTEN_MS more (what the keys or the microphone's words brought),
// hangs up and waits for the call's transcript in the chat. The waits are bounds for a stuck page, not targets.
// Usage: node call.mjs http://127.0.0.1:PORT FILE.wav KEYS|- LISTEN_MS SHOT.png
import { launch } from './chromium.mjs';

const [base, wav, keyArg, listenMs, shot] = process.argv.slice(2);
const keys = keyArg === '-' ? '' : keyArg;
if (!shot || Number.isNaN(Number(listenMs))) {
  throw new Error('usage: node call.mjs BASE FILE.wav KEYS|- LISTEN_MS SHOT.png');
}
const browser = await launch(wav);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
try {
  const page = await browser.newPage();
  await page.goto(`${base}/chat?lang=en`);
  await page.locator('.turn.bot').first().waitFor({ timeout: 15000 });
  await page.locator('#call').waitFor({ state: 'visible', timeout: 15000 });
  const clicked = Date.now();
  await page.click('#call');
  await page.waitForFunction(() => window.kefuCall.state === 'connected', null, { timeout: 20000 });
  const connectedMs = Date.now() - clicked;
  await page.waitForFunction(() => document.getElementById('remote').srcObject, null, { timeout: 5000 })
    .catch(async (e) => {
      const sdp = await page.evaluate(() => window.kefuCall.pc.remoteDescription.sdp);
      throw new Error(`no remote track; kefu's answer:\n${sdp}\n${e}`);
    });
  // The loudest the remote audio gets, sampled every 50 ms for `ms`; with
  // `record`, also what was heard, as 16-bit samples at the context's rate.
  const level = (ms, record) => page.evaluate(([ms, record]) => new Promise((done) => {
    const stream = document.getElementById('remote').srcObject;
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const analyser = ctx.createAnalyser();
    source.connect(analyser);
    const heard = [];
    let recorder = null;
    if (record) {
      recorder = ctx.createScriptProcessor(4096, 1, 1);
      recorder.onaudioprocess = (e) => {
        for (const x of e.inputBuffer.getChannelData(0)) heard.push(Math.round(Math.max(-1, Math.min(1, x)) * 32767));
      };
      source.connect(recorder);
      recorder.connect(ctx.destination);
    }
    const buf = new Float32Array(analyser.fftSize);
    let peak = 0, firstAt = null;
    const started = performance.now();
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      const rms = Math.sqrt(buf.reduce((a, x) => a + x * x, 0) / buf.length);
      if (rms > 0.01 && firstAt === null) firstAt = performance.now() - started;
      peak = Math.max(peak, rms);
    }, 50);
    setTimeout(() => {
      clearInterval(timer);
      const rate = ctx.sampleRate;
      ctx.close();
      done({ peak, firstAt, rate, samples: record ? heard : undefined });
    }, ms);
  }), [ms, record]);
  const greeting = await level(3500, true);
  for (const k of keys) {
    await page.click(`#keys button[data-key="${k}"]`);
    await sleep(400);
  }
  const afterKeys = await level(Number(listenMs), false);
  const call = await page.evaluate(() => window.kefuCall.id);
  await page.screenshot({ path: shot });
  const hungUp = page.waitForResponse((r) => r.request().method() === 'DELETE', { timeout: 5000 });
  await page.click('#call');
  const hangUpStatus = (await hungUp).status();
  // The call's transcript arrives in the chat (pushed over its WebSocket).
  const ended = page.locator('.turn.bot', { hasText: 'Call ended' });
  await ended.waitFor({ timeout: 15000 });
  const transcript = await ended.textContent();
  console.log(JSON.stringify({ connectedMs, call, greeting, afterKeys, hangUpStatus, transcript }));
} finally {
  await browser.close();
}
