//! End-to-end tests of the console through the real `tutela serve`: throttling measured from
//! several client addresses, logs of a full sign-in flow, CSRF on every form, roles, and the
//! `tutela operators` commands.

mod support;

use std::time::Instant;

use support::{
    ADMIN_PASSWORD, Server, create_first_admin, enroll, form, metric, totp_next, tutela,
};

#[tokio::test]
async fn hundred_wrong_passwords_are_throttled_and_the_owner_gets_in_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut owner = server.client("127.0.0.1");
    let (key, _) = create_first_admin(&server, &mut owner, "ada").await;

    let before = metric(
        &owner.get("/metrics").await.body,
        "tutela_console_password_checks_total",
    );
    let mut attacker = server.client("127.0.0.2");
    let page = attacker.get("/console/login").await;
    let csrf = page.csrf();
    let start = Instant::now();
    let (mut checked, mut throttled) = (0, 0);
    for i in 0..100 {
        let res = attacker
            .post(
                "/console/login",
                &form(&[
                    ("csrf", &csrf),
                    ("login", "ada"),
                    ("password", &format!("wrong password {i}")),
                ]),
            )
            .await;
        match res.status {
            401 => checked += 1,
            429 => {
                throttled += 1;
                assert!(res.header("retry-after").is_some());
                assert!(res.body.contains("Too many attempts"), "{}", res.body);
            }
            other => panic!("unexpected status {other}: {}", res.body),
        }
    }
    let elapsed = start.elapsed();
    let after = metric(
        &owner.get("/metrics").await.body,
        "tutela_console_password_checks_total",
    );
    eprintln!(
        "throttling: 100 wrong passwords from one address in {:.1} s; {checked} reached the password check, {throttled} were refused before it",
        elapsed.as_secs_f64()
    );
    assert_eq!(checked + throttled, 100);
    assert_eq!(
        after - before,
        checked,
        "the metric counts exactly the checks that ran"
    );
    assert!(checked >= 3, "the first three failures are free");
    assert!(
        checked <= 12,
        "{checked} attempts reached the password check"
    );

    // Even the right password is refused from the attacking address while it waits.
    let res = attacker
        .post(
            "/console/login",
            &form(&[
                ("csrf", &csrf),
                ("login", "ada"),
                ("password", ADMIN_PASSWORD),
            ]),
        )
        .await;
    assert_eq!(res.status, 429);

    // The owner, from another address, signs in at once.
    let mut elsewhere = server.client("127.0.0.3");
    let res = elsewhere.sign_in("ada", ADMIN_PASSWORD, Some(&key)).await;
    assert_eq!(
        (res.status, res.location()),
        (303, "/console"),
        "{}",
        res.body
    );
    let home = elsewhere.get("/console").await;
    assert_eq!(home.status, 200);
    // The sign-in log shows the failures (and the overview counts them).
    assert!(home.text_of("failed-24h").unwrap().parse::<u64>().unwrap() >= checked);
    server.stop();
}

