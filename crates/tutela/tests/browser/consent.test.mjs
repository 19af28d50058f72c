// Headless-Chromium tests of Tutela's consent banner, run by crates/tutela/tests/browser.rs.
//
// A tiny site server (this file, on 127.0.0.1) serves test pages from its own origin; a real
// `tutela serve` (TUTELA_BIN) serves /consent.js and records choices from another origin, as in
// production. Nothing is fetched from the internet: vanilla-cookieconsent comes from node_modules.
//
//   TUTELA_BIN=target/debug/tutela node consent.test.mjs
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const TUTELA_BIN = process.env.TUTELA_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const EXAMPLE = path.resolve(here, '../../../../examples/policy.toml');
assert.ok(TUTELA_BIN, 'set TUTELA_BIN to the tutela binary');

let passed = 0;
let failed = 0;
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n${e && e.stack ? e.stack : e}`);
  }
}

// ---- the site: its own origin, strict CSP, marked scripts, a hit counter ----

const hits = [];
let tutelaUrl = '';
const site = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const send = (type, body, headers = {}) => {
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', ...headers });
    res.end(body);
  };
  if (url.pathname === '/banner.html') {
    // The strictest CSP a site could have: no inline script or style at all.
    const csp = `default-src 'none'; script-src 'self' ${tutelaUrl}; style-src 'self' ${tutelaUrl}; ` +
      `connect-src 'self' ${tutelaUrl}; img-src 'self'`;
    return send('text/html; charset=utf-8', `<!doctype html>
<html lang="${url.searchParams.get('lang') || 'en'}"><head><meta charset="utf-8"><title>Site</title>
<script src="/csp-watch.js"></script>
<link rel="stylesheet" href="${tutelaUrl}/consent.css">
<script src="${tutelaUrl}/consent.js" defer></script>
<script type="text/plain" data-category="analytics" src="/analytics.js"></script>
<script type="text/plain" data-cookiecategory="targeting" src="/pixel.js"></script>
</head><body><main><h1>Nimbus</h1><p><a href="#" id="settings" data-tutela-consent="show">Cookie settings</a></p></main></body></html>`,
      { 'content-security-policy': csp });
  }
  if (url.pathname === '/csp-watch.js') {
    return send('text/javascript', `window.__violations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI);
});`);
  }
  if (url.pathname === '/analytics.js') {
    // Stands for the analytics tracker: it runs, then sends one hit.
    return send('text/javascript', `window.analyticsRan = true;
fetch('/hit', {method: 'POST', body: location.pathname});`);
  }
  if (url.pathname === '/pixel.js') {
    return send('text/javascript', 'window.pixelRan = true;');
  }
  if (url.pathname === '/hit') {
    hits.push(Date.now());
    res.writeHead(204);
    return res.end();
  }
  if (url.pathname === '/vcc.html') {
    return send('text/html; charset=utf-8', `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vcc</title>
<link rel="stylesheet" href="/vcc/cookieconsent.css">
<script src="/vcc/cookieconsent.umd.js"></script>
<script src="/vcc-setup.js" defer></script>
</head><body><p>A site that uses vanilla-cookieconsent.</p></body></html>`);
  }
  if (url.pathname === '/vcc-setup.js') {
    // The site's own configuration of vanilla-cookieconsent v3, with the documented lines that
    // log every choice to Tutela (README, "vanilla-cookieconsent").
    return send('text/javascript', `
function logToTutela(param) {
  navigator.sendBeacon('${tutelaUrl}/api/v1/consent?source=vanilla-cookieconsent', JSON.stringify(param.cookie));
}
CookieConsent.run({
  hideFromBots: false,
  onConsent: logToTutela,
  onChange: logToTutela,
  categories: {
    necessary: {enabled: true, readOnly: true},
    functional: {},
    analytics: {services: {audience_statistics: {label: 'Audience statistics'}}},
    targeting: {services: {meta: {label: 'Meta'}, linkedin: {label: 'LinkedIn'}}}
  },
  language: {default: 'en', translations: {en: {
    consentModal: {title: 'Cookies', description: 'We use cookies.', acceptAllBtn: 'Accept all',
      acceptNecessaryBtn: 'Reject all', showPreferencesBtn: 'Manage'},
    preferencesModal: {title: 'Preferences', acceptAllBtn: 'Accept all', acceptNecessaryBtn: 'Reject all',
      savePreferencesBtn: 'Save', sections: [
        {title: 'Functional', linkedCategory: 'functional'},
        {title: 'Analytics', linkedCategory: 'analytics'},
        {title: 'Targeting', linkedCategory: 'targeting'}]}
  }}}
});`);
  }
  if (url.pathname === '/stats.html') {
    // A site with the standard Matomo snippet pointed at Tutela, and Tutela's banner. Under a
    // register that bases audience statistics on consent, the tracker must wait for it.
    const csp = `default-src 'none'; script-src 'self' ${tutelaUrl}; style-src 'self' ${tutelaUrl}; ` +
      `connect-src 'self' ${tutelaUrl}; img-src 'self' ${tutelaUrl}`;
    return send('text/html; charset=utf-8', `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stats</title>
