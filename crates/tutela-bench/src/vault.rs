//! The vault benchmark: write N records for M subjects, read everything held on one subject,
//! erase one subject, purge every expired record. On SQLite (a fresh file) or PostgreSQL (a
//! fresh schema, dropped afterwards).
//!
//! Each subject has one e-mail identifier and 10 records over four purposes whose deadlines
//! count from collection (support, audience statistics, platform security, recruitment), so
//! that after moving the clock 4 years ahead every record is expired and the purge deletes
//! them all. Payloads are ~150 bytes of JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tutela_crypto::IdentifierKind;
use tutela_store::Store;
use tutela_vault::{
    Actor, BatchItem, ErasureScope, IdentifierInput, ReadOptions, RecordInput, Vault, VaultKeys,
};

use crate::util::{ms, quantile};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "sqlite")]
    engine: Engine,
    /// Records to write (10 per subject).
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Subjects to write them for.
    #[arg(long, default_value_t = 100_000)]
    subjects: usize,
    /// Subjects per write transaction (1 = one transaction per subject, as the HTTP API does).
    #[arg(long, default_value_t = 1000)]
    batch_subjects: usize,
    /// Reads (and erasures) to time.
    #[arg(long, default_value_t = 1000)]
    reads: usize,
    /// Erasures to time.
    #[arg(long, default_value_t = 100)]
    erasures: usize,
    /// PostgreSQL server (a schema is created in it and dropped afterwards).
    #[arg(
        long,
        env = "TUTELA_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// Records deleted per purge transaction.
    #[arg(long, default_value_t = tutela_vault::DEFAULT_PURGE_BATCH)]
    purge_batch: i64,
    /// Skip the purge (to keep the data for a look).
    #[arg(long)]
    no_purge: bool,
    /// Before the purge, time the deadline recompute of a register change: every rule (what
    /// the first start after the upgrade does: reads everything, changes nothing), then
    /// security logs and audience statistics shortened to 1 day (6 of every 10 records change).
    #[arg(long)]
    recompute: bool,
}

/// The mix of records of one subject: (purpose, category, how many).
const MIX: &[(&str, &str, usize)] = &[
    ("support", "support_messages", 2),
    ("support", "email", 1),
    ("audience_statistics", "page_url", 3),
    ("platform_security", "activity_logs", 3),
    ("recruitment", "resume", 1),
];

fn email(i: usize) -> String {
    format!("user{i}@bench.example")
}

fn records_of(i: usize, per_subject: usize) -> Vec<RecordInput> {
    let mut out = Vec::with_capacity(per_subject);
    'outer: loop {
        for (purpose, category, n) in MIX {
            for k in 0..*n {
                if out.len() == per_subject {
                    break 'outer;
                }
                out.push(RecordInput {
                    purpose: (*purpose).into(),
                    category: (*category).into(),
                    payload: json!({
                        "subject": i,
                        "n": k,
                        "text": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore",
                        "at": "2026-11-29T10:00:00Z",
                    }),
                    source: "bench".into(),
                    collected_at: None,
                    legal_hold: false,
                });
            }
        }
    }
    out
}

/// CPU time used by this process so far (user + system), from /proc/self/stat: compared with
/// the wall-clock time it shows how much of a phase was spent waiting (disk, other processes).
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The 1-, 5- and 15-minute load averages (from /proc/loadavg), printed with the figures: on a
/// shared machine wall-clock times mean little without them (an idle 2-core machine shows < 0.5).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// A small deterministic generator (xorshift), so runs pick the same subjects.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.subjects > 0 && args.records >= args.subjects,
        "need records >= subjects > 0"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let (store, schema) = match args.engine {
            Engine::Sqlite => (Store::open_data_dir(dir.path()).await?, None),
            Engine::Postgres => {
                let schema = format!("bench_{}", std::process::id());
                admin(
                    &args.postgres_url,
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
                )
                .await?;
                let sep = if args.postgres_url.contains('?') {
                    '&'
                } else {
                    '?'
                };
                let url = format!("{}{sep}options[search_path]={schema}", args.postgres_url);
                (Store::open_url(&url).await?, Some(schema))
            }
        };
        let pg_cpu = match args.engine {
            Engine::Postgres => Some(PgCpu::connect(&args.postgres_url).await?),
            Engine::Sqlite => None,
        };
        let result = bench(&args, &store, pg_cpu).await;
        store.close().await;
        if let Some(schema) = schema {
            admin(
                &args.postgres_url,
                &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            )
            .await?;
        }
        result
    })
}