#[tokio::test]
async fn logs_of_a_full_flow_hold_no_session_csrf_password_or_second_factor_material() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--log-format", "json", "--log-level", "debug"],
    );
    let mut secrets: Vec<String> = vec![ADMIN_PASSWORD.to_string()];
    let link = server.setup_link.clone().unwrap();
    secrets.push(link.split("token=").nth(1).unwrap().to_string());

    let mut c = server.client("127.0.0.1");
    let (key, codes) = create_first_admin(&server, &mut c, "ada").await;
    secrets.push(key.clone());
    secrets.push(key.replace(' ', ""));
    secrets.push(key.replace(' ', "").to_lowercase());
    secrets.extend(codes.iter().cloned());
    secrets.extend(codes.iter().map(|c| c.replace('-', "")));

    let page = c.get("/console/account").await;
    secrets.push(page.csrf());
    // Sign out, sign in with password and TOTP, then with a recovery code.
    c.post("/console/logout", &form(&[("csrf", &page.csrf())]))
        .await;
    let res = c.sign_in("ada", ADMIN_PASSWORD, Some(&key)).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let page = c.get("/console/account").await;
    c.post("/console/logout", &form(&[("csrf", &page.csrf())]))
        .await;
    let login = c.get("/console/login").await;
    secrets.push(login.csrf());
    let res = c
        .post(
            "/console/login",
            &form(&[
                ("csrf", &login.csrf()),
                ("login", "ada"),
                ("password", ADMIN_PASSWORD),
            ]),
        )
        .await;
    assert_eq!(res.location(), "/console/login/code");
    let code_page = c.get("/console/login/code").await;
    let res = c
        .post(
            "/console/login/code",
            &form(&[("csrf", &code_page.csrf()), ("code", &codes[3])]),
        )
        .await;
    assert_eq!(
        (res.status, res.location()),
        (303, "/console"),
        "{}",
        res.body
    );
    // A recovery code works once.
    let page = c.get("/console/account").await;
    assert!(
        page.body.contains(">9<"),
        "9 recovery codes left:\n{}",
        page.body
    );

    // A wrong password and a failed change.
    let new_password = "a brand new passphrase for her";
    secrets.push(new_password.to_string());
    secrets.push("wrong current password".to_string());
    let res = c
        .post(
            "/console/account/password",
            &form(&[
                ("csrf", &page.csrf()),
                ("current", "wrong current password"),
                ("password", new_password),
                ("confirm", new_password),
            ]),
        )
        .await;
    assert_eq!(res.status, 401);
    let res = c
        .post(
            "/console/account/password",
            &form(&[
                ("csrf", &page.csrf()),
                ("current", ADMIN_PASSWORD),
                ("password", new_password),
                ("confirm", new_password),
            ]),
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(res.body.contains("Password changed"), "{}", res.body);

    // An invitation and an API token, both shown once.
    let ops = c.get("/console/operators").await;
    let res = c
        .post(
            "/console/operators",
            &form(&[
                ("csrf", &ops.csrf()),
                ("login", "sam"),
                ("display_name", "Sam Support"),
                ("role", "support"),
            ]),
        )
        .await;
    let invite = res.text_of("invite-link").expect("invitation link");
    secrets.push(invite.split("token=").nth(1).unwrap().to_string());
    let toks = c.get("/console/tokens").await;
    let res = c
        .post(
            "/console/tokens",
            &form(&[
                ("csrf", &toks.csrf()),
                ("name", "ci"),
                ("scope", "vault:read"),
                ("expires", "30 days"),
            ]),
        )
        .await;
    let token = res.text_of("new-token").expect("token shown once");
    assert!(token.starts_with("tutela_"));
    secrets.push(token.split('_').nth(2).unwrap().to_string());
    let again = c.get("/console/tokens").await;
    assert!(!again.body.contains(&token), "a token is shown only once");

    // Sign out everywhere.
    let res = c
        .post(
            "/console/account/logout-everywhere",
            &form(&[("csrf", &again.csrf())]),
        )
        .await;
    assert_eq!(res.location(), "/console/login?m=signed_out");
    assert_eq!(c.get("/console").await.location(), "/console/login");

    secrets.extend(c.seen_cookies.iter().cloned());
    let log = server.stop();
    // The TOTP secret is stored sealed: its bytes are nowhere in the database files.
    let raw = tutela_crypto::totp::TotpSecret::from_base32(&key).unwrap();
    let raw = raw.as_bytes();
    let mut files = 0;
    for name in ["tutela.db", "tutela.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(name)) {
            files += 1;
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw),
                "{name} holds the TOTP secret in clear"
            );
        }
    }
    assert!(files >= 1, "the database file was read");
    assert!(
        log.contains("\"route\":\"/console/login\""),
        "json request logs expected:\n{log}"
    );
    assert!(log.contains("operator event"), "{log}");
    for secret in &secrets {
        assert!(secret.len() >= 8, "{secret:?} is too short to search for");
        assert!(
            !log.contains(secret.as_str()),
            "the log holds a secret ({}…)",
            &secret[..4]
        );
    }
}

