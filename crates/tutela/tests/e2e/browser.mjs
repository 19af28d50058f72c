// Headless Chromium (Debian's, driven by playwright-core): a site page with the standard Matomo
// snippet loading Tutela's /matomo.js, a page view, an event, an outlink, a second page; then the
// dashboard, signed in with a token posted through its form. Prints a JSON summary on stdout.
// Usage: node browser.mjs http://127.0.0.1:PORT TOKEN OUT_DIR
import http from 'node:http';
import { chromium } from 'playwright-core';

const [tutela, token, outDir] = process.argv.slice(2);
const executablePath = process.env.TUTELA_CHROMIUM || '/usr/bin/chromium';

const snippet = `<script>
  var _paq = window._paq = window._paq || [];
  /* tracker methods like "setCustomDimension" should be called before "trackPageView" */
  _paq.push(['trackPageView']);
  _paq.push(['enableLinkTracking']);
  (function() {
    var u="${tutela}/";
    _paq.push(['setTrackerUrl', u+'matomo.php']);
    _paq.push(['setSiteId', '1']);
    var d=document, g=d.createElement('script'), s=d.getElementsByTagName('script')[0];
    g.async=true; g.src=u+'matomo.js'; s.parentNode.insertBefore(g,s);
  })();
</script>`;

const site = http.createServer((req, res) => {
  const title = req.url.startsWith('/about') ? 'About us' : 'E2E home';
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><head><title>${title}</title>${snippet}</head><body>
<h1>${title}</h1><a id="out" href="https://example.org/away">away</a>
<button id="ev">event</button>
<script>document.getElementById('ev').addEventListener('click', function () {
  _paq.push(['trackEvent', 'E2E', 'Click', 'button']);
});</script></body></html>`);
});
await new Promise((r) => site.listen(0, '127.0.0.1', r));
const page1 = `http://localhost:${site.address().port}/home?utm_campaign=e2e&email=someone@example.org`;
const page2 = `http://localhost:${site.address().port}/about`;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const result = { errors: [] };
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => result.errors.push(`page error: ${e.message}`));
  await page.route('https://example.org/**', (r) => r.fulfill({ status: 200, body: 'away' }));
  const hits = [];
  page.on('request', (r) => { if (r.url().startsWith(`${tutela}/matomo.php`)) { hits.push(r.method()); } });
  await page.goto(page1);
  await page.waitForFunction(() => window.Matomo && window.Matomo.getAsyncTracker().getVisitorId());
  result.visitorId = await page.evaluate(() => window.Matomo.getAsyncTracker().getVisitorId());
  await page.waitForTimeout(700);
  await page.click('#ev');
  await page.waitForTimeout(300);
  await page.click('#out');
  await page.waitForLoadState('load');
  await page.goto(page2);
  await page.waitForTimeout(1200);
  result.trackerRequests = hits;

  // The dashboard: sign in with the token through the form, then read the numbers.
  const dash = await context.newPage();
  const consoleErrors = [];
  dash.on('console', (m) => { if (m.type() === 'error' && /Content.Security.Policy|Refused/i.test(m.text())) { consoleErrors.push(m.text()); } });
  await dash.goto(`${tutela}/analytics`);
  await dash.fill('#token', token);
  await Promise.all([dash.waitForURL(/\/analytics\/sites\/1/), dash.click('button[type=submit]')]);
  await dash.waitForSelector('#pageviews');
  result.dashboard = {
    url: dash.url(),
    visits: await dash.textContent('#visits'),
    pageviews: await dash.textContent('#pageviews'),
    pages: await dash.textContent('#t-pages'),
    outlinks: await dash.textContent('#t-outlinks'),
    events: await dash.textContent('#t-event_actions'),
    chart: await dash.locator('svg.line polyline').count(),
    cssLoaded: await dash.evaluate(() => getComputedStyle(document.body).backgroundColor),
  };
  await dash.screenshot({ path: `${outDir}/dashboard.png`, fullPage: true });
  result.consoleErrors = consoleErrors;
} catch (e) {
  result.errors.push(String(e && e.stack || e));
} finally {
  await browser.close();
  site.close();
}
console.log(JSON.stringify(result));
process.exitCode = result.errors.length ? 1 : 0;
