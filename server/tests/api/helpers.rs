use app::infra::{mail::OutboxOnly, AppState, Config};
use axum::{
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{header, HeaderMap, Method, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    ConnectOptions, Connection, Executor, PgConnection, PgPool,
};
use std::{net::SocketAddr, str::FromStr, sync::Arc};
use tower::ServiceExt;

pub const ORIGIN: &str = "http://127.0.0.1:3000";
pub const PASSWORD: &str = "correct horse battery";

/// A database of its own for one test, cloned from a template that has every migration applied
/// (built once per migration set, under an advisory lock so parallel test processes agree),
/// and dropped when the test ends.
pub struct TestDb {
    pub pool: PgPool,
    name: String,
    admin: PgConnectOptions,
}

fn admin_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a PostgreSQL server (make test sets it)");
    PgConnectOptions::from_str(&url).expect("DATABASE_URL is not a valid PostgreSQL URL")
}

async fn ensure_template(admin: &PgConnectOptions) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for m in server::seed::MIGRATOR.iter() {
        std::hash::Hash::hash(&(m.version, &*m.checksum), &mut hasher);
    }
    // The bundled templates are written into it too.
    std::hash::Hash::hash(&app::templates::bundled::files(), &mut hasher);
    let name = format!("roundhouse_template_{:016x}", std::hash::Hasher::finish(&hasher));
    let mut conn = admin.connect().await.expect("connecting to DATABASE_URL");
    conn.execute("SELECT pg_advisory_lock(7283746501)").await.expect("template lock");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    if !exists {
        let building = format!("{name}_building");
        conn.execute(&*format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)")).await.unwrap();
        conn.execute(&*format!("CREATE DATABASE \"{building}\"")).await.unwrap();
        let mut tconn = admin.clone().database(&building).connect().await.unwrap();
        server::seed::MIGRATOR.run(&mut tconn).await.expect("migrating the template database");
        tconn.close().await.unwrap();
        let pool = PgPoolOptions::new().max_connections(1).connect_with(admin.clone().database(&building)).await.unwrap();
        server::seed::templates(&pool).await.expect("writing the bundled templates");
        pool.close().await;
        // A closed session may linger on the server for a moment: the rename waits for it.
        let rename = format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"");
        for attempt in 0.. {
            match conn.execute(&*rename).await {
                Ok(_) => break,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") && attempt < 100 => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(e) => panic!("renaming the template database: {e}"),
            }
        }
    }
    // Databases of test processes that have ended (their drop may not have finished).
    let stale: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'roundhouse\\_t\\_%'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for db in stale {
        let pid = db.split('_').nth(2).unwrap_or_default();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = conn.execute(&*format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
        }
    }
    conn.execute("SELECT pg_advisory_unlock(7283746501)").await.unwrap();
    conn.close().await.unwrap();
    name
}

impl TestDb {
    pub async fn new() -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin = admin_options();
        let template = ensure_template(&admin).await;
        let name = format!(
            "roundhouse_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut conn = admin.connect().await.unwrap();
        conn.execute(&*format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
        conn.execute(&*format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\" STRATEGY = FILE_COPY")).await.unwrap();
        conn.close().await.unwrap();
        // The platform's own pool options: row-level security sees each request's user.
        let pool = app::infra::actor::pool_options()
            .max_connections(10)
            .acquire_timeout(std::time::Duration::from_secs(20))
            .connect_with(admin.clone().database(&name))
            .await
            .unwrap();
        TestDb { pool, name, admin }
    }
}

impl TestDb {
    /// A database with nothing in it, not even the migrations.
    pub async fn empty() -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin = admin_options();
        let name = format!("roundhouse_t_{}_e{}", std::process::id(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut conn = admin.connect().await.unwrap();
        conn.execute(&*format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
        conn.execute(&*format!("CREATE DATABASE \"{name}\"")).await.unwrap();
        conn.close().await.unwrap();
        let pool = PgPoolOptions::new().max_connections(4).connect_with(admin.clone().database(&name)).await.unwrap();
        TestDb { pool, name, admin }
    }

    /// The URL of this test's database, for a platform process of its own.
    pub fn url(&self) -> String {
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
        let (server, _) = base.rsplit_once('/').expect("DATABASE_URL names a database");
        format!("{server}/{}", self.name)
    }
}

impl TestDb {
    /// Postgres goes away for this test's database for `down`: every session of it is ended
    /// and no new one is let in until the time is up (what a restart or failover looks like
    /// from the platform).
    pub async fn outage(&self, down: std::time::Duration) {
        let mut conn = self.admin.connect().await.unwrap();
        conn.execute(&*format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false", self.name)).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1").bind(&self.name).execute(&mut conn).await.unwrap();
        tokio::time::sleep(down).await;
        conn.execute(&*format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true", self.name)).await.unwrap();
        conn.close().await.unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // The test's runtime is going away: drop the database from a thread and runtime of our
        // own, without making the next test wait (a database left by an exiting process is swept
        // by the next run).
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ = conn.execute(&*format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                    let _ = conn.close().await;
                }
            });
        });
    }
}

