//! End-to-end tests of the `tutela` binary, run as a user would run it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tutela() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tutela"));
    // Keep the tests independent of the developer's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("TUTELA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in fixture")
        + 1
}

#[test]
fn help_explains_every_command_with_examples() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["policy", "--help"],
        vec!["policy", "check", "--help"],
        vec!["policy", "render", "--help"],
        vec!["policy", "ropa", "--help"],
    ] {
        let out = tutela().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage:"), "{args:?}: {text}");
        if args.len() > 1 || args[0] == "--help" {
            assert!(
                text.contains("Example"),
                "{args:?} shows no example:\n{text}"
            );
        }
    }
}

#[test]
fn check_accepts_the_example_register() {
    let out = tutela().args(["policy", "check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn check_reports_all_three_mistakes_with_lines() {
    let path = fixture("three-mistakes.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let out = tutela().args(["policy", "check", &path]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    let expected_lines = [
        line_of(&text, "label.en = \"Orders\""),
        line_of(&text, "\"phone\"]"),
        line_of(&text, "\"six months\""),
    ];
    for line in expected_lines {
        let prefix = format!("{path}:{line}:");
        assert!(
            errors.iter().any(|e| e.starts_with(&prefix)),
            "no error at line {line}:\n{stderr}"
        );
    }
    assert!(stderr.contains("3 problems"), "{stderr}");
}

#[test]
fn render_and_ropa_from_the_cli() {
    let out = tutela()
        .args(["policy", "render", "--format", "md", "--lang", "fr"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(
        md.contains("Politique de confidentialité"),
        "{}",
        &md[..200.min(md.len())]
    );

    let out = tutela()
        .args(["policy", "render", "--lang", "de"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not published in \"de\""));

    let out = tutela()
        .args(["policy", "ropa", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.is_object() || v.is_array());

    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("ropa.csv");
    let out = tutela()
        .args(["policy", "ropa", "--format", "csv", "-o"])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&csv_path).unwrap().lines().count() > 5);
}

/// A running `tutela serve`, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Server {
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
            .to_string();
        Server { child, addr }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status = raw[9..12].parse().unwrap();
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    fn post_form(&self, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status = raw[9..12].parse().unwrap();
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// SIGTERM, then the exit status and everything logged.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status, log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn serve_shows_the_notice_records_register_versions_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let server = Server::start(&data, &[]);
    let (status, body) = server.get("/privacy?lang=en");
    assert_eq!(status, 200);
    let register = tutela_domain_example();
    for p in &register.purposes {
        assert!(
            body.contains(&html_escape(p.label.get("en"))),
            "purpose {} missing",
            p.id
        );
    }
    assert_eq!(server.get("/readyz").0, 200);
    let (_, first) = server.get("/api/v1/register");
    let (status, log) = server.stop();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(data.join("tutela.db").exists());

    // The same register again: no new version. A changed register: a new version and hash.
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, tutela_domain::EXAMPLE_REGISTER).unwrap();
    let server = Server::start(&data, &["--policy", policy.to_str().unwrap()]);
    let (_, same) = server.get("/api/v1/register");
    assert_eq!(hash_of(&same), hash_of(&first));
    server.stop();

    let changed = tutela_domain::EXAMPLE_REGISTER.replacen(
        "title.en = \"Privacy policy\"",
        "title.en = \"Privacy policy (changed by a test)\"",
        1,
    );
    assert_ne!(changed, tutela_domain::EXAMPLE_REGISTER);
    std::fs::write(&policy, changed).unwrap();
    let server = Server::start(&data, &["--policy", policy.to_str().unwrap()]);
    let (_, after) = server.get("/api/v1/register");
    assert_ne!(hash_of(&after), hash_of(&first));
    let (_, body) = server.get("/privacy?lang=en");
    assert!(
        body.contains("Privacy policy (changed by a test)"),
        "the new title is not shown"
    );
    server.stop();
}

#[test]
fn serve_refuses_an_invalid_register_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let out = tutela()
        .args([
            "--policy",
            &fixture("three-mistakes.toml"),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it must not start listening");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not valid"), "{stderr}");
}

#[test]
fn serve_logs_no_query_strings_or_client_details() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--log-format", "json"]);
    let secret = "alice%40example.com";
    let (status, _) = server.get(&format!("/privacy?lang=fr&uid={secret}"));
    assert_eq!(status, 200);
    let (_, log) = server.stop();
    assert!(log.contains("\"route\":\"/privacy\""), "{log}");
    assert!(
        !log.contains("alice"),
        "the log leaked a query string:\n{log}"
    );
}

fn tutela_domain_example() -> tutela_domain::Register {
    tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn hash_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["hash"].as_str().unwrap().to_string()
}

#[test]
fn tokens_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = tutela()
        .args([
            "--data-dir",
            data,
            "tokens",
            "create",
            "--name",
            "ci",
            "--scope",
            "vault:read",
            "--expires",
            "30 days",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("tutela_"), "{token}");
    let id = token.split('_').nth(1).unwrap().to_string();

    let out = tutela()
        .args(["--data-dir", data, "tokens", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.contains(&id) && list.contains("active") && list.contains("vault:read"),
        "{list}"
    );
    assert!(
        !list.contains(&token[20..]),
        "the secret must never be listed"
    );

    let out = tutela()
        .args([
            "--data-dir",
            data,
            "tokens",
            "create",
            "--name",
            "x",
            "--scope",
            "vault:delete",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vault:read"));

    let out = tutela()
        .args(["--data-dir", data, "tokens", "revoke", &id])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = tutela()
        .args(["--data-dir", data, "tokens", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("revoked"));
    let out = tutela()
        .args(["--data-dir", data, "tokens", "revoke", &id])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn serve_runs_the_rights_portal_with_a_key_file_and_the_file_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let (status, form) = server.get("/rights?lang=en");
    assert_eq!(status, 200, "{form}");
    let marker = "name=\"form_token\" value=\"";
    let i = form.find(marker).unwrap() + marker.len();
    let token = form[i..].split('"').next().unwrap().to_string();
    let (status, page) = server.post_form(
        "/rights?lang=en",
        &format!("form_token={token}&right=erasure&email=lea%40example.org&text=delete+everything"),
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Your request was received"), "{page}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    // The code went out as a real message in the default outbox.
    let outbox: Vec<_> = std::fs::read_dir(data.join("outbox")).unwrap().collect();
    assert_eq!(outbox.len(), 1);
    let mail = std::fs::read_to_string(outbox[0].as_ref().unwrap().path()).unwrap();
    assert!(mail.contains("To: lea@example.org"), "{mail}");
    // The key file is private, and logs hold no personal data.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "master.key is readable by others: {mode:o}"
        );
    }
    assert!(
        !log.contains("lea@example.org") && !log.contains("delete everything"),
        "{log}"
    );
    assert!(log.contains("rights request filed"), "{log}");
}

#[test]
fn serve_refuses_a_misdeclared_connector_without_echoing_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tutela.toml");
    std::fs::write(
        &cfg,
        r#"
[[connectors.sql]]
name = "platform"
url = "postgres://app:hunter2@db.internal/app"
[[connectors.sql.collections]]
name = "users"
table = "users; DROP TABLE x"
key = "id"
identity = [{ column = "email", kind = "email" }]
columns = ["email"]
on_erase = { action = "delete" }
"#,
    )
    .unwrap();
    let out = tutela()
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a plain SQL name"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
