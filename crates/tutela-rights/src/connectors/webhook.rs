//! The webhook connector: tells processors and recipients about erasures, rectifications and
//! restrictions (GDPR art. 19), with signed JSON payloads.
//!
//! Each call is one HTTPS (or, for tests and local processors, HTTP) POST of a JSON document:
//!
//! ```json
//! {"type": "erasure", "connector": "crm", "recipient": "crm-vendor", "sent_at": "2026-…Z",
//!  "subject": {"identifiers": [{"kind": "email", "value": "alice@example.org"}]},
//!  "changes": null, "restricted": null}
//! ```
//!
//! Headers: `Tutela-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! and `Idempotency-Key` (the same for every retry of the same notice). A 2xx answer is
//! success; 408, 429, 5xx and network errors are temporary (the step engine retries with
//! exponential back-off and records every attempt); other 4xx are permanent.
//! The connector only sends to a recipient the register names (invariant: nothing leaves the
//! machine unless the register names where it goes).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tutela_crypto::Zeroizing;

use crate::source::{BoxFuture, Erased, Source, SourceError, SourceRecord, Subject};

/// `[[connectors.webhook]]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    /// `https://…` (or `http://` for a processor on the local network).
    pub url: String,
    /// The register's recipient this endpoint belongs to.
    pub recipient: String,
    /// Shared signing secret (at least 32 characters).
    pub secret: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

/// The `Tutela-Signature` header value for `body` sent at `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a `Tutela-Signature` header (for receivers written in Rust, and the tests).
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    let expected = signature(secret, t, body);
    crate::keys::ct_eq(expected.as_bytes(), format!("t={t},v1={v1}").as_bytes())
}

pub struct WebhookConnector {
    source_name: String,
    label: String,
    recipient: String,
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    secret: Zeroizing<Vec<u8>>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConnector")
            .field("name", &self.label)
            .finish_non_exhaustive()
    }
}

