/*! Tutela tracker: a small, dependency-free implementation of the Matomo `_paq` command queue.
 * Served as /matomo.js, /piwik.js and /tutela.js so that the standard Matomo snippet works unchanged.
 * Sends hits with navigator.sendBeacon, else a POST; never an image request, never a third party.
 * MIT OR Apache-2.0. */
(function (w, d) {
  'use strict';
  if (w.Tutela) { return; }
  var nav = w.navigator, loc = w.location, enc = encodeURIComponent;
  // Set by Tutela when the register gives audience statistics the consent basis: then no hit
  // leaves before consent, and each hit carries the consent id (`tutela_consent`) whose record
  // grants analytics; Tutela stores nothing without it.
  var CONSENT_MODE = /*__TUTELA_CONSENT_MODE__*/false;
  var FIRST = ['setTrackerUrl', 'setAPIUrl', 'setSiteId', 'disableCookies', 'requireConsent',
    'requireCookieConsent', 'setCookieDomain', 'setCookiePath', 'setCookieSameSite', 'setSecureCookie',
    'setVisitorCookieTimeout', 'setCookieNamePrefix', 'setUserId', 'setConsentGiven',
    'setCookieConsentGiven', 'forgetConsentGiven', 'optUserOut', 'forgetUserOptOut',
    'setCustomUrl', 'setDocumentTitle', 'setReferrerUrl', 'setDoNotTrack', 'enableLinkTracking',
    'setDownloadExtensions', 'addDownloadExtensions', 'setDomains', 'appendToTrackingUrl'];
  var DOWNLOADS = '7z|aac|apk|arc|arj|asf|asx|avi|azw3|bin|csv|deb|dmg|doc|docx|epub|exe|flv|gif|gz|gzip|hqx|ics|jar|jpe?g|js|md|mp[234g]|mov|mpeg?|msi|msp|odb|odf|odg|ods|odt|ogg|ogv|pdf|phps|png|pptx?|qtm?|ra[mr]?|rpm|rtf|sea|sit|tar|tbz|tgz|torrent|txt|wav|webm|webp|wma|wmv|xlsx?|xml|zip';

  function Tracker() {
    var t = this, siteId = null, trackerUrl = null, customUrl = null, title = null, referrer = null;
    var cookies = true, consentRequired = CONSENT_MODE, extra = '', cookieConsentRequired = false, dnt = false;
    var cookieDomain = null, cookiePath = '/', sameSite = 'Lax', secure = loc.protocol === 'https:';
    var prefix = '_pk_', visitorTimeout = 33955200, userId = null, pending = [], linkTracking = false;
    var downloads = DOWNLOADS, domains = [loc.hostname], pvId = null, hintsDone = false, hints = null;

    function now() { return Math.floor(Date.now() / 1000); }
    function rnd(n) {
      var s = '', a = new Uint8Array(n);
      (w.crypto || w.msCrypto).getRandomValues(a);
      for (var i = 0; i < n; i++) { s += ('0' + a[i].toString(16)).slice(-2); }
      return s;
    }
    function hash4(s) { // FNV-1a, 16 bits: a stable suffix per domain and path, like Matomo's
      var h = 0x811c9dc5;
      for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
      return ('000' + (h & 0xffff).toString(16)).slice(-4);
    }
    function cname(n) { return prefix + n + '.' + siteId + '.' + hash4((cookieDomain || loc.hostname) + cookiePath); }
    function getCookie(n) {
      var m = d.cookie.match(new RegExp('(?:^|;)\\s?' + n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '=([^;]*)'));
      return m ? decodeURIComponent(m[1]) : null;
    }
    function setCookie(n, v, secs) {
      var c = n + '=' + enc(v) + ';path=' + cookiePath + ';SameSite=' + sameSite;
      if (secs !== undefined) { c += ';max-age=' + secs; }
      if (cookieDomain) { c += ';domain=' + cookieDomain; }
      if (secure) { c += ';secure'; }
      d.cookie = c;
    }
    function delCookie(n) { setCookie(n, '', -1); }
    function optedOut() { return getCookie('mtm_consent_removed') !== null; }
    function hasConsent() { return getCookie('mtm_consent') !== null || t._consent; }
    function cookiesAllowed() {
      return cookies && !(cookieConsentRequired && !hasConsent() && getCookie('mtm_cookie_consent') === null);
    }
    function visitorId() {
      if (!cookiesAllowed()) { return null; }
      var v = getCookie(cname('id')), id;
      if (v && /^[0-9a-f]{16}\./.test(v)) { id = v.slice(0, 16); } else { id = rnd(8); }
      setCookie(cname('id'), id + '.' + now(), visitorTimeout);
      setCookie(cname('ses'), '1', 1800);
      return id;
    }
    function purl(u) {
      if (!u) { return loc.href; }
      if (/^[a-z][a-z0-9+.-]*:/i.test(u)) { return u; }
      var a = d.createElement('a'); a.href = u; return a.href;
    }
    function build(params) {
      var q = 'idsite=' + enc(siteId) + '&rec=1&r=' + rnd(3) + '&send_image=0';
      var dt = new Date();
      q += '&h=' + dt.getHours() + '&m=' + dt.getMinutes() + '&s=' + dt.getSeconds();
      q += '&url=' + enc(purl(customUrl));
      var ref = referrer !== null ? referrer : d.referrer;
      if (ref) { q += '&urlref=' + enc(ref); }
      var id = visitorId();
      if (id) { q += '&_id=' + id + '&cookie=1'; } else { q += '&cookie=0'; }
      if (userId) { q += '&uid=' + enc(userId); }
      if (w.screen) { q += '&res=' + w.screen.width + 'x' + w.screen.height; }
      if (hints) { q += '&uadata=' + enc(JSON.stringify(hints)); }
      if (extra) { q += '&' + extra; }
      for (var k in params) {
        if (Object.prototype.hasOwnProperty.call(params, k) && params[k] !== undefined && params[k] !== null && params[k] !== '') {
          q += '&' + k + '=' + enc(params[k]);
        }
      }
      return q;
    }
    function send(q) {
      if (!trackerUrl) { return; }
      var body = new Blob([q], { type: 'application/x-www-form-urlencoded; charset=UTF-8' });
      if (nav.sendBeacon && nav.sendBeacon(trackerUrl, body)) { return; }
      if (w.fetch) {
        w.fetch(trackerUrl, { method: 'POST', body: body, credentials: 'include', keepalive: true, mode: 'cors' })['catch'](function () {});
      } else {
        var x = new XMLHttpRequest();
        x.open('POST', trackerUrl, true);
        x.withCredentials = true;
        x.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded; charset=UTF-8');
        x.send(q);
      }
    }
    function request(params) {
      if (siteId === null || dnt || optedOut()) { return; }
      if (consentRequired && !hasConsent()) { pending.push(params); return; }
      if (!hintsDone) { pending.push(params); return; }
      send(build(params));
    }
    function flush() {
      if (!hintsDone || (consentRequired && !hasConsent())) { return; }
      var p = pending; pending = [];
      for (var i = 0; i < p.length; i++) { request(p[i]); }
    }
    // Client hints (browser and OS versions a frozen user-agent string no longer tells).
    if (nav.userAgentData && nav.userAgentData.getHighEntropyValues) {
      var timer = setTimeout(function () { hintsDone = true; flush(); }, 500);
      nav.userAgentData.getHighEntropyValues(['platformVersion', 'fullVersionList', 'formFactors', 'model'])
        .then(function (v) {
          hints = { fullVersionList: v.fullVersionList || [], mobile: !!v.mobile, model: v.model || '',
            platform: v.platform || '', platformVersion: v.platformVersion || '', formFactors: v.formFactors || [] };
        }, function () {})
        .then(function () { clearTimeout(timer); hintsDone = true; flush(); });
    } else {
      hintsDone = true;
    }

    function linkType(a) {
      var href = a.href || '';
      if (a.hasAttribute('download') || new RegExp('\\.(' + downloads + ')([?#&].*)?$', 'i').test(href)) { return 'download'; }
      var host = a.hostname;
      if (host && domains.indexOf(host) < 0 && /^https?:/.test(a.protocol)) { return 'link'; }
      return null;
    }
    function onClick(e) {
      var a = e.target;
      while (a && a.tagName !== 'A' && a.tagName !== 'AREA') { a = a.parentNode; }
      if (!a || !a.href) { return; }
      var type = linkType(a);
      if (type) { t.trackLink(a.href, type); }
    }

    t._consent = false;
    t.setTrackerUrl = function (u) { trackerUrl = u; };
    t.setAPIUrl = function () {};
    t.getTrackerUrl = function () { return trackerUrl; };
    t.setSiteId = function (id) { siteId = String(id); };
    t.getSiteId = function () { return siteId; };
    t.setCustomUrl = function (u) { customUrl = u; };
    t.appendToTrackingUrl = function (s) { extra = s ? String(s).replace(/^[&?]+/, '') : ''; };
    t.setDocumentTitle = function (s) { title = s; };
    t.setReferrerUrl = function (u) { referrer = u; };
    t.setUserId = function (u) { userId = u ? String(u) : null; };
    t.resetUserId = function () { userId = null; };
    t.getUserId = function () { return userId; };
    t.setDoNotTrack = function (b) { dnt = !!b && (nav.doNotTrack === '1' || nav.doNotTrack === 'yes' || w.doNotTrack === '1'); };
    t.setCookieDomain = function (s) { cookieDomain = s ? s.replace(/^\*/, '') : null; };
    t.setCookiePath = function (s) { cookiePath = s || '/'; };
    t.setCookieSameSite = function (s) { sameSite = s; if (s === 'None') { secure = true; } };
    t.setSecureCookie = function (b) { secure = !!b; };
    t.setCookieNamePrefix = function (s) { prefix = s; };
    t.setVisitorCookieTimeout = function (s) { visitorTimeout = parseInt(s, 10) || visitorTimeout; };
    t.setDomains = function (list) {
      domains = [loc.hostname];
      list = typeof list === 'string' ? [list] : list || [];
      for (var i = 0; i < list.length; i++) { domains.push(String(list[i]).replace(/^\*\./, '').split('/')[0]); }
    };
    t.setDownloadExtensions = function (s) { downloads = typeof s === 'string' ? s : s.join('|'); };
    t.addDownloadExtensions = function (s) { downloads += '|' + (typeof s === 'string' ? s : s.join('|')); };
    t.disableCookies = function () {
      cookies = false;
      if (siteId !== null) { delCookie(cname('id')); delCookie(cname('ses')); }
    };
    t.deleteCookies = function () { delCookie(cname('id')); delCookie(cname('ses')); };
    t.getVisitorId = function () {
      var v = cookiesAllowed() ? getCookie(cname('id')) : null;
      return v ? v.slice(0, 16) : null;
    };
    t.requireConsent = function () { consentRequired = true; };
    t.requireCookieConsent = function () { cookieConsentRequired = true; };
    t.setConsentGiven = function () { t._consent = true; delCookie('mtm_consent_removed'); flush(); };
    t.rememberConsentGiven = function (hours) {
      setCookie('mtm_consent', String(Date.now()), hours ? hours * 3600 : 33955200);
      t.setConsentGiven();
    };
    t.setCookieConsentGiven = function () { setCookie('mtm_cookie_consent', String(Date.now()), 33955200); };
    t.rememberCookieConsentGiven = t.setCookieConsentGiven;
    t.forgetCookieConsentGiven = function () { delCookie('mtm_cookie_consent'); t.deleteCookies(); };
    t.forgetConsentGiven = function () {
      t._consent = false; delCookie('mtm_consent'); t.deleteCookies();
      if (consentRequired) { pending = []; }
    };
    t.hasRememberedConsent = function () { return getCookie('mtm_consent') !== null; };
    t.optUserOut = function () {
      setCookie('mtm_consent_removed', String(Date.now()), 33955200);
      delCookie('mtm_consent'); t.deleteCookies(); pending = [];
    };
    t.forgetUserOptOut = function () { delCookie('mtm_consent_removed'); };
    t.isUserOptedOut = function () { return optedOut(); };
    t.enableLinkTracking = function () {
      if (!linkTracking) { linkTracking = true; d.addEventListener('click', onClick, true); }
    };
    t.trackPageView = function (customTitle) {
      pvId = rnd(3);
      request({ action_name: customTitle || title || d.title, pv_id: pvId });
    };
    t.trackEvent = function (category, action, name, value) {
      if (!category || !action) { return; }
      request({ e_c: category, e_a: action, e_n: name, e_v: value, pv_id: pvId, ca: 1 });
    };
    t.trackLink = function (url, type) {
      var p = { pv_id: pvId, ca: 1 };
      p[type === 'download' ? 'download' : 'link'] = purl(url);
      request(p);
    };
    t.trackSiteSearch = function (keyword, category, count) {
      request({ search: keyword, search_cat: category, search_count: count, pv_id: pvId });
    };
    t.ping = function () { request({ ping: 1, pv_id: pvId }); };
    t.enableHeartBeatTimer = function (secs) {
      var every = Math.max(parseInt(secs, 10) || 15, 5) * 1000;
      setInterval(function () { if (d.visibilityState === 'visible') { t.ping(); } }, every);
    };
  }

  var tracker = new Tracker();
  // Tutela's consent banner (/consent.js): take the consent id of the recorded choice.
  function fromBanner(snap) {
    if (!snap || !snap.current) { return; }
    if (snap.categories.analytics === true && snap.recorded && snap.consentId) {
      tracker.appendToTrackingUrl('tutela_consent=' + enc(snap.consentId));
      tracker.setConsentGiven();
    } else if (snap.categories.analytics === false) {
      tracker.forgetConsentGiven();
    }
  }
  if (CONSENT_MODE) {
    d.addEventListener('tutela:consent', function (e) { fromBanner(e.detail); });
  }
  function apply(cmd) {
    if (typeof cmd === 'function') { cmd.apply(tracker); return; }
    if (!cmd || !cmd.length) { return; }
    var f = tracker[cmd[0]];
    if (typeof f === 'function') { f.apply(tracker, Array.prototype.slice.call(cmd, 1)); }
  }
  var queue = w._paq && w._paq.length ? w._paq : [], i, j;
  // Configuration commands first, whatever their place in the queue (as Matomo's tracker does).
  for (j = 0; j < FIRST.length; j++) {
    for (i = 0; i < queue.length; i++) {
      if (queue[i] && queue[i][0] === FIRST[j]) { apply(queue[i]); queue[i] = null; }
    }
  }
  for (i = 0; i < queue.length; i++) { if (queue[i]) { apply(queue[i]); } }
  if (CONSENT_MODE && w.tutela && w.tutela.consent) { fromBanner(w.tutela.consent.get()); }
  w._paq = { push: function () { for (var k = 0; k < arguments.length; k++) { apply(arguments[k]); } return 0; } };
  w.Tutela = w.Matomo = w.Piwik = {
    getAsyncTracker: function () { return tracker; },
    getTracker: function () { return tracker; }
  };
})(window, document);
