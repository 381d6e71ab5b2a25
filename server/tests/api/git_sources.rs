//! Git sources end to end: a repository served the way a self-hosted forge serves it — smart
//! HTTP (`git http-backend`) over TLS, with a certificate from an internal CA — is cloned inside
//! the build sandbox, through the sandbox's outbound network, then built, run and served.
//!
//! The server listens on this machine's non-loopback address: a sandbox reaches the internet
//! (here: that address) but never the host's loopback.

use crate::{deploys::*, helpers::*};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};
use tokio_rustls::rustls;

/// What the repository's app answers, so an answer proves it came from the clone.
const VERSION: &str = "cloned-over-https";

struct GitServer {
    /// `https://<address>:<port>`; repositories are `<url>/<name>.git`.
    url: String,
    /// The PEM file of the CA that issued the server's certificate.
    ca_file: PathBuf,
    /// The repositories and the CA file, removed when the test ends.
    root: PathBuf,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The first IPv4 address of this machine that is not loopback.
fn host_address() -> String {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().expect("running ip");
    let text = String::from_utf8_lossy(&out.stdout);
    let addr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1).and_then(|a| a.split('/').next());
    addr.expect("this machine has a non-loopback IPv4 address").to_string()
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().expect("running git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A bare repository `hello.git` holding the fixture app (and a `VERSION` file) in one commit.
fn repository(root: &Path) {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    for f in ["app.py", "Procfile"] {
        std::fs::copy(fixture().join(f), work.join(f)).unwrap();
    }
    std::fs::write(work.join("VERSION"), VERSION).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "the app"]);
    let repos = root.join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    git(root, &["clone", "-q", "--bare", "work", "repos/hello.git"]);
}

/// A CA of its own and a server certificate it issued for `address`.
fn certificates(address: &str) -> (String, rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Roundhouse test internal CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec![address.to_string()]).unwrap();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "git.internal");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.der().clone(), rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
}

impl GitServer {
    async fn start() -> GitServer {
        let (root, _) = test_data_dir();
        repository(&root);
        let address = host_address();
        let (ca_pem, cert, key) = certificates(&address);
        let ca_file = root.join("internal-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind((address.as_str(), 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let repos = Arc::new(root.join("repos"));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, repos) = (acceptor.clone(), repos.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends here.
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |req| http_backend(repos.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        GitServer { url: format!("https://{address}:{port}"), ca_file, root }
    }
}

/// One request through `git http-backend`, as a web server runs it (CGI, RFC 3875).
async fn http_backend(repos: Arc<PathBuf>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", repos.as_os_str())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", req.method().as_str())
        .env("PATH_INFO", req.uri().path())
        .env("QUERY_STRING", req.uri().query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "192.0.2.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    cmd.env("CONTENT_LENGTH", body.len().to_string());
    let Ok(mut child) = cmd.spawn() else { return Ok(status(StatusCode::INTERNAL_SERVER_ERROR)) };
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written while the output is read: a large request must not wait on a full pipe.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    });
    let Ok(out) = child.wait_with_output().await else { return Ok(status(StatusCode::INTERNAL_SERVER_ERROR)) };
    let _ = writer.await;
    Ok(cgi_response(&out.stdout))
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// A CGI answer (header lines, a blank line, the body) as an HTTP response.
fn cgi_response(out: &[u8]) -> Response<Full<Bytes>> {
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
    let Some((head_end, body_start)) = split else { return status(StatusCode::BAD_GATEWAY) };
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(&out[body_start..])));
    for line in String::from_utf8_lossy(&out[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok());
            *response.status_mut() = code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(n), Ok(v)) = (hyper::header::HeaderName::from_bytes(name.as_bytes()), hyper::header::HeaderValue::from_str(value)) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

/// A verified user, a project "shop", and a service "web" whose source is the git URL.
async fn git_service(app: &TestApp, url: &str) -> Setup {
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &token, json!({ "name": "shop" })).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let project = p.body["id"].as_str().unwrap().to_string();
    let s = app
        .post(
            &format!("/projects/{project}/services"),
            &token,
            json!({ "name": "web", "source_kind": "git", "source": url, "healthcheck_path": "/health", "healthcheck_timeout_secs": 20 }),
        )
        .await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
    Setup { token, project, service: s.body["id"].as_str().unwrap().to_string() }
}

/// The deployment's log once it holds `needle` (lines reach the database a moment after they
/// are written); fails with the log as it is after a deadline.
async fn log_with(app: &TestApp, token: &str, id: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let logs = logs_text(app, token, id).await;
        if logs.contains(needle) {
            return logs;
        }
        assert!(std::time::Instant::now() < deadline, "the log never said {needle:?}:\n{logs}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn reason(d: &Value) -> &str {
    d["deployment"]["reason"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_on_an_https_server_with_an_internal_ca_is_cloned_in_the_sandbox_and_served() {
    let server = GitServer::start().await;
    let ca = server.ca_file.clone();
    let app = TestApp::with_runtime_config(|c| {
        c.sandbox_outbound = true;
        c.git_ca_file = Some(ca);
    })
    .await;
    let url = format!("{}/hello.git", server.url);
    let s = git_service(&app, &url).await;
    let id = deploy(&app, &s.token, &s.service).await;
    wait_for(&app, &s.token, &id, &["running"]).await;

    let r = app.via_proxy("web.shop.localhost", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.starts_with(&format!("hello v{VERSION} from web")), "{}", r.text);
    let logs = log_with(&app, &s.token, &id, "Detected: ").await;
    assert!(logs.contains(&format!("Cloning {url}")), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_does_not_exist_fails_the_build_and_says_so() {
    let server = GitServer::start().await;
    let ca = server.ca_file.clone();
    let app = TestApp::with_runtime_config(|c| {
        c.sandbox_outbound = true;
        c.git_ca_file = Some(ca);
    })
    .await;
    let s = git_service(&app, &format!("{}/missing.git", server.url)).await;
    let id = deploy(&app, &s.token, &s.service).await;
    let d = wait_for(&app, &s.token, &id, &["failed"]).await;
    assert!(reason(&d).contains("git clone exited with code 128"), "{d}");
    // git's own words are in the build log.
    log_with(&app, &s.token, &id, "not found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_operators_ca_the_clone_refuses_the_servers_certificate() {
    let server = GitServer::start().await;
    let app = TestApp::with_runtime_config(|c| c.sandbox_outbound = true).await;
    let s = git_service(&app, &format!("{}/hello.git", server.url)).await;
    let id = deploy(&app, &s.token, &s.service).await;
    let d = wait_for(&app, &s.token, &id, &["failed"]).await;
    assert!(reason(&d).contains("git clone exited with code 128"), "{d}");
    // The build log says why.
    log_with(&app, &s.token, &id, "certificate").await;
}
