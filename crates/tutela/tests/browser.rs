//! End-to-end tests of the consent banner in headless Chromium (`browser/consent.test.mjs`,
//! driven by playwright-core with Debian's chromium). They need `node`, `/usr/bin/chromium` (or
//! `CHROMIUM`) and `npm ci` in `crates/tutela/tests/browser`. Without them the test says so and
//! skips — except when `CI` is set, where a missing piece is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn missing_piece(dir: &Path) -> Option<String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("`node` is not installed (apt-get install nodejs npm)".into());
    }
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Some(format!(
            "{} does not exist (apt-get install chromium chromium-driver, or set CHROMIUM)",
            chromium.display()
        ));
    }
    for package in ["playwright-core", "vanilla-cookieconsent"] {
        if !dir.join("node_modules").join(package).exists() {
            return Some(format!(
                "{package} is not installed: run `npm ci` in {}",
                dir.display()
            ));
        }
    }
    None
}

#[test]
fn consent_banner_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if let Some(why) = missing_piece(&dir) {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set, so the browser tests may not skip: {why}");
        }
        eprintln!("SKIPPED consent_banner_in_headless_chromium: {why}");
        return;
    }
    let out = Command::new("node")
        .arg("consent.test.mjs")
        .current_dir(&dir)
        .env("TUTELA_BIN", env!("CARGO_BIN_EXE_tutela"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains("not ok"), "{stdout}");
}
