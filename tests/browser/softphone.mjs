// The agent desk's softphone in headless Chromium (Debian's /usr/bin/chromium):
// the agent signs in to /desk, takes calls in the browser (a fake microphone plays
// FILE.wav), goes available, answers the call that rings on the desk, hears the
// caller's summary (recorded in the page for SUMMARY_MS), accepts, listens to the
// caller for LISTEN_MS (recorded), waits for both sides' words in the desk's live
// transcript, and hangs up. Recordings are 16-bit samples at 16 kHz. The waits
// are bounds for a stuck page, not targets.
// Usage: node softphone.mjs http://127.0.0.1:PORT NAME PASSWORD FILE.wav SUMMARY_MS LISTEN_MS SHOT.png
import { deskSignIn, launch } from './chromium.mjs';

const [base, name, password, wav, summaryMs, listenMs, shot] = process.argv.slice(2);
if (!shot || Number.isNaN(Number(summaryMs)) || Number.isNaN(Number(listenMs))) {
  throw new Error('usage: node softphone.mjs BASE NAME PASSWORD FILE.wav SUMMARY_MS LISTEN_MS SHOT.png');
}
const browser = await launch(wav);
try {
  const desk = await browser.newPage();
  await deskSignIn(desk, base, name, password);
  await desk.click('#softphone');
  await desk.locator('#softphone.on').waitFor({ timeout: 5000 });
  await desk.click('#state');
  await desk.locator('#state.available').waitFor({ timeout: 5000 });
  const availableAt = Date.now();
  await desk.locator('.offer.ringing .pickup').first().waitFor({ timeout: 60000 });
  const ringMs = Date.now() - availableAt;
  const offer = await desk.locator('.offer.ringing .summary').first().textContent();
  const picked = Date.now();
  await desk.click('.offer.ringing .pickup');
  await desk.locator('#phone-status', { hasText: 'On the line' }).waitFor({ timeout: 20000 });
  const connectedMs = Date.now() - picked;
  await desk.waitForFunction(() => document.getElementById('remote').srcObject, null, { timeout: 5000 });
  // What the remote track plays for `ms`, as 16-bit samples at 16 kHz.
  const record = (ms) => desk.evaluate((ms) => new Promise((done) => {
    const ctx = new AudioContext({ sampleRate: 16000 });
    const source = ctx.createMediaStreamSource(document.getElementById('remote').srcObject);
    const heard = [];
    const recorder = ctx.createScriptProcessor(4096, 1, 1);
    recorder.onaudioprocess = (e) => {
      for (const x of e.inputBuffer.getChannelData(0)) heard.push(Math.round(Math.max(-1, Math.min(1, x)) * 32767));
    };
    source.connect(recorder);
    recorder.connect(ctx.destination);
    setTimeout(() => { ctx.close(); done({ rate: ctx.sampleRate, samples: heard }); }, ms);
  }), ms);
  const summary = await record(Number(summaryMs));
  const acceptedAt = Date.now();
  await desk.click('.offer .accept');
  await desk.locator('#conv-id', { hasText: '☎' }).waitFor({ timeout: 10000 });
  const call = await record(Number(listenMs));
  // The live transcript: the caller's words and the agent's own.
  const customer = desk.locator('#log .turn.customer').first();
  const agent = desk.locator('#log .turn.agent').first();
  await customer.waitFor({ timeout: 30000 });
  await agent.waitFor({ timeout: 30000 });
  const customerLine = await customer.textContent();
  const agentLine = await agent.textContent();
  await desk.screenshot({ path: shot, fullPage: true });
  const hungUp = desk.waitForResponse((r) => r.request().method() === 'DELETE', { timeout: 5000 });
  const hungUpAt = Date.now();
  await desk.click('#hangup');
  const hangUpStatus = (await hungUp).status();
  await desk.locator('#conv-id', { hasText: 'ended' }).waitFor({ timeout: 15000 });
  console.log(JSON.stringify({
    ringMs, connectedMs, offer, summary, acceptedAt, call, customerLine, agentLine, hungUpAt, hangUpStatus,
  }));
} finally {
  await browser.close();
}
