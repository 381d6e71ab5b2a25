use super::{RestartPolicy, Service, ServiceInput, SourceKind};
use crate::{
    audit,
    auth::User,
    error::{AppError, AppResult},
    infra::Config,
    variables::template::is_service_name,
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    project_id: Uuid,
    project: String,
    environment_id: Uuid,
    environment: String,
    name: String,
    source_kind: String,
    source: String,
    build_command: Option<String>,
    start_command: Option<String>,
    port: Option<i32>,
    replicas: i32,
    cpu_millis: i32,
    memory_mb: i32,
    healthcheck_path: Option<String>,
    healthcheck_timeout_secs: i32,
    restart_policy: String,
    restart_max: i32,
    max_processes: i32,
    volume_path: Option<String>,
    cron_schedule: Option<String>,
    pre_deploy_command: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Row> for Service {
    fn from(r: Row) -> Self {
        Service {
            id: r.id,
            project_id: r.project_id,
            project: r.project,
            environment_id: r.environment_id,
            environment: r.environment,
            name: r.name,
            source_kind: SourceKind::parse(&r.source_kind).unwrap_or(SourceKind::Directory),
            source: r.source,
            build_command: r.build_command,
            start_command: r.start_command,
            port: r.port.and_then(|p| u16::try_from(p).ok()),
            replicas: r.replicas,
            cpu_millis: r.cpu_millis,
            memory_mb: r.memory_mb,
            healthcheck_path: r.healthcheck_path,
            healthcheck_timeout_secs: r.healthcheck_timeout_secs,
            restart_policy: RestartPolicy::parse(&r.restart_policy).unwrap_or(RestartPolicy::OnFailure),
            restart_max: r.restart_max,
            max_processes: r.max_processes,
            volume_path: r.volume_path,
            cron_schedule: r.cron_schedule,
            pre_deploy_command: r.pre_deploy_command,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Services visible to `owner`, with their environment and project.
const SELECT: &str = "SELECT s.id, e.project_id, p.name AS project, s.environment_id, e.name AS environment, s.name, s.source_kind, s.source,
        s.build_command, s.start_command, s.port, s.replicas, s.cpu_millis, s.memory_mb, s.healthcheck_path,
        s.healthcheck_timeout_secs, s.restart_policy, s.restart_max, s.max_processes, s.volume_path, s.cron_schedule, s.pre_deploy_command, s.created_at, s.updated_at
    FROM services s JOIN environments e ON e.id = s.environment_id JOIN projects p ON p.id = e.project_id";

/// The validated settings of a service, after applying an input to the current settings.
#[derive(Debug, Clone)]
struct Settings {
    name: String,
    source_kind: SourceKind,
    source: String,
    build_command: Option<String>,
    start_command: Option<String>,
    port: Option<i32>,
    replicas: i32,
    cpu_millis: i32,
    memory_mb: i32,
    healthcheck_path: Option<String>,
    healthcheck_timeout_secs: i32,
    restart_policy: RestartPolicy,
    restart_max: i32,
    max_processes: i32,
    volume_path: Option<String>,
    cron_schedule: Option<String>,
    pre_deploy_command: Option<String>,
}

impl Settings {
    fn defaults(name: String, source_kind: SourceKind, source: String) -> Self {
        Settings {
            name,
            source_kind,
            source,
            build_command: None,
            start_command: None,
            port: None,
            replicas: 1,
            cpu_millis: 1000,
            memory_mb: 512,
            healthcheck_path: None,
            healthcheck_timeout_secs: 60,
            restart_policy: RestartPolicy::OnFailure,
            restart_max: 10,
            max_processes: 256,
            volume_path: None,
            cron_schedule: None,
            pre_deploy_command: None,
        }
    }

    fn of(s: &Service) -> Self {
        Settings {
            name: s.name.clone(),
            source_kind: s.source_kind,
            source: s.source.clone(),
            build_command: s.build_command.clone(),
            start_command: s.start_command.clone(),
            port: s.port.map(i32::from),
            replicas: s.replicas,
            cpu_millis: s.cpu_millis,
            memory_mb: s.memory_mb,
            healthcheck_path: s.healthcheck_path.clone(),
            healthcheck_timeout_secs: s.healthcheck_timeout_secs,
            restart_policy: s.restart_policy,
            restart_max: s.restart_max,
            max_processes: s.max_processes,
            volume_path: s.volume_path.clone(),
            cron_schedule: s.cron_schedule.clone(),
            pre_deploy_command: s.pre_deploy_command.clone(),
        }
    }
}

fn optional(v: &Option<String>, current: Option<String>) -> Option<String> {
    match v {
        None => current,
        Some(s) if s.trim().is_empty() => None,
        Some(s) => Some(s.trim().to_string()),
    }
}

fn in_range(field: &str, v: i32, min: i32, max: i32, what: &str) -> AppResult<i32> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(AppError::validation(field, format!("{what} must be between {min} and {max}.")))
    }
}

pub use super::valid_cron;

fn validate_source(kind: SourceKind, source: &str) -> AppResult<String> {
    let s = source.trim();
    if kind == SourceKind::Upload {
        // Set by uploading an archive (the id of the upload), never typed in.
        return match s {
            "" => Ok(String::new()),
            id if uuid::Uuid::parse_str(id).is_ok() => Ok(id.to_string()),
            _ => Err(AppError::validation("source", "The source of an upload service is the archive you upload: POST it to /api/v1/services/{id}/source.")),
        };
    }
    if s.is_empty() {
        return Err(AppError::validation("source", "Say where the service comes from."));
    }
    if s.len() > 1000 || s.chars().any(char::is_control) {
        return Err(AppError::validation("source", "That source is not valid."));
    }
    match kind {
        SourceKind::Directory if !s.starts_with('/') || has_dot_segments(s) => {
            Err(AppError::validation("source", "Give the directory as an absolute path without . or .. parts, e.g. /srv/app."))
        }
        SourceKind::Git if !is_remote_git_url(s) => Err(AppError::validation(
            "source",
            "Give a git URL over https or ssh (https://host/repo.git, ssh://git@host/repo.git or git@host:repo.git); local paths and file:// are not accepted.",
        )),
        SourceKind::Image if s.contains(char::is_whitespace) => {
            Err(AppError::validation("source", "An image reference has no spaces, e.g. nginx:1.27."))
        }
        SourceKind::Database if s != "postgres" && s != "redis" => {
            Err(AppError::validation("source", "Database services are postgres or redis."))
        }
        _ => Ok(s.to_string()),
    }
}

fn has_dot_segments(path: &str) -> bool {
    path.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == "..")
}

/// An https or ssh remote. Local paths, `file://`, `ext::` and other transports that run
/// commands or read the platform's disk are refused; so is anything git could take for an option.
pub fn is_remote_git_url(url: &str) -> bool {
    if url.starts_with('-') || url.contains(char::is_whitespace) {
        return false;
    }
    let host_and_path = |rest: &str| {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        !host.is_empty() && !host.starts_with('-') && !path.is_empty()
    };
    if let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("ssh://")) {
        return host_and_path(rest);
    }
    // scp-like: user@host:path
    match url.split_once(':') {
        Some((user_host, path)) => {
            // A slash before the colon would make git read it as a local path.
            let Some((user, host)) = user_host.split_once('@') else { return false };
            let plain = |s: &str| !s.is_empty() && !s.starts_with('-') && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
            plain(user) && plain(host) && !path.is_empty()
        }
        None => false,
    }
}

