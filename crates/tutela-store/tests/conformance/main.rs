//! The store conformance suite: every test runs on SQLite, and on PostgreSQL when
//! `TUTELA_TEST_POSTGRES_URL` is set (in CI it must be: the suite fails instead of skipping).

mod support;

mod analytics;
mod consent;
mod foundation;
mod operators;
mod rights;
mod tokens;
mod vault;
