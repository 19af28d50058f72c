//! Outgoing e-mail: verification codes and links, and notices to requesters.
//!
//! Two transports: SMTP (lettre, rustls with the webpki roots; `smtp://` with STARTTLS required,
//! `smtps://` for implicit TLS) and a file transport that writes each message as a real `.eml`
//! file into a directory (the embedded default `<data_dir>/outbox`, and the tests). Messages are
//! plain text, in the requester's language. Nothing about a message is logged but its kind.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Where outgoing mail goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `smtp://user:pass@host:587` (STARTTLS required) or `smtps://…:465` (implicit TLS).
    Smtp(String),
    /// Writes `<id>.eml` files into this directory.
    File(PathBuf),
}

impl Transport {
    /// Parses `smtp://…`, `smtps://…` or `file:<dir>`.
    pub fn parse(text: &str) -> Result<Transport, MailError> {
        if let Some(dir) = text.strip_prefix("file:") {
            if dir.is_empty() {
                return Err(MailError::Config(
                    "`file:` needs a directory, e.g. file:/var/lib/tutela/outbox".into(),
                ));
            }
            return Ok(Transport::File(PathBuf::from(dir)));
        }
        if text.starts_with("smtp://") || text.starts_with("smtps://") {
            return Ok(Transport::Smtp(text.to_string()));
        }
        let scheme = text.split(':').next().unwrap_or_default();
        Err(MailError::Config(format!(
            "unsupported mail transport `{scheme}:…`: use smtp://, smtps:// or file:<dir>"
        )))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail configuration: {0}")]
    Config(String),
    #[error("invalid address")]
    Address,
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("could not send the message: {0}")]
    Send(String),
}

enum Inner {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// Sends mail from one address through one transport.
pub struct Mailer {
    from: Mailbox,
    inner: Inner,
    description: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the SMTP URL: it may hold a password.
        f.debug_struct("Mailer")
            .field("transport", &self.description)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(from: &str, transport: &Transport) -> Result<Mailer, MailError> {
        let from: Mailbox = from
            .parse()
            .map_err(|_| MailError::Config("`mail.from` is not a valid address".into()))?;
        let (inner, description) = match transport {
            Transport::Smtp(url) => {
                let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| MailError::Config(format!("invalid SMTP URL: {e}")))?
                    .build();
                (Inner::Smtp(t), "smtp".to_string())
            }
            Transport::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    MailError::Config(format!("cannot create the outbox {}: {e}", dir.display()))
                })?;
                (
                    Inner::File(AsyncFileTransport::<Tokio1Executor>::new(dir)),
                    format!("file:{}", dir.display()),
                )
            }
        };
        Ok(Mailer {
            from,
            inner,
            description,
        })
    }

    /// Where mail goes, safe to print (no credentials).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Sends a plain-text message.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address)?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &self.inner {
            Inner::Smtp(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
            Inner::File(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse() {
        assert_eq!(
            Transport::parse("file:/tmp/x").unwrap(),
            Transport::File("/tmp/x".into())
        );
        assert!(matches!(
            Transport::parse("smtps://u:p@mail.example:465").unwrap(),
            Transport::Smtp(_)
        ));
        let err = Transport::parse("http://secret@x").unwrap_err().to_string();
        assert!(err.contains("`http:…`") && !err.contains("secret"), "{err}");
        assert!(Transport::parse("file:").is_err());
    }

    #[tokio::test]
    async fn the_file_transport_writes_real_messages() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::new("DPO <dpo@example.org>", &Transport::File(dir.path().into())).unwrap();
        m.send("someone@example.net", "Hello é", "Body line\n".into())
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().unwrap(), "eml");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("To: someone@example.net"), "{text}");
        assert!(text.contains("From: DPO <dpo@example.org>"), "{text}");
        assert!(text.contains("Body line"), "{text}");
        assert!(m.send("not an address", "x", "y".into()).await.is_err());
        assert!(Mailer::new("nope", &Transport::File(dir.path().into())).is_err());
    }
}