async fn admin(url: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// PostgreSQL's own CPU time, which the benchmark's /proc/self figure leaves out (on a 2-core
/// machine the server and the client share the cores): the sum of `/proc/PID/stat` over the
/// server processes that serve this database (backends, autovacuum workers) plus the WAL
/// writer, checkpointer and background writer (shared with other databases of the server:
/// the figure includes whatever else the server did meanwhile). Needs the server on this
/// machine; prints nothing otherwise.
struct PgCpu {
    conn: sqlx::AnyConnection,
}

impl PgCpu {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        Ok(PgCpu {
            conn: sqlx::AnyConnection::connect(url).await?,
        })
    }

    /// CPU seconds per server process now.
    async fn sample(&mut self) -> std::collections::HashMap<i64, f64> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT pid::bigint FROM pg_stat_activity WHERE datname = current_database() \
             OR backend_type IN ('walwriter', 'checkpointer', 'background writer')",
        )
        .fetch_all(&mut self.conn)
        .await
        .unwrap_or_default();
        rows.iter()
            .filter_map(|r| r.try_get::<i64, _>(0).ok())
            .map(|pid| (pid, crate::util::cpu_secs(&pid.to_string())))
            .filter(|(_, s)| s.is_finite())
            .collect()
    }

    /// CPU seconds used since `before` (processes that ended meanwhile are not counted).
    async fn since(&mut self, before: &std::collections::HashMap<i64, f64>) -> String {
        let now = self.sample().await;
        if now.is_empty() {
            return String::new();
        }
        let used: f64 = now
            .iter()
            .map(|(pid, s)| s - before.get(pid).copied().unwrap_or(0.0))
            .sum();
        format!("; PostgreSQL CPU {used:.2} s")
    }
}

async fn pg_sample(pg: &mut Option<PgCpu>) -> std::collections::HashMap<i64, f64> {
    match pg {
        Some(p) => p.sample().await,
        None => Default::default(),
    }
}

async fn pg_since(pg: &mut Option<PgCpu>, before: &std::collections::HashMap<i64, f64>) -> String {
    match pg {
        Some(p) => p.since(before).await,
        None => String::new(),
    }
}

