// A reply on a ticket reaching the customer's chat widget, in headless Chromium:
// a visitor asks (in Mandarin) for a person in the widget; an agent opens the
// tickets page, takes the ticket, sees the customer behind it (masked identity,
// the conversation, its turns) and replies there; the widget shows the reply.
// Usage: node ticket_reply.mjs http://127.0.0.1:PORT AGENT PASSWORD SCREENSHOT.png
import { launch } from './chromium.mjs';

const [base, name, password, shot] = process.argv.slice(2);
const browser = await launch();
try {
  const out = {};
  const customer = await (await browser.newContext()).newPage();
  await customer.goto(`${base}/chat?lang=zh`);
  await customer.locator('.turn.bot').first().waitFor({ timeout: 15000 });
  await customer.fill('#text', '我要转人工');
  await customer.press('#text', 'Enter');
  await customer.locator('.turn.bot').nth(1).waitFor({ timeout: 15000 });

  const desk = await (await browser.newContext()).newPage();
  await desk.goto(`${base}/tickets`);
  await desk.fill('#name', name);
  await desk.fill('#password', password);
  await desk.click('#signin button');
  await desk.locator('#rows tr').first().waitFor({ timeout: 5000 });
  await desk.click('#rows tr');
  await desk.locator('#detail').waitFor({ state: 'visible', timeout: 5000 });
  let patched = desk.waitForResponse((r) => r.request().method() === 'PATCH');
  await desk.click('#d-take');
  await patched;
  await desk.locator('#d-assignee', { hasText: name }).waitFor({ timeout: 5000 });

  // The customer behind the ticket.
  await desk.locator('#c-interactions .interaction').first().waitFor({ timeout: 5000 });
  out.identities = await desk.locator('#c-ids .badge').allTextContents();
  out.total = await desk.locator('#c-total').textContent();
  await desk.click('#c-interactions .interaction');
  await desk.locator('#c-turns .turn.customer').first().waitFor({ timeout: 5000 });
  out.turns = await desk.locator('#c-turns .turn').allTextContents();

  // The reply goes to the widget.
  await desk.fill('#reply-text', '您好，退款已经批准，三个工作日内到账。');
  const replied = desk.waitForResponse((r) => r.url().endsWith('/reply'));
  await desk.click('#d-reply');
  out.replyStatus = (await replied).status();
  await desk.locator('#d-reply-status', { hasText: /./ }).waitFor({ timeout: 5000 });
  out.reach = await desk.locator('#d-reply-status').textContent();
  out.statusAfter = await desk.inputValue('#d-status');
  const agentTurn = customer.locator('.turn.agent').first();
  await agentTurn.waitFor({ timeout: 5000 });
  out.widget = await agentTurn.textContent();
  await desk.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
