//! What the runtime reports about instances (started, exited, crashed, restarted) becomes the
//! deployment's state and events.

use super::*;

impl Reconciler {
    pub(super) async fn handle_instance_events(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<InstanceEvent>) {
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
}