/// Where a volume may be mounted in a service's filesystem: an absolute path of its own, not
/// over the system, the build (`/app`) or the folders the platform provides.
fn valid_volume_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') || path.len() > 200 || has_dot_segments(path) || path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("Mount volumes at an absolute path without spaces, . or .. parts, e.g. /data.");
    }
    let path = path.trim_end_matches('/');
    let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
    let reserved = ["/usr", "/etc", "/proc", "/dev", "/sys", "/bin", "/sbin", "/lib", "/lib64", "/opt", "/run", "/app"];
    if path.is_empty() || ["/tmp", "/home", "/home/app"].contains(&path) || reserved.iter().any(|r| under(r)) {
        return Err("That path belongs to the system or to the build (/app): mount the volume at a path of its own, e.g. /data.");
    }
    Ok(())
}

/// What only the platform's configuration and the owner's role decide: directory sources are
/// for admins and only under `ROUNDHOUSE_SOURCE_ROOTS`, never overlapping the data folder.
/// Checked when a service is saved and again when it is deployed.
pub fn check_source_policy(config: &Config, owner: &User, kind: SourceKind, source: &str) -> AppResult<()> {
    if kind != SourceKind::Directory {
        return Ok(());
    }
    if !owner.is_admin() {
        return Err(AppError::validation(
            "source",
            "Directory sources are for the platform's admins. Upload an archive of your code, or use a git repository.",
        ));
    }
    if config.source_roots.is_empty() {
        return Err(AppError::validation("source", "Directory sources are off on this platform: its operator has not set ROUNDHOUSE_SOURCE_ROOTS."));
    }
    let path = std::path::Path::new(source);
    let canonical = path
        .canonicalize()
        .map_err(|_| AppError::validation("source", format!("The directory {source} does not exist on this machine.")))?;
    let data = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let data = data.canonicalize().unwrap_or(data);
    if canonical.starts_with(&data) || data.starts_with(&canonical) {
        return Err(AppError::validation("source", "That directory holds the platform's own data and can never be a source."));
    }
    if !config.source_roots.iter().any(|root| canonical.starts_with(root)) {
        let roots: Vec<String> = config.source_roots.iter().map(|r| r.display().to_string()).collect();
        return Err(AppError::validation("source", format!("Directory sources must be under {}.", roots.join(" or "))));
    }
    Ok(())
}

