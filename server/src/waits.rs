//! When a queued deployment may start: after the services it needs.
//!
//! A service needs the services its variables refer to (it waits while one of them is being
//! deployed, then goes ahead whatever came of it) and the ones it declares (`depends_on` of a
//! template, in `service_dependencies`): `started` waits until the dependency's deployment has
//! built and is starting, `healthy` until it is running and healthy. A declared dependency whose
//! newest deployment failed fails the dependent one, naming it — a stack shows which service
//! broke and why, and the rest stay as they are, to be looked at.

use app::{
    deployments::Status,
    templates::Condition,
    variables::resolve,
};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// What a queued deployment should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Go,
    Wait,
    Fail(String),
}

/// How strongly a service needs another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Its variables refer to it: wait while it deploys, never fail for it.
    Refers,
    Declared(Condition),
}

/// Where a service's deployments stand.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Standing {
    /// The earliest stage of a deployment in progress, if one is.
    active: Option<Status>,
    running: bool,
    /// The newest deployment: its number, status and reason.
    newest: Option<(i32, Status, String)>,
}

/// One environment's needs and standings, read once per reconciler tick.
#[derive(Debug, Default)]
pub struct Waits {
    needs: HashMap<String, Vec<(String, Need)>>,
    standing: HashMap<String, Standing>,
}

impl Waits {
    pub async fn load(db: &PgPool, env: &app::variables::resolve::Environment, env_id: Uuid) -> anyhow::Result<Waits> {
        let mut needs: HashMap<String, Vec<(String, Need)>> = HashMap::new();
        for (service, deps) in resolve::service_dependencies(env).unwrap_or_default() {
            needs.entry(service).or_default().extend(deps.into_iter().map(|d| (d, Need::Refers)));
        }
        let declared: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT s.name, d.name, sd.condition FROM service_dependencies sd
             JOIN services s ON s.id = sd.service_id JOIN services d ON d.id = sd.depends_on_id
             WHERE s.environment_id = $1",
        )
        .bind(env_id)
        .fetch_all(db)
        .await?;
        for (service, dep, condition) in declared {
            let condition = if condition == "started" { Condition::Started } else { Condition::Healthy };
            let list = needs.entry(service).or_default();
            list.retain(|(d, _)| d != &dep);
            list.push((dep, Need::Declared(condition)));
        }
        let rows: Vec<(String, Option<String>, bool, Option<i32>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT s.name,
                    (SELECT d.status FROM deployments d WHERE d.service_id = s.id AND d.status IN ('queued', 'building', 'deploying')
                      ORDER BY array_position(ARRAY['queued', 'building', 'deploying'], d.status) LIMIT 1),
                    EXISTS (SELECT 1 FROM deployments d WHERE d.service_id = s.id AND d.status = 'running'),
                    n.number, n.status, n.reason
             FROM services s
             LEFT JOIN LATERAL (SELECT number, status, reason FROM deployments d WHERE d.service_id = s.id ORDER BY number DESC LIMIT 1) n ON true
             WHERE s.environment_id = $1",
        )
        .bind(env_id)
        .fetch_all(db)
        .await?;
        let standing = rows
            .into_iter()
            .map(|(name, active, running, number, status, reason)| {
                let newest = match (number, status.as_deref().and_then(Status::parse)) {
                    (Some(n), Some(s)) => Some((n, s, reason.unwrap_or_default())),
                    _ => None,
                };
                (name, Standing { active: active.as_deref().and_then(Status::parse), running, newest })
            })
            .collect();
        Ok(Waits { needs, standing })
    }

    /// Whether `service`'s queued deployment can start.
    pub fn gate(&self, service: &str) -> Gate {
        let mut wait = false;
        for (dep, need) in self.needs.get(service).map(Vec::as_slice).unwrap_or_default() {
            let Some(s) = self.standing.get(dep) else { continue };
            match gate_one(dep, *need, s) {
                Gate::Go => {}
                Gate::Wait => wait = true,
                fail @ Gate::Fail(_) => return fail,
            }
        }
        if wait { Gate::Wait } else { Gate::Go }
    }
}

fn gate_one(dep: &str, need: Need, s: &Standing) -> Gate {
    let (started_enough, condition) = match need {
        Need::Refers => (matches!(s.active, None), None),
        Need::Declared(Condition::Started) => (!matches!(s.active, Some(Status::Queued | Status::Building)), Some("started")),
        Need::Declared(Condition::Healthy) => (s.active.is_none(), Some("healthy")),
    };
    if !started_enough {
        return Gate::Wait;
    }
    match (condition, &s.newest) {
        (Some(condition), Some((number, status, reason))) if s.active.is_none() && !s.running && matches!(status, Status::Failed | Status::Crashed) => {
            Gate::Fail(format!("It waits for {dep} to be {condition}, but {dep}'s deployment #{number} {}: {reason}", status.as_str()))
        }
        _ => Gate::Go,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(active: Option<Status>, running: bool, newest: Option<Status>) -> Standing {
        Standing { active, running, newest: newest.map(|s| (3, s, "why".into())) }
    }

    fn waits(need: Need, s: Standing) -> Waits {
        Waits { needs: HashMap::from([("api".into(), vec![("db".into(), need)])]), standing: HashMap::from([("db".into(), s)]) }
    }

    #[test]
    fn references_wait_for_a_deploy_in_progress_and_never_fail() {
        for active in [Status::Queued, Status::Building, Status::Deploying] {
            assert_eq!(waits(Need::Refers, standing(Some(active), false, Some(active))).gate("api"), Gate::Wait);
        }
        assert_eq!(waits(Need::Refers, standing(None, false, Some(Status::Failed))).gate("api"), Gate::Go);
        assert_eq!(waits(Need::Refers, standing(None, true, Some(Status::Running))).gate("api"), Gate::Go);
    }

    #[test]
    fn started_goes_once_the_dependency_is_starting() {
        let started = Need::Declared(Condition::Started);
        assert_eq!(waits(started, standing(Some(Status::Building), false, Some(Status::Building))).gate("api"), Gate::Wait);
        assert_eq!(waits(started, standing(Some(Status::Deploying), false, Some(Status::Deploying))).gate("api"), Gate::Go);
    }

    #[test]
    fn healthy_waits_for_running_and_fails_with_a_failed_dependency() {
        let healthy = Need::Declared(Condition::Healthy);
        assert_eq!(waits(healthy, standing(Some(Status::Deploying), false, Some(Status::Deploying))).gate("api"), Gate::Wait);
        assert_eq!(waits(healthy, standing(None, true, Some(Status::Running))).gate("api"), Gate::Go);
        let Gate::Fail(why) = waits(healthy, standing(None, false, Some(Status::Failed))).gate("api") else { panic!("should fail") };
        assert_eq!(why, "It waits for db to be healthy, but db's deployment #3 failed: why");
        // An older deployment still running serves: the newest failing is not the end of it.
        assert_eq!(waits(healthy, standing(None, true, Some(Status::Failed))).gate("api"), Gate::Go);
        // Nothing was ever deployed: nothing to wait for.
        assert_eq!(waits(healthy, standing(None, false, None)).gate("api"), Gate::Go);
    }

    #[test]
    fn unknown_services_and_services_without_needs_go() {
        assert_eq!(Waits::default().gate("api"), Gate::Go);
    }
}
