//! Shared helpers of the console's end-to-end tests: the real `tutela serve`, and a small
//! HTTP/1.1 client that keeps cookies, reads CSRF tokens from forms and can connect from any
//! loopback address (127.0.0.2, 127.0.0.3, …) so the server sees different client addresses.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub fn tutela() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tutela"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TUTELA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A running `tutela serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Standard error, drained by a thread so the server never blocks on a full pipe.
    log: std::sync::Arc<std::sync::Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
    /// The first-administrator link printed at start, if any.
    pub setup_link: Option<String>,
}

impl Server {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = tutela()
            .args(extra)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a line on stdout").unwrap();
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let mut stderr = child.stderr.take().unwrap();
        let drain = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut setup_link = None;
        if let Some(Ok(second)) = lines.next() {
            setup_link = second
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .map(str::to_string);
        }
        Server {
            child,
            addr,
            log,
            drain: Some(drain),
            setup_link,
        }
    }

    /// SIGTERM, then everything logged on standard error.
    pub fn stop(mut self) -> String {
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(d) = self.drain.take() {
            d.join().unwrap();
        }
        self.log.lock().unwrap().clone()
    }

    pub fn client(&self, source: &str) -> Http {
        Http {
            server: self.addr,
            source: source.parse().unwrap(),
            cookies: BTreeMap::new(),
            seen_cookies: Vec::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        attr_after(&self.body, "name=\"csrf\" value=\"").expect("a form with a CSRF token")
    }

    /// The text of the element with this id.
    pub fn text_of(&self, id: &str) -> Option<String> {
        let start = self.body.find(&format!("id=\"{id}\""))?;
        let rest = &self.body[start..];
        let open = rest.find('>')? + 1;
        let close = rest[open..].find('<')?;
        Some(rest[open..open + close].to_string())
    }
}

fn attr_after(html: &str, prefix: &str) -> Option<String> {
    let i = html.find(prefix)? + prefix.len();
    let j = html[i..].find('"')?;
    Some(html[i..i + j].to_string())
}

/// Form encoding of one value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A cookie-keeping HTTP client bound to one source address.
pub struct Http {
    pub server: SocketAddr,
    pub source: IpAddr,
    pub cookies: BTreeMap<String, String>,
    /// Every cookie value the server ever set for this client.
    pub seen_cookies: Vec<String>,
}

impl Http {
    pub async fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, None).await
    }

    pub async fn post(&mut self, path: &str, body: &str) -> Response {
        self.request("POST", path, Some(body)).await
    }

    pub async fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.request_with(method, path, body, &[]).await
    }

    pub async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Response {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(self.source, 0)).unwrap();
        let mut stream = socket.connect(self.server).await.unwrap();
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept-Language: en\r\n",
            self.server
        );
        if !cookie.is_empty() {
            req.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            if !extra
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            }
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
            .await
            .expect("response within 60 s")
            .unwrap();
        let raw = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.lines();
        let status = lines.next().unwrap_or("")[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let first = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = first.split_once('=') {
                    if value.is_empty() || v.contains("Max-Age=0") {
                        self.cookies.remove(name);
                    } else {
                        self.seen_cookies.push(value.to_string());
                        self.cookies.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        Response {
            status,
            headers,
            body,
        }
    }

    /// Signs in with a password (and a TOTP code when asked); returns the final response.
    pub async fn sign_in(
        &mut self,
        login: &str,
        password: &str,
        totp_key: Option<&str>,
    ) -> Response {
        let page = self.get("/console/login").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let res = self
            .post(
                "/console/login",
                &form(&[
                    ("csrf", &page.csrf()),
                    ("login", login),
                    ("password", password),
                ]),
            )
            .await;
        if res.status != 303 || res.location() != "/console/login/code" {
            return res;
        }
        let page = self.get("/console/login/code").await;
        let key = totp_key.expect("this operator has a second factor");
        let res = self
            .post(
                "/console/login/code",
                &form(&[("csrf", &page.csrf()), ("code", &totp_now(key))]),
            )
            .await;
        if res.status != 401 {
            return res;
        }
        // Each time step is accepted once: when this one was used (by enrolment or another
        // sign-in), the next step's code works.
        self.post(
            "/console/login/code",
            &form(&[("csrf", &page.csrf()), ("code", &totp_next(key))]),
        )
        .await
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// The current TOTP code for a base-32 key, avoiding the last two seconds of a step so that the
/// server sees the same step.
pub fn totp_now(key: &str) -> String {
    let secret = tutela_crypto::totp::TotpSecret::from_base32(key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now % 30 >= 28 {
        std::thread::sleep(Duration::from_secs(3));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    secret.code_at(now).to_string()
}

/// The code for the next time step (for a second sign-in within the same 30 s: each step is
/// accepted once, so this waits for the next step to begin).
pub fn totp_next(key: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::thread::sleep(Duration::from_secs(30 - now % 30 + 1));
    totp_now(key)
}

/// Sets up the first administrator through the printed link; returns the TOTP key and the
/// recovery codes.
pub async fn create_first_admin(
    server: &Server,
    client: &mut Http,
    login: &str,
) -> (String, Vec<String>) {
    let link = server
        .setup_link
        .clone()
        .expect("a first-administrator link");
    let path = &link[link.find("/console").unwrap()..];
    let page = client.get(path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = path.split("token=").nth(1).unwrap();
    let res = client
        .post(
            "/console/setup",
            &form(&[
                ("csrf", &page.csrf()),
                ("token", token),
                ("login", login),
                ("display_name", "Ada Admin"),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ]),
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location(), "/console/enroll");
    enroll(client).await
}

/// Completes TOTP enrolment; returns the key and the recovery codes.
pub async fn enroll(client: &mut Http) -> (String, Vec<String>) {
    let page = client.get("/console/enroll").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let key = page.text_of("manual-key").expect("manual key");
    let res = client
        .post(
            "/console/enroll",
            &form(&[("csrf", &page.csrf()), ("code", &totp_now(&key))]),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let codes: Vec<String> = res
        .body
        .split("<li><code>")
        .skip(1)
        .filter_map(|s| s.split_once("</code>").map(|(c, _)| c.to_string()))
        .collect();
    assert_eq!(codes.len(), 10, "{}", res.body);
    (key, codes)
}

/// Puts a person in the vault through the API (with a `vault:write` token made by the CLI):
/// `alice@example.com` with a support message and an account name. Returns the subject id.
pub async fn seed_subject(server: &Server, data_dir: &Path) -> String {
    let out = tutela()
        .args(["--data-dir"])
        .arg(data_dir)
        .args([
            "tokens",
            "create",
            "--name",
            "seed",
            "--scope",
            "vault:write",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let mut api = server.client("127.0.0.1");
    let res = api
        .request_with(
            "POST",
            "/api/v1/subjects",
            Some(r#"{"identifiers":[{"kind":"email","value":"alice@example.com"}]}"#),
            &headers,
        )
        .await;
    assert!(res.status == 200 || res.status == 201, "{}", res.body);
    let v: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    let id = v["subject_id"].as_str().unwrap().to_string();
    let res = api
        .request_with(
            "POST",
            &format!("/api/v1/subjects/{id}/records"),
            Some(
                r#"{"records":[
                {"purpose":"support","category":"support_messages","payload":"My app does not start since Tuesday","source":"live-chat"},
                {"purpose":"customer_accounts","category":"name","payload":"Alice Martin","source":"signup-form"}]}"#,
            ),
            &headers,
        )
        .await;
    assert!(res.status == 200 || res.status == 201, "{}", res.body);
    id
}

/// Metric value from a Prometheus text page (0 when absent).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>() as u64
}
