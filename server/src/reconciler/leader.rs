//! Leadership: one replica reconciles, holding a Postgres advisory lock on a connection of its
//! own. On taking over it recovers what an earlier run left; while leading it ticks, runs due
//! crons, samples metrics and meters usage; losing the lock's connection ends its turn.

use super::*;

impl Reconciler {
    /// Waits for the leader lock, then reconciles until the lock's connection is lost.
    pub(super) async fn lead(self: Arc<Self>) {
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
                if last_metering.elapsed() >= METERING_EVERY {
                    last_metering = Instant::now();
                    failed("metering", crate::metering::record_runtime_minutes(&self.state.db).await);
                    if last_volumes.is_none_or(|at| at.elapsed() >= VOLUMES_EVERY) {
                        last_volumes = Some(Instant::now());
                        let volumes = self.runtime.volume_sizes().await;
                        failed("metering", crate::metering::record_volumes(&self.state.db, &volumes).await);
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
                    tracing::error!("lost the reconciler lock's connection: stopping this replica's instances");
                    self.stop_everything().await;
                    break;
                }
            }
        }
    }

    pub(super) async fn take_over(&self) -> anyhow::Result<()> {
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