pub struct TestApp {
    pub router: Router,
    pub db: PgPool,
    pub state: AppState,
    /// Keeps the database alive until the test ends.
    pub _database: Arc<TestDb>,
    pub runtime: Option<RuntimeGuard>,
}

/// A local runtime and reconciler of a test, in a data folder of its own. Whatever it started
/// (processes, cgroups, networks) is taken down when the test ends, even when the test fails.
pub struct RuntimeGuard {
    #[allow(dead_code)]
    pub reconciler: Option<Arc<server::reconciler::Reconciler>>,
    pub dir: std::path::PathBuf,
}

impl RuntimeGuard {
    /// The runtime's builds and instances that have a live process.
    pub fn live_units(&self) -> Vec<String> {
        server::runtime::local::LocalRuntime::live_units_of(&self.dir)
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        server::runtime::local::LocalRuntime::destroy(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A data folder and a private port range no other test of this process uses.
pub fn test_data_dir() -> (std::path::PathBuf, (u16, u16)) {
    static N: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rh-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let low = 21000 + (std::process::id() as u16 % 20) * 400 + n * 20;
    (dir, (low, low + 19))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    pub fn error_field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or_default()
    }
    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
    /// A server function's error names its field at the top level.
    pub fn fn_error_field(&self) -> &str {
        self.body["field"].as_str().unwrap_or_default()
    }
    pub fn fn_error_message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
    /// The session cookie a server function set, as `name=value`.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("rh_session=") && !c.starts_with("rh_session=;"))
            .map(|c| c.split(';').next().unwrap_or_default().to_string())
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::on(Arc::new(TestDb::new().await), tweak, Arc::new(OutboxOnly))
    }

    /// An app on an existing test database, with its own configuration and mail transport.
    pub fn on(database: Arc<TestDb>, tweak: impl FnOnce(&mut Config), mail: Arc<dyn app::infra::mail::MailTransport>) -> Self {
        let mut config = Config::for_tests("postgres://unused");
        tweak(&mut config);
        let options = leptos::config::LeptosOptions::builder().output_name("roundhouse").build();
        let db = database.pool.clone();
        let secrets = app::infra::secretbox::SecretBox::new(&rand_key());
        let state = AppState::new(options, db.clone(), config, mail, secrets);
        let router = server::router(state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        TestApp { router, db, state, _database: database, runtime: None }
    }

    /// The same app billing through `payments` (Stripe against a fake, in tests).
    pub fn with_payments(mut self, payments: Arc<dyn app::infra::payments::PaymentProvider>) -> Self {
        self.state = self.state.clone().with_payments(payments);
        self.router = server::router(self.state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        self
    }

    /// An app that also runs what is deployed: a local runtime (sandboxed, no internet) and
    /// its reconciler.
    pub async fn with_runtime() -> Self {
        Self::with_runtime_config(|_| {}).await
    }

    pub async fn with_runtime_config(tweak: impl FnOnce(&mut Config)) -> Self {
        let (dir, ports) = test_data_dir();
        let data = dir.clone();
        let mut app = Self::with_config(move |c| {
            c.data_dir = data;
            c.private_ports = ports;
            c.runtime = app::infra::RuntimeKind::Local;
            tweak(c);
        })
        .await;
        use server::runtime::local::{LocalRuntime, Settings};
        let settings = Settings { platform_exe: Some(env!("CARGO_BIN_EXE_roundhouse").into()), ..Settings::from_config(&app.state.config) };
        let rt = LocalRuntime::new(settings, app.db.clone()).expect("a local runtime");
        if app.state.config.sandbox == app::infra::SandboxMode::On {
            assert_eq!(rt.admission(), app::infra::Admission::Everyone, "the tests run where the sandbox works (as root, with bubblewrap)");
        }
        app.state.set_admission(rt.admission());
        app.state.set_refused_sources(server::runtime::refusals(&rt));
        let reconciler = server::reconciler::spawn(app.state.clone(), Some(Arc::new(rt))).expect("a reconciler");
        app.runtime = Some(RuntimeGuard { reconciler: Some(reconciler), dir });
        app
    }

    /// The runtime's builds and instances with a live process.
    pub fn live_units(&self) -> Vec<String> {
        self.runtime.as_ref().expect("an app with a runtime").live_units()
    }

    /// A request to a deployed service through the proxy (`Host: <host>`).
    pub async fn via_proxy(&self, host: &str, path: &str) -> Reply {
        let req = Request::builder().uri(path).header(header::HOST, format!("{host}:3000"));
        self.send(req.body(Body::empty()).expect("request")).await
    }

    pub async fn via_proxy_request(&self, host: &str, method: Method, path: &str) -> Reply {
        let req = Request::builder().method(method).uri(path).header(header::HOST, format!("{host}:3000"));
        self.send(req.body(Body::empty()).expect("request")).await
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.expect("router never fails");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    /// A JSON API call, optionally with a bearer token.
    pub async fn api(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("/api/v1{path}"));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        self.send(req.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.api(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.api(Method::POST, path, Some(token), Some(body)).await
    }

    /// A browser page load, optionally with a session cookie.
    pub async fn page(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut req = Request::builder().uri(path).header(header::ACCEPT, "text/html").header(header::HOST, "127.0.0.1:3000");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).expect("request")).await
    }

    /// A server function called the way the hydrated page calls it (same origin, form body).
    pub async fn server_fn(&self, name: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
        self.server_fn_from(name, cookie, form, Some(ORIGIN)).await
    }

    pub async fn server_fn_from(&self, name: &str, cookie: Option<&str>, form: &[(&str, &str)], origin: Option<&str>) -> Reply {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/{name}"))
            .header(header::HOST, "127.0.0.1:3000")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::from(body)).expect("request")).await
    }

    /// Registers through the API and returns the user's id.
    pub async fn register(&self, name: &str, email: &str) -> String {
        let r = self
            .api(Method::POST, "/auth/register", None, Some(json!({ "name": name, "email": email, "password": PASSWORD })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["user"]["id"].as_str().expect("user id").to_string()
    }

    pub async fn login(&self, email: &str) -> String {
        let r = self.api(Method::POST, "/auth/login", None, Some(json!({ "email": email, "password": PASSWORD }))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["token"].as_str().expect("token").to_string()
    }

    /// The token of the newest mailed link of a kind (`verify` or `reset`) sent to `email`.
    pub async fn mailed_token(&self, email: &str, kind: &str) -> String {
        // Reset links are mailed in the background: wait for one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let body: String = loop {
            let found: Option<String> = sqlx::query_scalar(
                "SELECT body FROM mail_outbox WHERE to_address = $1 AND body LIKE '%/' || $2 || '?token=%' ORDER BY created_at DESC LIMIT 1",
            )
            .bind(email)
            .bind(kind)
            .fetch_optional(&self.db)
            .await
            .expect("reading the outbox");
            if let Some(body) = found {
                break body;
            }
            assert!(std::time::Instant::now() < deadline, "no {kind} mail to {email}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let start = body.find("?token=").expect("token in link") + "?token=".len();
        body[start..].split_whitespace().next().expect("token").to_string()
    }

    /// A verified, signed-in user: returns a bearer token.
    pub async fn verified_user(&self, name: &str, email: &str) -> String {
        self.register(name, email).await;
        let token = self.mailed_token(email, "verify").await;
        let r = self.api(Method::POST, "/auth/verify", None, Some(json!({ "token": token }))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        self.login(email).await
    }

    /// A signed-in browser session (cookie) for an existing user.
    pub async fn browser_login(&self, email: &str) -> String {
        let r = self.server_fn("login", None, &[("email", email), ("password", PASSWORD)]).await;
        assert!(r.status.is_success() || r.status.is_redirection(), "{} {}", r.status, r.text);
        r.session_cookie().expect("a session cookie")
    }

    pub async fn make_admin(&self, email: &str) {
        sqlx::query("UPDATE users SET role = 'admin' WHERE email = $1").bind(email).execute(&self.db).await.expect("promote");
    }
}

/// The encryption key of test apps, as `ROUNDHOUSE_SECRET_KEY` gives it.
pub fn test_key_base64() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand_key())
}

fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (std::process::id() as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
    key
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
