//! The SQL connector: the platform's own database, reached for access and erasure.
//!
//! The DPO declares *collections* (tables) with the columns that identify a person, the
//! columns that are exported, and how an erasure treats each one (delete the row, mask some
//! columns, or keep the row under a legal obligation, said in the reply). References between
//! tables (`messages.user_id → users.id`) make a graph: the connector starts from the rows that
//! match the subject's identifiers and follows the references to every row that belongs to
//! them. Erasure walks the same graph children first, in one transaction, so a failure changes
//! nothing and a retry starts over cleanly; running it twice erases nothing more.
//!
//! Values are read as text (`CAST(col AS TEXT)`, `AS CHAR` on MySQL); table and column names are
//! checked against a strict pattern and quoted (double quotes, backquotes on MySQL), and every
//! value is a bound parameter (`$n`, `?` on MySQL). Works on PostgreSQL, MySQL/MariaDB and
//! SQLite (sqlx `Any`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use tutela_crypto::IdentifierKind;

use crate::source::{BoxFuture, Erased, Kept, Source, SourceError, SourceRecord, Subject};

/// Most rows the connector follows for one subject (a misdeclared reference must not walk a
/// whole database).
pub const MAX_ROWS_PER_SUBJECT: usize = 100_000;

/// How an erasure treats a collection's rows.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum OnErase {
    /// Delete the rows.
    Delete,
    /// Keep the rows but overwrite these columns (`null` or a fixed text such as "erased").
    Mask {
        columns: BTreeMap<String, Option<String>>,
    },
    /// Keep the rows: a legal obligation (e.g. invoices for 10 years). Said in the reply.
    Keep {
        reason: String,
        /// How long, in words for the reply (e.g. "10 years after the invoice date").
        #[serde(default)]
        until: Option<String>,
    },
}

/// A column that identifies the subject.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityColumn {
    pub column: String,
    /// Which identifier of the subject it holds: email, phone, account_id, login, visitor_id, generic.
    pub kind: String,
}

/// `column` of this collection holds the `key` of a row of `collection`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    pub column: String,
    pub collection: String,
}

/// Type of a key column, so lookups bind the right type (and use the index).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    #[default]
    Integer,
    Text,
}

/// One table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    pub name: String,
    pub table: String,
    /// Primary key column.
    pub key: String,
    #[serde(default)]
    pub key_type: KeyType,
    #[serde(default)]
    pub identity: Vec<IdentityColumn>,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Columns returned on access (the key is always returned).
    pub columns: Vec<String>,
    /// Register purpose and category, for the report.
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// Part of portability (the subject provided it).
    #[serde(default)]
    pub provided_by_subject: bool,
    pub on_erase: OnErase,
    /// Boolean column set when processing is restricted (art. 18), if the platform has one.
    #[serde(default)]
    pub restrict_column: Option<String>,
}

/// A connector's configuration (`[[connectors.sql]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    pub name: String,
    /// `postgres://…`, `mysql://…` (`mariadb://…` too) or `sqlite://…`. Never logged.
    pub url: String,
    pub collections: Vec<Collection>,
}

fn check_name(what: &str, name: &str) -> Result<(), SourceError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SourceError::Permanent(format!(
            "{what} `{name}` is not a plain SQL name (letters, digits, underscore; at most 63)"
        )))
    }
}

fn note(problems: &mut Vec<String>, r: Result<(), SourceError>) {
    if let Err(e) = r {
        problems.push(e.to_string());
    }
}