impl WebhookConnector {
    /// Checks the configuration against the register's recipients.
    pub fn new(
        config: &WebhookConfig,
        register: &tutela_domain::Register,
    ) -> Result<WebhookConnector, SourceError> {
        let bad = |m: String| SourceError::Permanent(format!("webhook `{}`: {m}", config.name));
        if register.recipient(&config.recipient).is_none() {
            return Err(bad(format!(
                "recipient `{}` is not declared in the register",
                config.recipient
            )));
        }
        if config.secret.len() < 32 {
            return Err(bad("the secret must be at least 32 characters".into()));
        }
        if !(1..=120).contains(&config.timeout_secs) {
            return Err(bad("timeout_secs is between 1 and 120".into()));
        }
        let uri: Uri = config
            .url
            .parse()
            .map_err(|_| bad("the URL does not parse".into()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the URL must start with https:// (or http://)".into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| bad("the URL has no host".into()))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = https.then(|| {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Arc::new(
                tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                    tokio_rustls::rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
            )
        });
        Ok(WebhookConnector {
            source_name: format!("webhook:{}", config.name),
            label: config.name.clone(),
            recipient: config.recipient.clone(),
            uri,
            host,
            port,
            tls,
            secret: Zeroizing::new(config.secret.as_bytes().to_vec()),
            timeout: Duration::from_secs(config.timeout_secs),
        })
    }

    fn payload(
        &self,
        kind: &str,
        subject: &Subject,
        changes: Option<&serde_json::Map<String, serde_json::Value>>,
        restricted: Option<bool>,
    ) -> (Vec<u8>, String) {
        let identifiers: Vec<serde_json::Value> = subject
            .identifiers
            .iter()
            .map(|(k, v)| serde_json::json!({"kind": k.as_str(), "value": v}))
            .collect();
        let stable = serde_json::json!({
            "type": kind,
            "connector": self.label,
            "recipient": self.recipient,
            "subject": {"identifiers": identifiers},
            "changes": changes,
            "restricted": restricted,
        });
        let key = hex::encode(Sha256::digest(stable.to_string().as_bytes()));
        let mut doc = stable;
        doc["sent_at"] = serde_json::Value::String(jiff::Timestamp::now().to_string());
        (doc.to_string().into_bytes(), key)
    }

    /// Posts one notice; the status code on success.
    pub async fn post(&self, body: Vec<u8>, idempotency_key: &str) -> Result<u16, SourceError> {
        tokio::time::timeout(self.timeout, self.post_inner(body, idempotency_key))
            .await
            .map_err(|_| {
                SourceError::Temporary(format!("no answer within {} s", self.timeout.as_secs()))
            })?
    }

    async fn post_inner(&self, body: Vec<u8>, idempotency_key: &str) -> Result<u16, SourceError> {
        let t = jiff::Timestamp::now().as_second();
        let sig = signature(&self.secret, t, &body);
        let path = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let host_header = match self.uri.port_u16() {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        };
        let req = Request::post(path)
            .header(hyper::header::HOST, host_header)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "tutela-rights-webhook/1")
            .header("tutela-signature", sig)
            .header("idempotency-key", idempotency_key)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SourceError::Permanent(format!("cannot build the request: {e}")))?;
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SourceError::Temporary(format!("cannot connect: {}", e.kind())))?;
        let status = match &self.tls {
            Some(cfg) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|_| SourceError::Permanent("invalid TLS server name".into()))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        SourceError::Temporary(format!("TLS handshake failed: {}", e.kind()))
                    })?;
                send(TokioIo::new(tls), req).await?
            }
            None => send(TokioIo::new(tcp), req).await?,
        };
        match status {
            200..=299 => Ok(status),
            408 | 429 | 500..=599 => Err(SourceError::Temporary(format!("HTTP {status}"))),
            _ => Err(SourceError::Permanent(format!("HTTP {status}"))),
        }
    }

    async fn notify(
        &self,
        kind: &str,
        subject: &Subject,
        changes: Option<&serde_json::Map<String, serde_json::Value>>,
        restricted: Option<bool>,
    ) -> Result<(), SourceError> {
        let (body, key) = self.payload(kind, subject, changes, restricted);
        self.post(body, &key).await.map(|_| ())
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<u16, SourceError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|_| SourceError::Temporary("HTTP handshake failed".into()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let res = sender
        .send_request(req)
        .await
        .map_err(|_| SourceError::Temporary("the request failed".into()))?;
    let status = res.status().as_u16();
    // Drain (bounded) so the connection closes cleanly; the body itself is not used.
    let _ = tokio::time::timeout(Duration::from_secs(2), res.into_body().collect()).await;
    Ok(status)
}

impl Source for WebhookConnector {
    fn name(&self) -> &str {
        &self.source_name
    }

    /// Recipients are told, not asked: access has nothing to return here.
    fn access<'a>(
        &'a self,
        _subject: &'a Subject,
    ) -> BoxFuture<'a, Result<Vec<SourceRecord>, SourceError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(async move {
            self.notify("erasure", subject, None, None).await?;
            Ok(Erased::default())
        })
    }

    fn rectify<'a>(
        &'a self,
        subject: &'a Subject,
        changes: &'a serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(async move {
            self.notify("rectification", subject, Some(changes), None)
                .await?;
            Ok(0)
        })
    }

    fn restrict<'a>(
        &'a self,
        subject: &'a Subject,
        restricted: bool,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(async move {
            let kind = if restricted {
                "restriction"
            } else {
                "restriction_lifted"
            };
            self.notify(kind, subject, None, Some(restricted)).await?;
            Ok(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let s = signature(b"k", 1000, b"{}");
        assert!(verify_signature(b"k", &s, b"{}", 1010, 300));
        assert!(!verify_signature(b"k", &s, b"{ }", 1010, 300));
        assert!(!verify_signature(b"other", &s, b"{}", 1010, 300));
        assert!(!verify_signature(b"k", &s, b"{}", 2000, 300));
        assert!(!verify_signature(b"k", "garbage", b"{}", 1000, 300));
    }
}
