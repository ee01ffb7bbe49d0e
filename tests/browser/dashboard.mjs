// The operations dashboard in headless Chromium (Debian's /usr/bin/chromium): an
// agent who signs in is refused (403); a supervisor sees the seeded figures, the
// charts drawn on their canvases, the tables, a CSV export, and drafts a
// knowledge-base entry from an unanswered question in one click. A screenshot
// of the dashboard is kept.
// Usage: node dashboard.mjs http://127.0.0.1:PORT SUPERVISOR PASSWORD AGENT PASSWORD SCREENSHOT.png
import { launch } from './chromium.mjs';

const [base, supName, supPassword, agentName, agentPassword, shot] = process.argv.slice(2);
const browser = await launch();
const signIn = async (page, name, password) => {
  await page.goto(`${base}/dashboard`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await page.click('#signin button');
  await page.waitForSelector('body[data-loaded]', { timeout: 15000 });
};
try {
  const agent = await (await browser.newContext()).newPage();
  await signIn(agent, agentName, agentPassword);
  const agentError = await agent.locator('#error').textContent();
  const agentCanvases = await agent.locator('canvas').count();

  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  await signIn(page, supName, supPassword);
  const loaded = await page.evaluate(() => document.body.dataset.loaded);
  const error = await page.locator('#error').textContent();
  const kpis = await page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll('[data-kpi]')].map((d) => [d.dataset.kpi, d.querySelector('.v').textContent])));
  // Per chart: its canvas, and how many pixels are painted in a colour (the
  // series are coloured; axes, grid and labels are grey or black): data, not
  // just axes.
  const charts = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('.chart')].map((box) => {
    const c = box.querySelector('canvas');
    if (!c) return [box.id, { canvas: false, series: 0, painted: 0 }];
    const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
    let series = 0, painted = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 0) painted++;
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if (data[i + 3] > 100 && Math.max(r, g, b) - Math.min(r, g, b) > 80) series++;
    }
    return [box.id, { canvas: true, series, painted, width: c.width }];
  })));
  const rows = async (id) => page.evaluate((id) => [...document.querySelectorAll(`#${id} tr`)].slice(1)
    .map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)), id);
  const tables = {
    days: await rows('table-days'), queues: await rows('table-queues'), reasons: await rows('table-reasons'),
    intents: await rows('table-intents'), unanswered: await rows('table-unanswered'), input: await rows('table-input'),
  };
  const csvHref = await page.locator('a[data-table="days"]').getAttribute('href');
  const csv = await page.evaluate(async (href) => {
    const r = await fetch(href, { credentials: 'same-origin' });
    return { status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), text: await r.text() };
  }, csvHref);
  await page.screenshot({ path: shot, fullPage: true });
  await page.click('#table-unanswered button.draft');
  await page.locator('#table-unanswered .drafted').first().waitFor({ timeout: 5000 });
  const drafted = await page.locator('#table-unanswered .drafted').first().textContent();
  // The channel filter: the web only.
  await page.evaluate(() => { document.body.dataset.loaded = ''; });
  await page.selectOption('#channel', 'web');
  await page.click('#filters button');
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 15000 });
  const webContacts = await page.locator('[data-kpi="contacts"] .v').textContent();
  console.log(JSON.stringify({ agentError, agentCanvases, loaded, error, kpis, charts, tables, csvHref, csv, drafted, webContacts }));
} finally {
  await browser.close();
}