/// The SQL dialect of a connector's database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    /// From the connection URL; None for an unsupported database.
    pub fn of_url(url: &str) -> Option<Dialect> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Dialect::MySql)
        } else if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else {
            None
        }
    }

    /// A quoted name (names are checked plain beforehand: no quote can occur in them).
    fn q(self, name: &str) -> String {
        match self {
            Dialect::MySql => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// The placeholder of parameter `n` (1-based).
    fn p(self, n: usize) -> String {
        match self {
            Dialect::MySql => "?".to_string(),
            _ => format!("${n}"),
        }
    }

    /// A column read as text.
    fn text(self, quoted: &str) -> String {
        match self {
            Dialect::MySql => format!("CAST({quoted} AS CHAR)"),
            _ => format!("CAST({quoted} AS TEXT)"),
        }
    }
}

impl SqlConfig {
    /// Checks names, references and kinds; every problem is reported at once.
    pub fn validate(&self) -> Result<(), SourceError> {
        let mut problems = Vec::new();
        let names: BTreeSet<&str> = self.collections.iter().map(|c| c.name.as_str()).collect();
        if names.len() != self.collections.len() {
            problems.push("collection names must be unique".to_string());
        }
        for c in &self.collections {
            note(&mut problems, check_name("table", &c.table));
            note(&mut problems, check_name("key column", &c.key));
            for col in &c.columns {
                note(&mut problems, check_name("column", col));
            }
            for i in &c.identity {
                note(&mut problems, check_name("identity column", &i.column));
                if i.kind.parse::<IdentifierKind>().is_err() {
                    problems.push(format!(
                        "collection `{}`: unknown identifier kind `{}`",
                        c.name, i.kind
                    ));
                }
            }
            for r in &c.references {
                note(&mut problems, check_name("reference column", &r.column));
                if !names.contains(r.collection.as_str()) {
                    problems.push(format!(
                        "collection `{}` references unknown collection `{}`",
                        c.name, r.collection
                    ));
                }
            }
            if let Some(col) = &c.restrict_column {
                note(&mut problems, check_name("restrict column", col));
            }
            if let OnErase::Mask { columns } = &c.on_erase {
                for col in columns.keys() {
                    note(&mut problems, check_name("masked column", col));
                }
                if columns.is_empty() {
                    problems.push(format!(
                        "collection `{}`: mask needs at least one column",
                        c.name
                    ));
                }
            }
            if let OnErase::Keep { reason, .. } = &c.on_erase
                && reason.trim().is_empty()
            {
                problems.push(format!(
                    "collection `{}`: keep needs a reason (it is told to the subject)",
                    c.name
                ));
            }
        }
        if !self.collections.iter().any(|c| !c.identity.is_empty()) {
            problems.push("no collection has identity columns: nothing can be found".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SourceError::Permanent(format!(
                "connector `{}`: {}",
                self.name,
                problems.join("; ")
            )))
        }
    }
}

/// The SQL connector.
pub struct SqlConnector {
    label: String,
    source_name: String,
    dialect: Dialect,
    pool: AnyPool,
    collections: Vec<Collection>,
}

impl std::fmt::Debug for SqlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlConnector")
            .field("name", &self.label)
            .finish_non_exhaustive()
    }
}

/// A row found for the subject: collection index, key, and its exported values.
struct FoundRow {
    collection: usize,
    key: String,
    values: Vec<(String, Option<String>)>,
}

fn temporary(e: sqlx::Error) -> SourceError {
    // Database messages may quote values; keep only the kind.
    let kind = match &e {
        sqlx::Error::Database(db) => {
            format!("database error (code {})", db.code().unwrap_or_default())
        }
        sqlx::Error::PoolTimedOut => "connection pool timed out".into(),
        sqlx::Error::Io(_) => "I/O error".into(),
        other => format!("{}", other).chars().take(80).collect(),
    };
    SourceError::Temporary(kind)
}

impl SqlConnector {
    pub async fn connect(config: &SqlConfig) -> Result<SqlConnector, SourceError> {
        config.validate()?;
        install_default_drivers();
        let Some(dialect) = Dialect::of_url(&config.url) else {
            return Err(SourceError::Permanent(format!(
                "connector `{}`: the URL must be postgres://, mysql:// (MariaDB too) or sqlite:",
                config.name
            )));
        };
        // sqlx's MySQL driver knows the `mysql` scheme only.
        let url = match config.url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => config.url.clone(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&url)
            .await
            .map_err(temporary)?;
        Ok(SqlConnector {
            label: config.name.clone(),
            source_name: format!("sql:{}", config.name),
            dialect,
            pool,
            collections: config.collections.clone(),
        })
    }

    fn q(&self, name: &str) -> String {
        self.dialect.q(name)
    }

