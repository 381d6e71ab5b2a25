//! The reconciler: converges the runtime to the deployments Postgres asks for.
//!
//! One replica at a time leads, holding a Postgres advisory lock on a connection of its own;
//! if that connection dies, reconciling pauses and nothing is stopped. On becoming leader it
//! adopts what the runtime still runs and the desired state still wants (the runtime's
//! `adopt`, which also removes what an earlier process left), marks the other instances
//! stopped, queues in-flight deployments no pipeline of its own works on, and starts running
//! deployments left with no instance afresh — so after a crash at any moment there is no
//! orphan process and no duplicate instance, and a database outage restarts nothing.
//!
//! Every replica listens for status, log and route notifications and feeds them to its open
//! pages (`AppState::live`).

mod builds;
mod crons;
mod desired;
mod forwarders;
mod instances;
mod leader;
pub mod leftovers;
mod pipeline;
mod sampling;

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
/// How often volumes are measured (a walk of every volume's files).
const VOLUMES_EVERY: Duration = Duration::from_secs(60);
/// How often builds no deployment wants are removed (`builds.rs`).
const BUILDS_EVERY: Duration = Duration::from_secs(600);
/// How long instances out of the routes keep serving what was already sent to them.
const DRAIN: Duration = Duration::from_secs(1);

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
    /// Instances found running at the last take-over that their deployment's relaunch takes
    /// back (by starting them by their own id), with their deployment. What a relaunch does not
    /// take back is stopped (`drop_unclaimed`).
    adoptable: HashMap<Uuid, Uuid>,
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
    /// What deleted services and environments left in the runtime (`leftovers.rs`).
    leftovers: leftovers::Leftovers,
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
            leftovers: leftovers::Leftovers::default(),
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
                            let notice = app::infra::live::StatusNotice { deployment_id: change.deployment_id, project_id: change.project_id, json: n.payload().into() };
                            let _ = state.live.events.send(LiveEvent::Status(notice));
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

    /// Lets go of everything this replica runs, leaving it running (see `Runtime::release`):
    /// at shutdown, or when another replica leads. Pipelines at work are cancelled (the next
    /// leader queues their deployments again).
    pub async fn release_everything(&self) {
        let pipelines: Vec<CancellationToken> = self.inner().in_flight.values().cloned().collect();
        for token in pipelines {
            token.cancel();
        }
        {
            let mut inner = self.inner();
            inner.supervised.clear();
            inner.adoptable.clear();
        }
        self.runtime.release().await;
    }

    /// Stops the found instances of `deployment` (of every deployment that no longer runs,
    /// with `None`) that no relaunch took back: a second one for a replica, a cron run caught
    /// mid-way, one whose relaunch failed. Nothing runs unsupervised.
    pub(super) async fn drop_unclaimed(&self, deployment: Option<Uuid>, running: &HashSet<Uuid>) {
        let unclaimed: Vec<Uuid> = {
            let mut inner = self.inner();
            let ids: Vec<Uuid> = inner
                .adoptable
                .iter()
                .filter(|(_, d)| deployment.map_or(!running.contains(*d), |only| **d == only))
                .map(|(i, _)| *i)
                .collect();
            for id in &ids {
                inner.adoptable.remove(id);
            }
            ids
        };
        if unclaimed.is_empty() {
            return;
        }
        let _ = sqlx::query("UPDATE instances SET state = 'stopped', updated_at = now() WHERE id = ANY($1)").bind(&unclaimed).execute(&self.state.db).await;
        futures_util::future::join_all(unclaimed.iter().map(|id| self.runtime.stop(*id))).await;
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
        // Out of the routes first, then stopped: no request is sent to a dying process. Only
        // the rows of the instances this replica runs: after a leadership change another
        // replica may run instances of the same deployment.
        let ids: Vec<Uuid> = instances.iter().map(|i| i.instance_id).collect();
        let _ = sqlx::query("UPDATE instances SET state = 'stopped', updated_at = now() WHERE id = ANY($1)").bind(&ids).execute(&self.state.db).await;
        proxy::reload_routes(&self.state).await;
        notify_routes(&self.state).await;
        // Requests already on their way to these instances finish, and the other replicas
        // hear the new routes, before the processes are told to stop.
        tokio::time::sleep(DRAIN).await;
        futures_util::future::join_all(instances.iter().map(|i| self.runtime.stop(i.instance_id))).await;
    }

    /// A deployment of a project whose owner may no longer deploy (the platform went to
    /// single-user mode, or lost its sandbox) does not run.
    async fn still_admitted(&self, spec: &Service) -> Result<(), String> {
        // A suspension or a billing hold that came after the deployment was queued stops it
        // here: before its build, before it takes traffic, before a cron run.
        let owner: Option<Uuid> = sqlx::query_scalar("SELECT owner_id FROM projects WHERE id = $1").bind(spec.project_id).fetch_optional(&self.state.db).await.ok().flatten();
        if let Some(owner) = owner {
            if let Err(e) = app::billing::holds::admit(&self.state.db, owner).await {
                return Err(e.to_string());
            }
        }
        match self.state.admission() {
            Admission::Everyone => Ok(()),
            Admission::Nobody(why) => {
                tracing::warn!(%why, "a deployment was stopped: the sandbox cannot be set up");
                Err("This machine cannot sandbox what runs: an administrator must fix it.".into())
            }
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
