//! Outgoing mail. Every message is recorded in the `mail_outbox` table; a transport then
//! delivers it. Without `SMTP_URL` the outbox is the transport (read it at `/dev/mail` in
//! dev); with it, lettre's async SMTP transport delivers and the row is marked sent.

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use std::{future::Future, pin::Pin};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait MailTransport: Send + Sync {
    /// A short name for logs and the outbox row ("outbox", "smtp").
    fn name(&self) -> &'static str;
    fn deliver<'a>(&'a self, mail: &'a Mail) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Keeps mail in the outbox table only.
pub struct OutboxOnly;

impl MailTransport for OutboxOnly {
    fn name(&self) -> &'static str {
        "outbox"
    }
    fn deliver<'a>(&'a self, _mail: &'a Mail) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

pub struct Smtp {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Smtp {
    /// `SMTP_URL` as lettre understands it: `smtps://user:pass@host:465`,
    /// `smtp://host:587?tls=required`, `smtp://localhost:25`.
    pub fn from_url(url: &secrecy::SecretString, from: &str) -> anyhow::Result<Self> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url.expose_secret())
            .context("SMTP_URL is not a valid SMTP URL")?
            .build();
        let from = from.parse().with_context(|| format!("MAIL_FROM is not a valid address: {from:?}"))?;
        Ok(Smtp { transport, from })
    }
}

impl MailTransport for Smtp {
    fn name(&self) -> &'static str {
        "smtp"
    }
    fn deliver<'a>(&'a self, mail: &'a Mail) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            use lettre::AsyncTransport;
            let message = lettre::Message::builder()
                .from(self.from.clone())
                .to(mail.to.parse().context("recipient address")?)
                .subject(&mail.subject)
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(mail.body.clone())
                .context("building the message")?;
            self.transport.send(message).await.context("sending over SMTP")?;
            Ok(())
        })
    }
}

/// Records the mail, then delivers it. A delivery failure is recorded and logged, and does
/// not fail the user's action (they can ask for the mail again).
pub async fn send(db: &PgPool, transport: &dyn MailTransport, mail: Mail) -> anyhow::Result<Uuid> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO mail_outbox (to_address, subject, body, transport) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(&mail.to)
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(transport.name())
    .fetch_one(db)
    .await
    .context("recording mail in the outbox")?;
    match transport.deliver(&mail).await {
        Ok(()) => {
            sqlx::query("UPDATE mail_outbox SET sent_at = now() WHERE id = $1")
                .bind(id)
                .execute(db)
                .await
                .context("marking mail sent")?;
            tracing::info!(mail_id = %id, transport = transport.name(), subject = %mail.subject, "mail sent");
        }
        Err(err) => {
            let message = format!("{err:#}");
            tracing::warn!(mail_id = %id, error = %message, "mail delivery failed");
            sqlx::query("UPDATE mail_outbox SET error = $2 WHERE id = $1")
                .bind(id)
                .bind(message)
                .execute(db)
                .await
                .context("recording mail failure")?;
        }
    }
    Ok(id)
}
