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
        vec!["tokens", "--help"],
        vec!["retention", "--help"],
        vec!["retention", "run", "--help"],
        vec!["audit", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "export", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "status", "--help"],
        vec!["keys", "rotate", "--help"],
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
        Self::start_env(data_dir, extra, &[])
    }

    fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = tutela()
            .envs(env.iter().copied())
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

    /// A request with a bearer token and an optional JSON body.
    fn call(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
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

fn run_ok(data: &str, args: &[&str]) -> (String, String) {
    let out = tutela()
        .args(["--data-dir", data])
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// A new API token named `name` with `vault:read` and `vault:write`.
fn vault_token(data: &str, name: &str) -> String {
    let (token, _) = run_ok(
        data,
        &[
            "tokens",
            "create",
            "--name",
            name,
            "--scope",
            "vault:read",
            "--scope",
            "vault:write",
        ],
    );
    token.trim().to_string()
}

fn key_line(path: &Path, name: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .to_string()
}

/// The vault's commands end to end: first start makes the key file, data goes in through the
/// API, `retention run` purges, `keys rotate` re-wraps without losing anything, `audit export`
/// writes JSON lines, and `audit verify` catches an audit row edited behind the log's back.
#[test]
fn vault_keys_retention_and_audit_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data");
    let data = data_path.to_str().unwrap();
    let key_file = data_path.join("master.key");
    let token = vault_token(data, "platform");

    let server = Server::start_env(&data_path, &[], &[("TUTELA_RETENTION_INTERVAL", "off")]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let (st, body) = server.call(
        "POST",
        "/api/v1/subjects",
        &token,
        Some(r#"{"identifiers":[{"kind":"email","value":"cli.marker@example.org"}]}"#),
    );
    assert_eq!(st, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sid = v["subject_id"].as_str().unwrap().to_string();
    let (st, body) = server.call("POST", &format!("/api/v1/subjects/{sid}/records"), &token, Some(
        r#"{"records":[
            {"purpose":"support","category":"support_messages","payload":{"text":"still here"},"source":"chat"},
            {"purpose":"audience_statistics","category":"page_url","payload":"/old","source":"tracker","collected_at":"2025-01-01T00:00:00Z"}
        ]}"#));
    assert_eq!(st, 201, "{body}");
    let (st, body) = server.call(
        "GET",
        &format!("/api/v1/subjects/{sid}?purpose=support"),
        &token,
        None,
    );
    assert_eq!(st, 200, "{body}");
    assert!(
        body.contains("still here") && !body.contains("/old"),
        "expired data is never read: {body}"
    );
    let (status, log) = server.stop();
    assert!(status.success());
    assert!(log.contains("BACK IT UP"), "{log}");
    assert!(
        !log.contains("cli.marker"),
        "personal data in the log: {log}"
    );

    // Retention: dry run counts, the real run deletes, per purpose.
    let (out, err) = run_ok(data, &["retention", "run", "--dry-run"]);
    assert_eq!(out.trim(), "audience_statistics\t1", "{err}");
    assert!(err.contains("would delete 1"), "{err}");
    let (out, err) = run_ok(data, &["retention", "run"]);
    assert_eq!(out.trim(), "audience_statistics\t1");
    assert!(err.contains("deleted 1 expired records"), "{err}");
    let (out, _) = run_ok(data, &["retention", "run", "--dry-run"]);
    assert_eq!(out.trim(), "");

    // Rotation: a new master key, the same index root, nothing lost.
    let (status_before, _) = run_ok(data, &["keys", "status"]);
    assert!(
        status_before.contains("(1 subject keys)"),
        "{status_before}"
    );
    let root = key_line(&key_file, "index-root");
    let master = key_line(&key_file, "master");
    let (_, err) = run_ok(data, &["keys", "rotate"]);
    assert!(err.contains("re-wrapped 1 subject keys"), "{err}");
    assert_eq!(key_line(&key_file, "index-root"), root);
    assert_ne!(key_line(&key_file, "master"), master);
    assert_eq!(key_line(&key_file, "previous"), "", "the rotation finished");
    let (status_after, _) = run_ok(data, &["keys", "status"]);
    assert!(status_after.contains("(1 subject keys)"), "{status_after}");
    assert_ne!(status_before, status_after);

    let server = Server::start_env(&data_path, &[], &[("TUTELA_RETENTION_INTERVAL", "off")]);
    let (st, body) = server.call("POST", "/api/v1/subjects/lookup", &token,
        Some(r#"{"identifier":{"kind":"email","value":"CLI.Marker@example.org"},"purpose":"support"}"#));
    assert_eq!(st, 200, "the blind index survives the rotation: {body}");
    let (st, body) = server.call(
        "GET",
        &format!("/api/v1/subjects/{sid}?purpose=support"),
        &token,
        None,
    );
    assert_eq!(st, 200);
    assert!(body.contains("still here"), "{body}");
    server.stop();

    // Audit: export, verify, then tamper and verify again.
    let export = dir.path().join("audit.jsonl");
    let (_, err) = run_ok(data, &["audit", "export", "-o", export.to_str().unwrap()]);
    assert!(err.contains("exported"), "{err}");
    let text = std::fs::read_to_string(&export).unwrap();
    let actions: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for a in [
        "subject_created",
        "write",
        "read",
        "retention_purge",
        "keys_rotated",
        "lookup",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} not in {actions:?}");
    }
    assert!(!text.contains("cli.marker") && !text.contains("still here"));
    let (out, _) = run_ok(data, &["audit", "verify"]);
    assert!(out.contains("audit log intact"), "{out}");
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap()
        .to_string();
    run_ok(data, &["audit", "verify", "--anchor", &head]);

    let db = data_path.join("tutela.db");
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::raw_sql("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET action = 'nothing' WHERE seq = 2")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let out = tutela()
        .args(["--data-dir", data, "audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entry 2 was modified"), "{err}");

    // A lost key file is not silently replaced while the vault holds data.
    std::fs::rename(&key_file, dir.path().join("moved.key")).unwrap();
    let out = tutela()
        .args(["--data-dir", data, "retention", "run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist but the vault holds 1 subjects"),
        "{err}"
    );
    assert!(!key_file.exists());
    // `keys status` says so too, instead of promising a new key file on the next start.
    let out = tutela()
        .args(["--data-dir", data, "keys", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("MISSING")
            && text.contains("holds 1 subjects")
            && !text.contains("created on"),
        "{text}"
    );
}

/// `tutela serve` that must refuse to start: returns what it logged.
fn serve_refuses(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let mut child = tutela()
        .envs(env.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

/// `tutela keys rotate` while `tutela serve` runs (the bug: the server kept wrapping new
/// subjects under the old key, which the rotation then removed from the key file). Now the
/// server answers 503 with the reason instead of writing, a node with the old key file refuses
/// to start, and after a restart with the new key file nothing is lost.
#[test]
fn keys_rotate_while_serving_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data");
    let data = data_path.to_str().unwrap();
    let key_file = data_path.join("master.key");
    let old_key = dir.path().join("master.key.before-rotation");
    let old_env = [
        ("TUTELA_RETENTION_INTERVAL", "off"),
        ("TUTELA_MASTER_KEY_FILE", old_key.to_str().unwrap()),
    ];
    let env = [("TUTELA_RETENTION_INTERVAL", "off")];
    let (status, _) = run_ok(data, &["keys", "status"]);
    assert!(status.contains("absent: the vault is empty"), "{status}");
    let token = vault_token(data, "p");
    let new_subject = |server: &Server, email: &str| {
        server.call(
            "POST",
            "/api/v1/subjects",
            &token,
            Some(&format!(
                r#"{{"identifiers":[{{"kind":"email","value":"{email}"}}]}}"#
            )),
        )
    };

    // An empty vault: the first start makes the key file and records its master key.
    let server = Server::start_env(&data_path, &[], &env);
    server.stop();
    std::fs::copy(&key_file, &old_key).unwrap();
    let (_, err) = run_ok(data, &["keys", "rotate"]);
    assert!(err.contains("re-wrapped 0 subject keys"), "{err}");
    // A node with the old key file would wrap new subjects under a key no other file holds.
    let log = serve_refuses(&data_path, &old_env);
    assert!(log.contains("out of date"), "{log}");
    let out = tutela()
        .envs(old_env)
        .args(["--data-dir", data, "keys", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("OUT OF DATE"));

    // Rotation while serving.
    std::fs::copy(&key_file, &old_key).unwrap();
    let server = Server::start_env(&data_path, &[], &env);
    let (st, body) = new_subject(&server, "before@example.org");
    assert_eq!(st, 201, "{body}");
    let sid = serde_json::from_str::<serde_json::Value>(&body).unwrap()["subject_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, err) = run_ok(data, &["keys", "rotate"]);
    assert!(err.contains("re-wrapped 1 subject keys"), "{err}");
    assert!(
        err.contains("keep the copy you made before rotating"),
        "{err}"
    );
    let (st, body) = new_subject(&server, "during@example.org");
    assert_eq!(st, 503, "{body}");
    assert!(
        body.contains("\"unavailable\"") && body.contains("rotated"),
        "{body}"
    );
    let (st, body) = server.call(
        "GET",
        &format!("/api/v1/subjects/{sid}?purpose=support"),
        &token,
        None,
    );
    assert_eq!(st, 503, "{body}");
    let (_, log) = server.stop();
    assert!(!log.contains("during@"), "{log}");
    let log = serve_refuses(&data_path, &old_env);
    assert!(log.contains("does not hold"), "{log}");

    // Restarted with the new key file: everything is there, and writes work again.
    let server = Server::start_env(&data_path, &[], &env);
    let (st, body) = server.call(
        "GET",
        &format!("/api/v1/subjects/{sid}?purpose=support"),
        &token,
        None,
    );
    assert_eq!(st, 200, "{body}");
    let (st, body) = new_subject(&server, "after@example.org");
    assert_eq!(st, 201, "{body}");
    server.stop();
    let (status, _) = run_ok(data, &["keys", "status"]);
    assert!(status.contains("(2 subject keys)"), "{status}");
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

/// Reads from `s` until the server closes the connection (end of stream or reset), for at most
/// `limit`; returns how long that took and what was received, or None if it stayed open.
fn wait_for_close(s: &mut TcpStream, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while started.elapsed() < limit {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => return Some((started.elapsed(), got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some((started.elapsed(), got)),
        }
    }
    None
}

#[test]
fn serve_closes_slow_and_idle_connections_but_not_busy_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(
        &dir.path().join("data"),
        &[],
        &[
            ("TUTELA_HEADER_READ_TIMEOUT", "1 second"),
            ("TUTELA_KEEP_ALIVE_TIMEOUT", "4 seconds"),
            ("TUTELA_BODY_READ_TIMEOUT", "2 seconds"),
        ],
    );

    // Slowloris: half a request head, then one byte every 200 ms. The head timer counts from
    // the first byte and more bytes do not restart it: the server hangs up after ~1 s, well
    // before the keep-alive timeout, without having answered.
    // Seen twice in about twenty runs of this binary with its other tests in parallel, never
    // alone: the connection closed after 93-266 ms, before the head timer could have fired.
    // Not understood yet (see the closing note of 2026-12-07); a second connection must then
    // show the expected cut, so a server that cut every slow head early still fails.
    let (elapsed, closed) = {
        let attempt = || {
            let mut slow = TcpStream::connect(&server.addr).unwrap();
            // The clock starts before the first byte is sent, so that the lower bound below
            // holds even when this thread is descheduled on a loaded machine.
            let started = Instant::now();
            slow.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .unwrap();
            let closed = loop {
                if let Some(c) = wait_for_close(&mut slow, Duration::from_millis(200)) {
                    break Some(c);
                }
                if slow.write_all(b"a").is_err() || started.elapsed() > Duration::from_secs(10) {
                    break None;
                }
            };
            (started.elapsed(), closed)
        };
        let first = attempt();
        if first.0 < Duration::from_millis(900) {
            eprintln!("slow head cut after {:?}; trying once more", first.0);
            attempt()
        } else {
            first
        }
    };
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3500),
        "slow head cut after {elapsed:?}"
    );
    if let Some((_, got)) = closed {
        assert!(
            !String::from_utf8_lossy(&got).contains(" 200 "),
            "an incomplete head was answered"
        );
    }

    // A busy keep-alive connection: a request every 400 ms for longer than both timeouts, all
    // answered on the same connection (and the pause between two requests is idle time, which
    // the head timer does not count).
    let mut busy = TcpStream::connect(&server.addr).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(6) {
        busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                busy.read(&mut byte).unwrap(),
                1,
                "connection closed while busy"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("content-length");
        let mut body = vec![0u8; len];
        busy.read_exact(&mut body).unwrap();
        answered += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(answered >= 8, "{answered} answers");

    // An idle keep-alive connection outlives the head timeout and is closed by the keep-alive
    // timeout.
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    let sent = Instant::now();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (_, got) = wait_for_close(&mut idle, Duration::from_secs(15)).expect("idle closed");
    let after = sent.elapsed();
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(
        after >= Duration::from_millis(3500) && after < Duration::from_secs(9),
        "idle connection closed after {after:?}"
    );

    // A body that never comes: the request fails once the body timeout has passed, instead of
    // holding the connection.
    let mut body = TcpStream::connect(&server.addr).unwrap();
    body.write_all(
        b"POST /api/v1/consent HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"choices\":",
    )
    .unwrap();
    let (after, got) = wait_for_close(&mut body, Duration::from_secs(15)).expect("body cut");
    let got = String::from_utf8_lossy(&got).to_string();
    assert!(!got.contains(" 201 "), "{got}");
    assert!(
        after < Duration::from_secs(8),
        "body wait ended after {after:?}"
    );

    // The server still serves, and stops gracefully.
    assert_eq!(server.get("/readyz").0, 200);
    let (status, log) = server.stop();
    assert!(status.success(), "exit {status:?}\n{log}");
}

#[test]
fn serve_purges_expired_consent_records_and_audits_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Server::start(&data, &[]).stop();
    let db = data.join("tutela.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sql = |q: String| {
        let db = db.clone();
        rt.block_on(async move {
            use sqlx::{Connection, Row};
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            let n = sqlx::query(sqlx::AssertSqlSafe(q))
                .fetch_optional(&mut conn)
                .await
                .unwrap()
                .map(|r| r.try_get::<i64, _>(0).unwrap_or(0));
            conn.close().await.unwrap();
            n
        })
    };
    // Two records past their deadline, one still kept.
    for (i, (recorded, deadline)) in [(10, 20), (30, 40), (1_000, 4_000_000_000i64)]
        .into_iter()
        .enumerate()
    {
        sql(format!(
            "INSERT INTO consent_records (record_id, consent_id, recorded_at, revision, register_hash, \
             method, source, gpc, analytics, services, purpose, category, delete_after) VALUES \
             ('00000000-0000-4000-8000-00000000000{i}', 'aaaaaaaa-bbbb-4ccc-8ddd-00000000000{i}', \
             {recorded}, 'r', 'h', 'api', 'tutela', 0, 1, '{{}}', 'proof_of_consent', 'consent_record', {deadline})"
        ));
    }
    // The first server may have been stopped in the middle of its start-up purges: a graceful
    // stop gives the per-run leases back (a crashed node's would block the job until they expire),
    // so the next start runs them at once.
    assert_eq!(
        sql("SELECT COUNT(*) FROM job_leases WHERE name IN \
             ('retention', 'retention:consent_records', 'analytics_retention')"
            .into()),
        Some(0),
        "a stopped server kept a job lease"
    );
    let server = Server::start(&data, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sql("SELECT COUNT(*) FROM consent_records".into()) != Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the consent purge did not run"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The audit entry follows the delete.
    while sql("SELECT COUNT(*) FROM audit_log WHERE action = 'consent_retention_purge'".into())
        != Some(1)
    {
        assert!(std::time::Instant::now() < deadline, "no audit entry");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.stop();
    let data = data.to_str().unwrap();
    let (out, _) = run_ok(data, &["audit", "export"]);
    let line = out
        .lines()
        .find(|l| l.contains("consent_retention_purge"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("\\\"records\\\":2") || line.contains("\"records\":2"),
        "{line}"
    );
    assert!(
        !out.contains("aaaaaaaa-bbbb"),
        "a consent id in the audit log"
    );
    run_ok(data, &["audit", "verify"]);
}

/// A retention period shortened in the register reaches the records already stored: the dry
/// run counts them with the changed register, `serve` brings their deadlines forward when it
/// records the new version (reads hide them), and `retention run` deletes them.
#[test]
fn a_shortened_retention_period_reaches_stored_records() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data");
    let data = data_path.to_str().unwrap();
    let token = vault_token(data, "platform");
    let server = Server::start_env(&data_path, &[], &[("TUTELA_RETENTION_INTERVAL", "off")]);
    let (st, body) = server.call(
        "POST",
        "/api/v1/subjects",
        &token,
        Some(r#"{"identifiers":[{"kind":"email","value":"short.marker@example.org"}]}"#),
    );
    assert_eq!(st, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sid = v["subject_id"].as_str().unwrap().to_string();
    let three_days_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(72);
    let records = format!(
        r#"{{"records":[
            {{"purpose":"platform_security","category":"activity_logs","payload":{{"op":"login"}},"source":"api","collected_at":"{three_days_ago}"}},
            {{"purpose":"support","category":"support_messages","payload":{{"text":"still here"}},"source":"chat"}}
        ]}}"#
    );
    let (st, body) = server.call(
        "POST",
        &format!("/api/v1/subjects/{sid}/records"),
        &token,
        Some(&records),
    );
    assert_eq!(st, 201, "{body}");
    let (status, _) = server.stop();
    assert!(status.success());
    let (out, _) = run_ok(data, &["retention", "run", "--dry-run"]);
    assert_eq!(out.trim(), "", "6 months: nothing expired yet");

    // Security logs are now kept 1 day instead of 6 months.
    let text = std::fs::read_to_string(format!(
        "{}/../../examples/policy.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let changed = text.replacen(
        "keep = \"6 months\"   # this example's choice (the reference",
        "keep = \"1 day\"   # (the reference",
        1,
    );
    assert_ne!(changed, text);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, changed).unwrap();
    let policy = policy.to_str().unwrap();

    // The dry run with the changed register counts the record (and changes nothing).
    let (out, err) = run_ok(data, &["--policy", policy, "retention", "run", "--dry-run"]);
    assert_eq!(out.trim(), "platform_security\t1", "{err}");
    assert!(err.contains("would delete 1"), "{err}");

    // Serving the changed register brings the deadline forward: reads hide the record.
    let server = Server::start_env(
        &data_path,
        &["--policy", policy],
        &[("TUTELA_RETENTION_INTERVAL", "off")],
    );
    let (st, body) = server.call(
        "GET",
        &format!("/api/v1/subjects/{sid}?purpose=platform_security"),
        &token,
        None,
    );
    assert_eq!(st, 200, "{body}");
    assert!(
        !body.contains("login") && body.contains("still here"),
        "the newly expired record is hidden: {body}"
    );
    let (status, log) = server.stop();
    assert!(status.success());
    assert!(
        log.contains("stored deadlines follow the register"),
        "{log}"
    );

    let (out, err) = run_ok(data, &["--policy", policy, "retention", "run", "--dry-run"]);
    assert_eq!(out.trim(), "platform_security\t1", "{err}");
    let (out, err) = run_ok(data, &["--policy", policy, "retention", "run"]);
    assert_eq!(out.trim(), "platform_security\t1");
    assert!(err.contains("deleted 1 expired records"), "{err}");
    // The recompute is in the audit log (counts, no personal data).
    let (out, _) = run_ok(data, &["audit", "export"]);
    let line = out
        .lines()
        .find(|l| l.contains("retention_recompute"))
        .expect("a recompute entry");
    assert!(
        line.contains("platform_security") && !line.contains("short.marker"),
        "{line}"
    );
}
