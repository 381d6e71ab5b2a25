//! Mail over SMTP for real: a minimal SMTP server on loopback receives what lettre sends.

use crate::helpers::*;
use app::infra::{mail::Smtp, Config};
use axum::http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::mpsc,
};

/// Accepts SMTP sessions and sends each message's DATA to the channel. Speaks just enough of
/// RFC 5321 (greeting, EHLO, MAIL, RCPT, DATA, QUIT) for a real client.
async fn smtp_sink() -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut in_data = false;
                let mut data = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            tx.send(std::mem::take(&mut data)).unwrap();
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

async fn smtp_app(port: u16) -> TestApp {
    let from = Config::for_tests("postgres://unused").mail_from;
    let smtp = Smtp::from_url(&secrecy::SecretString::from(format!("smtp://127.0.0.1:{port}")), &from).unwrap();
    TestApp::on(Arc::new(TestDb::new().await), |_| {}, Arc::new(smtp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_smtp_configured_the_verification_mail_is_delivered_and_marked_sent() {
    let (port, mut inbox) = smtp_sink().await;
    let app = smtp_app(port).await;

    let r = app
        .api(Method::POST, "/auth/register", None, Some(json!({ "name": "Ada", "email": "ada@example.com", "password": PASSWORD })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let message = tokio::time::timeout(std::time::Duration::from_secs(10), inbox.recv()).await.unwrap().unwrap();
    assert!(message.contains("Subject: Confirm your email address"), "{message}");
    assert!(message.contains("To: ada@example.com"), "{message}");
    assert!(message.contains("/verify?token="), "{message}");
    let (transport, sent): (String, bool) =
        sqlx::query_as("SELECT transport, sent_at IS NOT NULL FROM mail_outbox").fetch_one(&app.db).await.unwrap();
    assert_eq!((transport.as_str(), sent), ("smtp", true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_smtp_server_is_recorded_and_does_not_fail_registration() {
    // A port nothing listens on.
    let port = { std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port() };
    let app = smtp_app(port).await;
    let r = app
        .api(Method::POST, "/auth/register", None, Some(json!({ "name": "Ada", "email": "ada@example.com", "password": PASSWORD })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (sent, error): (bool, Option<String>) =
        sqlx::query_as("SELECT sent_at IS NOT NULL, error FROM mail_outbox").fetch_one(&app.db).await.unwrap();
    assert!(!sent);
    assert!(error.unwrap().contains("sending over SMTP"));
}
