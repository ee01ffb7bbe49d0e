// The agent desk in headless Chromium (Debian's /usr/bin/chromium): a customer in
// the chat widget asks for a person; the agent signs in to /desk, goes available,
// accepts the offer, sees what the customer said, and replies; the customer's page
// shows the reply (pushed over its WebSocket). A screenshot of the desk is kept.
// Usage: node desk.mjs http://127.0.0.1:PORT NAME PASSWORD SCREENSHOT.png
import { deskSignIn, launch } from './chromium.mjs';

const [base, name, password, shot] = process.argv.slice(2);
const browser = await launch();
try {
  const customer = await (await browser.newContext()).newPage();
  await customer.goto(`${base}/chat?lang=en`);
  await customer.locator('.turn.bot').first().waitFor({ timeout: 5000 });
  await customer.fill('#text', 'I want to talk to a person');
  await customer.press('#text', 'Enter');
  await customer.locator('.turn.bot').nth(1).waitFor({ timeout: 5000 });
  const handover = await customer.locator('.turn.bot').nth(1).textContent();

  const desk = await (await browser.newContext()).newPage();
  await deskSignIn(desk, base, name, password);
  await desk.click('#state');
  await desk.locator('#state.available').waitFor({ timeout: 5000 });
  await desk.locator('.offer .accept').first().waitFor({ timeout: 5000 });
  await desk.click('.offer .accept');
  await desk.locator('#log .turn.customer').first().waitFor({ timeout: 5000 });
  const seenByAgent = await desk.locator('#log .turn.customer').first().textContent();
  await desk.fill('#reply-text', 'Hello, this is Wang Fang from the desk.');
  await desk.press('#reply-text', 'Enter');
  const agentTurn = customer.locator('.turn.agent').first();
  await agentTurn.waitFor({ timeout: 5000 });
  const reply = await agentTurn.textContent();
  await desk.locator('.ticket').first().waitFor({ timeout: 5000 });
  const ticket = await desk.locator('.ticket').first().textContent();
  await desk.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ handover, seenByAgent, reply, ticket }));
} finally {
  await browser.close();
}
