//! Who a project's code runs as: a host uid (and gid of the same number) of its own, taken
//! from the configured range, recorded in Postgres and never given to another project — and
//! the minimal `/etc` its sandbox sees (passwd, group, hosts, resolv.conf, nsswitch.conf).

use sqlx::PgPool;
use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::Mutex,
};
use uuid::Uuid;

/// The name the project's uid has inside its sandbox (its home is `/home/app`).
pub const USER: &str = "app";

pub struct Identities {
    db: PgPool,
    range: (u32, u32),
    known: Mutex<HashMap<Uuid, u32>>,
}

impl Identities {
    pub fn new(db: PgPool, range: (u32, u32)) -> Self {
        Identities { db, range, known: Mutex::new(HashMap::new()) }
    }

    /// The project's uid, allocated on first use.
    pub async fn uid(&self, project: Uuid) -> Result<u32, String> {
        if let Some(uid) = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(&project) {
            return Ok(*uid);
        }
        let uid = self.allocate(project).await.map_err(|e| {
            tracing::error!(error = %e, %project, "allocating a sandbox uid failed");
            "Could not give the project an identity of its own.".to_string()
        })??;
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(project, uid);
        Ok(uid)
    }

    async fn allocate(&self, project: Uuid) -> sqlx::Result<Result<u32, String>> {
        let (low, high) = (i64::from(self.range.0), i64::from(self.range.1));
        for _ in 0..100 {
            if let Some(uid) = sqlx::query_scalar::<_, i64>("SELECT uid FROM sandbox_uids WHERE project_id = $1")
                .bind(project)
                .fetch_optional(&self.db)
                .await?
            {
                return Ok(Ok(uid as u32));
            }
            let candidate: i64 = sqlx::query_scalar("SELECT $1::bigint + nextval('sandbox_uid_seq') - 1").bind(low).fetch_one(&self.db).await?;
            if candidate > high {
                return Ok(Err(format!(
                    "Every sandbox uid of ROUNDHOUSE_SANDBOX_UIDS ({low}-{high}) is taken: the operator must widen the range."
                )));
            }
            // A uid taken under another range setting, or a project allocated concurrently:
            // try again (the next candidate, or the row the other allocation wrote).
            let r = sqlx::query("INSERT INTO sandbox_uids (uid, project_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(candidate)
                .bind(project)
                .execute(&self.db)
                .await?;
            if r.rows_affected() == 1 {
                tracing::info!(%project, uid = candidate, "sandbox uid allocated");
                return Ok(Ok(candidate as u32));
            }
        }
        Ok(Err("Could not allocate a sandbox uid.".into()))
    }
}

/// Host `/etc` entries every sandbox sees read-only (when the host has them): what programs
/// need to run — the dynamic linker's cache, alternatives, CA certificates, time zone, MIME
/// types — and nothing about the host's users, services or secrets.
pub const HOST_ETC: [&str; 14] = [
    "alternatives",
    "ssl/certs",
    "ca-certificates.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "perl",
    "python3.11",
];

/// The `/etc` files of a project's sandbox, written once per uid under `root`. Answers their
/// folder.
pub fn etc_files(root: &Path, uid: u32, outbound: bool) -> io::Result<PathBuf> {
    // One writer at a time: a project's services start together, and two writers renaming
    // the same temporary file would have one fail (the file already moved).
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = root.join(uid.to_string());
    std::fs::create_dir_all(&dir)?;
    let files = [
        (
            "passwd",
            format!("root:x:0:0:root:/root:/usr/sbin/nologin\n{USER}:x:{uid}:{uid}:Roundhouse service:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ),
        ("group", format!("root:x:0:\n{USER}:x:{uid}:\nnogroup:x:65534:\n")),
        ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string()),
        // slirp4netns answers DNS at 10.0.2.3; without an uplink there is nothing to ask.
        ("resolv.conf", if outbound { "nameserver 10.0.2.3\n".to_string() } else { String::new() }),
        ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".to_string()),
    ];
    for (name, body) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(body.as_str()) {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    // Mount points for the host entries: `/etc` is mounted read-only, so they must exist first.
    for entry in HOST_ETC {
        let host = Path::new("/etc").join(entry);
        let point = dir.join(entry);
        if let Some(parent) = point.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::metadata(&host) {
            Ok(m) if m.is_dir() => std::fs::create_dir_all(&point)?,
            Ok(_) if !point.exists() => drop(std::fs::File::create(&point)?),
            _ => {}
        }
    }
    Ok(dir)
}