async fn bench(args: &Args, store: &Store, mut pg: Option<PgCpu>) -> anyhow::Result<()> {
    let register = Arc::new(
        tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example")
            .map_err(|d| anyhow::anyhow!("{d:?}"))?,
    );
    let clock = Arc::new(AtomicI64::new(jiff::Timestamp::now().as_second()));
    let c = clock.clone();
    let vault = Vault::new(store.clone(), register, VaultKeys::generate()?).with_clock(move || {
        jiff::Timestamp::from_second(c.load(Ordering::Relaxed)).expect("valid time")
    });
    let actor = Actor::new("bench");
    let per_subject = args.records / args.subjects;
    let engine = store.engine().as_str();
    println!(
        "vault benchmark on {engine}: {} subjects x {per_subject} records, {} subjects per write transaction",
        args.subjects, args.batch_subjects
    );
    println!(
        "load average at start: {} (targets, SQLite on an idle 2-core machine: write >= 50,000 records/s, \
         read p99 <= 5 ms, erase <= 20 ms, purge of 1M records <= 10 s)",
        load_average()
    );

    // 1. Writes.
    let pg0 = pg_sample(&mut pg).await;
    let cpu0 = cpu_time();
    let started = Instant::now();
    let mut written = 0usize;
    let mut i = 0;
    let mut next_report = Instant::now() + Duration::from_secs(10);
    while i < args.subjects {
        let end = (i + args.batch_subjects).min(args.subjects);
        let items: Vec<BatchItem> = (i..end)
            .map(|s| BatchItem {
                subject_id: None,
                identifiers: vec![IdentifierInput::new(IdentifierKind::Email, email(s))],
                records: records_of(s, per_subject),
            })
            .collect();
        let out = vault.write_batch(&actor, items).await?;
        written += out.iter().map(|r| r.records.len()).sum::<usize>();
        i = end;
        if Instant::now() >= next_report {
            eprintln!("  … {written} records written");
            next_report += Duration::from_secs(10);
        }
    }
    let write_time = started.elapsed();
    let write_cpu = (cpu_time() - cpu0).as_secs_f64();
    println!(
        "write: {written} records for {} subjects in {:.2} s = {:.0} records/s (CPU {:.2} s{})",
        args.subjects,
        write_time.as_secs_f64(),
        written as f64 / write_time.as_secs_f64(),
        write_cpu,
        pg_since(&mut pg, &pg0).await
    );

    // 2. Reads: everything held on one subject (audited), and lookup by e-mail + read.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ids = Vec::with_capacity(args.reads);
    for _ in 0..args.reads {
        let s = rng.next(args.subjects);
        ids.push(
            vault
                .lookup(
                    &actor,
                    "support",
                    &IdentifierInput::new(IdentifierKind::Email, email(s)),
                )
                .await?,
        );
    }
    let mut read_samples = Vec::with_capacity(args.reads);
    let mut both_samples = Vec::with_capacity(args.reads);
    for (k, id) in ids.iter().enumerate() {
        let t = Instant::now();
        let view = vault
            .read_subject(&actor, "support", id, ReadOptions::default())
            .await?;
        read_samples.push(t.elapsed());
        anyhow::ensure!(
            view.purposes.iter().map(|p| p.records.len()).sum::<usize>() == per_subject,
            "read a wrong number of records"
        );
        let s = rng.next(args.subjects);
        let t = Instant::now();
        let sid = vault
            .lookup(
                &actor,
                "support",
                &IdentifierInput::new(IdentifierKind::Email, email(s)),
            )
            .await?;
        vault
            .read_subject(&actor, "support", &sid, ReadOptions::default())
            .await?;
        both_samples.push(t.elapsed());
        let _ = k;
    }
    println!(
        "read everything held on one subject ({per_subject} records, decrypted, audited): p50 {}, p99 {} over {} reads",
        ms(quantile(&mut read_samples, 0.5)),
        ms(quantile(&mut read_samples, 0.99)),
        args.reads
    );
    println!(
        "lookup by e-mail + read (two audited calls): p50 {}, p99 {}",
        ms(quantile(&mut both_samples, 0.5)),
        ms(quantile(&mut both_samples, 0.99)),
    );

    // 3. Erasures (subjects not read above, each with everything deletable: crypto-shredded).
    let mut erase_samples = Vec::with_capacity(args.erasures);
    let mut erased = std::collections::HashSet::new();
    while erase_samples.len() < args.erasures {
        let s = rng.next(args.subjects);
        if !erased.insert(s) {
            continue;
        }
        let Ok(id) = vault
            .lookup(
                &actor,
                "support",
                &IdentifierInput::new(IdentifierKind::Email, email(s)),
            )
            .await
        else {
            continue;
        };
        let t = Instant::now();
        let r = vault.erase(&actor, &id, ErasureScope::All).await?;
        erase_samples.push(t.elapsed());
        anyhow::ensure!(r.subject_shredded, "subject not shredded");
    }
    println!(
        "erase one subject ({per_subject} records, key shredded{}): p50 {}, p99 {} over {} erasures",
        if store.engine() == tutela_store::Engine::Sqlite {
            ", WAL truncated"
        } else {
            ""
        },
        ms(quantile(&mut erase_samples, 0.5)),
        ms(quantile(&mut erase_samples, 0.99)),
        args.erasures
    );

    if args.recompute {
        let all = tutela_vault::changed_rules(vault.register(), None);
        let pg0 = pg_sample(&mut pg).await;
        let cpu0 = cpu_time();
        let t = Instant::now();
        let r = vault
            .recompute_deadlines(&actor, &all, false, tutela_vault::DEFAULT_RECOMPUTE_BATCH)
            .await?;
        println!(
            "recompute, every rule unchanged: {} records read, {} changed in {:.2} s (CPU {:.2} s{})",
            r.scanned,
            r.records(),
            t.elapsed().as_secs_f64(),
            (cpu_time() - cpu0).as_secs_f64(),
            pg_since(&mut pg, &pg0).await
        );
        let text = tutela_domain::EXAMPLE_REGISTER
            .replacen(
                "keep = \"6 months\"   # this example's choice (the reference",
                "keep = \"1 day\"   # (the reference",
                1,
            )
            .replacen("keep = \"180 days\"", "keep = \"1 day\"", 1);
        let shorter =
            tutela_domain::load(&text, "shorter").map_err(|d| anyhow::anyhow!("{d:?}"))?;
        let rules =
            tutela_vault::changed_rules(&shorter, Some(std::slice::from_ref(vault.register())));
        let v2 = vault.clone().with_register(Arc::new(shorter));
        let pg0 = pg_sample(&mut pg).await;
        let cpu0 = cpu_time();
        let t = Instant::now();
        let r = v2
            .recompute_deadlines(&actor, &rules, false, tutela_vault::DEFAULT_RECOMPUTE_BATCH)
            .await?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "recompute, 2 purposes shortened: {} records read, {} deadlines brought forward in {:.2} s = {:.0} records/s (CPU {:.2} s{})",
            r.scanned,
            r.records(),
            secs,
            r.records() as f64 / secs,
            (cpu_time() - cpu0).as_secs_f64(),
            pg_since(&mut pg, &pg0).await
        );
    }
    if args.no_purge {
        return Ok(());
    }
    // 4. Purge: four years later everything has expired.
    clock.fetch_add(4 * 366 * 86_400, Ordering::Relaxed);
    let pg0 = pg_sample(&mut pg).await;
    let cpu0 = cpu_time();
    let t = Instant::now();
    let report = vault
        .purge_expired(
            &Actor::new("job:retention"),
            false,
            args.purge_batch,
            &mut |_, _| {},
        )
        .await?;
    let purge_time = t.elapsed();
    let purge_cpu = (cpu_time() - cpu0).as_secs_f64();
    println!(
        "purge: {} expired records ({} subjects shredded) in {:.2} s = {:.0} records/s (CPU {:.2} s{})",
        report.records,
        report.subjects_shredded,
        purge_time.as_secs_f64(),
        report.records as f64 / purge_time.as_secs_f64(),
        purge_cpu,
        pg_since(&mut pg, &pg0).await
    );
    let (subjects, _, records) = store.vault_counts().await?;
    anyhow::ensure!(
        subjects == 0 && records == 0,
        "the purge left {records} records"
    );
    println!("load average at end: {}", load_average());
    match vault.verify_audit(None).await? {
        Ok(v) => println!("audit log verified: {} entries", v.entries),
        Err(p) => anyhow::bail!("audit log broken after the benchmark: {p}"),
    }
    Ok(())
}