<script src="/csp-watch.js"></script>
<link rel="stylesheet" href="${tutelaUrl}/consent.css">
<script src="${tutelaUrl}/consent.js" defer></script>
<script src="/matomo-setup.js"></script>
<script src="${tutelaUrl}/matomo.js" async></script>
</head><body><main><h1>Stats</h1></main></body></html>`, { 'content-security-policy': csp });
  }
  if (url.pathname === '/matomo-setup.js') {
    return send('text/javascript', `var _paq = window._paq = window._paq || [];
_paq.push(['setTrackerUrl', '${tutelaUrl}/matomo.php']);
_paq.push(['setSiteId', '1']);
_paq.push(['trackPageView']);`);
  }
  if (url.pathname.startsWith('/vcc/')) {
    const file = path.join(here, 'node_modules/vanilla-cookieconsent/dist', path.basename(url.pathname));
    const type = file.endsWith('.css') ? 'text/css' : 'text/javascript';
    return send(type, fs.readFileSync(file));
  }
  res.writeHead(404);
  res.end();
});
await new Promise((r) => site.listen(0, '127.0.0.1', r));
const siteUrl = `http://127.0.0.1:${site.address().port}`;

// ---- Tutela ----

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tutela-browser-'));
let tutela = null;

async function startTutela(policy) {
  const args = ['--log-level', 'warn', '--data-dir', dataDir];
  if (policy) {
    args.push('--policy', policy);
  }
  args.push('serve', '--listen', '127.0.0.1:0', '--consent-origin', siteUrl);
  const proc = spawn(TUTELA_BIN, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout });
    rl.once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`tutela exited with ${code}`)));
  });
  const m = /^listening on (http:\/\/\S+)$/.exec(line);
  assert.ok(m, `unexpected first line from tutela: ${line}`);
  tutela = proc;
  tutelaUrl = m[1];
}

async function stopTutela() {
  if (tutela) {
    const p = new Promise((r) => tutela.once('exit', r));
    tutela.kill('SIGTERM');
    await p;
    tutela = null;
  }
}

async function receipt(id) {
  const res = await fetch(`${tutelaUrl}/api/v1/consent/${id}`);
  assert.equal(res.status, 200, `receipt of ${id}`);
  return res.json();
}

await startTutela(null);
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});

async function consentCookie(context) {
  const c = (await context.cookies(siteUrl)).find((x) => x.name === 'tutela_consent');
  return c ? { ...c, state: JSON.parse(decodeURIComponent(c.value)) } : null;
}

const dialog = (page) => page.locator('.tutela-consent[role="dialog"]');

function postedConsent(page) {
  return page.waitForResponse((r) => r.url().startsWith(`${tutelaUrl}/api/v1/consent`) &&
    r.request().method() === 'POST');
}