fn apply(mut cur: Settings, input: &ServiceInput) -> AppResult<Settings> {
    if let Some(name) = &input.name {
        let name = name.trim();
        if !is_service_name(name) {
            return Err(AppError::validation(
                "name",
                "Service names use letters, digits, - and _, start with a letter, at most 63 characters.",
            ));
        }
        cur.name = name.to_string();
    }
    if let Some(kind) = input.source_kind {
        if kind != cur.source_kind && kind == SourceKind::Upload {
            // A service becomes an upload service with no archive yet.
            cur.source.clear();
        }
        cur.source_kind = kind;
    }
    match &input.source {
        // An upload service's source changes by uploading; the settings form sends it empty.
        Some(source) if cur.source_kind == SourceKind::Upload && source.trim() != cur.source && !source.trim().is_empty() => {
            return Err(AppError::validation("source", "The source of an upload service changes when you upload an archive."));
        }
        Some(_) if cur.source_kind == SourceKind::Upload => {}
        Some(source) => cur.source = source.clone(),
        None => {}
    }
    cur.source = validate_source(cur.source_kind, &cur.source)?;
    cur.build_command = optional(&input.build_command, cur.build_command);
    cur.start_command = optional(&input.start_command, cur.start_command);
    cur.pre_deploy_command = optional(&input.pre_deploy_command, cur.pre_deploy_command);
    for (field, v) in [("build_command", &cur.build_command), ("start_command", &cur.start_command), ("pre_deploy_command", &cur.pre_deploy_command)] {
        if v.as_ref().is_some_and(|c| c.len() > 2000) {
            return Err(AppError::validation(field, "Commands are at most 2000 characters."));
        }
    }
    if let Some(port) = input.port {
        cur.port = match port {
            0 => None,
            1..=65535 => Some(port as i32),
            _ => return Err(AppError::validation("port", "Ports are between 1 and 65535 (0 for none).")),
        };
    }
    if let Some(v) = input.replicas {
        cur.replicas = in_range("replicas", v, 1, 100, "Replicas")?;
    }
    if let Some(v) = input.cpu_millis {
        cur.cpu_millis = in_range("cpu_millis", v, 100, 64000, "CPU (millicores)")?;
    }
    if let Some(v) = input.memory_mb {
        cur.memory_mb = in_range("memory_mb", v, 64, 262_144, "Memory (MB)")?;
    }
    cur.healthcheck_path = optional(&input.healthcheck_path, cur.healthcheck_path);
    if cur.healthcheck_path.as_ref().is_some_and(|p| !p.starts_with('/') || p.contains(char::is_whitespace)) {
        return Err(AppError::validation("healthcheck_path", "A health-check path starts with / and has no spaces, e.g. /health."));
    }
    if let Some(v) = input.healthcheck_timeout_secs {
        cur.healthcheck_timeout_secs = in_range("healthcheck_timeout_secs", v, 1, 600, "The health-check timeout (seconds)")?;
    }
    if let Some(p) = input.restart_policy {
        cur.restart_policy = p;
    }
    if let Some(v) = input.restart_max {
        cur.restart_max = in_range("restart_max", v, 0, 1000, "The restart limit")?;
    }
    if let Some(v) = input.max_processes {
        cur.max_processes = in_range("max_processes", v, 16, 4096, "The process limit")?;
    }
    cur.volume_path = optional(&input.volume_path, cur.volume_path);
    if let Some(p) = &cur.volume_path {
        valid_volume_path(p).map_err(|m| AppError::validation("volume_path", m))?;
    }
    cur.cron_schedule = optional(&input.cron_schedule, cur.cron_schedule);
    if cur.cron_schedule.as_deref().is_some_and(|c| !valid_cron(c)) {
        return Err(AppError::validation("cron_schedule", "Use five cron fields, e.g. \"*/15 * * * *\"."));
    }
    Ok(cur)
}

