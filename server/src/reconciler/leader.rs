//! Leadership: one replica reconciles, holding a Postgres advisory lock on a connection of its
//! own. On taking over it adopts what runs and requeues what was in flight; while leading it
//! ticks, runs due crons, samples metrics, meters usage and prunes old builds. Losing the lock's connection
//! pauses reconciling and stops nothing: the services keep serving while Postgres is away, and
//! the replica that leads next — this one, once Postgres is back — adopts them.

use super::*;

impl Reconciler {
    /// Waits for the leader lock, then reconciles until the lock's connection is lost; then
    /// waits for it again.
    pub(super) async fn lead(self: Arc<Self>) {
        // The server process of this replica's last lock connection: a session the server has
        // not yet noticed is dead may still hold the lock.
        let mut last_session: Option<i32> = None;
        // Names this process's lock sessions, so that a session of its own that lingers on
        // the server is told from another replica's that got the same pid after a restart.
        let name = format!("roundhouse-leader-{}", Uuid::new_v4().simple());
        let options = (*self.state.db.connect_options()).clone().application_name(&name);
        loop {
            let mut conn = match PgConnection::connect_with(&options).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "reconciler cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut conn).await.unwrap_or(false);
            if !got {
                let retry = self.lock_is_held(&mut conn, &name, &mut last_session).await;
                let _ = conn.close().await;
                tokio::time::sleep(retry).await;
                continue;
            }
            last_session = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut conn).await.ok();
            tracing::info!(runtime = self.runtime.name(), "this replica leads the reconciler");
            if let Err(e) = self.take_over().await {
                // Leading on from a half-done take-over would leave deployments stalled: let
                // the lock go and take over afresh.
                tracing::error!(error = %e, "taking over failed; trying again");
                metrics::counter!("roundhouse_reconcile_errors_total", "step" => "take_over").increment(1);
                let _ = conn.close().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            let mut last_metrics = Instant::now();
            let mut last_metering = Instant::now();
            let mut last_builds = Instant::now();
            let pruning = Arc::new(std::sync::atomic::AtomicBool::new(false));
            // Volumes are walked once a minute: only a minute's first measure is recorded.
            let mut last_volumes: Option<Instant> = None;
            let reporting = Arc::new(std::sync::atomic::AtomicBool::new(false));
            loop {
                failed("tick", self.tick().await);
                failed("crons", self.run_due_crons().await);
                if last_metrics.elapsed() >= METRICS_EVERY {
                    last_metrics = Instant::now();
                    self.sample_metrics().await;
                }
                // Off the loop: removing a tenant's build may take a while.
                if last_builds.elapsed() >= BUILDS_EVERY && !pruning.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    last_builds = Instant::now();
                    let (this, pruning) = (self.clone(), pruning.clone());
                    tokio::spawn(async move {
                        failed("builds", this.prune_builds().await);
                        pruning.store(false, std::sync::atomic::Ordering::SeqCst);
                    });
                }
                if last_metering.elapsed() >= METERING_EVERY {
                    last_metering = Instant::now();
                    failed("metering", crate::metering::record_runtime_minutes(&self.state.db).await);
                    if last_volumes.is_none_or(|at| at.elapsed() >= VOLUMES_EVERY) {
                        last_volumes = Some(Instant::now());
                        let volumes = self.runtime.volume_sizes().await;
                        failed("metering", crate::metering::record_volumes(&self.state.db, &volumes).await);
                        failed("leftovers", self.leftovers.pass(&self.state.db, self.runtime.as_ref(), &volumes).await.map(|_| ()));
                    }
                    failed("limits", app::billing::limits::enforce_all(&self.state).await);
                    failed("grace", app::billing::subscription::enforce_grace(&self.state, Utc::now()).await);
                    if self.state.payments.is_some() {
                        // Stripe invoices; the usage it bills is reported as meter events, in a
                        // task of its own (a slow Stripe must not hold deploys up), one at a time.
                        spawn_usage_report(self.state.clone(), reporting.clone());
                    } else {
                        match app::billing::ledger::issue_due(&self.state.db, Utc::now()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(invoices = n, "invoices of the period that ended issued"),
                            Err(e) => failed("invoices", Err::<(), _>(e)),
                        }
                    }
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(TICK) => {}
                }
                if sqlx::query("SELECT 1").execute(&mut conn).await.is_err() {
                    metrics::counter!("roundhouse_leadership_lost_total").increment(1);
                    tracing::error!("lost the reconciler lock's connection: reconciling pauses, what runs keeps running");
                    break;
                }
            }
        }
    }

    /// Another session holds the lock. If it is this replica's own last session (dead, but
    /// not yet noticed by the server), it is ended so that this replica leads again at once.
    /// If another replica leads, this one lets go of what it runs (left running): the leader
    /// adopts it. Answers how long to wait before trying again.
    async fn lock_is_held(&self, conn: &mut PgConnection, name: &str, last_session: &mut Option<i32>) -> Duration {
        let holder: Option<(i32, Option<String>)> = sqlx::query_as(
            "SELECT l.pid, a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid = ($1 >> 32)::bigint::oid AND l.objid = ($1 & 4294967295)::bigint::oid
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(LEADER_LOCK)
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten();
        let holder = holder.map(|(pid, app)| (pid, app.as_deref() == Some(name)));
        match (holder, *last_session) {
            (Some((held_by, true)), Some(ours)) if held_by == ours => {
                tracing::warn!(session = ours, "this replica's last lock session lingers on the server: ending it");
                let _ = sqlx::query("SELECT pg_terminate_backend($1)").bind(ours).execute(&mut *conn).await;
                Duration::from_millis(200)
            }
            (Some(_), _) => {
                if last_session.take().is_some() {
                    tracing::warn!("another replica leads now: letting go of what this one runs, for it to adopt");
                    self.release_everything().await;
                }
                Duration::from_secs(3)
            }
            (None, _) => Duration::from_millis(200),
        }
    }

    /// Adopts what the runtime still runs, as far as the desired state wants it; everything
    /// else is recorded as stopped, and deployments no pipeline of this replica works on are
    /// queued again.
    pub(super) async fn take_over(&self) -> anyhow::Result<()> {
        let db = &self.state.db;
        let adoption = self.runtime.adopt().await?;
        if adoption.cleaned > 0 {
            tracing::warn!(cleaned = adoption.cleaned, "removed what an earlier run of the platform left");
        }
        let running: HashSet<Uuid> = adoption.running.into_iter().collect();
        let found: HashSet<Uuid> = adoption.found.into_iter().collect();
        let in_flight: Vec<Uuid> = self.inner().in_flight.keys().copied().collect();
        // What runs, with the deployment and service it belongs to, if that deployment should
        // run: a running one, or one a pipeline of this replica is still deploying.
        let wanted: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(
            "SELECT i.id, i.deployment_id, d.service_id FROM instances i JOIN deployments d ON d.id = i.deployment_id
             WHERE i.id = ANY($1) AND i.state <> 'stopped' AND (d.status = 'running' OR d.id = ANY($2))",
        )
        .bind(running.iter().chain(&found).copied().collect::<Vec<_>>())
        .bind(&in_flight)
        .fetch_all(db)
        .await?;
        let kept: HashSet<Uuid> = wanted.iter().map(|w| w.0).collect();
        let unwanted: Vec<Uuid> = {
            let mut inner = self.inner();
            // A pipeline of this replica still at work keeps what it started (it may not have
            // reached the runtime yet): it finishes or cleans up itself.
            for (deployment, list) in inner.supervised.iter_mut() {
                if !in_flight.contains(deployment) {
                    list.retain(|i| kept.contains(&i.instance_id));
                }
            }
            inner.supervised.retain(|d, list| !list.is_empty() || in_flight.contains(d));
            // What this process runs stays supervised; what it found running is taken back by
            // relaunching its deployment (`pipeline`, which starts it by its own id).
            for &(instance_id, deployment_id, service_id) in wanted.iter().filter(|w| running.contains(&w.0)) {
                let list = inner.supervised.entry(deployment_id).or_default();
                if !list.iter().any(|i| i.instance_id == instance_id) {
                    list.push(Supervised { instance_id, service_id });
                }
            }
            inner.adoptable = wanted.iter().filter(|w| found.contains(&w.0)).map(|w| (w.0, w.1)).collect();
            running.iter().chain(&found).filter(|id| !kept.contains(id)).copied().collect()
        };
        for id in unwanted {
            self.runtime.stop(id).await;
        }
        let kept: Vec<Uuid> = kept.into_iter().collect();
        sqlx::query("UPDATE instances SET state = 'stopped', updated_at = now() WHERE state <> 'stopped' AND NOT (id = ANY($1)) AND NOT (deployment_id = ANY($2))")
            .bind(&kept)
            .bind(&in_flight)
            .execute(db)
            .await?;
        if !kept.is_empty() {
            tracing::info!(instances = kept.len(), "adopted the instances that run");
        }
        // Those past their deadline are left to the tick, which fails them: nobody made progress.
        let stalled: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM deployments WHERE status IN ('building', 'deploying') AND NOT (id = ANY($1)) AND (deadline IS NULL OR deadline > now())",
        )
            .bind(&in_flight)
            .fetch_all(db)
            .await?;
        for id in stalled {
            deployments::transition(db, id, &[Status::Building, Status::Deploying], Status::Queued, "Roundhouse restarted during this deployment; starting it again", None)
                .await?;
        }
        proxy::reload_routes(&self.state).await;
        notify_routes(&self.state).await;
        Ok(())
    }
}

/// Logs and counts a failed step of the leader's loop (`roundhouse_reconcile_errors_total{step}`):
/// one step's trouble never stops the others.
fn failed<T, E: std::fmt::Display>(step: &'static str, result: Result<T, E>) {
    if let Err(e) = result {
        metrics::counter!("roundhouse_reconcile_errors_total", "step" => step).increment(1);
        tracing::warn!(step, error = %e, "a reconcile step failed");
    }
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
            Ok(Err(e)) => failed("usage_report", Err::<(), _>(e)),
            Err(_) => tracing::warn!("reporting usage to Stripe took over two minutes; it goes on next round"),
        }
        running.store(false, Ordering::SeqCst);
    });
}
