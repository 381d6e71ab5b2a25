//! What a plan allows, checked in one place for every way in: creating and changing a service,
//! deploying a template, and moving to a smaller plan. Refusals name the limit and the first
//! plan that has room.

use crate::error::{AppError, AppResult};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Allowance {
    pub plan: String,
    pub max_projects: i32,
    /// Services per project (a service counts once however many environments have it).
    pub max_services: i32,
    pub max_replicas: i32,
    pub max_memory_mb: i32,
    pub max_cpu_millis: i32,
}

/// What an action would need of the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    /// Services the project would have (0: the action adds none).
    pub services_in_project: i64,
    /// Services the action adds (for the message).
    pub adding: i64,
    pub replicas: i32,
    pub memory_mb: i32,
    pub cpu_millis: i32,
}

const COLUMNS: &str = "max_projects, max_services, max_replicas, max_memory_mb, max_cpu_millis";

impl Allowance {
    /// `owner`'s plan's allowance.
    pub async fn of(db: &mut PgConnection, owner: Uuid) -> AppResult<Allowance> {
        Ok(sqlx::query_as(&format!("SELECT p.name AS plan, {COLUMNS} FROM users u JOIN plans p ON p.id = u.plan_id WHERE u.id = $1"))
            .bind(owner)
            .fetch_one(db)
            .await?)
    }

    /// A plan's allowance (public plans only).
    pub async fn of_plan(db: &mut PgConnection, plan_id: &str) -> AppResult<Option<Allowance>> {
        Ok(sqlx::query_as(&format!("SELECT name AS plan, {COLUMNS} FROM plans WHERE id = $1 AND public"))
            .bind(plan_id)
            .fetch_optional(db)
            .await?)
    }

    /// What `ask` needs beyond this allowance, in words (None: it fits).
    pub fn shortfall(&self, ask: &Ask) -> Option<String> {
        let plan = &self.plan;
        if ask.services_in_project > i64::from(self.max_services) {
            let had = ask.services_in_project - ask.adding;
            return Some(if ask.adding > 1 {
                format!("Your {plan} plan allows {} services per project; this project has {had} and this adds {}.", self.max_services, ask.adding)
            } else {
                format!("Your {plan} plan allows {} services per project and this project has {had}.", self.max_services)
            });
        }
        if ask.replicas > self.max_replicas {
            return Some(format!("Your {plan} plan allows up to {} replicas per service; this asks for {}.", self.max_replicas, ask.replicas));
        }
        if ask.memory_mb > self.max_memory_mb {
            return Some(format!("Your {plan} plan allows up to {} MB of memory per service; this asks for {} MB.", self.max_memory_mb, ask.memory_mb));
        }
        if ask.cpu_millis > self.max_cpu_millis {
            return Some(format!(
                "Your {plan} plan allows up to {} vCPU per service; this asks for {}.",
                vcpu(self.max_cpu_millis),
                vcpu(ask.cpu_millis)
            ));
        }
        None
    }
}

fn vcpu(millis: i32) -> String {
    let s = format!("{:.2}", f64::from(millis) / 1000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The services `project` has, counted by name across its environments.
pub async fn services_in_project(db: &mut PgConnection, project: Uuid) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(DISTINCT s.name) FROM services s JOIN environments e ON e.id = s.environment_id WHERE e.project_id = $1",
    )
    .bind(project)
    .fetch_one(db)
    .await?)
}

/// Refuses `ask` when `owner`'s plan does not allow it, naming the first plan that would.
pub async fn check(db: &mut PgConnection, owner: Uuid, ask: Ask) -> AppResult<()> {
    let allowance = Allowance::of(&mut *db, owner).await?;
    let Some(what) = allowance.shortfall(&ask) else { return Ok(()) };
    let roomy: Option<String> = sqlx::query_scalar(
        "SELECT name FROM plans WHERE public AND max_services >= $1 AND max_replicas >= $2 AND max_memory_mb >= $3 AND max_cpu_millis >= $4
         ORDER BY sort_order LIMIT 1",
    )
    .bind(ask.services_in_project.min(i64::from(i32::MAX)) as i32)
    .bind(ask.replicas)
    .bind(ask.memory_mb)
    .bind(ask.cpu_millis)
    .fetch_optional(&mut *db)
    .await?;
    let upgrade = match roomy {
        Some(p) => format!(" The {p} plan allows it."),
        None => " No plan offered allows it.".into(),
    };
    Err(AppError::PlanLimit { message: format!("{what}{upgrade}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hobby() -> Allowance {
        Allowance { plan: "Hobby".into(), max_projects: 10, max_services: 10, max_replicas: 2, max_memory_mb: 8192, max_cpu_millis: 8000 }
    }

    #[test]
    fn each_limit_is_named_with_what_was_asked() {
        let a = hobby();
        let fits = Ask { services_in_project: 10, adding: 1, replicas: 2, memory_mb: 8192, cpu_millis: 8000 };
        assert_eq!(a.shortfall(&fits), None, "at the limit is within it");
        assert_eq!(
            a.shortfall(&Ask { services_in_project: 11, ..fits }).as_deref(),
            Some("Your Hobby plan allows 10 services per project and this project has 10.")
        );
        assert_eq!(
            a.shortfall(&Ask { services_in_project: 13, adding: 4, ..fits }).as_deref(),
            Some("Your Hobby plan allows 10 services per project; this project has 9 and this adds 4.")
        );
        assert_eq!(a.shortfall(&Ask { replicas: 3, ..fits }).as_deref(), Some("Your Hobby plan allows up to 2 replicas per service; this asks for 3."));
        assert_eq!(a.shortfall(&Ask { memory_mb: 9000, ..fits }).as_deref(), Some("Your Hobby plan allows up to 8192 MB of memory per service; this asks for 9000 MB."));
        assert_eq!(a.shortfall(&Ask { cpu_millis: 8500, ..fits }).as_deref(), Some("Your Hobby plan allows up to 8 vCPU per service; this asks for 8.5."));
        assert_eq!(a.shortfall(&Ask { services_in_project: 0, adding: 0, ..fits }), None, "changing a service adds none");
    }
}
