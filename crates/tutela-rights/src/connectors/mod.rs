//! Connectors to systems outside Tutela: the platform's own database ([`sql`]) and processors
//! or recipients told about erasures, rectifications and restrictions ([`webhook`], art. 19).

pub mod sql;
pub mod webhook;