/// The plan's room for these settings (and, for a new service, for one more in its project).
async fn check_plan(db: &mut sqlx::PgConnection, owner: &User, environment_id: Uuid, s: &Settings, new_service: bool) -> AppResult<()> {
    use crate::billing::allowance::{self, Ask};
    let services_in_project = if new_service {
        let (project, known): (Uuid, bool) = sqlx::query_as(
            "SELECT e.project_id, EXISTS (SELECT 1 FROM services s JOIN environments o ON o.id = s.environment_id WHERE o.project_id = e.project_id AND s.name = $2)
             FROM environments e WHERE e.id = $1",
        )
        .bind(environment_id)
        .bind(&s.name)
        .fetch_one(&mut *db)
        .await?;
        // A service another environment of the project has already is counted already.
        if known { 0 } else { allowance::services_in_project(&mut *db, project).await? + 1 }
    } else {
        0
    };
    allowance::check(db, owner.id, Ask { services_in_project, adding: 1, replicas: s.replicas, memory_mb: s.memory_mb, cpu_millis: s.cpu_millis }).await
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
type PgScalar<'q, T> = sqlx::query::QueryScalar<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>;

/// Binds the settings as parameters $2..$18, in the column order the INSERT and the UPDATE share.
macro_rules! bind_all {
    ($q:expr, $s:expr) => {
        $q.bind(&$s.name)
            .bind($s.source_kind.as_str())
            .bind(&$s.source)
            .bind(&$s.build_command)
            .bind(&$s.start_command)
            .bind($s.port)
            .bind($s.replicas)
            .bind($s.cpu_millis)
            .bind($s.memory_mb)
            .bind(&$s.healthcheck_path)
            .bind($s.healthcheck_timeout_secs)
            .bind($s.restart_policy.as_str())
            .bind($s.restart_max)
            .bind($s.max_processes)
            .bind(&$s.volume_path)
            .bind(&$s.cron_schedule)
            .bind(&$s.pre_deploy_command)
    };
}

fn bind_settings<'q>(q: PgQuery<'q>, s: &'q Settings) -> PgQuery<'q> {
    bind_all!(q, s)
}

fn bind_settings_scalar<'q, T>(q: PgScalar<'q, T>, s: &'q Settings) -> PgScalar<'q, T> {
    bind_all!(q, s)
}

fn duplicate(name: &str) -> AppError {
    AppError::conflict("name", format!("This environment already has a service named \"{name}\"."))
}

pub async fn list(db: &PgPool, owner: Uuid, project_id: Uuid) -> AppResult<Vec<Service>> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM projects WHERE id = $1 AND owner_id = $2")
        .bind(project_id)
        .bind(owner)
        .fetch_optional(db)
        .await?;
    found.ok_or_else(|| AppError::not_found("Project"))?;
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} WHERE p.id = $1 AND p.owner_id = $2 ORDER BY e.name = 'production' DESC, e.name, lower(s.name)"))
        .bind(project_id)
        .bind(owner)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Service::from).collect())
}