    fn p(&self, n: usize) -> String {
        self.dialect.p(n)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn select_sql(&self, c: &Collection, where_sql: &str) -> String {
        let d = self.dialect;
        let mut cols = vec![d.text(&d.q(&c.key))];
        cols.extend(c.columns.iter().map(|col| d.text(&d.q(col))));
        format!(
            "SELECT {} FROM {} WHERE {where_sql}",
            cols.join(", "),
            d.q(&c.table)
        )
    }

    fn read_row(
        c: &Collection,
        idx: usize,
        row: &sqlx::any::AnyRow,
    ) -> Result<FoundRow, SourceError> {
        let key: Option<String> = row.try_get(0).map_err(temporary)?;
        let mut values = Vec::with_capacity(c.columns.len());
        for (i, col) in c.columns.iter().enumerate() {
            let v: Option<String> = row.try_get(i + 1).map_err(temporary)?;
            values.push((col.clone(), v));
        }
        Ok(FoundRow {
            collection: idx,
            key: key.unwrap_or_default(),
            values,
        })
    }

    /// Every row of the subject, in discovery order (parents before children).
    async fn walk(
        &self,
        subject: &Subject,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Vec<FoundRow>, SourceError> {
        let mut found: Vec<FoundRow> = Vec::new();
        let mut seen: BTreeSet<(usize, String)> = BTreeSet::new();
        let mut frontier: Vec<(usize, String)> = Vec::new();
        // Roots: rows matching an identifier.
        for (idx, c) in self.collections.iter().enumerate() {
            for ic in &c.identity {
                let Ok(kind) = ic.kind.parse::<IdentifierKind>() else {
                    continue;
                };
                for (k, value) in &subject.identifiers {
                    if *k != kind {
                        continue;
                    }
                    let cond = match kind {
                        IdentifierKind::Email
                        | IdentifierKind::Login
                        | IdentifierKind::VisitorId => {
                            format!("LOWER({}) = {}", self.q(&ic.column), self.p(1))
                        }
                        _ => format!("{} = {}", self.q(&ic.column), self.p(1)),
                    };
                    let rows = sqlx::query(sqlx::AssertSqlSafe(self.select_sql(c, &cond)))
                        .bind(value.as_str())
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(temporary)?;
                    for row in &rows {
                        let r = Self::read_row(c, idx, row)?;
                        if seen.insert((idx, r.key.clone())) {
                            frontier.push((idx, r.key.clone()));
                            found.push(r);
                        }
                    }
                }
            }
        }
        // Follow references breadth first.
        while let Some((parent_idx, parent_key)) = frontier.pop() {
            let parent_name = &self.collections[parent_idx].name;
            let parent_key_type = self.collections[parent_idx].key_type;
            for (idx, c) in self.collections.iter().enumerate() {
                for r in c.references.iter().filter(|r| &r.collection == parent_name) {
                    let cond = format!("{} = {}", self.q(&r.column), self.p(1));
                    let query = sqlx::query(sqlx::AssertSqlSafe(self.select_sql(c, &cond)));
                    let query = match parent_key_type {
                        KeyType::Integer => query.bind(parent_key.parse::<i64>().map_err(|_| {
                            SourceError::Permanent(format!("collection `{parent_name}` declares an integer key but has a non-integer one"))
                        })?),
                        KeyType::Text => query.bind(parent_key.clone()),
                    };
                    let rows = query.fetch_all(&mut *conn).await.map_err(temporary)?;
                    for row in &rows {
                        let fr = Self::read_row(c, idx, row)?;
                        if seen.insert((idx, fr.key.clone())) {
                            frontier.push((idx, fr.key.clone()));
                            found.push(fr);
                        }
                    }
                    if found.len() > MAX_ROWS_PER_SUBJECT {
                        return Err(SourceError::Permanent(format!(
                            "connector `{}`: more than {MAX_ROWS_PER_SUBJECT} rows for one subject; check the references",
                            self.label
                        )));
                    }
                }
            }
        }
        Ok(found)
    }

    fn bind_key<'q>(
        c: &Collection,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        key: &str,
    ) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>, SourceError> {
        Ok(match c.key_type {
            KeyType::Integer => query.bind(
                key.parse::<i64>()
                    .map_err(|_| SourceError::Permanent("non-integer key".into()))?,
            ),
            KeyType::Text => query.bind(key.to_string()),
        })
    }

    async fn do_access(&self, subject: &Subject) -> Result<Vec<SourceRecord>, SourceError> {
        let mut conn = self.pool.acquire().await.map_err(temporary)?;
        let rows = self.walk(subject, &mut conn).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let c = &self.collections[r.collection];
                let mut fields = serde_json::Map::new();
                fields.insert(c.key.clone(), serde_json::Value::String(r.key.clone()));
                for (col, v) in r.values {
                    fields.insert(
                        col,
                        v.map_or(serde_json::Value::Null, serde_json::Value::String),
                    );
                }
                SourceRecord {
                    collection: c.name.clone(),
                    purpose: c.purpose.clone(),
                    category: c.category.clone(),
                    provided_by_subject: c.provided_by_subject,
                    fields,
                }
            })
            .collect())
    }

    async fn do_erase(&self, subject: &Subject) -> Result<Erased, SourceError> {
        let mut tx = self.pool.begin().await.map_err(temporary)?;
        let rows = self.walk(subject, &mut tx).await?;
        let mut out = Erased::default();
        let mut kept: BTreeMap<usize, u64> = BTreeMap::new();
        // Children were discovered after their parents: erase in reverse.
        for r in rows.iter().rev() {
            let c = &self.collections[r.collection];
            match &c.on_erase {
                OnErase::Delete => {
                    let sql = format!(
                        "DELETE FROM {} WHERE {} = {}",
                        self.q(&c.table),
                        self.q(&c.key),
                        self.p(1)
                    );
                    let query = Self::bind_key(c, sqlx::query(sqlx::AssertSqlSafe(sql)), &r.key)?;
                    out.deleted += query
                        .execute(&mut *tx)
                        .await
                        .map_err(temporary)?
                        .rows_affected();
                }
                OnErase::Mask { columns } => {
                    let sets: Vec<String> = columns
                        .keys()
                        .enumerate()
                        .map(|(i, col)| format!("{} = {}", self.q(col), self.p(i + 1)))
                        .collect();
                    let sql = format!(
                        "UPDATE {} SET {} WHERE {} = {}",
                        self.q(&c.table),
                        sets.join(", "),
                        self.q(&c.key),
                        self.p(columns.len() + 1)
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for v in columns.values() {
                        query = query.bind(v.clone());
                    }
                    let query = Self::bind_key(c, query, &r.key)?;
                    out.masked += query
                        .execute(&mut *tx)
                        .await
                        .map_err(temporary)?
                        .rows_affected();
                }
                OnErase::Keep { .. } => *kept.entry(r.collection).or_default() += 1,
            }
        }
        tx.commit().await.map_err(temporary)?;
        for (idx, count) in kept {
            let c = &self.collections[idx];
            if let OnErase::Keep { reason, until } = &c.on_erase {
                out.kept.push(Kept {
                    collection: c.name.clone(),
                    count,
                    reason: reason.clone(),
                    until: until.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn do_rectify(
        &self,
        subject: &Subject,
        changes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, SourceError> {
        for field in changes.keys() {
            check_name("field", field)?;
        }
        let mut tx = self.pool.begin().await.map_err(temporary)?;
        let rows = self.walk(subject, &mut tx).await?;
        let mut changed = 0;
        for r in &rows {
            let c = &self.collections[r.collection];
            // Identity columns are rectified too (that is how a wrong e-mail gets fixed), but
            // only columns the collection declares.
            let fields: Vec<(&String, &serde_json::Value)> = changes
                .iter()
                .filter(|(f, _)| c.columns.contains(f))
                .collect();
            if fields.is_empty() {
                continue;
            }
            let sets: Vec<String> = fields
                .iter()
                .enumerate()
                .map(|(i, (f, _))| format!("{} = {}", self.q(f), self.p(i + 1)))
                .collect();
            let sql = format!(
                "UPDATE {} SET {} WHERE {} = {}",
                self.q(&c.table),
                sets.join(", "),
                self.q(&c.key),
                self.p(fields.len() + 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (_, v) in &fields {
                query = match v {
                    serde_json::Value::Null => query.bind(None::<String>),
                    serde_json::Value::String(s) => query.bind(s.clone()),
                    other => query.bind(other.to_string()),
                };
            }
            let query = Self::bind_key(c, query, &r.key)?;
            changed += query
                .execute(&mut *tx)
                .await
                .map_err(temporary)?
                .rows_affected();
        }
        tx.commit().await.map_err(temporary)?;
        Ok(changed)
    }

    async fn do_restrict(&self, subject: &Subject, restricted: bool) -> Result<u64, SourceError> {
        let mut tx = self.pool.begin().await.map_err(temporary)?;
        let rows = self.walk(subject, &mut tx).await?;
        let mut changed = 0;
        for r in &rows {
            let c = &self.collections[r.collection];
            let Some(col) = &c.restrict_column else {
                continue;
            };
            let sql = format!(
                "UPDATE {} SET {} = {} WHERE {} = {}",
                self.q(&c.table),
                self.q(col),
                self.p(1),
                self.q(&c.key),
                self.p(2)
            );
            let query = Self::bind_key(
                c,
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(restricted),
                &r.key,
            )?;
            changed += query
                .execute(&mut *tx)
                .await
                .map_err(temporary)?
                .rows_affected();
        }
        tx.commit().await.map_err(temporary)?;
        Ok(changed)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Source for SqlConnector {
    fn name(&self) -> &str {
        &self.source_name
    }

    fn access<'a>(
        &'a self,
        subject: &'a Subject,
    ) -> BoxFuture<'a, Result<Vec<SourceRecord>, SourceError>> {
        Box::pin(self.do_access(subject))
    }

    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(self.do_erase(subject))
    }

    fn rectify<'a>(
        &'a self,
        subject: &'a Subject,
        changes: &'a serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(self.do_rectify(subject, changes))
    }

    fn restrict<'a>(
        &'a self,
        subject: &'a Subject,
        restricted: bool,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(self.do_restrict(subject, restricted))
    }
}
