// Opens kefu's chat widget in headless Chromium (Debian's /usr/bin/chromium) and
// checks what a visitor sees: a greeting, an answer to a question, the
// conversation pushed over the WebSocket, and the stars that rate the chat. The waits are bounds for a stuck page, not
// targets: the time to the greeting is printed (greetingMs), not judged here. Usage: node widget.mjs http://127.0.0.1:PORT
import { launch } from './chromium.mjs';

const base = process.argv[2];
const browser = await launch();
try {
  const page = await browser.newPage();
  const started = Date.now();
  await page.goto(`${base}/chat?lang=en`);
  const greeting = page.locator('.turn.bot').first();
  await greeting.waitFor({ timeout: 15000 });
  const greetingMs = Date.now() - started;
  const greetingText = await greeting.textContent();

  await page.fill('#text', 'What time do you close?');
  await page.press('#text', 'Enter');
  await page.locator('.turn.customer').first().waitFor({ timeout: 15000 });
  const answer = page.locator('.turn.bot').nth(1);
  await answer.waitFor({ timeout: 15000 });
  const answerText = await answer.textContent();
  const visitor = await page.evaluate(() => localStorage.getItem('kefu-visitor'));
  // Asked and answered: the visitor rates the chat with the stars.
  await page.locator('#rate').waitFor({ state: 'visible', timeout: 5000 });
  await page.click('#rate button[data-score="5"]');
  const thanks = page.locator('#rate', { hasText: 'Thank you' });
  await thanks.waitFor({ timeout: 5000 });
  const rated = await thanks.textContent();
  console.log(JSON.stringify({ greetingMs, greeting: greetingText, answer: answerText, visitor, rated }));
} finally {
  await browser.close();
}