/// The references between the services of `owner`'s project, from their variables' values.
pub async fn links(db: &PgPool, sb: &crate::infra::secretbox::SecretBox, owner: Uuid, project_id: Uuid) -> AppResult<Vec<super::ServiceLink>> {
    use crate::variables::template::{references, Reference};
    let services = list(db, owner, project_id).await?;
    let mut out = std::collections::BTreeSet::new();
    let environments: std::collections::BTreeSet<Uuid> = services.iter().map(|s| s.environment_id).collect();
    for env in environments {
        for v in crate::variables::service::environment_values(db, sb, env).await? {
            let Some(from) = v.service_id else { continue };
            for r in references(&v.value).unwrap_or_default() {
                if let Reference::Service { service, .. } = r {
                    if let Some(to) = services.iter().find(|s| s.environment_id == env && s.name == service) {
                        if to.id != from {
                            out.insert(super::ServiceLink { from, to: to.id });
                        }
                    }
                }
            }
        }
    }
    // Declared dependencies (a template's depends_on) are arrows too.
    let ids: Vec<Uuid> = services.iter().map(|s| s.id).collect();
    let declared: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT service_id, depends_on_id FROM service_dependencies WHERE service_id = ANY($1) AND depends_on_id = ANY($1)")
        .bind(&ids)
        .fetch_all(db)
        .await?;
    out.extend(declared.into_iter().map(|(from, to)| super::ServiceLink { from, to }));
    Ok(out.into_iter().collect())
}

pub async fn get(db: &PgPool, owner: Uuid, id: Uuid) -> AppResult<Service> {
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE s.id = $1 AND p.owner_id = $2"))
        .bind(id)
        .bind(owner)
        .fetch_optional(db)
        .await?;
    row.map(Service::from).ok_or_else(|| AppError::not_found("Service"))
}

/// A new service's settings, checked: what [`insert`] writes.
#[derive(Debug, Clone)]
pub struct NewService(Settings);

impl NewService {
    pub fn name(&self) -> &str {
        &self.0.name
    }
    pub fn replicas(&self) -> i32 {
        self.0.replicas
    }
    pub fn memory_mb(&self) -> i32 {
        self.0.memory_mb
    }
    pub fn cpu_millis(&self) -> i32 {
        self.0.cpu_millis
    }
}

/// Checks a new service's settings and whether `owner` may use its source.
pub fn prepare(config: &Config, owner: &User, input: &ServiceInput) -> AppResult<NewService> {
    let name = input.name.clone().ok_or_else(|| AppError::validation("name", "Give the service a name."))?;
    let kind = input.source_kind.ok_or_else(|| AppError::validation("source_kind", "Choose a source: upload, git, directory, image or database."))?;
    let source = input.source.clone().unwrap_or_default();
    let mut settings = apply(Settings::defaults(name, kind, source), input)?;
    if kind == SourceKind::Database && settings.port.is_none() {
        settings.port = super::engine_port(&settings.source).map(i32::from);
    }
    check_source_policy(config, owner, settings.source_kind, &settings.source)?;
    Ok(NewService(settings))
}

/// Writes a prepared service into an environment (on the caller's connection or transaction).
pub async fn insert(conn: &mut sqlx::PgConnection, environment_id: Uuid, s: &NewService) -> AppResult<Uuid> {
    let settings = &s.0;
    let insert = sqlx::query_scalar(
        "INSERT INTO services (environment_id, name, source_kind, source, build_command, start_command, port, replicas,
            cpu_millis, memory_mb, healthcheck_path, healthcheck_timeout_secs, restart_policy, restart_max, max_processes, volume_path, cron_schedule, pre_deploy_command)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id",
    )
    .bind(environment_id);
    match bind_settings_scalar(insert, settings).fetch_one(&mut *conn).await {
        Ok(id) => Ok(id),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("services_environment_name_key") => Err(duplicate(&settings.name)),
        Err(e) => Err(e.into()),
    }
}

