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

/// A message the sink accepted, and the AUTH mechanism the session signed in with, if any.
struct Delivered {
    data: String,
    auth: Option<String>,
}

/// Credentials a sink requires before it takes a message, and the mechanisms it advertises.
struct RequireAuth {
    mechanisms: &'static str,
    user: &'static str,
    pass: &'static str,
}

/// Accepts SMTP sessions and sends each message's DATA to the channel. Speaks just enough of
/// RFC 5321 (greeting, EHLO, MAIL, RCPT, DATA, QUIT) for a real client.
async fn smtp_sink() -> (u16, mpsc::UnboundedReceiver<Delivered>) {
    smtp_sink_requiring(None).await
}

/// The sink, and with `auth` an SMTP AUTH server as well (RFC 4954: PLAIN per RFC 4616, and
/// LOGIN): it refuses `MAIL` with 530 until the session has signed in with the right user and
/// password, and a wrong one with 535.
async fn smtp_sink_requiring(auth: Option<RequireAuth>) -> (u16, mpsc::UnboundedReceiver<Delivered>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    let auth = Arc::new(auth);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, auth) = (tx.clone(), auth.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut in_data = false;
                let mut data = String::new();
                let mut signed_in: Option<String> = None;
                let mut pending = Pending::Command;
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            let _ = tx.send(Delivered { data: std::mem::take(&mut data), auth: signed_in.clone() });
                            if write.write_all(b"250 queued\r\n").await.is_err() {
                                break;
                            }
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    let mut words = line.split_whitespace();
                    let verb = words.next().unwrap_or("").to_ascii_uppercase();
                    let reply: String = match (std::mem::replace(&mut pending, Pending::Command), &*auth) {
                        (Pending::LoginUser, _) => {
                            pending = Pending::LoginPassword(decode(&line));
                            "334 UGFzc3dvcmQ6".into() // "Password:"
                        }
                        (Pending::LoginPassword(user), Some(required)) => {
                            let pass = decode(&line);
                            verdict(required, "LOGIN", &user, &pass, &mut signed_in)
                        }
                        (Pending::PlainResponse, Some(required)) => plain(required, &line, &mut signed_in),
                        (Pending::LoginPassword(_) | Pending::PlainResponse, None) => "503 5.5.1 no AUTH here".into(),
                        (Pending::Command, _) => match (verb.as_str(), &*auth) {
                            ("EHLO", Some(required)) => format!("250-sink\r\n250-AUTH {}\r\n250 8BITMIME", required.mechanisms),
                            ("EHLO" | "HELO", _) => "250 sink".into(),
                            ("AUTH", Some(required)) => {
                                let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
                                let initial = words.next();
                                if !required.mechanisms.split(' ').any(|m| m == mechanism) {
                                    "504 5.5.4 mechanism not supported".into()
                                } else if mechanism == "PLAIN" {
                                    match initial {
                                        Some(response) => plain(required, response, &mut signed_in),
                                        None => {
                                            pending = Pending::PlainResponse;
                                            "334 ".into()
                                        }
                                    }
                                } else {
                                    pending = Pending::LoginUser;
                                    "334 VXNlcm5hbWU6".into() // "Username:"
                                }
                            }
                            ("MAIL", Some(_)) if signed_in.is_none() => "530 5.7.0 Authentication required".into(),
                            ("DATA", _) => {
                                in_data = true;
                                "354 go ahead".into()
                            }
                            ("QUIT", _) => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => "250 ok".into(),
                        },
                    };
                    if write.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// What the sink waits for next within an AUTH exchange.
enum Pending {
    Command,
    PlainResponse,
    LoginUser,
    LoginPassword(String),
}

fn decode(b64: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `AUTH PLAIN`: base64 of `authzid NUL authcid NUL password`.
fn plain(required: &RequireAuth, response: &str, signed_in: &mut Option<String>) -> String {
    let decoded = decode(response);
    let mut parts = decoded.split('\0').skip(1);
    let (user, pass) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    verdict(required, "PLAIN", user, pass, signed_in)
}

fn verdict(required: &RequireAuth, mechanism: &str, user: &str, pass: &str, signed_in: &mut Option<String>) -> String {
    if user == required.user && pass == required.pass {
        *signed_in = Some(mechanism.to_string());
        "235 2.7.0 Authentication successful".into()
    } else {
        "535 5.7.8 Authentication credentials invalid".into()
    }
}

async fn smtp_app(port: u16) -> TestApp {
    smtp_app_at(&format!("smtp://127.0.0.1:{port}")).await
}

async fn smtp_app_at(url: &str) -> TestApp {
    let from = Config::for_tests("postgres://unused").mail_from;
    let smtp = Smtp::from_url(&secrecy::SecretString::from(url.to_string()), &from).unwrap();
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

    let message = tokio::time::timeout(std::time::Duration::from_secs(10), inbox.recv()).await.unwrap().unwrap().data;
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

const USER: &str = "mailer@example.com";
const PASS: &str = "p@ss:w/rd 1";
/// `USER` and `PASS` percent-encoded, as they go into `SMTP_URL`.
const USERINFO: &str = "mailer%40example.com:p%40ss%3Aw%2Frd%201";

async fn register_ada(app: &TestApp) {
    let r = app
        .api(Method::POST, "/auth/register", None, Some(json!({ "name": "Ada", "email": "ada@example.com", "password": PASSWORD })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_in_the_smtp_url_mail_is_sent_after_signing_in_with_plain_or_login() {
    for (mechanisms, expected) in [("PLAIN LOGIN", "PLAIN"), ("LOGIN", "LOGIN")] {
        let (port, mut inbox) = smtp_sink_requiring(Some(RequireAuth { mechanisms, user: USER, pass: PASS })).await;
        let app = smtp_app_at(&format!("smtp://{USERINFO}@127.0.0.1:{port}")).await;
        register_ada(&app).await;

        let (sent, error): (bool, Option<String>) =
            sqlx::query_as("SELECT sent_at IS NOT NULL, error FROM mail_outbox").fetch_one(&app.db).await.unwrap();
        assert!(sent && error.is_none(), "advertising {mechanisms}: {error:?}");
        let message = inbox.try_recv().expect("the sink took the message before it was marked sent");
        assert_eq!(message.auth.as_deref(), Some(expected), "advertising {mechanisms}");
        assert!(message.data.contains("To: ada@example.com"), "{}", message.data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_smtp_sign_in_leaves_the_mail_unsent_with_the_reason_recorded() {
    let (port, mut inbox) = smtp_sink_requiring(Some(RequireAuth { mechanisms: "PLAIN LOGIN", user: USER, pass: PASS })).await;
    for (url, reason) in [
        (format!("smtp://mailer%40example.com:wrong@127.0.0.1:{port}"), "535"),
        (format!("smtp://127.0.0.1:{port}"), "530"),
    ] {
        let app = smtp_app_at(&url).await;
        register_ada(&app).await;
        let (sent, error): (bool, Option<String>) =
            sqlx::query_as("SELECT sent_at IS NOT NULL, error FROM mail_outbox").fetch_one(&app.db).await.unwrap();
        assert!(!sent, "{url}");
        let error = error.unwrap_or_default();
        assert!(error.contains("sending over SMTP") && error.contains(reason), "{url}: {error}");
    }
    assert!(inbox.try_recv().is_err(), "the sink took no message");
}