try {
  await check('the banner is shown, accessible, with accept and reject of equal prominence', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${siteUrl}/banner.html`);
    await dialog(page).waitFor({ state: 'visible' });
    const d = dialog(page);
    assert.equal(await d.getAttribute('aria-labelledby'), 'tc-title');
    assert.equal(await page.locator('#tc-title').textContent(), 'Your cookie choices');
    // Focus moved into the dialog.
    assert.equal(await page.evaluate(() => document.activeElement.id), 'tc-title');
    const accept = d.locator('[data-action="accept"]');
    const reject = d.locator('[data-action="reject"]');
    const style = (l) => l.evaluate((e) => {
      const s = getComputedStyle(e);
      return [e.className, s.backgroundColor, s.color, s.fontSize, s.fontWeight, e.getBoundingClientRect().height].join('|');
    });
    assert.equal(await style(accept), await style(reject), 'accept and reject must look alike');
    // Keyboard: Tab reaches the buttons; the checkboxes have labels.
    await d.locator('[data-action="customise"]').click();
    for (const id of ['functional', 'analytics', 'targeting']) {
      const label = await page.locator(`label[for="tc-cat-${id}"]`).textContent();
      assert.ok(label.length > 3, id);
      assert.equal(await page.isChecked(`#tc-cat-${id}`), false, `${id} must not be pre-ticked`);
    }
    // French page, French banner.
    const fr = await context.newPage();
    await fr.goto(`${siteUrl}/banner.html?lang=fr`);
    await dialog(fr).waitFor({ state: 'visible' });
    assert.equal(await fr.locator('#tc-title').textContent(), 'Vos choix en matière de cookies');
    assert.deepEqual(await page.evaluate(() => window.__violations), [], 'CSP violations');
    await context.close();
  });

  await check('reject: the analytics script does not run and no hit is sent', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const before = hits.length;
    await page.goto(`${siteUrl}/banner.html`);
    await dialog(page).waitFor({ state: 'visible' });
    const posted = postedConsent(page);
    await dialog(page).locator('[data-action="reject"]').click();
    const answer = await (await posted).json();
    assert.equal(answer.method, 'banner');
    assert.equal(answer.choices.analytics.granted, false);
    assert.ok(await dialog(page).isHidden());
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => window.analyticsRan), undefined);
    assert.equal(hits.length, before, 'a hit was sent after a refusal');
    // The choice is remembered: no banner on the next page, still nothing runs.
    await page.reload();
    await page.waitForFunction(() => window.tutela && window.tutela.consent);
    await page.waitForTimeout(200);
    assert.ok(await dialog(page).count() === 0 || await dialog(page).isHidden());
    assert.equal(await page.evaluate(() => window.analyticsRan), undefined);
    assert.equal(hits.length, before);
    const cookie = await consentCookie(context);
    assert.equal(cookie.state.c.analytics, 0);
    const r = await receipt(cookie.state.id);
    assert.equal(r.record.current_state.analytics.state, 'refused');
    assert.equal(r.record.events[0].site, siteUrl);
    assert.deepEqual(await page.evaluate(() => window.__violations), [], 'CSP violations');
    await context.close();
  });

  let acceptedState = null;
  await check('accept: the analytics script runs, the hit is sent and the receipt can be fetched', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const before = hits.length;
    await page.goto(`${siteUrl}/banner.html`);
    await dialog(page).waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => window.analyticsRan), undefined, 'ran before consent');
    const posted = postedConsent(page);
    await dialog(page).locator('[data-action="accept"]').click();
    const answer = await (await posted).json();
    await page.waitForFunction(() => window.analyticsRan === true);
    await page.waitForFunction(() => window.pixelRan === true);
    for (let i = 0; i < 50 && hits.length === before; i++) {
      await page.waitForTimeout(50);
    }
    assert.equal(hits.length, before + 1, 'the analytics hit');
    const snap = await page.evaluate(() => window.tutela.consent.get());
    assert.equal(snap.consentId, answer.consent_id);
    assert.equal(snap.categories.analytics, true);
    const cookie = await consentCookie(context);
    assert.equal(cookie.state.id, answer.consent_id);
    // The cookie lives as long as the register says (6 months, give or take a day).
    const days = (cookie.expires - Date.now() / 1000) / 86400;
    assert.ok(days > 180 && days < 185, `cookie lifetime ${days} days`);
    const r = await receipt(answer.consent_id);
    assert.equal(r.piiPrincipalId, answer.consent_id);
    assert.equal(r.record.current_state.analytics.state, 'given');
    assert.equal(r.collectionMethod, 'banner');
    // The person can reopen the choices and withdraw: a new record, the old one stays.
    await page.click('#settings');
    await dialog(page).waitFor({ state: 'visible' });
    assert.equal(await page.isChecked('#tc-cat-analytics'), true);
    await page.uncheck('#tc-cat-analytics');
    const again = postedConsent(page);
    await dialog(page).locator('[data-action="save"]').click();
    await again;
    const r2 = await receipt(answer.consent_id);
    assert.equal(r2.record.events.length, 2);
    assert.equal(r2.record.current_state.analytics.state, 'withdrawn');
    assert.deepEqual(await page.evaluate(() => window.__violations), [], 'CSP violations');
    acceptedState = await context.storageState();
    await context.close();
  });

  await check('a new register revision makes the banner ask again', async () => {
    assert.ok(acceptedState, 'needs the accept scenario');
    const policy = path.join(dataDir, 'policy-next.toml');
    fs.writeFileSync(policy, fs.readFileSync(EXAMPLE, 'utf8') +
      '\n[[revisions]]\nid = "2099-1"\ndate = "2099-01-01"\nsummary.en = "Next revision."\nsummary.fr = "Révision suivante."\n');
    await stopTutela();
    await startTutela(policy);
    const context = await browser.newContext({ storageState: acceptedState });
    // The stored choice is for the old revision (and on the old server's port the cookie is
    // the site's: it does not move).
    const old = await consentCookie(context);
    assert.notEqual(old.state.rev, '2099-1');
    const page = await context.newPage();
    await page.goto(`${siteUrl}/banner.html`);
    await dialog(page).waitFor({ state: 'visible' });
    await page.waitForTimeout(200);
    assert.equal(await page.evaluate(() => window.analyticsRan), undefined, 'old consent must not run scripts');
    const posted = postedConsent(page);
    await dialog(page).locator('[data-action="accept"]').click();
    const answer = await (await posted).json();
    assert.equal(answer.revision, '2099-1');
    assert.equal(answer.consent_id, old.state.id, 'the same browser keeps its consent id');
    await page.waitForFunction(() => window.analyticsRan === true);
    const r = await receipt(answer.consent_id);
    const revisions = r.record.events.map((e) => e.notice.revision);
    assert.equal(revisions.at(-1), '2099-1');
    assert.notEqual(revisions[0], '2099-1');
    await context.close();
  });

  await check('a GPC browser gets targeting refused, recorded as GPC', async () => {
    const context = await browser.newContext({ extraHTTPHeaders: { 'Sec-GPC': '1' } });
    await context.addInitScript(() => {
      Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true, configurable: true });
    });
    const page = await context.newPage();
    const first = postedConsent(page);
    await page.goto(`${siteUrl}/banner.html`);
    const gpcAnswer = await (await first).json();
    assert.equal(gpcAnswer.method, 'gpc');
    assert.equal(gpcAnswer.gpc, true);
    assert.equal(gpcAnswer.choices.targeting.granted, false);
    await dialog(page).waitFor({ state: 'visible' });
    assert.equal(await page.locator('[data-gpc="on"]').count(), 1, 'the banner says GPC is honoured');
    // "Accept all" does not override the signal.
    const second = postedConsent(page);
    await dialog(page).locator('[data-action="accept"]').click();
    const answer = await (await second).json();
    assert.equal(answer.choices.targeting.granted, false);
    assert.equal(answer.choices.analytics.granted, true);
    await page.waitForFunction(() => window.analyticsRan === true);
    await page.waitForTimeout(200);
    assert.equal(await page.evaluate(() => window.pixelRan), undefined, 'targeting ran despite GPC');
    const r = await receipt(gpcAnswer.consent_id);
    assert.equal(r.record.events[0].method, 'gpc');
    assert.equal(r.record.events[0].states.targeting.state, 'refused');
    assert.equal(r.record.current_state.targeting.state, 'refused');
    await context.close();
  });

  await check('a page using vanilla-cookieconsent from npm logs its choices to Tutela', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${siteUrl}/vcc.html`);
    const accept = page.locator('#cc-main [data-role="all"]').first();
    await accept.waitFor({ state: 'visible' });
    const posted = page.waitForRequest((r) => r.url().startsWith(`${tutelaUrl}/api/v1/consent`) && r.method() === 'POST');
    await accept.click();
    await posted;
    const id = await page.evaluate(() => CookieConsent.getCookie('consentId'));
    let r = null;
    for (let i = 0; i < 50 && !r; i++) {
      const res = await fetch(`${tutelaUrl}/api/v1/consent/${id}`);
      if (res.status === 200) {
        r = await res.json();
      } else {
        await page.waitForTimeout(50);
      }
    }
    assert.ok(r, 'the vanilla-cookieconsent choice was not recorded');
    assert.equal(r.record.events[0].source, 'vanilla-cookieconsent');
    assert.equal(r.record.current_state.analytics.state, 'given');
    assert.equal(r.record.current_state.targeting.state, 'given');
    // A change in its preferences is logged too, as a new record.
    await page.evaluate(() => CookieConsent.acceptCategory(['analytics']));
    for (let i = 0; i < 50 && r.record.events.length < 2; i++) {
      await page.waitForTimeout(50);
      r = await receipt(id);
    }
    assert.equal(r.record.events.length, 2);
    assert.equal(r.record.current_state.targeting.state, 'withdrawn');
    await context.close();
  });

  await check('analytics based on consent: nothing before consent, stored after, nothing after withdrawal', async () => {
    // The example register with audience statistics on the consent basis.
    const policy = path.join(dataDir, 'policy-consent.toml');
    const example = fs.readFileSync(EXAMPLE, 'utf8');
    const at = example.indexOf('id = "audience_statistics"');
    const tail = example.slice(at)
      .replace('legal_basis = "legitimate_interest"', 'legal_basis = "consent"')
      .replace(/^legitimate_interest\.(en|fr) = .*\n/m, '')
      .replace(/^legitimate_interest\.(en|fr) = .*\n/m, '');
    fs.writeFileSync(policy, example.slice(0, at) + tail);
    await stopTutela();
    await startTutela(policy);
    const metric = async (outcome) => {
      const text = await (await fetch(`${tutelaUrl}/metrics`)).text();
      const m = new RegExp(`^tutela_analytics_hits_total\\{outcome="${outcome}"\\} (\\d+)`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    const tracked0 = await metric('tracked');
    const context = await browser.newContext();
    const page = await context.newPage();
    const sent = [];
    page.on('request', (r) => {
      if (r.url().startsWith(`${tutelaUrl}/matomo.php`)) {
        sent.push(r.postData() || r.url());
      }
    });
    await page.goto(`${siteUrl}/stats.html`);
    await dialog(page).waitFor({ state: 'visible' });
    await page.waitForFunction(() => window.Matomo && window.Matomo.getTracker());
    await page.waitForTimeout(800);
    assert.deepEqual(sent, [], 'the tracker sent a hit before consent');
    assert.equal(await metric('tracked'), tracked0, 'a hit was stored before consent');

    // Accept: the choice is recorded, then the waiting page view leaves with the consent id.
    const posted = postedConsent(page);
    await dialog(page).locator('[data-action="accept"]').click();
    const answer = await (await posted).json();
    for (let i = 0; i < 100 && sent.length === 0; i++) {
      await page.waitForTimeout(50);
    }
    assert.equal(sent.length, 1, 'one page view after consent');
    // (A beacon's body is not visible here; that the hit is stored shows it carried the id.)
    for (let i = 0; i < 100 && await metric('tracked') === tracked0; i++) {
      await page.waitForTimeout(50);
    }
    assert.equal(await metric('tracked'), tracked0 + 1, 'the hit after consent is stored');
    // The same hit sent again by hand is stored too (the control for what follows).
    const replay = () => fetch(`${tutelaUrl}/matomo.php`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
      },
      body: `idsite=1&rec=1&send_image=0&action_name=Stats&url=${encodeURIComponent(`${siteUrl}/stats.html`)}` +
        `&tutela_consent=${answer.consent_id}`,
    });
    assert.equal((await replay()).status, 204);
    assert.equal(await metric('tracked'), tracked0 + 2);

    // Withdrawal: the tracker stops, and the collector refuses the consent id from the next hit.
    await page.evaluate(() => window.tutela.consent.withdraw());
    const refused0 = await metric('no_consent');
    await page.evaluate(() => window._paq.push(['trackPageView']));
    await page.waitForTimeout(600);
    assert.equal(sent.length, 1, 'the tracker sent a hit after withdrawal');
    assert.equal((await replay()).status, 204);
    assert.equal(await metric('tracked'), tracked0 + 2, 'a hit was stored after withdrawal');
    assert.equal(await metric('no_consent'), refused0 + 1);
    // A new page after withdrawal: still nothing.
    await page.reload();
    await page.waitForFunction(() => window.Matomo && window.Matomo.getTracker());
    await page.waitForTimeout(600);
    assert.equal(sent.length, 1);
    assert.equal(await metric('tracked'), tracked0 + 2);
    const r = await receipt(answer.consent_id);
    assert.equal(r.record.current_state.analytics.state, 'withdrawn');
    assert.deepEqual(await page.evaluate(() => window.__violations), [], 'CSP violations');
    await context.close();
  });
} finally {
  await browser.close();
  await stopTutela();
  site.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
