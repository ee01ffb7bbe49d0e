// The tickets page in headless Chromium (Debian's /usr/bin/chromium), as a desk
// team uses it: a supervisor searches and filters the list, assigns a ticket to
// one agent and reassigns it to another; that agent, on their own page, raises
// its priority and adds a note; the supervisor's next change, made on the
// ticket as it was before, is refused with a reason and the page shows the
// ticket as it now is. A screenshot of the supervisor's page is kept.
// Usage: node tickets.mjs http://127.0.0.1:PORT SUPERVISOR PASSWORD AGENT PASSWORD SCREENSHOT.png
import { launch } from './chromium.mjs';

const [base, boss, bossPassword, agent, agentPassword, shot] = process.argv.slice(2);
const browser = await launch();

const signIn = async (name, password) => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${base}/tickets`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  const listed = page.waitForResponse((r) => r.url().includes('/api/tickets?'));
  await page.click('#signin button');
  await page.locator('#app').waitFor({ state: 'visible', timeout: 5000 });
  await listed;
  return page;
};
// Submits the filters and waits for the list to be redrawn.
const find = async (page) => {
  const answered = page.waitForResponse((r) => r.url().includes('/api/tickets?'));
  await page.click('#filters button');
  await answered;
  await page.waitForTimeout(50);
};
const rows = async (page) => page.locator('#rows tr').evaluateAll((trs) => trs.map((tr) => ({
  num: Number(tr.dataset.num),
  subject: tr.querySelector('.subject').textContent,
  assignee: tr.querySelector('.assignee').textContent,
})));
const patched = (page) => page.waitForResponse((r) => r.request().method() === 'PATCH');

try {
  const out = {};
  const sup = await signIn(boss, bossPassword);
  await sup.locator('#rows tr').nth(1).waitFor({ timeout: 5000 });
  out.unsolved = await rows(sup);

  // Search the customers' words (sealed at rest), in English and in Chinese.
  await sup.fill('#q', 'person');
  await find(sup);
  out.searchPerson = await rows(sup);
  await sup.fill('#q', '人工');
  await find(sup);
  out.searchZh = await rows(sup);
  await sup.fill('#q', 'nothing like this');
  await find(sup);
  out.searchNone = await rows(sup);
  out.emptyShown = await sup.locator('#empty').isVisible();
  await sup.fill('#q', '');
  await sup.selectOption('#channel', 'web');
  await sup.fill('#assignee', 'none');
  await find(sup);
  out.unassignedWeb = await rows(sup);
  await sup.selectOption('#channel', '');
  await sup.fill('#assignee', '');
  await find(sup);

  // Assign the English ticket, then reassign it.
  const num = out.searchPerson[0].num;
  await sup.click(`#rows tr[data-num="${num}"]`);
  await sup.locator('#detail').waitFor({ state: 'visible', timeout: 5000 });
  await sup.fill('#d-assign-to', 'wang');
  let done = patched(sup);
  await sup.click('#d-assign');
  await done;
  await sup.locator('#d-assignee', { hasText: 'wang' }).waitFor({ timeout: 5000 });
  out.statusAfterAssign = await sup.inputValue('#d-status');
  await sup.fill('#d-assign-to', agent);
  done = patched(sup);
  await sup.click('#d-assign');
  await done;
  await sup.locator('#d-assignee', { hasText: agent }).waitFor({ timeout: 5000 });
  await sup.waitForTimeout(200);
  out.listAfterReassign = await rows(sup);

  // The agent, on their own page, finds it as theirs, raises it and notes it.
  const ag = await signIn(agent, agentPassword);
  await ag.fill('#assignee', 'me');
  await find(ag);
  out.agentMine = await rows(ag);
  await ag.click(`#rows tr[data-num="${num}"]`);
  await ag.locator('#detail').waitFor({ state: 'visible', timeout: 5000 });
  await ag.selectOption('#d-priority', 'urgent');
  done = patched(ag);
  await ag.click('#d-save');
  await done;
  await ag.fill('#note-text', '客户要求今天回电 · call back today');
  await ag.click('#d-note');
  await ag.locator('#d-notes .note').first().waitFor({ timeout: 5000 });
  out.agentNote = await ag.locator('#d-notes .note').first().textContent();

  // The supervisor still sees the old version: the change is refused, with why.
  await sup.selectOption('#d-status', 'pending');
  done = patched(sup);
  await sup.click('#d-save');
  const refused = await done;
  out.conflictStatus = refused.status();
  await sup.locator('#d-error').filter({ hasText: /./ }).waitFor({ timeout: 5000 });
  out.conflictError = await sup.locator('#d-error').textContent();
  await sup.locator('#d-notes .note').first().waitFor({ timeout: 5000 });
  out.priorityShown = await sup.inputValue('#d-priority');
  // Tried again on the ticket as it now is, it goes through.
  await sup.selectOption('#d-status', 'pending');
  done = patched(sup);
  await sup.click('#d-save');
  out.retryStatus = (await done).status();
  await sup.locator('#d-due', { hasText: '⏸' }).waitFor({ timeout: 5000 });
  out.history = await sup.locator('#d-history .event').allTextContents();
  await sup.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