#[tokio::test]
async fn every_console_form_needs_its_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client("127.0.0.1");
    create_first_admin(&server, &mut c, "ada").await;
    let ops = c.get("/console/operators").await;
    assert_eq!(ops.status, 200);
    let me = ops
        .body
        .split("/console/operators/")
        .nth(1)
        .map(|s| s[..16].to_string());
    let id = me.unwrap_or_else(|| "0000000000000000".into());
    let posts = [
        "/console/login".to_string(),
        "/console/login/code".to_string(),
        "/console/setup".to_string(),
        "/console/enroll".to_string(),
        "/console/logout".to_string(),
        "/console/account/password".to_string(),
        "/console/account/language".to_string(),
        "/console/account/logout-everywhere".to_string(),
        "/console/operators".to_string(),
        format!("/console/operators/{id}/disable"),
        format!("/console/operators/{id}/reset-2fa"),
        "/console/tokens".to_string(),
        "/console/tokens/0123456789abcdef/revoke".to_string(),
    ];
    for path in &posts {
        for body in [
            "",
            "csrf=",
            "csrf=00ff",
            &format!("csrf={}", "a".repeat(64)),
        ] {
            let res = c.post(path, body).await;
            assert_eq!(res.status, 403, "{path} with {body:?}: {}", res.body);
        }
    }
    // Still signed in: the refused forms changed nothing.
    assert_eq!(c.get("/console").await.status, 200);
    // A cross-site submission is refused even with the right token.
    let page = c.get("/console/account").await;
    let body = form(&[("csrf", &page.csrf()), ("lang", "fr")]);
    let res = c
        .request_with(
            "POST",
            "/console/account/language",
            Some(&body),
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await;
    assert_eq!(res.status, 403, "cross-site form");
    let res = c.post("/console/account/language", &body).await;
    assert_eq!(res.status, 303, "the same form with its token works");
    server.stop();
}

/// The id of an operator, read from the administrator's operators page.
async fn invited_id(admin: &mut support::Http, login: &str) -> String {
    let page = admin.get("/console/operators").await;
    let row = page
        .body
        .split("<tr>")
        .find(|r| r.contains(&format!("<code>{login}</code>")))
        .expect("operator row");
    let i = row.find("/console/operators/").expect("an action form") + "/console/operators/".len();
    row[i..i + 16].to_string()
}

