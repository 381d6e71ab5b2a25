use anyhow::Context;
use app::infra::{
    mail::{MailTransport, OutboxOnly, Smtp},
    AppState, Config,
};
use axum::serve::ListenerExt;
use secrecy::ExposeSecret;
use std::{net::SocketAddr, sync::Arc, time::Duration};

#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("roundhouse: {err:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    // `roundhouse openapi` prints the API description (committed as docs/openapi.json).
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        use utoipa::OpenApi;
        println!("{}", server::api::ApiDoc::openapi().to_pretty_json()?);
        return Ok(());
    }
    // `roundhouse serve-static DIR`: the built-in static file server of static-site services.
    if std::env::args().nth(1).as_deref() == Some("serve-static") {
        return server::serve_static(std::env::args().nth(2).unwrap_or_else(|| ".".into())).await;
    }
    let config = Config::from_env()?;
    server::telemetry::init(config.json_logs);

    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(10))
        .connect(config.database_url.expose_secret())
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    server::seed::migrate(&db).await?;

    let mail: Arc<dyn MailTransport> = match &config.smtp_url {
        Some(url) => Arc::new(Smtp::from_url(url, &config.mail_from)?),
        None => Arc::new(OutboxOnly),
    };
    let mut leptos_options = leptos::prelude::get_configuration(None)
        .context("reading the Leptos configuration (LEPTOS_* variables)")?
        .leptos_options;
    leptos_options.site_addr = config.addr;
    let addr = config.addr;
    let dev = config.is_dev();
    let secrets = app::infra::secretbox::SecretBox::load(
        config.secret_key.as_ref().map(|k| k.expose_secret()),
        &config.data_dir,
        dev,
    )?;
    let state = AppState::new(leptos_options, db.clone(), config, mail.clone(), secrets);

    if let Some((email, password)) = server::seed::dev_admin(&state).await? {
        println!("\n  Dev admin created. Sign in at http://{addr}/login with\n    email:    {email}\n    password: {password}\n  (kept in {}/dev-admin.txt)\n", state.config.data_dir.display());
    }
    tracing::info!(mail = mail.name(), dev, "configured");

    server::spawn_maintenance(state.clone());
    let runtime = match state.config.runtime {
        app::infra::RuntimeKind::Local => {
            let rt: Arc<dyn server::runtime::Runtime> = Arc::new(server::runtime::local::LocalRuntime::new(&state.config.data_dir)?);
            Some(rt)
        }
        app::infra::RuntimeKind::None => None,
    };
    let reconciler = server::reconciler::spawn(state.clone(), runtime);
    let app = server::router(state);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    tracing::info!("listening on http://{addr}");
    println!("Roundhouse is serving on http://{addr}");
    axum::serve(
        listener.tap_io(|tcp| {
            // Leptos streams pages in several writes; without this, Nagle + delayed ACK add ~40 ms.
            let _ = tcp.set_nodelay(true);
        }),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving")?;
    if let Some(r) = reconciler {
        tracing::info!("stopping the services this replica runs");
        r.stop_everything().await;
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
