//! Start-up time: spawn `tutela serve --listen 127.0.0.1:0`, wait for the printed address, then
//! for the first `/readyz` answer. Measured on a fresh data directory (migrations run) and on an
//! existing one (the usual restart).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{ms, quantile, tutela_bin};

#[derive(clap::Args)]
pub struct Args {
    /// Number of starts per case.
    #[arg(long, default_value_t = 30)]
    runs: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bin = tutela_bin()?;
    for (case, fresh) in [
        ("fresh data directory", true),
        ("existing data directory", false),
    ] {
        let keep = tempfile::tempdir()?;
        let mut samples = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let fresh_dir = tempfile::tempdir()?;
            let dir = if fresh { fresh_dir.path() } else { keep.path() };
            samples.push(start_once(&bin, dir)?);
        }
        println!(
            "startup, {case}: median {}, p90 {}, min {} over {} runs",
            ms(quantile(&mut samples, 0.5)),
            ms(quantile(&mut samples, 0.9)),
            ms(quantile(&mut samples, 0.0)),
            args.runs
        );
    }
    Ok(())
}

fn start_once(bin: &std::path::Path, data_dir: &std::path::Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new(bin)
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
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .ok_or_else(|| anyhow::anyhow!("unexpected output: {line:?}"))?
        .to_string();
    let mut s = TcpStream::connect(&addr)?;
    write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let elapsed = started.elapsed();
    anyhow::ensure!(answer.starts_with("HTTP/1.1 200"), "not ready: {answer}");
    child.kill()?;
    child.wait()?;
    Ok(elapsed)
}