/// The environment of `owner`'s project a new service goes in: `environment_id`, or the
/// project's production environment; `None` when either is not the owner's.
pub async fn owned_environment(db: &PgPool, owner: Uuid, project_id: Uuid, environment_id: Option<Uuid>) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id
         WHERE p.id = $1 AND p.owner_id = $2 AND (e.id = $3 OR ($3 IS NULL AND e.name = 'production'))",
    )
    .bind(project_id)
    .bind(owner)
    .bind(environment_id)
    .fetch_optional(db)
    .await?)
}

pub async fn create(db: &PgPool, config: &Config, owner: &User, project_id: Uuid, input: &ServiceInput) -> AppResult<Service> {
    let environment_id = owned_environment(db, owner.id, project_id, input.environment_id).await?;
    let environment_id = match environment_id {
        Some(id) => id,
        None if input.environment_id.is_some() => {
            // Either the project or the environment is not the caller's: say which is missing.
            list(db, owner.id, project_id).await?;
            return Err(AppError::not_found("Environment"));
        }
        None => return Err(AppError::not_found("Project")),
    };
    let settings = prepare(config, owner, input)?;
    // One creation at a time per owner (as for projects and template deploys), so parallel
    // requests cannot all pass the plan's count.
    let mut tx = db.begin().await?;
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE").bind(owner.id).execute(&mut *tx).await?;
    check_plan(&mut tx, owner, environment_id, &settings.0, true).await?;
    let id = insert(&mut tx, environment_id, &settings).await?;
    tx.commit().await?;
    tracing::info!(service_id = %id, "service created");
    get(db, owner.id, id).await
}

