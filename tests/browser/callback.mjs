// Calling a customer back from the tickets page, with the desk's softphone, in
// headless Chromium: the agent signs in to /desk and takes calls in the browser
// (a fake microphone plays FILE.wav), opens the ticket on /tickets (the list of
// callbacks to make shows it), clicks Call back; the desk answers the callback
// as it rings there, kefu dials the customer; the page follows the call to
// "Talking", the desk records what it hears for HEAR_MS, and once the customer
// hangs up the page shows the call ended and the try in the ticket's history.
// The waits are bounds for a stuck page, not targets.
// Usage: node callback.mjs http://127.0.0.1:PORT NAME PASSWORD FILE.wav TICKET HEAR_MS SHOT.png
import { deskSignIn, launch } from './chromium.mjs';

const [base, name, password, wav, ticket, hearMs, shot] = process.argv.slice(2);
if (!shot || Number.isNaN(Number(ticket)) || Number.isNaN(Number(hearMs))) {
  throw new Error('usage: node callback.mjs BASE NAME PASSWORD FILE.wav TICKET HEAR_MS SHOT.png');
}
const browser = await launch(wav);
try {
  const context = await browser.newContext();
  const desk = await context.newPage();
  await deskSignIn(desk, base, name, password);
  await desk.click('#softphone');
  await desk.locator('#softphone.on').waitFor({ timeout: 5000 });

  // The same session on the tickets page: the callbacks to make.
  const page = await context.newPage();
  await page.goto(`${base}/tickets`);
  await page.locator('#app').waitFor({ state: 'visible', timeout: 5000 });
  await page.check('#callbacks');
  const filtered = page.waitForResponse((r) => r.url().includes('callback=waiting'), { timeout: 5000 });
  await page.click('#filters button');
  await filtered;
  const row = page.locator(`tr.ticket[data-num="${ticket}"]`);
  await row.waitFor({ timeout: 5000 });
  const listed = await page.locator('tr.ticket').count();
  await row.click();
  await page.locator('#d-num', { hasText: `#${ticket}` }).waitFor({ timeout: 5000 });
  const before = await page.locator('#d-callback').textContent();

  await page.click('#d-call');
  await desk.locator('#phone-status', { hasText: 'On the line' }).waitFor({ timeout: 20000 });
  await page.locator('#d-call-status', { hasText: 'Talking' }).waitFor({ timeout: 60000 });
  const deskSays = await desk.locator('#callback').textContent();
  await desk.waitForFunction(() => document.getElementById('remote').srcObject, null, { timeout: 5000 });
  // What the desk hears for `ms`, as 16-bit samples at 16 kHz.
  const heard = await desk.evaluate((ms) => new Promise((done) => {
    const ctx = new AudioContext({ sampleRate: 16000 });
    const source = ctx.createMediaStreamSource(document.getElementById('remote').srcObject);
    const samples = [];
    const recorder = ctx.createScriptProcessor(4096, 1, 1);
    recorder.onaudioprocess = (e) => {
      for (const x of e.inputBuffer.getChannelData(0)) samples.push(Math.round(Math.max(-1, Math.min(1, x)) * 32767));
    };
    source.connect(recorder);
    recorder.connect(ctx.destination);
    setTimeout(() => { ctx.close(); done(samples); }, ms);
  }), Number(hearMs));
  const loud = (() => {
    let n = 0;
    for (let i = 0; i + 320 <= heard.length; i += 320) {
      let sum = 0;
      for (let j = i; j < i + 320; j++) sum += heard[j] * heard[j];
      if (Math.sqrt(sum / 320) > 300) n += 1;
    }
    return n;
  })();

  // The customer hangs up: the page says so and shows the try.
  await page.locator('#d-call-status', { hasText: 'Call ended' }).waitFor({ timeout: 60000 });
  await page.locator('#d-callback', { hasText: 'called back' }).waitFor({ timeout: 10000 });
  const after = await page.locator('#d-callback').textContent();
  const history = await page.locator('#d-history').textContent();
  // The customer's history shows the call back beside the call that asked for it.
  await page.locator('#c-total', { hasText: '2' }).waitFor({ timeout: 5000 });
  const interactions = await page.locator('#c-interactions').textContent();
  await page.locator('#d-assignee', { hasText: name }).waitFor({ timeout: 5000 });
  const refiltered = page.waitForResponse((r) => r.url().includes('callback=waiting'), { timeout: 5000 });
  await page.click('#filters button');
  await refiltered;
  await page.locator('#empty').waitFor({ state: 'visible', timeout: 5000 });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ listed, before, deskSays, loudFrames: loud, heardFrames: Math.floor(heard.length / 320), after, history, interactions }));
} finally {
  await browser.close();
}
