//! A deployment's pipeline: build (or reuse a build), run its pre-deploy command, start its
//! instances, wait until they are ready, switch traffic, and retire what it replaces.

use super::*;

/// The phase a pipeline stopped in: its deployment's reason says what happened, and
/// `/metrics` counts failures by phase (`roundhouse_deploy_failures_total{phase}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The owner may no longer deploy (suspended, containment, plan).
    Admission,
    /// The variables do not resolve.
    Variables,
    Build,
    PreDeploy,
    /// An instance could not start (or a schedule could not be read).
    Start,
    /// The instances did not become ready in time.
    Ready,
    /// The platform's own trouble (the database), not the deployment's.
    Internal,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Admission => "admission",
            Phase::Variables => "variables",
            Phase::Build => "build",
            Phase::PreDeploy => "pre_deploy",
            Phase::Start => "start",
            Phase::Ready => "ready",
            Phase::Internal => "internal",
        }
    }
}

/// Why a pipeline stopped: the phase, and the reason shown on the deployment.
#[derive(Debug)]
pub struct Failure {
    pub phase: Phase,
    pub reason: String,
}

impl Failure {
    fn at(phase: Phase) -> impl Fn(String) -> Failure {
        move |reason| Failure { phase, reason }
    }

    /// A runtime's error in `phase`: the user's part is the reason; the rest is logged.
    fn runtime(phase: Phase) -> impl Fn(crate::runtime::RuntimeError) -> Failure {
        move |e| Failure { phase, reason: e.shown() }
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        Failure { phase: Phase::Build, reason: reason.to_string() }
    }
}

impl Reconciler {
    pub(super) fn sink(&self, id: Uuid, redactor: Arc<Redactor>) -> LogSink {
        LogSink::new(self.logs.clone(), id, redactor)
    }

