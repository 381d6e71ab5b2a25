//! The reconciler: converges the runtime to the deployments Postgres asks for.
//!
//! One replica at a time leads, holding a Postgres advisory lock on a connection of its own;
//! if that connection dies another replica takes over. On becoming leader it cleans whatever a
//! previous run left (the runtime's `recover`), marks old instances stopped, queues in-flight
//! deployments again and starts the instances of running ones afresh — so after a crash at any
//! moment there is no orphan process and no duplicate instance.
//!
//! Every replica listens for status, log and route notifications and feeds them to its open
//! pages (`AppState::live`).

use crate::{
    logs::{self, LogSink, LogTx, Redactor},
    proxy,
    runtime::{BuildJob, InstanceEvent, InstanceSpec, Peer, Runtime},
    waits::{Gate, Waits},
};
use app::{
    deployments::{
        environment,
        service::{self as deployments, DEPLOY_CHANNEL, LOGS_CHANNEL, ROUTES_CHANNEL, STATUS_CHANNEL},
        Status, StatusChange,
    },
    infra::{live::LiveEvent, Admission, AppState},
    services::{Service, SourceKind},
};
use chrono::Utc;
use sqlx::{postgres::PgListener, Connection, PgConnection};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const LEADER_LOCK: i64 = 0x526f_756e_6468; // "Roundh"
const TICK: Duration = Duration::from_secs(2);
const METRICS_EVERY: Duration = Duration::from_secs(5);
/// How often finished minutes of samples become usage records (`metering.rs`).
const METERING_EVERY: Duration = Duration::from_secs(20);

#[derive(Clone, Copy)]
struct Supervised {
    instance_id: Uuid,
    service_id: Uuid,
}

/// What a pre-deploy command runs with.
struct PreDeploy<'a> {
    id: Uuid,
    spec: &'a Service,
    artifact: &'a str,
    vars: &'a std::collections::BTreeMap<String, String>,
    private_port: u16,
    peers: &'a [Peer],
    command: &'a str,
    sink: &'a LogSink,
}

#[derive(Default)]
struct Inner {
    /// Deployments a pipeline is working on.
    in_flight: HashMap<Uuid, CancellationToken>,
    /// Instances this leader runs, by deployment.
    supervised: HashMap<Uuid, Vec<Supervised>>,
    /// Private port listeners, by service.
    forwarders: HashMap<Uuid, HashMap<std::net::SocketAddrV4, tokio::task::JoinHandle<()>>>,
    /// Each service's private connection slots, shared by its listeners and kept across them.
    private_slots: HashMap<Uuid, Arc<tokio::sync::Semaphore>>,
    /// Runs of cron services going now: instance → (deployment, the time it was scheduled for).
    cron_runs: HashMap<Uuid, (Uuid, chrono::DateTime<Utc>)>,
    /// Schedules are due between the last check and now (unset until this replica leads).
    cron_checked: Option<chrono::DateTime<Utc>>,
    /// One-off runs (pre-deploy commands) waited for: instance → where its exit code goes.
    exits: HashMap<Uuid, tokio::sync::oneshot::Sender<Option<i32>>>,
}

pub struct Reconciler {
    state: AppState,
    runtime: Arc<dyn Runtime>,
    /// The platform-wide build pool (`ROUNDHOUSE_BUILD_CONCURRENCY`).
    builds: Arc<tokio::sync::Semaphore>,
    logs: LogTx,
    events: mpsc::UnboundedSender<InstanceEvent>,
    inner: Mutex<Inner>,
    wake: Notify,
    /// Held while the private forwarders are brought in line (`ensure_forwarders`).
    forwarding: tokio::sync::Mutex<()>,
}

enum Mode {
    Deploy,
    /// Start the instances of a running deployment again (after a platform restart).
    Relaunch,
}

