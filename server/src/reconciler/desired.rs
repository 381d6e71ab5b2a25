//! Desired against actual: each tick compares the deployments Postgres asks for with what this
//! leader runs, and starts a pipeline for each one that needs work.

use super::{pipeline::Failure, *};

impl Reconciler {
    pub(super) async fn tick(self: &Arc<Self>) -> anyhow::Result<()> {
        let db = &self.state.db;
        let (known, in_flight): (Vec<Uuid>, HashSet<Uuid>) = {
            let inner = self.inner();
            (inner.supervised.keys().chain(inner.in_flight.keys()).copied().collect(), inner.in_flight.keys().copied().collect())
        };
        let rows: Vec<(Uuid, Uuid, String, Status, Option<chrono::DateTime<Utc>>, Uuid)> = sqlx::query_as(
            "SELECT d.id, s.environment_id, s.name, d.status, d.deadline, d.service_id
             FROM deployments d JOIN services s ON s.id = d.service_id
             WHERE d.status IN ('queued', 'building', 'deploying', 'running') OR d.id = ANY($1)
             ORDER BY d.created_at",
        )
        .bind(&known)
        .fetch_all(db)
        .await?;
        let status: HashMap<Uuid, Status> = rows.iter().map(|r| (r.0, r.3)).collect();

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
        // Found instances of deployments that no longer run (stopped, replaced meanwhile).
        let running: HashSet<Uuid> = rows.iter().filter(|r| r.3 == Status::Running).map(|r| r.0).collect();
        self.drop_unclaimed(None, &running).await;
        // Work in progress in other environments' services must not wait for each other, but a
        // service waits for the services it needs (`waits.rs`).
        let mut waits: HashMap<Uuid, Waits> = HashMap::new();
        // One deployment of a service at a time: the next one waits for the one in flight.
        let mut services_in_flight: HashSet<Uuid> = rows.iter().filter(|r| in_flight.contains(&r.0)).map(|r| r.5).collect();
        for (id, env_id, name, st, deadline, service_id) in &rows {
            let st = *st;
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
    pub(super) async fn waits(&self, env_id: Uuid) -> anyhow::Result<Waits> {
        let env = environment::load(&self.state.db, &self.state.secrets, &self.state.config, env_id).await?;
        Waits::load(&self.state.db, &env.env, env_id).await
    }

    pub(super) fn start_pipeline(self: &Arc<Self>, id: Uuid, mode: Mode) {
        let token = CancellationToken::new();
        self.inner().in_flight.insert(id, token.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let relaunch = matches!(mode, Mode::Relaunch);
            let result = this.clone().pipeline(id, &token, relaunch).await;
            if relaunch {
                this.drop_unclaimed(Some(id), &HashSet::new()).await;
            }
            if let Err(Failure { phase, reason }) = result {
                let db = &this.state.db;
                metrics::counter!("roundhouse_deploy_failures_total", "phase" => phase.as_str()).increment(1);
                tracing::info!(deployment_id = %id, phase = phase.as_str(), %reason, "deployment did not succeed");
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
}