    pub(super) async fn pipeline(self: Arc<Self>, id: Uuid, cancel: &CancellationToken, relaunch: bool) -> Result<(), Failure> {
        let db = &self.state.db;
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(deployment_id = %id, error = %e, "pipeline step failed");
            Failure { phase: Phase::Internal, reason: "An internal error stopped this deployment.".to_string() }
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
        self.still_admitted(&spec).await.map_err(Failure::at(Phase::Admission))?;
        let env = environment::load(db, &self.state.secrets, &self.state.config, env_id).await.map_err(|e| internal(&e))?;
        let sink = self.sink(id, Arc::new(Redactor::new(&env.secrets)));
        let vars = env.resolve(service_id).map_err(|e| Failure { phase: Phase::Variables, reason: format!("Variables do not resolve: {e}") })?;
        let private_port = env.service(service_id).map(|s| s.private_port).unwrap_or(0);
        let peers = Peer::of(&env);
        let build_timeout = Duration::from_secs(self.state.config.build_timeout_secs);

        // The instances of this deployment found still running at the take-over, by replica:
        // a relaunch takes them back rather than starting new ones.
        let adoptable: HashMap<i32, Uuid> = if relaunch {
            let ids: Vec<Uuid> = self.inner().adoptable.iter().filter(|(_, d)| **d == id).map(|(i, _)| *i).collect();
            sqlx::query_as("SELECT replica, id FROM instances WHERE deployment_id = $1 AND id = ANY($2) AND state <> 'stopped'")
                .bind(id)
                .bind(&ids)
                .fetch_all(db)
                .await
                .map_err(|e| internal(&e))?
                .into_iter()
                .collect()
        } else {
            HashMap::new()
        };
        let artifact = if relaunch {
            if adoptable.is_empty() {
                sink.system("Roundhouse restarted: starting this deployment's instances again").await;
            } else {
                sink.system("Roundhouse restarted: taking this deployment's instances back").await;
            }
            match artifact {
                Some(a) if self.runtime.has_artifact(&a).await => a,
                _ => return Err(Failure::from("The build of this deployment is gone: deploy again.")),
            }
        } else {
            let repeats = artifact.is_some();
            let reuse = match artifact {
                Some(a) if self.runtime.has_artifact(&a).await => Some(a),
                _ => None,
            };
            // The build it repeats (a rollback's) was removed by retention meanwhile: an uploaded
            // archive is built again as it was, but a branch or a folder has moved on since.
            if repeats && reuse.is_none() && matches!(spec.source_kind, SourceKind::Git | SourceKind::Directory) {
                return Err(Failure::from("The build this deployment repeats was removed, and its source has moved on since: deploy again."));
            }
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
                                .map_err(|_| Failure::from("The uploaded archive of this deployment is gone: upload it again."))?,
                        )),
                        _ => None,
                    };
                    let job = BuildJob { deployment_id: id, spec: spec.clone(), env: vars.clone(), archive };
                    let building = Instant::now();
                    let built = tokio::time::timeout(build_timeout, self.runtime.build(job, sink.clone(), cancel.clone())).await;
                    took(Phase::Build, building);
                    let a = match built {
                        Ok(result) => result.map_err(Failure::runtime(Phase::Build))?,
                        Err(_) => {
                            cancel.cancel();
                            return Err(Failure { phase: Phase::Build, reason: format!("The build did not finish within {}s.", build_timeout.as_secs()) });
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
                .ok_or_else(|| Failure { phase: Phase::Start, reason: format!("The schedule \"{schedule}\" cannot be read.") })?;
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
            let running = Instant::now();
            let done = self.pre_deploy(step, cancel, build_timeout).await;
            took(Phase::PreDeploy, running);
            if !done.map_err(Failure::at(Phase::PreDeploy))? {
                return Ok(());
            }
        }

        let replicas = if spec.source_kind == SourceKind::Database { 1 } else { spec.replicas.max(1) };
        let mut started = Vec::new();
        let starting = Instant::now();
        for replica in 0..replicas {
            let adopted = adoptable.get(&replica).copied();
            let instance_id = adopted.unwrap_or_else(Uuid::new_v4);
            if let Some(instance) = adopted {
                self.inner().adoptable.remove(&instance);
            } else {
                sqlx::query("INSERT INTO instances (id, deployment_id, replica, state) VALUES ($1, $2, $3, 'starting')")
                    .bind(instance_id)
                    .bind(id)
                    .bind(replica)
                    .execute(db)
                    .await
                    .map_err(|e| internal(&e))?;
            }
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
            let endpoint = self.runtime.start(spec, sink.clone(), self.events.clone()).await.map_err(Failure::runtime(Phase::Start))?;
            sqlx::query("UPDATE instances SET port = $2, network = $3, address = $4 WHERE id = $1")
                .bind(instance_id)
                .bind(endpoint.addr.port() as i32)
                .bind(&endpoint.network)
                .bind(endpoint.addr.to_string())
                .execute(db)
                .await
                .map_err(|e| internal(&e))?;
            if adopted.is_none() {
                sink.system(&format!("Instance {replica} started on port {}", endpoint.addr.port())).await;
            }
            started.push(instance_id);
        }
        took(Phase::Start, starting);
        let deadline = Instant::now() + Duration::from_secs(spec.healthcheck_timeout_secs.max(1) as u64);
        let readying = Instant::now();
        let mut ready = Ok(());
        for &instance in &started {
            tokio::select! {
                r = self.runtime.ready(instance, deadline) => if let Err(e) = r {
                    ready = Err(e.shown());
                    break;
                },
                _ = cancel.cancelled() => return Ok(()),
            }
        }
        took(Phase::Ready, readying);
        ready.map_err(Failure::at(Phase::Ready))?;
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
    pub(super) async fn pre_deploy(&self, step: PreDeploy<'_>, cancel: &CancellationToken, limit: Duration) -> Result<bool, String> {
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
            return Err(format!("The pre-deploy command could not start: {}", e.shown()));
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
}

/// Records how long a phase of a deployment took (`roundhouse_deploy_phase_seconds{phase}`):
/// builds, pre-deploy commands and readiness whether they succeeded or not; starts once every
/// replica started.
fn took(phase: Phase, since: Instant) {
    metrics::histogram!("roundhouse_deploy_phase_seconds", "phase" => phase.as_str()).record(since.elapsed().as_secs_f64());
}
