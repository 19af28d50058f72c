//! End-to-end analytics with real clients against the real binary:
//! - the `matomo-tracker` npm client (node), single and bulk requests;
//! - the standard Matomo snippet loading our `/matomo.js` in headless Chromium, then the
//!   dashboard signed in through its form.
//!
//! Needs node + npm (the packages in `tests/e2e/package.json` are installed on first run with
//! `npm ci`) and Debian's `chromium`. Without them the tests say that they skip — except when
//! `CI` is set, where they fail instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tutela() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tutela"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TUTELA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// Skips (returns false) with a message, or panics in CI.
fn available(ok: bool, what: &str) -> bool {
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but {what}: this test may not skip in CI");
        }
        eprintln!("skipped: {what}");
    }
    ok
}

fn node_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available(node, "node is not installed (apt-get install nodejs npm)") {
        return false;
    }
    let dir = e2e_dir();
    let installed = |d: &Path| {
        d.join("node_modules/matomo-tracker/package.json").exists()
            && d.join("node_modules/playwright-core/package.json").exists()
    };
    if !installed(&dir) {
        // Tests of one binary run in parallel: one installs, the others wait for it.
        let lock = dir.join(".installing");
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .is_ok()
        {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .output();
            let _ = std::fs::remove_file(&lock);
            if let Ok(o) = &out
                && !o.status.success()
            {
                eprintln!("npm ci failed: {}", String::from_utf8_lossy(&o.stderr));
            }
        } else {
            let start = Instant::now();
            while lock.exists() && start.elapsed() < Duration::from_secs(300) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    available(
        installed(&dir),
        "the npm packages of crates/tutela/tests/e2e could not be installed (npm ci)",
    )
}

struct Server {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tutela()
        .args([
            "--log-level",
            "warn",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected output {line:?}"))
        .to_string();
    Server { child, addr, dir }
}

fn token(server: &Server) -> String {
    let out = tutela()
        .args(["--data-dir"])
        .arg(server.dir.path())
        .args([
            "tokens",
            "create",
            "--name",
            "e2e",
            "--scope",
            "analytics:read",
            "--scope",
            "analytics:track",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("tutela_"))
        .expect("a token on stdout")
        .to_string()
}

fn get_json(addr: &str, path: &str, token: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// Polls the report until `done` holds (hits are acknowledged after commit, but the browser's
/// beacons are fire-and-forget).
fn report_until(
    addr: &str,
    token: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = get_json(addr, "/api/v1/analytics/sites/1/report?limit=50", token);
        if done(&v) || start.elapsed() > Duration::from_secs(15) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn labels(v: &serde_json::Value, table: &str) -> Vec<String> {
    v["tables"][table]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn matomo_tracker_npm_client_hits_appear_in_reports() {
    if !node_ready() {
        return;
    }
    let server = serve();
    let token = token(&server);
    let out = Command::new("node")
        .arg("npm-client.mjs")
        .arg(format!("http://{}", server.addr))
        .current_dir(e2e_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = report_until(&server.addr, &token, |v| v["summary"]["actions"] == 5);
    let s = &v["summary"];
    assert_eq!(s["pageviews"], 4, "{v}");
    assert_eq!(s["events"], 1, "{v}");
    assert_eq!(s["visits"], 2, "{v}");
    assert_eq!(s["unique_visitors"], 2, "{v}");
    let pages = labels(&v, "pages");
    for p in [
        "http://localhost/npm/home",
        "http://localhost/npm/docs",
        "http://localhost/npm/bulk-a",
        "http://localhost/npm/bulk-b",
    ] {
        assert!(pages.contains(&p.to_string()), "{p} missing from {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("secret")),
        "query string kept: {pages:?}"
    );
    assert_eq!(labels(&v, "browsers")[0], "Firefox 121.0");
    assert_eq!(labels(&v, "event_actions"), ["Docs / Copy"]);
}

#[test]
fn standard_snippet_in_headless_chromium_and_the_dashboard() {
    if !node_ready() {
        return;
    }
    let chromium = std::env::var("TUTELA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !available(
        Path::new(&chromium).exists(),
        "Debian's chromium is not installed (apt-get install chromium)",
    ) {
        return;
    }
    let server = serve();
    let token = token(&server);
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new("node")
        .arg("browser.mjs")
        .arg(format!("http://{}", server.addr))
        .arg(&token)
        .arg(&artifacts)
        .env("TUTELA_CHROMIUM", &chromium)
        .current_dir(e2e_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    // The tracker set a visitor cookie and sent its hits as POSTs (sendBeacon).
    assert_eq!(
        result["visitorId"].as_str().map(str::len),
        Some(16),
        "{result}"
    );
    assert!(
        result["trackerRequests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m == "POST"),
        "{result}"
    );

    let v = report_until(&server.addr, &token, |v| {
        v["summary"]["pageviews"] == 2
            && v["summary"]["events"] == 1
            && !labels(v, "outlinks").is_empty()
    });
    let s = &v["summary"];
    assert_eq!(s["pageviews"], 2, "{v}");
    assert_eq!(s["events"], 1, "{v}");
    assert_eq!(
        s["visits"], 1,
        "one visit: the cookie carried the visitor across pages: {v}"
    );
    let pages = labels(&v, "pages");
    let port_host = |p: &str| p.split('/').nth(2).unwrap_or_default().to_string();
    assert!(
        pages.iter().all(|p| port_host(p).starts_with("localhost:")),
        "{pages:?}"
    );
    assert!(
        pages.iter().any(|p| p.ends_with("/home?utm_campaign=e2e")),
        "campaign kept, e-mail dropped: {pages:?}"
    );
    assert!(pages.iter().any(|p| p.ends_with("/about")), "{pages:?}");
    assert_eq!(labels(&v, "outlinks"), ["https://example.org/away"]);
    assert_eq!(labels(&v, "event_actions"), ["E2E / Click"]);
    assert_eq!(labels(&v, "devices"), ["desktop"]);

    // The dashboard showed the same numbers, styled, with its chart, and no CSP violation.
    let d = &result["dashboard"];
    assert_eq!(d["pageviews"], "2", "{result}");
    assert_eq!(d["visits"], "1", "{result}");
    assert!(d["pages"].as_str().unwrap().contains("/about"), "{result}");
    assert!(
        d["outlinks"].as_str().unwrap().contains("example.org/away"),
        "{result}"
    );
    assert_eq!(d["chart"], 2, "{result}");
    assert_ne!(
        d["cssLoaded"], "rgba(0, 0, 0, 0)",
        "the stylesheet applies: {result}"
    );
    assert_eq!(result["consoleErrors"], serde_json::json!([]), "{result}");
    assert!(artifacts.join("dashboard.png").exists());
}
