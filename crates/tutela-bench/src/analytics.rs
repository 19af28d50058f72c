//! Web analytics benchmarks against the release `tutela serve` on this machine:
//!
//! - `hits`: single Matomo hits over HTTP/1.1 keep-alive from N connections (default 64);
//!   throughput and latency percentiles (each answer comes after the hit's commit).
//! - `bulk`: bulk requests (`{"requests": [...]}`), events per second.
//! - `dashboard`: seeds a store with M events over 30 days (default 10 million) straight through
//!   the writer's code, then times the whole 30-day dashboard page and the report API.
//! - the server's peak resident memory (VmHWM) after each run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{ms, quantile, tutela_bin};

#[derive(clap::Args)]
pub struct Args {
    /// What to measure: hits, bulk, dashboard or all.
    #[arg(long, default_value = "all")]
    mode: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of measured load per run (after 2 s of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Hits per bulk request.
    #[arg(long, default_value_t = 200)]
    bulk_size: usize,
    /// Threads of the load generator (the server keeps the rest of the machine).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Events seeded for the dashboard timing.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Keep the seeded dashboard store here and reuse it on the next run.
    #[arg(long)]
    dashboard_dir: Option<PathBuf>,
    /// Dashboard page loads timed.
    #[arg(long, default_value_t = 30)]
    runs: usize,
}

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
];

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(tutela_bin()?)
            .args([
                "--log-level",
                "warn",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .ok_or_else(|| anyhow::anyhow!("unexpected output {line:?}"))?
            .to_string();
        Ok(Server { child, addr })
    }

    /// CPU time (user + system) the server used so far, in seconds.
    fn cpu_secs(&self) -> f64 {
        crate::util::cpu_secs(&self.child.id().to_string())
    }

    /// Peak resident memory of the server (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 client connection: writes a request, reads its whole answer (no
/// pipelining), with one reusable buffer and no per-request allocation.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

/// One answer: its status and body (a slice of the connection's buffer).
struct Answer<'a> {
    status: u16,
    body: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends one request and reads the whole answer (status line, headers, `Content-Length`
    /// body; chunked bodies are refused, the server never sends them here).
    async fn round_trip(&mut self, req: &[u8]) -> anyhow::Result<Answer<'_>> {
        self.s.write_all(req).await?;
        self.buf.clear();
        let mut head_end = None;
        let mut total = usize::MAX;
        loop {
            if self.buf.len() >= total {
                break;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let n = self.s.read_buf(&mut self.buf).await?;
            anyhow::ensure!(n > 0, "connection closed by the server");
            if head_end.is_none()
                && let Some(i) = find(&self.buf, b"\r\n\r\n")
            {
                head_end = Some(i + 4);
                let head = std::str::from_utf8(&self.buf[..i])?;
                let mut len = 0usize;
                for l in head.split("\r\n").skip(1) {
                    if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse()?;
                        }
                        anyhow::ensure!(
                            !k.eq_ignore_ascii_case("transfer-encoding"),
                            "unexpected chunked answer"
                        );
                    }
                }
                total = i + 4 + len;
            }
        }
        let head_end = head_end.expect("headers read");
        anyhow::ensure!(self.buf.len() == total, "more bytes than the answer");
        let status: u16 = self
            .buf
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line"))?;
        Ok(Answer {
            status,
            body: &self.buf[head_end..total],
        })
    }
}

struct LoadResult {
    /// Server CPU seconds during the measured window.
    server_cpu: f64,
    /// The load generator's own CPU seconds during the measured window.
    client_cpu: f64,
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: u64,
}

/// A connection's request source: fills `req` with request `i` (the generator patches a
/// pre-built request in place) and checks an answer (status and, for bulk, the tracked count).
trait Workload: Send + 'static {
    fn next(&mut self, i: u64) -> &[u8];
    fn check(&self, a: &Answer<'_>) -> bool;
}