#[tokio::test]
async fn roles_are_enforced_by_the_server_and_operators_are_managed_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let server = Server::start(dir.path(), &[]);
    let mut admin = server.client("127.0.0.1");
    let (admin_key, _) = create_first_admin(&server, &mut admin, "ada").await;

    // tutela operators add prints a one-time link.
    let mut invited = Vec::new();
    for (login, role) in [("sam", "support"), ("ana", "analyst"), ("dora", "dpo")] {
        let out = tutela()
            .args([
                "--data-dir",
                &data,
                "operators",
                "add",
                "--login",
                login,
                "--name",
                &format!("Name {login}"),
                "--role",
                role,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(
            link.starts_with("http://127.0.0.1:8080/console/setup?token="),
            "{link}"
        );
        invited.push((login, role, link));
    }
    let out = tutela()
        .args([
            "--data-dir",
            &data,
            "operators",
            "add",
            "--login",
            "sam",
            "--name",
            "x",
            "--role",
            "support",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("taken"));
    let out = tutela()
        .args([
            "--data-dir",
            &data,
            "operators",
            "add",
            "--login",
            "x y",
            "--name",
            "x",
            "--role",
            "root",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown role is a usage error"
    );

    let mut clients = Vec::new();
    for (i, (login, role, link)) in invited.iter().enumerate() {
        let mut c = server.client(&format!("127.0.0.{}", 10 + i));
        let path = &link[link.find("/console").unwrap()..];
        let page = c.get(path).await;
        assert!(
            page.body.contains(&format!("Name {login}")),
            "{}",
            page.body
        );
        let token = path.split("token=").nth(1).unwrap();
        // The password rules apply.
        let weak = c
            .post(
                "/console/setup",
                &form(&[
                    ("csrf", &page.csrf()),
                    ("token", token),
                    ("password", "password1234"),
                    ("confirm", "password1234"),
                ]),
            )
            .await;
        assert_eq!(weak.status, 422);
        assert!(weak.body.contains("common"), "{}", weak.body);
        let pw = format!("{login} has a long passphrase");
        let pw = pw.replace(login, "someone");
        let res = c
            .post(
                "/console/setup",
                &form(&[
                    ("csrf", &page.csrf()),
                    ("token", token),
                    ("password", &pw),
                    ("confirm", &pw),
                ]),
            )
            .await;
        assert_eq!(res.status, 303, "{}", res.body);
        if *role == "dpo" {
            // The dpo reaches nothing before enrolling a second factor.
            assert_eq!(res.location(), "/console/enroll");
            assert_eq!(c.get("/console").await.location(), "/console/enroll");
            enroll(&mut c).await;
        } else {
            assert_eq!(res.location(), "/console");
        }
        // The link is used up.
        assert_eq!(c.get(path).await.status, 404);
        clients.push(c);
    }
    let [sam, ana, dora] = &mut clients[..] else {
        unreachable!()
    };

    // Support: refused the administrator's and the DPO's pages.
    for path in ["/console/operators", "/console/tokens", "/console/security"] {
        let res = sam.get(path).await;
        assert_eq!(res.status, 403, "support on {path}");
        assert!(res.body.contains("Access refused"));
    }
    let sam_csrf = sam.get("/console").await.csrf();
    let res = sam
        .post(
            "/console/operators",
            &form(&[
                ("csrf", &sam_csrf),
                ("login", "evil"),
                ("display_name", "E"),
                ("role", "admin"),
            ]),
        )
        .await;
    assert_eq!(res.status, 403, "a forged form is refused by role too");
    // The DPO reads the sign-in log but manages nobody.
    assert_eq!(dora.get("/console/security").await.status, 200);
    assert_eq!(dora.get("/console/operators").await.status, 403);
    assert_eq!(
        dora.get("/console/keys").await.status,
        403,
        "keys are the administrator's"
    );
    let keys = admin.get("/console/keys").await;
    assert_eq!(keys.status, 200);
    assert!(
        keys.text_of("index-root").is_some_and(|id| id.len() == 16),
        "{}",
        keys.body
    );

    // Subject search: the purpose is asked, checked against the role, and audited.
    let subject = support::seed_subject(&server, dir.path()).await;
    let page = dora.get("/console/subjects").await;
    assert_eq!(page.status, 200);
    let look = |csrf: String, purpose: &str| {
        form(&[
            ("csrf", &csrf),
            ("kind", "email"),
            ("identifier", "alice@example.com"),
            ("purpose", purpose),
        ])
    };
    let res = dora
        .post("/console/subjects", &look(page.csrf(), "customer_accounts"))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.body.contains(&subject));
    assert!(res.body.contains("Alice Martin") && res.body.contains("My app does not start"));
    assert!(
        !res.body.contains("alice@example.com"),
        "the identifier is not echoed"
    );
    let page = sam.get("/console/subjects").await;
    let res = sam
        .post("/console/subjects", &look(page.csrf(), "customer_accounts"))
        .await;
    assert_eq!(res.status, 422, "support may not read for account purposes");
    let res = sam
        .post("/console/subjects", &look(page.csrf(), "support"))
        .await;
    assert_eq!(res.status, 200);
    assert!(res.body.contains("My app does not start") && !res.body.contains("Alice Martin"));
    let nobody = form(&[
        ("csrf", &page.csrf()),
        ("kind", "email"),
        ("identifier", "bob@example.com"),
        ("purpose", "support"),
    ]);
    assert_eq!(sam.post("/console/subjects", &nobody).await.status, 404);
    assert_eq!(ana.get("/console/subjects").await.status, 403);
    assert_eq!(
        admin.get("/console/subjects").await.status,
        403,
        "the administrator reads no personal data"
    );
    // Every view is in the audit log with its purpose; the chain verifies.
    let audit = dora.get("/console/audit").await;
    assert_eq!(audit.status, 200);
    let dora_id = format!("operator:{}", invited_id(&mut admin, "dora").await);
    assert!(audit.body.contains(&dora_id), "{}", audit.body);
    assert!(
        audit
            .body
            .contains("<td>read</td><td>customer_accounts</td>"),
        "{}",
        audit.body
    );
    assert!(
        audit.body.contains("<td>read</td><td>support</td>"),
        "{}",
        audit.body
    );
    assert!(
        audit.body.contains("console_login"),
        "sign-ins are in the audit chain too"
    );
    assert!(!audit.body.contains("Alice Martin") && !audit.body.contains("alice@example.com"));
    let res = dora
        .post("/console/audit/verify", &form(&[("csrf", &audit.csrf())]))
        .await;
    assert!(res.body.contains("The chain is intact"), "{}", res.body);
    assert_eq!(
        sam.get("/console/audit").await.status,
        403,
        "support is refused the DPO's audit log"
    );
    // The analyst sees no personal data: no page shows another operator.
    for path in [
        "/console",
        "/console/register",
        "/console/account",
        "/console/register/notice?lang=en",
    ] {
        let res = ana.get(path).await;
        assert_eq!(res.status, 200, "{path}");
        for other in ["ada", "Ada Admin", "sam", "Name sam", "dora", "Name dora"] {
            assert!(
                !res.body.contains(&format!(">{other}<"))
                    && !res.body.contains(&format!("<strong>{other}</strong>")),
                "{path} shows {other}"
            );
        }
    }
    for path in ["/console/operators", "/console/tokens", "/console/security"] {
        assert_eq!(ana.get(path).await.status, 403, "analyst on {path}");
    }
    let nav = ana.get("/console").await.body;
    assert!(!nav.contains("/console/operators") && !nav.contains("/console/security"));

    // CLI: list, disable (ends the session at once), reset-2fa.
    let out = tutela()
        .args(["--data-dir", &data, "operators", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    for needle in ["ada", "admin", "sam", "support", "dora", "dpo", "active"] {
        assert!(list.contains(needle), "{list}");
    }
    assert!(!list.contains("$argon2"), "{list}");
    let out = tutela()
        .args(["--data-dir", &data, "operators", "disable", "sam"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(sam.get("/console").await.location(), "/console/login");
    let res = sam
        .sign_in("sam", "someone has a long passphrase", None)
        .await;
    assert_eq!(res.status, 401, "a disabled operator cannot sign in");
    let out = tutela()
        .args(["--data-dir", &data, "operators", "disable", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let out = tutela()
        .args(["--data-dir", &data, "operators", "reset-2fa", "ada"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(admin.get("/console").await.location(), "/console/login");
    // After the reset the administrator must enrol again before anything else.
    let res = admin.sign_in("ada", ADMIN_PASSWORD, None).await;
    assert_eq!(res.location(), "/console/enroll");
    let (new_key, _) = enroll(&mut admin).await;
    assert_ne!(new_key, admin_key);

    // TOTP codes are accepted once per time step: sign in at the start of a fresh step, then
    // replay the same code a few seconds later.
    let mut again = server.client("127.0.0.30");
    let code = totp_next(&new_key);
    for expected in [303, 401] {
        let login = again.get("/console/login").await;
        let res = again
            .post(
                "/console/login",
                &form(&[
                    ("csrf", &login.csrf()),
                    ("login", "ada"),
                    ("password", ADMIN_PASSWORD),
                ]),
            )
            .await;
        assert_eq!(res.location(), "/console/login/code");
        let page = again.get("/console/login/code").await;
        let res = again
            .post(
                "/console/login/code",
                &form(&[("csrf", &page.csrf()), ("code", &code)]),
            )
            .await;
        assert_eq!(res.status, expected, "a TOTP code is accepted once");
        if expected == 303 {
            let page = again.get("/console/account").await;
            again
                .post("/console/logout", &form(&[("csrf", &page.csrf())]))
                .await;
        }
    }
    // A sign-in waiting for its code can be abandoned ("Cancel and sign out").
    let page = again.get("/console/login/code").await;
    assert!(page.body.contains("Cancel and sign out"));
    let res = again
        .post("/console/logout", &form(&[("csrf", &page.csrf())]))
        .await;
    assert_eq!(res.location(), "/console/login?m=signed_out");
    assert_eq!(again.get("/console/login").await.status, 200);

    for args in [
        vec!["operators", "--help"],
        vec!["operators", "add", "--help"],
    ] {
        let out = tutela().args(&args).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Example") || args.len() > 2, "{text}");
        assert!(text.contains("Usage:"));
    }
    server.stop();
}
