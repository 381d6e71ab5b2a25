use anyhow::Context;
use app::infra::{
    mail::{MailTransport, OutboxOnly, Smtp},
    AppState, Config,
};
use axum::serve::ListenerExt;
use secrecy::ExposeSecret;
use std::{net::SocketAddr, sync::Arc, time::Duration};

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    // `roundhouse monitor DIR`: the keeper of one instance's output (`runtime::local::monitor`),
    // small and without the async runtime.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.iter().map(|a| a.to_str().unwrap_or_default()).collect::<Vec<_>>().as_slice() {
        ["monitor", _] => server::runtime::local::monitor::main(std::path::Path::new(&args[1])),
        // `roundhouse runtime destroy DATA_DIR`: stops every service the local runtime of that
        // data folder runs (they outlive the platform process) and removes what it made on the
        // machine: processes, cgroups, networks. For tools and tests that end for good.
        ["runtime", "destroy", _] => {
            server::runtime::local::LocalRuntime::destroy(std::path::Path::new(&args[2]));
            std::process::ExitCode::SUCCESS
        }
        _ => serve(),
    }
}

/// glibc gives each thread that allocates under contention an arena of its own, up to eight per
/// core, and rarely gives their memory back: under `make bench`'s load the server held 88–92 MB
/// at 200 connections; with two arenas, 78–79 MB, at the same throughput (docs/benchmarks.md).
/// `MALLOC_ARENA_MAX` in the environment still decides if set.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists; mallopt only
        // changes an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[tokio::main]
async fn serve() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `roundhouse template validate FILE…`
    if args.first().map(String::as_str) == Some("template") {
        return server::cli::template(&args[1..]);
    }
    if let Err(err) = run().await {
        eprintln!("roundhouse: {err:#}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// As many open files as the host allows: every proxied request and private connection
/// holds two descriptors, and the default soft limit (1024) is soon reached.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn run() -> anyhow::Result<()> {
    raise_open_files_limit();
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

    let db = app::infra::actor::pool_options()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(10))
        .connect(config.database_url.expose_secret())
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    server::seed::migrate(&db).await?;
    server::seed::templates(&db).await?;

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
    let mut state = AppState::new(leptos_options, db.clone(), config, mail.clone(), secrets);
    if let Some(stripe) = &state.config.stripe {
        for (plan, _) in &stripe.plan_prices {
            let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plans WHERE id = $1)").bind(plan).fetch_one(&db).await?;
            anyhow::ensure!(known, "STRIPE_PLAN_PRICES names the plan {plan:?}, which does not exist (the plans are on /pricing)");
        }
        state = state.clone().with_payments(Arc::new(server::payments::StripeProvider::new(stripe)?));
    }

    if let Some((email, password)) = server::seed::dev_admin(&state).await? {
        println!("\n  Dev admin created. Sign in at http://{addr}/login with\n    email:    {email}\n    password: {password}\n  (kept in {}/dev-admin.txt)\n", state.config.data_dir.display());
    }
    tracing::info!(mail = mail.name(), payments = state.payments.as_ref().map_or("local ledger", |p| p.name()), dev, "configured");

    server::spawn_maintenance(state.clone());
    let mut local_runtime = None;
    let runtime = match state.config.runtime {
        app::infra::RuntimeKind::Local => {
            use server::runtime::local::{LocalRuntime, Settings};
            let local = Arc::new(LocalRuntime::new(Settings::from_config(&state.config), db.clone())?);
            local_runtime = Some(local.clone());
            let admission = local.admission();
            match &admission {
                app::infra::Admission::Everyone => tracing::info!("sandbox ready: every build and instance runs contained"),
                app::infra::Admission::AdminsOnly => {
                    println!("  ROUNDHOUSE_SANDBOX=off: single-user mode, only admins' projects deploy, unsandboxed.");
                }
                app::infra::Admission::Nobody(why) => {
                    eprintln!("\n  The sandbox cannot be set up on this machine, so no deployment will run:\n    {why}\n  (or set ROUNDHOUSE_SANDBOX=off for a single-user platform where only admins deploy)\n");
                }
            }
            state.set_admission(admission);
            state.set_refused_sources(server::runtime::refusals(local.as_ref()));
            let rt: Arc<dyn server::runtime::Runtime> = local;
            Some(rt)
        }
        app::infra::RuntimeKind::Kubernetes => {
            use server::runtime::kubernetes::{plans::PlanProjects, KubernetesRuntime, Settings};
            let settings = Settings::from_env(&state.config.apps_domain, state.config.build_timeout_secs)?;
            let cluster = Arc::new(KubernetesRuntime::connect(settings, Arc::new(PlanProjects(db.clone()))).await?);
            state.set_refused_sources(server::runtime::refusals(cluster.as_ref()));
            tracing::info!("deploying to the Kubernetes cluster");
            server::runtime::kubernetes::runtime::report_health(cluster.clone(), state.clone());
            let rt: Arc<dyn server::runtime::Runtime> = cluster;
            Some(rt)
        }
        app::infra::RuntimeKind::None => None,
    };
    let reconciler = server::reconciler::spawn(state.clone(), runtime);
    let app = server::router(state.clone());
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
        // The services keep running: the next process of the platform (this one restarted,
        // or another replica) adopts them.
        tracing::info!("letting go of the services this replica runs (they keep running)");
        r.release_everything().await;
    }
    if let Err(e) = server::metering::flush_egress(&state).await {
        tracing::warn!(error = %e, "storing the last egress usage failed");
    }
    if let Some(local) = local_runtime {
        local.release_host_resources();
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