pub async fn update(db: &PgPool, config: &Config, owner: &User, id: Uuid, input: &ServiceInput) -> AppResult<Service> {
    let current = get(db, owner.id, id).await?;
    if input.environment_id.is_some_and(|e| e != current.environment_id) {
        return Err(AppError::validation("environment_id", "A service cannot move to another environment."));
    }
    let settings = apply(Settings::of(&current), input)?;
    if settings.source_kind != current.source_kind || settings.source != current.source {
        check_source_policy(config, owner, settings.source_kind, &settings.source)?;
    }
    check_plan(&mut *db.acquire().await?, owner, current.environment_id, &settings, false).await?;
    let update = sqlx::query(
        "UPDATE services SET name = $2, source_kind = $3, source = $4, build_command = $5, start_command = $6, port = $7,
            replicas = $8, cpu_millis = $9, memory_mb = $10, healthcheck_path = $11, healthcheck_timeout_secs = $12,
            restart_policy = $13, restart_max = $14, max_processes = $15, volume_path = $16, cron_schedule = $17, pre_deploy_command = $18, updated_at = now()
         WHERE id = $1",
    )
    .bind(id);
    let result = bind_settings(update, &settings).execute(db).await;
    match result {
        Ok(_) => get(db, owner.id, id).await,
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("services_environment_name_key") => Err(duplicate(&settings.name)),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(db: &PgPool, owner: Uuid, id: Uuid, ip: &str) -> AppResult<()> {
    let service = get(db, owner, id).await?;
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM services WHERE id = $1").bind(id).execute(&mut *tx).await?;
    audit::record(&mut *tx, Some(owner), "service.delete", &format!("service:{id}"), serde_json::json!({ "name": service.name, "project_id": service.project_id }), ip).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings::defaults("web".into(), SourceKind::Directory, "/srv/web".into())
    }

    #[test]
    fn settings_are_validated_field_by_field() {
        let cases: Vec<(ServiceInput, &str)> = vec![
            (ServiceInput { name: Some("1web".into()), ..Default::default() }, "name"),
            (ServiceInput { source: Some("relative/dir".into()), ..Default::default() }, "source"),
            (ServiceInput { port: Some(70000), ..Default::default() }, "port"),
            (ServiceInput { replicas: Some(0), ..Default::default() }, "replicas"),
            (ServiceInput { memory_mb: Some(10), ..Default::default() }, "memory_mb"),
            (ServiceInput { healthcheck_path: Some("health".into()), ..Default::default() }, "healthcheck_path"),
            (ServiceInput { volume_path: Some("data".into()), ..Default::default() }, "volume_path"),
            (ServiceInput { cron_schedule: Some("every minute".into()), ..Default::default() }, "cron_schedule"),
            (ServiceInput { source_kind: Some(SourceKind::Database), source: Some("mysql".into()), ..Default::default() }, "source"),
            (ServiceInput { source_kind: Some(SourceKind::Git), source: Some("github.com/x/y".into()), ..Default::default() }, "source"),
            (ServiceInput { source_kind: Some(SourceKind::Git), source: Some("file:///srv/repo".into()), ..Default::default() }, "source"),
            (ServiceInput { source_kind: Some(SourceKind::Git), source: Some("/srv/repo".into()), ..Default::default() }, "source"),
            (ServiceInput { source_kind: Some(SourceKind::Git), source: Some("ext::sh -c touch% /tmp/pwned".into()), ..Default::default() }, "source"),
            (ServiceInput { source_kind: Some(SourceKind::Git), source: Some("--upload-pack=touch /tmp/x".into()), ..Default::default() }, "source"),
            (ServiceInput { source: Some("/srv/../root".into()), ..Default::default() }, "source"),
            (ServiceInput { source_kind: Some(SourceKind::Upload), source: Some("/srv/web".into()), ..Default::default() }, "source"),
            (ServiceInput { max_processes: Some(8), ..Default::default() }, "max_processes"),
            (ServiceInput { volume_path: Some("/usr/lib".into()), ..Default::default() }, "volume_path"),
            (ServiceInput { volume_path: Some("/app/data".into()), ..Default::default() }, "volume_path"),
            (ServiceInput { volume_path: Some("/data/../etc".into()), ..Default::default() }, "volume_path"),
        ];
        for (input, field) in cases {
            assert_eq!(apply(base(), &input).unwrap_err().field(), Some(field), "{input:?}");
        }
    }

    #[test]
    fn empty_strings_clear_optional_settings_and_absent_fields_keep_them() {
        let s = apply(base(), &ServiceInput { start_command: Some(" ./run ".into()), port: Some(8080), ..Default::default() }).unwrap();
        assert_eq!((s.start_command.as_deref(), s.port), (Some("./run"), Some(8080)));
        let s = apply(s, &ServiceInput { replicas: Some(2), ..Default::default() }).unwrap();
        assert_eq!((s.start_command.as_deref(), s.replicas), (Some("./run"), 2));
        let s = apply(s, &ServiceInput { start_command: Some("".into()), port: Some(0), ..Default::default() }).unwrap();
        assert_eq!((s.start_command, s.port), (None, None));
    }

    #[test]
    fn git_sources_are_remote_https_or_ssh() {
        for ok in ["https://github.com/acme/web.git", "ssh://git@github.com/acme/web.git", "git@github.com:acme/web.git", "https://user:tok@gitlab.com/a/b"] {
            assert!(is_remote_git_url(ok), "{ok}");
        }
        for bad in ["http://example.com/x.git", "file:///etc", "/srv/repo", "ext::sh -c id", "git@-oProxyCommand=x:y", "https://", "./x@y:z", "a/b@c:d"] {
            assert!(!is_remote_git_url(bad), "{bad}");
        }
    }

    #[test]
    fn volumes_mount_at_paths_of_their_own() {
        assert!(valid_volume_path("/data").is_ok());
        assert!(valid_volume_path("/var/lib/app").is_ok());
        for bad in ["/", "/tmp", "/etc/x", "/app", "/app/db", "/usr", "/proc/self", "data", "/a//b", "/opt/rust"] {
            assert!(valid_volume_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn switching_to_upload_clears_the_source_until_an_archive_arrives() {
        let s = apply(base(), &ServiceInput { source_kind: Some(SourceKind::Upload), ..Default::default() }).unwrap();
        assert_eq!((s.source_kind, s.source.as_str()), (SourceKind::Upload, ""));
        // The settings form sends the source it shows, unchanged: fine.
        let s = apply(s, &ServiceInput { source: Some(String::new()), replicas: Some(2), ..Default::default() }).unwrap();
        assert_eq!(s.replicas, 2);
    }

    #[test]
    fn cron_schedules_have_five_fields() {
        assert!(valid_cron("*/15 * * * *"));
        assert!(valid_cron("0 3 * * 1-5"));
        assert!(!valid_cron("* * * *"));
        assert!(!valid_cron("@daily"));
    }
}
