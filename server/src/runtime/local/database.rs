//! Database services on the local runtime: PostgreSQL and Redis from the system's binaries,
//! in the same sandbox as any service (the project's uid, its network, its limits), with their
//! data in the service's volume.

use super::Local;
use crate::{
    logs::LogSink,
    runtime::{
        sandbox::{Launch, Mount},
        InstanceSpec,
    },
};
use app::deployments::Stream;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

const MISSING_POSTGRES: &str =
    "PostgreSQL server binaries (initdb, postgres) are not installed on this machine: install the `postgresql` package.";
const MISSING_REDIS: &str = "redis-server is not installed on this machine: install the `redis-server` package.";
/// Where a database's volume is inside its sandbox.
pub const DATA_DIR: &str = "/data";

pub fn check_installed(engine: &str) -> Result<(), String> {
    match engine {
        "postgres" if postgres_bindir().is_none() => Err(MISSING_POSTGRES.into()),
        "redis" if super::super::sandbox::probe::find("redis-server").is_none() => Err(MISSING_REDIS.into()),
        "postgres" | "redis" => Ok(()),
        other => Err(format!("Unknown database engine {other:?}: use postgres or redis.")),
    }
}

impl Local {
    /// `volumes/<service>`: the platform's; the service's own folders (`data`, `database`) are
    /// inside it.
    pub(super) fn volume_dir(&self, service: uuid::Uuid) -> PathBuf {
        self.root.join("volumes").join(service.to_string())
    }

    /// The data folder of a database, as mounted for it: `volumes/<service>/database`, beside
    /// (never above) an app's `volumes/<service>/data`, in a folder only the platform writes.
    pub(super) fn database_mount(&self, spec: &InstanceSpec) -> Mount {
        Mount { host: self.volume_dir(spec.spec.id).join("database"), at: DATA_DIR.into(), writable: true }
    }

    /// The start command of a database service, preparing its data folder on first use.
    pub(super) async fn database_command(&self, spec: &InstanceSpec, logs: &LogSink) -> Result<String, String> {
        let mount = self.database_mount(spec);
        let data = self.isolation.visible(&mount);
        let port = spec.private_port;
        match spec.spec.source.as_str() {
            "postgres" => {
                let bin = postgres_bindir().ok_or(MISSING_POSTGRES)?;
                if std::fs::symlink_metadata(mount.host.join("pgdata/PG_VERSION")).is_err() {
                    logs.system("Creating the database cluster (initdb)").await;
                    let password = spec.env.get("PGPASSWORD").cloned().unwrap_or_default();
                    let pguser = spec.env.get("PGUSER").cloned().unwrap_or_else(|| "postgres".into());
                    // The password reaches initdb in a file only its user can read, never on a
                    // command line; the file goes once the cluster exists.
                    let pwfile = mount.host.join(".pwfile");
                    std::fs::create_dir_all(&mount.host).map_err(|e| e.to_string())?;
                    let owner = match self.isolation.sandboxed() {
                        true => self.uid(spec.spec.project_id).await?,
                        // Without the sandbox, PostgreSQL runs as the postgres system user.
                        false => super::isolation::system_user().0,
                    };
                    super::sandbox_file(&pwfile, password.as_bytes(), Some(owner)).map_err(|e| e.to_string())?;
                    let script = format!(
                        "{}/initdb -D {data}/pgdata -U {} --pwfile={data}/.pwfile --auth=scram-sha-256 -E UTF8 --no-instructions",
                        bin.display(),
                        super::build::shell_quote(&pguser),
                    );
                    let code = self.run_once(spec, mount.clone(), script, None, logs).await;
                    let _ = std::fs::remove_file(&pwfile);
                    match code? {
                        0 => {}
                        c => return Err(format!("initdb exited with code {c}")),
                    }
                }
                // The socket goes to the sandbox's private /tmp; TCP only on its network's loopback.
                let sockets = if self.isolation.sandboxed() { "/tmp".to_string() } else { format!("{data}/socket") };
                if !self.isolation.sandboxed() {
                    let _ = std::fs::create_dir_all(mount.host.join("socket"));
                }
                Ok(format!("exec {}/postgres -D {data}/pgdata -h 127.0.0.1 -p {port} -k {sockets}", bin.display()))
            }
            "redis" => {
                let server = super::super::sandbox::probe::find("redis-server").ok_or(MISSING_REDIS)?;
                let password = spec.env.get("REDISPASSWORD").cloned().unwrap_or_default();
                let conf = format!("bind 127.0.0.1\nport {port}\ndir {data}\nrequirepass {password}\nappendonly yes\nprotected-mode yes\n");
                let owner = self.uid(spec.spec.project_id).await?;
                std::fs::create_dir_all(&mount.host).map_err(|e| e.to_string())?;
                super::sandbox_file(&mount.host.join("redis.conf"), conf.as_bytes(), self.isolation.sandboxed().then_some(owner)).map_err(|e| e.to_string())?;
                Ok(format!("exec {} {data}/redis.conf", server.display()))
            }
            other => Err(format!("Unknown database engine {other:?}: use postgres or redis.")),
        }
    }

    /// Runs a one-off command of an instance (initdb) in its sandbox; answers its exit code.
    async fn run_once(&self, spec: &InstanceSpec, mount: Mount, script: String, stdin: Option<Vec<u8>>, logs: &LogSink) -> Result<i32, String> {
        let launch = Launch {
            unit: format!("i-{}", spec.instance_id),
            project: spec.spec.project_id,
            environment: spec.spec.environment_id,
            workdir: mount,
            home: self.home_dir(spec.spec.id),
            volume: None,
            script,
            env: BTreeMap::new(),
            limits: self.instance_limits(&spec.spec),
            stdin: stdin.is_some(),
            refuses_root: true,
            hosts: false,
        };
        let log = logs.stream(Stream::Build, None);
        let mut running = self.run(launch, log.clone(), log, stdin).await.map_err(crate::runtime::RuntimeError::shown)?;
        let status = running.child.wait().await.map_err(|e| e.to_string());
        running.finish().await;
        let status = status?;
        Ok(status.code().unwrap_or(-1))
    }
}

pub fn postgres_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    dirs.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    dirs.pop().or_else(|| super::super::sandbox::probe::find("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
}
