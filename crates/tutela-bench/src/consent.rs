//! Consent endpoint throughput: a real `tutela serve` on 127.0.0.1 (release build, SQLite in a
//! fresh data directory, rate limit off), `--connections` keep-alive HTTP/1.1 connections each
//! posting consent records back to back for `--seconds`, repeated `--rounds` times. Every answer
//! must be `201 Created` (an acknowledged record is committed). Prints records per second (median
//! over rounds), the latency percentiles of all requests, the server's and the load generator's
//! CPU time per record, and (SQLite) the size of the WAL file at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::util::{ms, quantile, tutela_bin};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Length of one round, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds (the figure is the median round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Use PostgreSQL at this URL instead of SQLite (the database must exist).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(database_url: Option<&str>) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(tutela_bin()?);
    cmd.args(["--log-level", "warn", "--data-dir"])
        .arg(dir.path());
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--consent-rate-limit",
        "0",
    ]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .ok_or_else(|| anyhow::anyhow!("unexpected output: {line:?}"))?
        .to_string();
    Ok(Server {
        child,
        addr,
        _dir: dir,
    })
}

/// One request/answer on a keep-alive connection; returns the status code.
fn exchange(reader: &mut BufReader<TcpStream>, request: &[u8]) -> anyhow::Result<u16> {
    reader.get_mut().write_all(request)?;
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}

fn request(addr: &str, i: usize) -> Vec<u8> {
    // Alternate choices so that the figures exercise both answers.
    let body = format!(
        r#"{{"choices":{{"functional":true,"analytics":{},"targeting":false}},"method":"banner","language":"fr"}}"#,
        i.is_multiple_of(2)
    );
    format!(
        "POST /api/v1/consent HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn round(addr: &str, args: &Args) -> anyhow::Result<(usize, Vec<Duration>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for c in 0..args.connections {
        let addr = addr.to_string();
        let stop = stop.clone();
        threads.push(std::thread::spawn(
            move || -> anyhow::Result<Vec<Duration>> {
                let stream = TcpStream::connect(&addr)?;
                stream.set_nodelay(true)?;
                let mut reader = BufReader::new(stream);
                let mut lat = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let req = request(&addr, i);
                    let t = Instant::now();
                    let status = exchange(&mut reader, &req)?;
                    anyhow::ensure!(status == 201, "answer {status} instead of 201");
                    lat.push(t.elapsed());
                    i += 1;
                }
                Ok(lat)
            },
        ));
    }
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in threads {
        all.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("load thread panicked"))??,
        );
    }
    Ok((all.len(), all))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let server = start(args.database_url.as_deref())?;
    // Warm-up: connections, page cache, the first batches.
    let warm = Args {
        seconds: 1,
        rounds: 1,
        connections: args.connections,
        database_url: None,
    };
    round(&server.addr, &warm)?;
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    let pid = server.child.id().to_string();
    let (mut server_cpu, mut own_cpu, mut records) = (0.0, 0.0, 0usize);
    for r in 0..args.rounds {
        let (s0, o0) = (crate::util::cpu_secs(&pid), crate::util::cpu_secs("self"));
        let (n, lat) = round(&server.addr, &args)?;
        let (ds, dn) = (
            crate::util::cpu_secs(&pid) - s0,
            crate::util::cpu_secs("self") - o0,
        );
        server_cpu += ds;
        own_cpu += dn;
        records += n;
        let rate = n as f64 / args.seconds as f64;
        eprintln!(
            "round {}: {n} records in {} s = {rate:.0} records/s; server CPU {:.0} % of one core, \
             {:.1} µs per record",
            r + 1,
            args.seconds,
            ds / args.seconds as f64 * 100.0,
            ds * 1e6 / n.max(1) as f64,
        );
        rates.push(rate);
        latencies.extend(lat);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let engine = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "consent POST, {engine}, {} connections: median {median:.0} records/s over {} rounds of {} s \
         (min {:.0}, max {:.0}); latency p50 {}, p99 {}",
        args.connections,
        args.rounds,
        args.seconds,
        rates[0],
        rates[rates.len() - 1],
        ms(quantile(&mut latencies, 0.5)),
        ms(quantile(&mut latencies, 0.99)),
    );
    let wal = std::fs::metadata(server._dir.path().join("tutela.db-wal"))
        .map(|m| format!("; WAL file {:.1} MiB", m.len() as f64 / 1_048_576.0))
        .unwrap_or_default();
    println!(
        "CPU per record: server {:.1} µs, load generator {:.1} µs ({records} records){wal}",
        server_cpu * 1e6 / records.max(1) as f64,
        own_cpu * 1e6 / records.max(1) as f64,
    );
    Ok(())
}
