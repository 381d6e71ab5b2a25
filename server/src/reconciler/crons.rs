//! Cron services: each schedule that came due since the last check starts one run of the
//! service's current deployment.

use super::*;

impl Reconciler {
    /// Starts the runs of cron deployments whose schedule came due since the last check.
    pub(super) async fn run_due_crons(self: &Arc<Self>) -> anyhow::Result<()> {
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
    pub(super) async fn start_cron_run(&self, id: Uuid, mut spec: Service, artifact: Option<String>, env_id: Uuid, at: chrono::DateTime<Utc>) -> Result<(), String> {
        let db = &self.state.db;
        let env = environment::load(db, &self.state.secrets, &self.state.config, env_id).await.map_err(|e| e.to_string())?;
        let sink = self.sink(id, Arc::new(Redactor::new(&env.secrets)));
        let vars = env.resolve(spec.id).map_err(|e| format!("variables do not resolve: {e}"))?;
        let artifact = match artifact {
            Some(a) if self.runtime.has_artifact(&a).await => a,
            _ => return Err("the build of this deployment is gone: deploy again".into()),
        };
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
            return Err(e.shown());
        }
        Ok(())
    }
}