/// Starts the live listener (every replica) and, with a runtime, the reconciler.
pub fn spawn(state: AppState, runtime: Option<Arc<dyn Runtime>>) -> Option<Arc<Reconciler>> {
    let reconciler = runtime.map(|runtime| {
        let (events, events_rx) = mpsc::unbounded_channel();
        let r = Arc::new(Reconciler {
            logs: logs::spawn_writer(state.db.clone()),
            builds: Arc::new(tokio::sync::Semaphore::new(state.config.build_concurrency)),
            state: state.clone(),
            runtime,
            events,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            forwarding: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(r.clone().handle_instance_events(events_rx));
        tokio::spawn(r.clone().lead());
        r
    });
    tokio::spawn(listen(state, reconciler.clone()));
    reconciler
}

/// Feeds notifications into this replica's live channel; reconnects when Postgres goes away.
async fn listen(state: AppState, reconciler: Option<Arc<Reconciler>>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut listener = match PgListener::connect_with(&state.db).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "live listener cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(e) = listener.listen_all([STATUS_CHANNEL, LOGS_CHANNEL, ROUTES_CHANNEL, DEPLOY_CHANNEL]).await {
            tracing::warn!(error = %e, "live listener cannot LISTEN; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(200);
        proxy::reload_routes(&state).await;
        let _ = state.live.events.send(LiveEvent::Resync);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match n.channel() {
                    STATUS_CHANNEL => {
                        // Routes follow deployment status: a stopped deployment takes no traffic
                        // from the moment it is stopped, before its processes are gone.
                        proxy::reload_routes(&state).await;
                        if let Ok(change) = serde_json::from_str::<StatusChange>(n.payload()) {
                            let _ = state.live.events.send(LiveEvent::Status(change));
                        }
                    }
                    LOGS_CHANNEL => {
                        if let Ok(id) = n.payload().parse() {
                            let _ = state.live.events.send(LiveEvent::Logs(id));
                        }
                    }
                    ROUTES_CHANNEL => proxy::reload_routes(&state).await,
                    _ => {
                        if let Some(r) = &reconciler {
                            r.wake.notify_one();
                        }
                    }
                },
                // The connection dropped (and sqlx reconnected): notifications may be lost.
                Ok(None) => {
                    proxy::reload_routes(&state).await;
                    let _ = state.live.events.send(LiveEvent::Resync);
                    if let Some(r) = &reconciler {
                        r.wake.notify_one();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

impl Reconciler {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the leader lock, then reconciles until the lock's connection is lost.
    async fn lead(self: Arc<Self>) {
        loop {
            let mut conn = match PgConnection::connect_with(&self.state.db.connect_options()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "reconciler cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut conn).await.unwrap_or(false);
            if !got {
                let _ = conn.close().await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                continue;
            }
            tracing::info!(runtime = self.runtime.name(), "this replica leads the reconciler");
            if let Err(e) = self.take_over().await {
                tracing::error!(error = %e, "taking over failed");
            }
            let mut last_metrics = Instant::now();
            let mut last_metering = Instant::now();
            let reporting = Arc::new(std::sync::atomic::AtomicBool::new(false));
            loop {
                if let Err(e) = self.tick().await {
                    tracing::warn!(error = %e, "reconcile step failed");
                }
                if let Err(e) = self.run_due_crons().await {
                    tracing::warn!(error = %e, "running cron schedules failed");
                }
                if last_metrics.elapsed() >= METRICS_EVERY {
                    last_metrics = Instant::now();
                    self.sample_metrics().await;
                }
                if last_metering.elapsed() >= METERING_EVERY {
                    last_metering = Instant::now();
                    if let Err(e) = crate::metering::record_runtime_minutes(&self.state.db).await {
                        tracing::warn!(error = %e, "metering CPU and memory failed");
                    }
                    let volumes = self.runtime.volume_sizes().await;
                    if let Err(e) = crate::metering::record_volumes(&self.state.db, &volumes).await {
                        tracing::warn!(error = %e, "metering volumes failed");
                    }
                    if let Err(e) = app::billing::limits::enforce_all(&self.state).await {
                        tracing::warn!(error = %e, "applying usage limits failed");
                    }
                    if let Err(e) = app::billing::subscription::enforce_grace(&self.state, Utc::now()).await {
                        tracing::warn!(error = %e, "stopping accounts with overdue payments failed");
                    }
                    if self.state.payments.is_some() {
                        // Stripe invoices; the usage it bills is reported as meter events, in a
                        // task of its own (a slow Stripe must not hold deploys up), one at a time.
                        spawn_usage_report(self.state.clone(), reporting.clone());
                    } else {
                        match app::billing::ledger::issue_due(&self.state.db, Utc::now()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(invoices = n, "invoices of the period that ended issued"),
                            Err(e) => tracing::warn!(error = %e, "issuing invoices failed"),
                        }
                    }
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(TICK) => {}
                }
                if sqlx::query("SELECT 1").execute(&mut conn).await.is_err() {
                    tracing::error!("lost the reconciler lock's connection: stopping this replica's instances");
                    self.stop_everything().await;
                    break;
                }
            }
        }
    }

    /// Stops every instance this replica runs (shutdown, or leadership lost).
    pub async fn stop_everything(&self) {
        let all: Vec<Uuid> = self.inner().supervised.keys().copied().collect();
        for token in self.inner().in_flight.values() {
            token.cancel();
        }
        futures_util::future::join_all(all.into_iter().map(|d| self.stop_deployment(d))).await;
    }

    async fn take_over(&self) -> anyhow::Result<()> {
        let cleaned = self.runtime.recover().await?;
        if cleaned > 0 {
            tracing::warn!(processes = cleaned, "stopped processes left by an earlier run");
        }
        let db = &self.state.db;
        sqlx::query("UPDATE instances SET state = 'stopped', updated_at = now() WHERE state <> 'stopped'").execute(db).await?;
        let in_flight: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM deployments WHERE status IN ('building', 'deploying')").fetch_all(db).await?;
        for id in in_flight {
            deployments::transition(db, id, &[Status::Building, Status::Deploying], Status::Queued, "Roundhouse restarted during this deployment; starting it again", None)
                .await?;
        }
        proxy::reload_routes(&self.state).await;
        notify_routes(&self.state).await;
        Ok(())
    }

    async fn tick(self: &Arc<Self>) -> anyhow::Result<()> {
        let db = &self.state.db;
        let (known, in_flight): (Vec<Uuid>, HashSet<Uuid>) = {
            let inner = self.inner();
            (inner.supervised.keys().chain(inner.in_flight.keys()).copied().collect(), inner.in_flight.keys().copied().collect())
        };
        let rows: Vec<(Uuid, Uuid, String, String, Option<chrono::DateTime<Utc>>, Uuid)> = sqlx::query_as(
            "SELECT d.id, s.environment_id, s.name, d.status, d.deadline, d.service_id
             FROM deployments d JOIN services s ON s.id = d.service_id
             WHERE d.status IN ('queued', 'building', 'deploying', 'running') OR d.id = ANY($1)
             ORDER BY d.created_at",
        )
        .bind(&known)
        .fetch_all(db)
        .await?;
        let status: HashMap<Uuid, Status> = rows.iter().map(|r| (r.0, Status::parse(&r.3).unwrap_or(Status::Failed))).collect();

        // Pipelines of deployments the user cancelled.
        for (id, token) in self.inner().in_flight.iter() {
            if status.get(id).is_none_or(|s| s.is_final()) {
                token.cancel();
            }
        }
        // Instances of deployments that should not run any more.
        let supervised: Vec<Uuid> = self.inner().supervised.keys().copied().collect();
        for id in supervised {
            if !in_flight.contains(&id) && status.get(&id).is_none_or(|s| s.is_final()) {
                let this = self.clone();
                tokio::spawn(async move { this.stop_deployment(id).await });
            }
        }
        // Work in progress in other environments' services must not wait for each other, but a
        // service waits for the services it needs (`waits.rs`).
        let mut waits: HashMap<Uuid, Waits> = HashMap::new();
        // One deployment of a service at a time: the next one waits for the one in flight.
        let mut services_in_flight: HashSet<Uuid> = rows.iter().filter(|r| in_flight.contains(&r.0)).map(|r| r.5).collect();
        for (id, env_id, name, st, deadline, service_id) in &rows {
            let st = Status::parse(st).unwrap_or(Status::Failed);
            let running_here = self.inner().supervised.contains_key(id);
            if in_flight.contains(id) {
                continue;
            }
            match st {
                Status::Queued => {
                    if !waits.contains_key(env_id) {
                        let loaded = self.waits(*env_id).await.unwrap_or_else(|e| {
                            tracing::warn!(environment_id = %env_id, error = %e, "reading what services wait for");
                            Waits::default()
                        });
                        waits.insert(*env_id, loaded);
                    }
                    match waits[env_id].gate(name) {
                        Gate::Wait => {}
                        Gate::Go => {
                            if services_in_flight.insert(*service_id) {
                                self.start_pipeline(*id, Mode::Deploy);
                            }
                        }
                        Gate::Fail(reason) => match deployments::transition(db, *id, &[Status::Queued], Status::Failed, &reason, None).await {
                            Ok(true) => self.sink(*id, Default::default()).system(&format!("Failed: {reason}")).await,
                            Ok(false) => {}
                            // One deployment's trouble never stops the tick for everyone else.
                            Err(e) => tracing::warn!(deployment_id = %id, error = %e, "failing a deployment whose dependency failed"),
                        },
                    }
                }
                Status::Running if !running_here => self.start_pipeline(*id, Mode::Relaunch),
                Status::Building | Status::Deploying if deadline.is_some_and(|d| d < Utc::now()) => {
                    deployments::transition(db, *id, &[st], Status::Failed, "Its deadline passed with no progress", None).await?;
                }
                _ => {}
            }
        }
        self.ensure_forwarders().await;
        Ok(())
    }

    /// What the services of one environment wait for, and where those stand.
    async fn waits(&self, env_id: Uuid) -> anyhow::Result<Waits> {
        let env = environment::load(&self.state.db, &self.state.secrets, &self.state.config, env_id).await?;
        Waits::load(&self.state.db, &env.env, env_id).await
    }

    fn start_pipeline(self: &Arc<Self>, id: Uuid, mode: Mode) {
        let token = CancellationToken::new();
        self.inner().in_flight.insert(id, token.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let relaunch = matches!(mode, Mode::Relaunch);
            let result = this.clone().pipeline(id, &token, relaunch).await;
            if let Err(reason) = result {
                let db = &this.state.db;
                tracing::info!(deployment_id = %id, %reason, "deployment did not succeed");
                this.stop_deployment(id).await;
                let moved = if relaunch {
                    deployments::transition(db, id, &[Status::Running], Status::Crashed, &reason, None).await
                } else {
                    deployments::transition(db, id, &[Status::Queued, Status::Building, Status::Deploying], Status::Failed, &reason, None).await
                };
                if moved.unwrap_or(false) {
                    this.sink(id, Default::default()).system(&format!("Failed: {reason}")).await;
                }
            }
            this.inner().in_flight.remove(&id);
            this.wake.notify_one();
        });
    }

    fn sink(&self, id: Uuid, redactor: Arc<Redactor>) -> LogSink {
        LogSink::new(self.logs.clone(), id, redactor)
    }

    async fn pipeline(self: Arc<Self>, id: Uuid, cancel: &CancellationToken, relaunch: bool) -> Result<(), String> {
        let db = &self.state.db;
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(deployment_id = %id, error = %e, "pipeline step failed");
            "An internal error stopped this deployment.".to_string()
        };
        let (service_id, spec, artifact, number, env_id): (Uuid, serde_json::Value, Option<String>, i32, Uuid) = sqlx::query_as(
            "SELECT d.service_id, d.spec, d.artifact, d.number, s.environment_id FROM deployments d
             JOIN services s ON s.id = d.service_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_one(db)
        .await
        .map_err(|e| internal(&e))?;
        let spec: Service = serde_json::from_value(spec).map_err(|e| internal(&e))?;
        self.still_admitted(&spec).await?;
        let env = environment::load(db, &self.state.secrets, &self.state.config, env_id).await.map_err(|e| internal(&e))?;
        let sink = self.sink(id, Arc::new(Redactor::new(&env.secrets)));
        let vars = env.resolve(service_id).map_err(|e| format!("Variables do not resolve: {e}"))?;
        let private_port = env.service(service_id).map(|s| s.private_port).unwrap_or(0);
        let peers = Peer::of(&env);
        let build_timeout = Duration::from_secs(self.state.config.build_timeout_secs);

        let artifact = if relaunch {
            sink.system("Roundhouse restarted: starting this deployment's instances again").await;
            artifact.filter(|a| self.runtime.has_artifact(a)).ok_or("The build of this deployment is gone: deploy again.")?
        } else {
            let reuse = artifact.filter(|a| self.runtime.has_artifact(a));
            // A build takes a slot of the platform's build pool; waiting for one is not building.
            let _slot = match reuse {
                Some(_) => None,
                None => {
                    let slot = match self.builds.clone().try_acquire_owned() {
                        Ok(slot) => slot,
                        Err(_) => {
                            sink.system("Waiting for a build slot: the platform's builders are busy").await;
                            tokio::select! {
                                slot = self.builds.clone().acquire_owned() => slot.map_err(|e| internal(&e))?,
                                _ = cancel.cancelled() => return Ok(()),
                            }
                        }
                    };
                    Some(slot)
                }
            };
            let deadline = Utc::now() + chrono::Duration::from_std(build_timeout).unwrap_or_default();
            if !deployments::transition(db, id, &[Status::Queued], Status::Building, "Building", Some(deadline)).await.map_err(|e| internal(&e))? {
                return Ok(());
            }
            let artifact = match reuse {
                Some(a) => {
                    sink.system("Using the build of the deployment this one repeats").await;
                    a
                }
                None => {
                    let archive = match spec.source_kind {
                        SourceKind::Upload => Some(Arc::new(
                            app::services::upload::archive(db, service_id, &spec.source)
                                .await
                                .map_err(|_| "The uploaded archive of this deployment is gone: upload it again.".to_string())?,
                        )),
                        _ => None,
                    };
                    let job = BuildJob { deployment_id: id, spec: spec.clone(), env: vars.clone(), archive };
                    let built = tokio::time::timeout(build_timeout, self.runtime.build(job, sink.clone(), cancel.clone())).await;
                    let a = match built {
                        Ok(result) => result?,
                        Err(_) => {
                            cancel.cancel();
                            return Err(format!("The build did not finish within {}s.", build_timeout.as_secs()));
                        }
                    };
                    sqlx::query("UPDATE deployments SET artifact = $2 WHERE id = $1").bind(id).bind(&a).execute(db).await.map_err(|e| internal(&e))?;
                    a
                }
            };
            if cancel.is_cancelled() {
                return Ok(());
            }
            let deadline = Utc::now() + chrono::Duration::seconds(spec.healthcheck_timeout_secs as i64 + 60);
            if !deployments::transition(db, id, &[Status::Building], Status::Deploying, "Starting instances", Some(deadline))
                .await
                .map_err(|e| internal(&e))?
            {
                return Ok(());
            }
            artifact
        };

        // A database owns its data folder and port: the old one stops before the new one starts.
        if spec.source_kind == SourceKind::Database && !relaunch {
            for (old, _) in self.running_others(service_id, id).await.map_err(|e| internal(&e))? {
                deployments::transition(db, old, &[Status::Running], Status::Removed, &format!("Replaced by deployment #{number}"), None)
                    .await
                    .map_err(|e| internal(&e))?;
                self.stop_deployment(old).await;
            }
        }

        // A cron service runs on its schedule (`run_due_crons`), not as instances.
        if let Some(schedule) = spec.cron_schedule.clone() {
            self.inner().supervised.entry(id).or_default();
            let next = crate::cron::next(&schedule, Utc::now())
                .map(|t| format!("at {}", t.format("%Y-%m-%d %H:%M UTC")))
                .ok_or_else(|| format!("The schedule \"{schedule}\" cannot be read."))?;
            if relaunch {
                sink.system(&format!("Scheduled again: {schedule}, next run {next}")).await;
                return Ok(());
            }
            let reason = format!("Scheduled: {schedule}, next run {next}");
            if !deployments::transition(db, id, &[Status::Deploying], Status::Running, &reason, None).await.map_err(|e| internal(&e))? {
                return Ok(());
            }
            sink.system(&format!("Deployment #{number} is scheduled: {schedule}, next run {next}")).await;
            for (old, _) in self.running_others(service_id, id).await.map_err(|e| internal(&e))? {
                deployments::transition(db, old, &[Status::Running], Status::Removed, &format!("Replaced by deployment #{number}"), None)
                    .await
                    .map_err(|e| internal(&e))?;
                self.stop_deployment(old).await;
            }
            return Ok(());
        }

        // Migrations and the like: once, before any instance of this deployment takes traffic.
        if let (Some(command), false, false) = (spec.pre_deploy_command.clone(), relaunch, spec.source_kind == SourceKind::Database) {
            let step = PreDeploy { id, spec: &spec, artifact: &artifact, vars: &vars, private_port, peers: &peers, command: &command, sink: &sink };
            if !self.pre_deploy(step, cancel, build_timeout).await? {
                return Ok(());
            }
        }

        let replicas = if spec.source_kind == SourceKind::Database { 1 } else { spec.replicas.max(1) };
        let mut started = Vec::new();
        for replica in 0..replicas {
            let instance_id = Uuid::new_v4();
            sqlx::query("INSERT INTO instances (id, deployment_id, replica, state) VALUES ($1, $2, $3, 'starting')")
                .bind(instance_id)
                .bind(id)
                .bind(replica)
                .execute(db)
                .await
                .map_err(|e| internal(&e))?;
            self.inner().supervised.entry(id).or_default().push(Supervised { instance_id, service_id });
            let spec = InstanceSpec {
                instance_id,
                deployment_id: id,
                replica,
                spec: spec.clone(),
                artifact: artifact.clone(),
                env: vars.clone(),
                private_port,
                command: None,
                peers: peers.clone(),
            };
            let endpoint = self.runtime.start(spec, sink.clone(), self.events.clone()).await?;
            sqlx::query("UPDATE instances SET port = $2, network = $3 WHERE id = $1")
                .bind(instance_id)
                .bind(endpoint.addr.port() as i32)
                .bind(&endpoint.network)
                .execute(db)
                .await
                .map_err(|e| internal(&e))?;
            sink.system(&format!("Instance {replica} started on port {}", endpoint.addr.port())).await;
            started.push(instance_id);
        }
        let deadline = Instant::now() + Duration::from_secs(spec.healthcheck_timeout_secs.max(1) as u64);
        for &instance in &started {
            tokio::select! {
                r = self.runtime.ready(instance, deadline) => r?,
                _ = cancel.cancelled() => return Ok(()),
            }
        }
        sqlx::query("UPDATE instances SET state = 'healthy', updated_at = now() WHERE id = ANY($1) AND state = 'starting'")
            .bind(&started)
            .execute(db)
            .await
            .map_err(|e| internal(&e))?;
        let what = if spec.healthcheck_path.is_some() { "healthy" } else { "ready" };
        if relaunch {
            sink.system(&format!("{} instance(s) {what} again", started.len())).await;
        } else {
            let reason = format!("{} instance(s) {what}", started.len());
            if !deployments::transition(db, id, &[Status::Deploying], Status::Running, &reason, None).await.map_err(|e| internal(&e))? {
                return Ok(());
            }
            sink.system(&format!("Deployment #{number} is live: {reason}")).await;
        }
        proxy::reload_routes(&self.state).await;
        self.ensure_forwarders().await;
        notify_routes(&self.state).await;
        if !relaunch {
            // Traffic now reaches the new instances: the old deployment can go.
            for (old, _) in self.running_others(service_id, id).await.map_err(|e| internal(&e))? {
                deployments::transition(db, old, &[Status::Running], Status::Removed, &format!("Replaced by deployment #{number}"), None)
                    .await
                    .map_err(|e| internal(&e))?;
                self.stop_deployment(old).await;
            }
        }
        Ok(())
    }

    /// Runs a deployment's pre-deploy command once in the service's sandbox and waits for it:
    /// `Ok(true)` when it exited 0, `Ok(false)` when the deployment was cancelled meanwhile.
    async fn pre_deploy(&self, step: PreDeploy<'_>, cancel: &CancellationToken, limit: Duration) -> Result<bool, String> {
        let PreDeploy { id, spec, artifact, vars, private_port, peers, command, sink } = step;
        let mut run = spec.clone();
        run.restart_policy = app::services::RestartPolicy::Never;
        let instance_id = Uuid::new_v4();
        let (tx, rx) = tokio::sync::oneshot::channel();
        sqlx::query("INSERT INTO instances (id, deployment_id, replica, state) VALUES ($1, $2, 0, 'starting')")
            .bind(instance_id)
            .bind(id)
            .execute(&self.state.db)
            .await
            .map_err(|e| e.to_string())?;
        {
            let mut inner = self.inner();
            inner.exits.insert(instance_id, tx);
            inner.supervised.entry(id).or_default().push(Supervised { instance_id, service_id: spec.id });
        }
        let forget = |this: &Self| {
            let mut inner = this.inner();
            inner.exits.remove(&instance_id);
            if let Some(list) = inner.supervised.get_mut(&id) {
                list.retain(|i| i.instance_id != instance_id);
            }
        };
        sink.system(&format!("Running the pre-deploy command: {command}")).await;
        let one_off = InstanceSpec {
            instance_id,
            deployment_id: id,
            replica: 0,
            spec: run,
            artifact: artifact.to_string(),
            env: vars.clone(),
            private_port,
            command: Some(command.to_string()),
            peers: peers.to_vec(),
        };
        if let Err(e) = self.runtime.start(one_off, sink.clone(), self.events.clone()).await {
            forget(self);
            return Err(format!("The pre-deploy command could not start: {e}"));
        }
        let code = tokio::select! {
            code = tokio::time::timeout(limit, rx) => code,
            _ = cancel.cancelled() => {
                self.runtime.stop(instance_id).await;
                forget(self);
                return Ok(false);
            }
        };
        forget(self);
        match code {
            Ok(Ok(Some(0))) => {
                sink.system("The pre-deploy command succeeded").await;
                Ok(true)
            }
            Ok(Ok(Some(c))) => Err(format!("The pre-deploy command exited with code {c}.")),
            Ok(_) => Err("The pre-deploy command was stopped before it finished.".into()),
            Err(_) => {
                self.runtime.stop(instance_id).await;
                Err(format!("The pre-deploy command did not finish within {}s.", limit.as_secs()))
            }
        }
    }

    /// Starts the runs of cron deployments whose schedule came due since the last check.
    async fn run_due_crons(self: &Arc<Self>) -> anyhow::Result<()> {
        let now = Utc::now();
        let since = {
            let mut inner = self.inner();
            let since = inner.cron_checked.unwrap_or(now);
            inner.cron_checked = Some(now);
            since
        };
        if since >= now {
            return Ok(());
        }
        let db = &self.state.db;
        let rows: Vec<(Uuid, serde_json::Value, Option<String>, Uuid)> = sqlx::query_as(
            "SELECT d.id, d.spec, d.artifact, s.environment_id FROM deployments d JOIN services s ON s.id = d.service_id
             WHERE d.status = 'running' AND d.spec->>'cron_schedule' IS NOT NULL",
        )
        .fetch_all(db)
        .await?;
        for (id, spec, artifact, env_id) in rows {
            let Ok(spec) = serde_json::from_value::<Service>(spec) else { continue };
            let Some(at) = spec.cron_schedule.as_deref().and_then(|c| crate::cron::due(c, since, now)) else { continue };
            // Written first: whichever replica leads, this time runs once. One deployment's
            // trouble never costs the others their run.
            let claimed = sqlx::query("INSERT INTO cron_runs (deployment_id, scheduled_for) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(at)
                .execute(db)
                .await;
            match claimed {
                Ok(r) if r.rows_affected() == 1 => {}
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(deployment_id = %id, error = %e, "claiming a cron run failed");
                    continue;
                }
            }
            let when = at.format("%H:%M UTC").to_string();
            let busy = self.inner().supervised.get(&id).is_some_and(|runs| !runs.is_empty());
            if busy {
                let _ = sqlx::query("UPDATE cron_runs SET finished_at = now(), outcome = 'skipped: the previous run was still going' WHERE deployment_id = $1 AND scheduled_for = $2")
                    .bind(id)
                    .bind(at)
                    .execute(db)
                    .await;
                self.sink(id, Default::default()).system(&format!("Skipped the run of {when}: the previous run is still going")).await;
                continue;
            }
            // Marked as going now (so the next check sees it busy); started off the leader's
            // loop, so many schedules at one minute never hold up reconciling.
            let placeholder = Uuid::new_v4();
            self.inner().supervised.entry(id).or_default().push(Supervised { instance_id: placeholder, service_id: spec.id });
            let this = self.clone();
            tokio::spawn(async move {
                let started = this.start_cron_run(id, spec, artifact, env_id, at).await;
                if let Some(list) = this.inner().supervised.get_mut(&id) {
                    list.retain(|i| i.instance_id != placeholder);
                }
                if let Err(why) = started {
                    let _ = sqlx::query("UPDATE cron_runs SET finished_at = now(), outcome = $3 WHERE deployment_id = $1 AND scheduled_for = $2")
                        .bind(id)
                        .bind(at)
                        .bind(format!("not started: {why}"))
                        .execute(&this.state.db)
                        .await;
                    this.sink(id, Default::default()).system(&format!("The run of {when} could not start: {why}")).await;
                }
            });
        }
        Ok(())
    }

    /// Starts one run of a cron deployment in the service's sandbox.
    async fn start_cron_run(&self, id: Uuid, mut spec: Service, artifact: Option<String>, env_id: Uuid, at: chrono::DateTime<Utc>) -> Result<(), String> {
        let db = &self.state.db;
        let env = environment::load(db, &self.state.secrets, &self.state.config, env_id).await.map_err(|e| e.to_string())?;
        let sink = self.sink(id, Arc::new(Redactor::new(&env.secrets)));
        let vars = env.resolve(spec.id).map_err(|e| format!("variables do not resolve: {e}"))?;
        let artifact = artifact.filter(|a| self.runtime.has_artifact(a)).ok_or("the build of this deployment is gone: deploy again")?;
        self.still_admitted(&spec).await?;
        // A run ends when its command does; it is never restarted.
        spec.restart_policy = app::services::RestartPolicy::Never;
        let instance_id = Uuid::new_v4();
        sqlx::query("INSERT INTO instances (id, deployment_id, replica, state) VALUES ($1, $2, 0, 'starting')")
            .bind(instance_id)
            .bind(id)
            .execute(db)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("UPDATE cron_runs SET instance_id = $3 WHERE deployment_id = $1 AND scheduled_for = $2")
            .bind(id)
            .bind(at)
            .bind(instance_id)
            .execute(db)
            .await
            .map_err(|e| e.to_string())?;
        {
            let mut inner = self.inner();
            inner.supervised.entry(id).or_default().push(Supervised { instance_id, service_id: spec.id });
            inner.cron_runs.insert(instance_id, (id, at));
        }
        sink.system(&format!("Run of {} started", at.format("%H:%M UTC"))).await;
        let private_port = env.service(spec.id).map(|s| s.private_port).unwrap_or(0);
        let run = InstanceSpec { instance_id, deployment_id: id, replica: 0, spec, artifact, env: vars, private_port, command: None, peers: Peer::of(&env) };
        if let Err(e) = self.runtime.start(run, sink, self.events.clone()).await {
            let mut inner = self.inner();
            inner.cron_runs.remove(&instance_id);
            if let Some(list) = inner.supervised.get_mut(&id) {
                list.retain(|i| i.instance_id != instance_id);
            }
            return Err(e);
        }
        Ok(())
    }

    async fn running_others(&self, service_id: Uuid, except: Uuid) -> sqlx::Result<Vec<(Uuid, i32)>> {
        sqlx::query_as("SELECT id, number FROM deployments WHERE service_id = $1 AND status = 'running' AND id <> $2")
            .bind(service_id)
            .bind(except)
            .fetch_all(&self.state.db)
            .await
    }

    async fn stop_deployment(&self, id: Uuid) {
        let instances = self.inner().supervised.remove(&id).unwrap_or_default();
        if instances.is_empty() {
            return;
        }
        // Out of the routes first, then stopped: no request is sent to a dying process.
        let _ = sqlx::query("UPDATE instances SET state = 'stopped', updated_at = now() WHERE deployment_id = $1").bind(id).execute(&self.state.db).await;
        proxy::reload_routes(&self.state).await;
        notify_routes(&self.state).await;
        futures_util::future::join_all(instances.iter().map(|i| self.runtime.stop(i.instance_id))).await;
    }

    async fn handle_instance_events(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<InstanceEvent>) {
        while let Some(event) = rx.recv().await {
            let db = &self.state.db;
            let result: sqlx::Result<()> = async {
                match event {
                    InstanceEvent::Started { instance_id, pid } => {
                        let previous: Option<String> = sqlx::query_scalar(
                            "UPDATE instances i SET pid = $2, updated_at = now() FROM instances old
                             WHERE i.id = $1 AND old.id = i.id RETURNING old.state",
                        )
                        .bind(instance_id)
                        .bind(pid as i32)
                        .fetch_optional(db)
                        .await?;
                        if previous.as_deref() == Some("restarting") {
                            // A restarted instance takes traffic again once it is ready.
                            let this = self.clone();
                            tokio::spawn(async move {
                                if this.runtime.ready(instance_id, Instant::now() + Duration::from_secs(120)).await.is_ok() {
                                    let _ = sqlx::query("UPDATE instances SET state = 'healthy', updated_at = now() WHERE id = $1 AND state = 'restarting'")
                                        .bind(instance_id)
                                        .execute(&this.state.db)
                                        .await;
                                    proxy::reload_routes(&this.state).await;
                                    notify_routes(&this.state).await;
                                }
                            });
                        }
                    }
                    InstanceEvent::Restarting { instance_id, exit_code, .. } => {
                        sqlx::query("UPDATE instances SET state = 'restarting', restarts = restarts + 1, exit_code = $2, updated_at = now() WHERE id = $1")
                            .bind(instance_id)
                            .bind(exit_code)
                            .execute(db)
                            .await?;
                        proxy::reload_routes(&self.state).await;
                        notify_routes(&self.state).await;
                    }
                    InstanceEvent::Exited { instance_id, exit_code, .. } if self.inner().exits.contains_key(&instance_id) => {
                        sqlx::query("UPDATE instances SET state = 'stopped', exit_code = $2, updated_at = now() WHERE id = $1")
                            .bind(instance_id)
                            .bind(exit_code)
                            .execute(db)
                            .await?;
                        if let Some(waiting) = self.inner().exits.remove(&instance_id) {
                            let _ = waiting.send(exit_code);
                        }
                    }
                    InstanceEvent::Exited { instance_id, exit_code, reason, stopped } if self.inner().cron_runs.contains_key(&instance_id) => {
                        let Some((deployment, scheduled_for)) = self.inner().cron_runs.remove(&instance_id) else { return Ok(()) };
                        if let Some(list) = self.inner().supervised.get_mut(&deployment) {
                            list.retain(|i| i.instance_id != instance_id);
                        }
                        sqlx::query("UPDATE instances SET state = 'stopped', exit_code = $2, updated_at = now() WHERE id = $1")
                            .bind(instance_id)
                            .bind(exit_code)
                            .execute(db)
                            .await?;
                        let outcome = match (exit_code, stopped) {
                            (_, true) => "stopped".to_string(),
                            (Some(0), _) => "succeeded".to_string(),
                            _ => format!("failed: {reason}"),
                        };
                        sqlx::query("UPDATE cron_runs SET finished_at = now(), exit_code = $3, outcome = $4 WHERE deployment_id = $1 AND scheduled_for = $2")
                            .bind(deployment)
                            .bind(scheduled_for)
                            .bind(exit_code)
                            .bind(&outcome)
                            .execute(db)
                            .await?;
                        let code = exit_code.map_or("none".to_string(), |c| c.to_string());
                        self.sink(deployment, Default::default())
                            .system(&format!("Run of {} {outcome} (exit code {code})", scheduled_for.format("%H:%M UTC")))
                            .await;
                    }
                    InstanceEvent::Exited { instance_id, exit_code, reason, stopped } => {
                        let deployment: Option<Uuid> = sqlx::query_scalar(
                            "UPDATE instances SET state = 'stopped', exit_code = $2, updated_at = now() WHERE id = $1 RETURNING deployment_id",
                        )
                        .bind(instance_id)
                        .bind(exit_code)
                        .fetch_optional(db)
                        .await?;
                        if let (Some(d), false) = (deployment, stopped) {
                            let live: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE deployment_id = $1 AND state <> 'stopped'")
                                .bind(d)
                                .fetch_one(db)
                                .await?;
                            if live == 0 && deployments::transition(db, d, &[Status::Running], Status::Crashed, &reason, None).await.unwrap_or(false) {
                                self.stop_deployment(d).await;
                            }
                        }
                        proxy::reload_routes(&self.state).await;
                        notify_routes(&self.state).await;
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "recording an instance event failed");
            }
        }
    }

    async fn sample_metrics(&self) {
        let usage = self.runtime.usage();
        if usage.is_empty() {
            return;
        }
        let service_of: HashMap<Uuid, Uuid> =
            self.inner().supervised.values().flatten().map(|s| (s.instance_id, s.service_id)).collect();
        let mut per_service: HashMap<Uuid, (f32, i64)> = HashMap::new();
        for (instance, u) in usage {
            if let Some(s) = service_of.get(&instance) {
                let e = per_service.entry(*s).or_default();
                e.0 += u.cpu_percent;
                e.1 += u.memory_bytes as i64;
            }
        }
        let ids: Vec<Uuid> = per_service.keys().copied().collect();
        let cpu: Vec<f32> = ids.iter().map(|i| per_service[i].0).collect();
        let mem: Vec<i64> = ids.iter().map(|i| per_service[i].1).collect();
        let r = sqlx::query(
            "INSERT INTO service_metrics (service_id, cpu_percent, memory_bytes)
             SELECT * FROM UNNEST($1::uuid[], $2::real[], $3::bigint[]) AS m(s, c, b) WHERE EXISTS (SELECT 1 FROM services WHERE id = m.s)",
        )
        .bind(&ids)
        .bind(&cpu)
        .bind(&mem)
        .execute(&self.state.db)
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "storing metrics failed");
        }
        let _ = sqlx::query("DELETE FROM service_metrics WHERE at < now() - interval '7 days'").execute(&self.state.db).await;
    }

    /// Listens, in each environment's network, wherever a running service answers the others
    /// (`Runtime::private_addrs`: its private port, and its bare name with the ports it is
    /// known by), forwarding to its healthy instances; stops listening for services that no
    /// longer run (so their network can go).
    async fn ensure_forwarders(&self) {
        // One at a time (the tick and pipelines going live both call it): two would bind for
        // the same service and one's listeners would be lost.
        let _one = self.forwarding.lock().await;
        let rows: Vec<(Uuid, Uuid, i32, String, String, Option<i32>)> = match sqlx::query_as(
            "SELECT s.id, s.environment_id, s.private_port, s.source_kind, s.source, s.port FROM services s WHERE s.private_port IS NOT NULL
             AND EXISTS (SELECT 1 FROM deployments d WHERE d.service_id = s.id AND d.status = 'running')",
        )
        .fetch_all(&self.state.db)
        .await
        {
            Ok(r) => r,
            Err(_) => return,
        };
        let running: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
        {
            let mut inner = self.inner();
            inner.forwarders.retain(|service, listeners| {
                if !running.contains(service) {
                    listeners.values().for_each(|h| h.abort());
                    return false;
                }
                // A listener that ended is made again below.
                listeners.retain(|_, h| !h.is_finished());
                true
            });
            inner.private_slots.retain(|service, _| running.contains(service));
        }
        for (service_id, environment_id, private_port, kind, source, port) in rows {
            let database = kind == SourceKind::Database.as_str();
            let known: Vec<u16> = if database {
                app::services::engine_port(&source).into_iter().collect()
            } else {
                // `http://api/` and the port the service says it listens on.
                std::iter::once(80).chain(port.map(|p| p as u16)).collect()
            };
            let missing: Vec<std::net::SocketAddrV4> = {
                let inner = self.inner();
                let have = inner.forwarders.get(&service_id);
                self.runtime.private_addrs(private_port as u16, &known, database).into_iter().filter(|a| !have.is_some_and(|h| h.contains_key(a))).collect()
            };
            if missing.is_empty() {
                continue;
            }
            let slots = self
                .inner()
                .private_slots
                .entry(service_id)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(proxy::PRIVATE_CONNECTIONS)))
                .clone();
            for addr in missing {
                // An address another process holds (a tenant's own, in its own network) is
                // tried again on the next pass.
                match self.runtime.private_listener(environment_id, addr).await {
                    Ok(listener) => {
                        let handle = tokio::spawn(proxy::forward_private(self.state.clone(), service_id, listener, slots.clone()));
                        if let Some(old) = self.inner().forwarders.entry(service_id).or_default().insert(addr, handle) {
                            old.abort();
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, %addr, %service_id, "cannot listen where the service answers privately"),
                }
            }
        }
    }

    /// A deployment of a project whose owner may no longer deploy (the platform went to
    /// single-user mode, or lost its sandbox) does not run.
    async fn still_admitted(&self, spec: &Service) -> Result<(), String> {
        match self.state.admission() {
            Admission::Everyone => Ok(()),
            Admission::Nobody(why) => Err(format!("This machine cannot sandbox what runs: {why}.")),
            Admission::AdminsOnly => {
                let admin: bool = sqlx::query_scalar("SELECT u.role = 'admin' FROM projects p JOIN users u ON u.id = p.owner_id WHERE p.id = $1")
                    .bind(spec.project_id)
                    .fetch_optional(&self.state.db)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(false);
                if admin {
                    Ok(())
                } else {
                    Err("This platform runs in single-user mode (ROUNDHOUSE_SANDBOX=off): only its admins' projects run.".into())
                }
            }
        }
    }
}

pub async fn notify_routes(state: &AppState) {
    let _ = sqlx::query("SELECT pg_notify($1, '')").bind(ROUTES_CHANNEL).execute(&state.db).await;
}

/// Reports usage to Stripe unless a report is still running; a round gets two minutes at most.
fn spawn_usage_report(state: AppState, running: Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    if running.swap(true, Ordering::SeqCst) {
        return;
    }
    tokio::spawn(async move {
        match tokio::time::timeout(std::time::Duration::from_secs(120), app::billing::meter::report_due(&state, Utc::now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(events = n, "usage reported to Stripe"),
            Ok(Err(e)) => tracing::warn!(error = %e, "reporting usage to Stripe failed"),
            Err(_) => tracing::warn!("reporting usage to Stripe took over two minutes; it goes on next round"),
        }
        running.store(false, Ordering::SeqCst);
    });
}