/// Runs one workload per connection until the deadline; counts the answers that pass the check.
async fn load<W: Workload>(
    server: &Server,
    warmup: Duration,
    measure: Duration,
    workloads: Vec<W>,
) -> anyhow::Result<LoadResult> {
    let addr = server.addr.clone();
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut tasks = Vec::new();
    for mut w in workloads {
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut lat = Vec::with_capacity(200_000);
            let (mut n, mut errors, mut i) = (0u64, 0u64, 0u64);
            loop {
                let req = w.next(i);
                i += 1;
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let a = conn.round_trip(req).await?;
                let ok = w.check(&a);
                if t0 >= start {
                    if ok {
                        n += 1;
                        lat.push(t0.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((n, errors, lat))
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu0 = server.cpu_secs();
    let me0 = own_cpu_secs();
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = server.cpu_secs();
    let me1 = own_cpu_secs();
    let mut total = LoadResult {
        server_cpu: cpu1 - cpu0,
        client_cpu: me1 - me0,
        requests: 0,
        elapsed: measure,
        latencies: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let (n, e, lat) = t.await??;
        total.requests += n;
        total.errors += e;
        total.latencies.extend(lat);
    }
    Ok(total)
}

/// CPU time (user + system) of this process so far, in seconds.
fn own_cpu_secs() -> f64 {
    crate::util::cpu_secs("self")
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes the visitor id of `visitor` (16 hex digits) into `out`.
fn put_hex16(out: &mut [u8], visitor: u64) {
    let x = visitor.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for (k, b) in out.iter_mut().enumerate() {
        *b = HEX[((x >> (60 - 4 * k)) & 0xf) as usize];
    }
}

/// Writes `n` (< 1000) as three digits.
fn put_3digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 100 % 10) as u8;
    out[1] = b'0' + (n / 10 % 10) as u8;
    out[2] = b'0' + (n % 10) as u8;
}

/// The query of one hit, with fixed-width fields patched per hit: where the page number and
/// the visitor id sit in it.
const HIT_QUERY: &str = "idsite=1&rec=1&url=http%3A%2F%2Flocalhost%2Fpage-000&action_name=Page&_id=0000000000000000&res=1920x1080&send_image=0";

/// Where the page number and the visitor id sit in `HIT_QUERY` (searched once, not for every
/// hit of every request: the load generator shares the server's 2 cores).
static HIT_OFFSETS: std::sync::LazyLock<(usize, usize)> = std::sync::LazyLock::new(|| {
    let page = HIT_QUERY.find("page-").expect("template") + 5;
    let id = HIT_QUERY.find("_id=").expect("template") + 4;
    (page, id)
});

/// Patches hit `i` of connection `c` into a copy of `HIT_QUERY` at `q`: a new visitor every 4
/// hits (so visits of 4 page views), 500 pages.
fn patch_hit(q: &mut [u8], c: usize, i: u64) {
    let (page, id) = *HIT_OFFSETS;
    put_3digits(&mut q[page..page + 3], (i * 7 + c as u64) % 500);
    put_hex16(&mut q[id..id + 16], (c as u64) * 1_000_003 + i / 4);
}

/// Single hits: `GET /matomo.php?…` with a browser's user agent, answered 204.
struct HitWorkload {
    c: usize,
    /// One pre-built request per user agent.
    reqs: Vec<(Vec<u8>, usize)>,
    current: usize,
}

impl HitWorkload {
    fn new(c: usize) -> Self {
        let reqs = UAS
            .iter()
            .map(|ua| {
                let r = format!(
                    "GET /matomo.php?{HIT_QUERY} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {ua}\r\n\r\n"
                );
                (r.into_bytes(), "GET /matomo.php?".len())
            })
            .collect();
        HitWorkload {
            c,
            reqs,
            current: 0,
        }
    }
}

impl Workload for HitWorkload {
    fn next(&mut self, i: u64) -> &[u8] {
        self.current = (self.c + i as usize) % self.reqs.len();
        let (r, at) = &mut self.reqs[self.current];
        patch_hit(&mut r[*at..*at + HIT_QUERY.len()], self.c, i);
        r
    }

    fn check(&self, a: &Answer<'_>) -> bool {
        a.status == 204
    }
}

/// Bulk requests of `size` hits: one pre-built body whose visitor ids and pages are patched.
struct BulkWorkload {
    c: usize,
    size: usize,
    req: Vec<u8>,
    /// Where each entry's query starts in `req`.
    at: Vec<usize>,
}

impl BulkWorkload {
    fn new(c: usize, size: usize) -> Self {
        let mut body = String::from("{\"requests\":[");
        let mut at = Vec::with_capacity(size);
        let mut offsets_in_body = Vec::with_capacity(size);
        for k in 0..size {
            if k > 0 {
                body.push(',');
            }
            body.push_str("\"?");
            offsets_in_body.push(body.len());
            body.push_str(HIT_QUERY);
            body.push('"');
        }
        body.push_str("]}");
        let head = format!(
            "POST /matomo.php HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            UAS[c % UAS.len()],
            body.len()
        );
        for o in offsets_in_body {
            at.push(head.len() + o);
        }
        BulkWorkload {
            c,
            size,
            req: format!("{head}{body}").into_bytes(),
            at,
        }
    }
}

impl Workload for BulkWorkload {
    fn next(&mut self, i: u64) -> &[u8] {
        for (k, &o) in self.at.iter().enumerate() {
            patch_hit(
                &mut self.req[o..o + HIT_QUERY.len()],
                self.c,
                i * self.size as u64 + k as u64,
            );
        }
        &self.req
    }

    /// 200 with `"tracked":<size>` in the JSON answer.
    fn check(&self, a: &Answer<'_>) -> bool {
        if a.status != 200 {
            return false;
        }
        let Some(i) = find(a.body, b"\"tracked\":") else {
            return false;
        };
        let digits: Vec<u8> = a.body[i + 10..]
            .iter()
            .copied()
            .take_while(u8::is_ascii_digit)
            .collect();
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|d| d.parse::<usize>().ok())
            == Some(self.size)
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // One thread by default: the load generator leaves the rest of the machine to the server.
    let rt = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()?
    };
    let modes: Vec<&str> = match args.mode.as_str() {
        "all" => vec!["hits", "bulk", "dashboard"],
        m @ ("hits" | "bulk" | "dashboard") => vec![m],
        other => anyhow::bail!("unknown --mode {other:?}: use hits, bulk, dashboard or all"),
    };
    for mode in modes {
        match mode {
            "hits" => rt.block_on(hits(&args))?,
            "bulk" => rt.block_on(bulk(&args))?,
            _ => rt.block_on(dashboard(&args))?,
        }
    }
    Ok(())
}

/// The writer's mean batch size and commit time, from the server's /metrics.
fn writer_stats(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let get = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let batches = get("tutela_analytics_batch_hits_count");
    let hits = get("tutela_analytics_batch_hits_sum");
    format!(
        "; writer: {:.0} batches, {:.1} hits per batch, {:.2} ms per batch, {:.0} bytes of WAL per hit",
        batches,
        hits / batches,
        get("tutela_analytics_commit_seconds_sum") / get("tutela_analytics_commit_seconds_count")
            * 1e3,
        get("tutela_analytics_wal_bytes_total") / hits
    )
}

fn report(what: &str, r: &mut LoadResult, per_request: u64, server: &Server) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "{what}: {:.0} requests/s, {:.0} events/s; latency p50 {}, p99 {}, max {}; {} answers failed the check; server CPU {:.1} µs per event ({:.0} % of one core), load generator {:.1} µs per request ({:.0} % of one core); server peak RSS {:.1} MiB; load average {}{}",
        r.requests as f64 / secs,
        (r.requests * per_request) as f64 / secs,
        ms(quantile(&mut r.latencies, 0.5)),
        ms(quantile(&mut r.latencies, 0.99)),
        ms(quantile(&mut r.latencies, 1.0)),
        r.errors,
        r.server_cpu * 1e6 / (r.requests * per_request).max(1) as f64,
        r.server_cpu / secs * 100.0,
        r.client_cpu * 1e6 / r.requests.max(1) as f64,
        r.client_cpu / secs * 100.0,
        server.peak_rss_mib(),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_default(),
        writer_stats(&server.addr)
    );
}

async fn hits(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let workloads = (0..args.connections).map(HitWorkload::new).collect();
    let mut r = load(
        &server,
        Duration::from_secs(2),
        Duration::from_secs(args.seconds),
        workloads,
    )
    .await?;
    report(
        &format!("single hits, {} connections", args.connections),
        &mut r,
        1,
        &server,
    );
    Ok(())
}

async fn bulk(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let size = args.bulk_size;
    let workloads = (0..args.connections)
        .map(|c| BulkWorkload::new(c, size))
        .collect();
    let mut r = load(
        &server,
        Duration::from_secs(2),
        Duration::from_secs(args.seconds),
        workloads,
    )
    .await?;
    report(
        &format!(
            "bulk requests of {size} hits, {} connections",
            args.connections
        ),
        &mut r,
        size as u64,
        &server,
    );
    Ok(())
}

/// Seeds `events` events over the 30 days up to today (UTC), visit by visit, in time order (also
/// the background of `tutela-bench rights`).
pub(crate) async fn seed(dir: &Path, events: u64) -> anyhow::Result<()> {
    use tutela_analytics::{DeviceSummary, DeviceType, MinHit};
    let store = tutela_store::Store::open_data_dir(dir).await?;
    let sites = tutela_analytics::config::sites(&tutela_analytics::SiteConfig::default_sites())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut writer = tutela_analytics::DirectWriter::new(store.clone(), &sites);
    let devices: Vec<Arc<DeviceSummary>> = [
        ("Chrome", "120.0", "Windows", "10", DeviceType::Desktop),
        ("Chrome", "119.0", "Windows", "11", DeviceType::Desktop),
        ("Firefox", "121.0", "Ubuntu", "", DeviceType::Desktop),
        ("Safari", "17.1", "Mac OS X", "10.15", DeviceType::Desktop),
        (
            "Mobile Safari",
            "17.1",
            "iOS",
            "17.1",
            DeviceType::Smartphone,
        ),
        (
            "Chrome Mobile",
            "120.0",
            "Android",
            "14",
            DeviceType::Smartphone,
        ),
        ("Mobile Safari", "16.6", "iOS", "16.6", DeviceType::Tablet),
        ("Edge", "120.0", "Windows", "10", DeviceType::Desktop),
    ]
    .into_iter()
    .map(|(b, bv, o, ov, d)| {
        Arc::new(DeviceSummary {
            browser: Some(b.into()),
            browser_version: Some(bv.into()),
            os: Some(o.into()),
            os_version: (!ov.is_empty()).then(|| ov.into()),
            device: d,
        })
    })
    .collect();
    let resolutions = [
        "1920x1080",
        "1366x768",
        "1536x864",
        "390x844",
        "414x896",
        "2560x1440",
        "1280x720",
        "820x1180",
    ];
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let today_start = jiff::Timestamp::now().as_second().div_euclid(86_400) * 86_400;
    let first = today_start - 29 * 86_400;
    let span = jiff::Timestamp::now().as_second() - first;
    let per_visit = 3.0;
    let visits = (events as f64 / per_visit) as u64;
    let started = Instant::now();
    let mut written = 0u64;
    let mut batch: Vec<MinHit> = Vec::with_capacity(20_000);
    for v in 0..visits {
        let start = first + (v as i64 * span) / visits as i64;
        // About 40 % of visits come from returning visitors of a pool.
        let r = next();
        let visitor = if r % 10 < 4 {
            (r >> 8) % 400_000
        } else {
            1_000_000 + v
        } as i64;
        let dev = &devices[(r >> 20) as usize % devices.len()];
        let res = resolutions[(r >> 30) as usize % resolutions.len()];
        let n = 1 + (next() % 5) as i64; // 1..=5 actions, 3 on average
        for a in 0..n {
            if written >= events {
                break;
            }
            let x = next();
            let page = (x % 1000) * (x % 1000) / 1000; // skewed towards the first pages
            let is_event = x % 10 == 0 && a > 0;
            batch.push(MinHit {
                site_id: 1,
                ts: start + a * 40,
                visitor,
                new_visit: a == 0,
                ping: false,
                kind: if is_event { 2 } else { 1 },
                url: Some(format!("http://localhost/docs/page-{page}")),
                title: None,
                ev_category: is_event.then(|| "Video".to_string()),
                ev_action: is_event
                    .then(|| ["Play", "Pause", "Seek"][(x >> 40) as usize % 3].to_string()),
                ev_name: None,
                ev_value: None,
                referrer: None,
                ip_prefix: Some(format!("{}.{}.0.0", (x >> 8) % 223 + 1, (x >> 16) % 256)),
                device: Some(dev.clone()),
                resolution: Some(res.to_string()),
            });
            written += 1;
        }
        if batch.len() >= 10_000 {
            writer.write(std::mem::take(&mut batch)).await?;
        }
        if v % 200_000 == 0 && v > 0 {
            eprintln!(
                "seeded {written} events ({:.0} events/s)",
                written as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    writer.write(batch).await?;
    writer.finish().await?;
    store.close().await;
    println!(
        "seeded {written} events over 30 days in {:.1} s ({:.0} events/s through the writer, direct)",
        started.elapsed().as_secs_f64(),
        written as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn dashboard(args: &Args) -> anyhow::Result<()> {
    let tmp;
    let dir = match &args.dashboard_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let marker = dir.join("seeded-events");
    let seeded: Option<u64> = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if seeded != Some(args.events) {
        std::fs::create_dir_all(&dir)?;
        seed(&dir, args.events).await?;
        std::fs::write(&marker, args.events.to_string())?;
    } else {
        println!("reusing {} events seeded in {}", args.events, dir.display());
    }
    let out = Command::new(tutela_bin()?)
        .args(["--log-level", "warn", "--data-dir"])
        .arg(&dir)
        .args([
            "tokens",
            "create",
            "--name",
            "bench",
            "--scope",
            "analytics:read",
            "--expires",
            "1 day",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "tokens create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?
        .split_whitespace()
        .find(|w| w.starts_with("tutela_"))
        .ok_or_else(|| anyhow::anyhow!("no token printed"))?
        .to_string();
    let server = Server::start(&dir)?;
    let mut conn = Conn::open(&server.addr).await?;

    // Sign in through the form, as a browser does.
    let body = format!("token={token}");
    let login = format!(
        "POST /analytics/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(&server.addr).await?;
    s.write_all(login.as_bytes()).await?;
    let mut head = vec![0u8; 4096];
    let n = s.read(&mut head).await?;
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("no session cookie: {head}"))?
        .to_string();

    for (what, req) in [
        (
            "30-day dashboard page (HTML + SVG, every table)",
            format!(
                "GET /analytics/sites/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n"
            ),
        ),
        (
            "30-day report API (JSON, every table)",
            format!(
                "GET /api/v1/analytics/sites/1/report HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
            ),
        ),
    ] {
        let mut samples = Vec::with_capacity(args.runs);
        for i in 0..args.runs + 2 {
            let t0 = Instant::now();
            let status = conn.round_trip(req.as_bytes()).await?.status;
            anyhow::ensure!(status == 200, "{what}: status {status}");
            if i >= 2 {
                samples.push(t0.elapsed());
            }
        }
        println!(
            "{what} over {} events: median {}, p99 {}, max {} ({} runs); server peak RSS {:.1} MiB",
            args.events,
            ms(quantile(&mut samples, 0.5)),
            ms(quantile(&mut samples, 0.99)),
            ms(quantile(&mut samples, 1.0)),
            args.runs,
            server.peak_rss_mib()
        );
    }
    Ok(())
}
