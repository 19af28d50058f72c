// Sends hits to Tutela with the `matomo-tracker` npm client (a real Matomo client nobody here
// wrote): single requests (GET) and a bulk request (POST JSON). Exits non-zero on any error.
// Usage: node npm-client.mjs http://127.0.0.1:PORT
import http from 'node:http';
import MatomoTracker from 'matomo-tracker';

// The client never reads its GET answers; without keep-alive each connection closes after its
// answer, so the process ends once every hit is answered.
http.globalAgent = new http.Agent({ keepAlive: false });

const base = process.argv[2];
const tracker = new MatomoTracker(1, `${base}/matomo.php`);
let failed = false;
tracker.on('error', (err) => {
  failed = true;
  console.error(`matomo-tracker error: ${err}`);
});

const ua = 'Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0';
const visitor = '00aa11bb22cc33dd';
tracker.track({ url: 'http://localhost/npm/home?session=secret', action_name: 'Home', _id: visitor, ua, res: '1280x800' });
tracker.track({ url: 'http://localhost/npm/docs', action_name: 'Docs', _id: visitor, ua, res: '1280x800' });
tracker.track({ url: 'http://localhost/npm/docs', e_c: 'Docs', e_a: 'Copy', e_n: 'snippet', e_v: 1, _id: visitor, ua });

tracker.trackBulk(
  [
    { url: 'http://localhost/npm/bulk-a', action_name: 'Bulk A', _id: 'ffeeddccbbaa9988', ua },
    { url: 'http://localhost/npm/bulk-b', action_name: 'Bulk B', _id: 'ffeeddccbbaa9988', ua },
  ],
  (answer) => {
    const v = JSON.parse(answer);
    if (v.status !== 'success' || v.tracked !== 2 || v.invalid !== 0) {
      failed = true;
      console.error(`unexpected bulk answer: ${answer}`);
    }
    console.log(`bulk answer: ${answer}`);
  },
);

process.on('exit', () => {
  if (failed) { process.exitCode = 1; }
});
