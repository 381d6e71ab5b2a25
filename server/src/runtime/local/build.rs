//! Builds on the local runtime: the source is put into the build's folder (a copy of an
//! admin's directory, a git clone or an uploaded archive unpacked inside the sandbox), the
//! stack is detected, and the build command runs in the sandbox with the build limits.
//!
//! Layout: `builds/<deployment>/` belongs to the platform and holds `start` (the start
//! command); `builds/<deployment>/app/` belongs to the project's uid and is all the build (and
//! later the instances, read-only) can see of it. The platform never follows a link inside it.

use super::Local;
use crate::{
    logs::LogSink,
    runtime::{
        sandbox::{self, Launch, Mount},
        stack, BuildJob,
    },
};
use app::{
    deployments::Stream,
    services::{upload, SourceKind},
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Build-tree entries never copied from a directory source.
const SKIPPED: [&str; 5] = [".git", "node_modules", "target", ".venv", "__pycache__"];
pub const START_FILE: &str = "start";
/// Where distributions keep the system's CA bundle (Debian and Ubuntu, Fedora and RHEL, Alpine
/// and the BSDs); the sandbox sees the host's `/etc/ssl/certs`.
const SYSTEM_CA_BUNDLES: [&str; 3] = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];
const DISK_CHECK_EVERY: Duration = Duration::from_secs(2);
/// Where removed builds wait for `rm -rf` (inside the runtime's folder, so a rename moves them).
const TRASH: &str = "builds-trash";

/// Deletes `path` in the background (`rm -rf --one-file-system`: iterative, no link followed).
fn spawn_removal(path: PathBuf) {
    tokio::spawn(async move {
        let done = tokio::process::Command::new("rm").arg("-rf").arg("--one-file-system").arg("--").arg(&path).status().await;
        if !done.is_ok_and(|s| s.success()) {
            tracing::warn!(path = %path.display(), "removing an old build failed; trying again at the next pruning");
        }
    });
}

/// A step of a build ends one of these ways.
enum Step {
    Exited(i32),
    Failed(String),
}

impl Local {
    pub(super) fn build_dir(&self, deployment: uuid::Uuid) -> PathBuf {
        self.root.join("builds").join(deployment.to_string())
    }

    /// `builds/<deployment>/` folders, by deployment. Leftovers of earlier removals
    /// (`builds-trash/`) are deleted on the way.
    pub(super) async fn builds(&self) -> Result<Vec<(uuid::Uuid, String)>, String> {
        let trash = self.root.join(TRASH);
        if let Ok(entries) = std::fs::read_dir(&trash) {
            for entry in entries.flatten() {
                spawn_removal(entry.path());
            }
        }
        let dir = self.root.join("builds");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("reading {}: {e}", dir.display())),
        };
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let id = uuid::Uuid::parse_str(e.file_name().to_str()?).ok()?;
                Some((id, e.path().to_string_lossy().into_owned()))
            })
            .collect())
    }

    /// Moves a build out of `builds/` (one rename: gone for `has_artifact` at once) and deletes
    /// it in the background with `rm -rf`, which never follows a link and walks a tree of any
    /// depth or size without holding the caller (a tenant decides both).
    pub(super) async fn remove_build(&self, artifact: &str) -> Result<(), String> {
        let path = Path::new(artifact);
        let builds = self.root.join("builds");
        let Some(name) = path.file_name().filter(|_| path.parent() == Some(builds.as_path())) else {
            return Err(format!("{artifact} is not a build of this runtime"));
        };
        let trash = self.root.join(TRASH);
        std::fs::create_dir_all(&trash).map_err(|e| format!("creating {}: {e}", trash.display()))?;
        let to = trash.join(format!("{}-{}", name.to_string_lossy(), uuid::Uuid::new_v4().simple()));
        match std::fs::rename(path, &to) {
            Ok(()) => {
                spawn_removal(to);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("moving {artifact} away: {e}")),
        }
    }

    /// `homes/<service>/home`: the service's home, in a folder of the platform's.
    pub(super) fn home_dir(&self, service: uuid::Uuid) -> PathBuf {
        self.root.join("homes").join(service.to_string()).join("home")
    }

    pub(super) async fn build_job(&self, job: BuildJob, logs: LogSink, cancel: CancellationToken) -> Result<String, String> {
        let dir = self.build_dir(job.deployment_id);
        let app = dir.join("app");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&app).map_err(|e| format!("Could not create the build folder: {e}"))?;
        let spec = &job.spec;
        let log = logs.stream(Stream::Build, None);
        match spec.source_kind {
            SourceKind::Image => {
                return Err("The local runtime cannot run container images: that needs the Kubernetes runtime.".into());
            }
            SourceKind::Database => {
                super::database::check_installed(&spec.source)?;
                log.line(&format!("Database: {} (system binaries, no build)", spec.source)).await;
                return Ok(dir.to_string_lossy().into_owned());
            }
            SourceKind::Directory => {
                let from = PathBuf::from(&spec.source);
                if !from.is_dir() {
                    return Err(format!("The source directory {} does not exist on this machine.", spec.source));
                }
                log.line(&format!("Copying {}", spec.source)).await;
                let (to, mut budget) = (app.clone(), self.budget());
                let copied = tokio::task::spawn_blocking(move || copy_tree(&from, &to, &mut budget))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("Copying the source failed: {e}"))?;
                if self.isolation.sandboxed() {
                    let uid = self.uid(spec.project_id).await?;
                    let tree = app.clone();
                    tokio::task::spawn_blocking(move || sandbox::own_tree(&tree, uid))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("Could not hand the source to the project's user: {e}"))?;
                }
                log.line(&format!("Copied {copied} files")).await;
            }
            SourceKind::Git => {
                log.line(&format!("Cloning {}", without_credentials(&spec.source))).await;
                // The URL (which may hold a token) travels as a variable, not on a command line.
                let clone = "git -c protocol.allow=never -c protocol.https.allow=always -c protocol.ssh.allow=always -c core.hooksPath=/dev/null \
                     -c credential.helper= clone --depth 1 --quiet --no-recurse-submodules -- \"$ROUNDHOUSE_GIT_URL\" .";
                // With an operator's CA, the clone (and only the clone) trusts the system's CAs
                // and it: the bundle comes in on standard input, into the sandbox's private /tmp.
                let ca_bundle = self.git_ca_bundle().await.map_err(|detail| {
                    // The operator's file, not the tenant's business: the detail is logged.
                    tracing::error!(error = %detail, "the git CA file cannot be read");
                    "The platform's extra CA certificates for git cannot be read: an administrator must fix it.".to_string()
                })?;
                let script = match ca_bundle {
                    Some(_) => format!(
                        "ca=$(mktemp) && cat > \"$ca\" && GIT_SSL_CAINFO=\"$ca\" {clone}; rc=$?; rm -f \"$ca\"; exit $rc"
                    ),
                    None => clone.to_string(),
                };
                let mut env = BTreeMap::new();
                env.insert("ROUNDHOUSE_GIT_URL".to_string(), spec.source.clone());
                env.insert("GIT_TERMINAL_PROMPT".to_string(), "0".to_string());
                env.insert("GIT_CONFIG_NOSYSTEM".to_string(), "1".to_string());
                env.insert("GIT_SSH_COMMAND".to_string(), "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new".to_string());
                match self.run_step(&job, &app, script, env, ca_bundle, &logs, &cancel).await? {
                    Step::Exited(0) => {}
                    Step::Exited(c) => {
                        return Err(format!("git clone exited with code {c}: check the URL and that the repository is reachable from this machine."))
                    }
                    Step::Failed(why) => return Err(why),
                }
            }
            SourceKind::Upload => {
                let archive = job.archive.clone().ok_or("The uploaded archive of this deployment is gone: upload it again.")?;
                // Checked when it was accepted; checked again (off the async workers), it costs little.
                let (bytes, limits) = (archive.clone(), upload::Limits { max_bytes: u64::MAX, max_unpacked: self.settings.build_disk_bytes });
                let summary = tokio::task::spawn_blocking(move || upload::inspect(&bytes, &limits))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                log.line(&format!("Unpacking the uploaded archive ({} entries)", summary.files)).await;
                // Unpacked by the project's own user inside its sandbox. A tree that is one folder
                // (`tar czf app.tgz app/`) is lifted up one level.
                let script = "tar -xzf - --no-same-owner --no-same-permissions && \
                    n=$(ls -A | wc -l) && d=$(ls -A) && \
                    if [ \"$n\" = 1 ] && [ -d \"$d\" ] && [ ! -L \"$d\" ]; then \
                      mv -- \"$d\" .rh-top && find .rh-top -mindepth 1 -maxdepth 1 -exec mv -t . -- {} + && rmdir .rh-top; \
                    fi"
                .to_string();
                match self.run_step(&job, &app, script, BTreeMap::new(), Some(archive.to_vec()), &logs, &cancel).await? {
                    Step::Exited(0) => {}
                    Step::Exited(c) => return Err(format!("Unpacking the archive failed (tar exited with code {c}).")),
                    Step::Failed(why) => return Err(why),
                }
            }
        }
        let static_server = self.isolation.static_server();
        let (tree, build_cmd, start_cmd) = (app.clone(), spec.build_command.clone(), spec.start_command.clone());
        let plan = tokio::task::spawn_blocking(move || stack::detect(&tree, build_cmd.as_deref(), start_cmd.as_deref(), &static_server))
            .await
            .map_err(|e| e.to_string())?;
        log.line(&format!("Detected: {}", plan.stack)).await;
        let Some(start) = plan.start else {
            return Err("Roundhouse cannot tell how to start this service: set a start command, or add a Cargo.toml, package.json, requirements.txt, pyproject.toml, Procfile or index.html.".into());
        };
        std::fs::write(dir.join(START_FILE), &start).map_err(|e| e.to_string())?;
        if let Some(build) = plan.build {
            log.line(&format!("$ {build}")).await;
            let started = Instant::now();
            match self.run_step(&job, &app, build, job.env.clone(), None, &logs, &cancel).await? {
                Step::Exited(0) => log.line(&format!("Build finished in {:.1}s", started.elapsed().as_secs_f64())).await,
                Step::Exited(c) => return Err(format!("The build command exited with code {c}.")),
                Step::Failed(why) => return Err(why),
            }
        }
        log.line(&format!("Start command: {start}")).await;
        Ok(dir.to_string_lossy().into_owned())
    }

    /// Runs one step of a build in its sandbox, with its output in the build log. A cancelled
    /// build answers `Err`; a step over the memory or disk budget, `Step::Failed`.
    #[allow(clippy::too_many_arguments)]
    /// The CA bundle a clone trusts when the operator added one: the system's bundle (where
    /// the sandbox's git finds it too), then `ROUNDHOUSE_GIT_CA_FILE`. Read at each clone, so
    /// a renewed file needs no restart.
    async fn git_ca_bundle(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(extra) = &self.settings.git_ca_file else { return Ok(None) };
        let mut bundle = Vec::new();
        for system in SYSTEM_CA_BUNDLES {
            if let Ok(pem) = tokio::fs::read(system).await {
                bundle = pem;
                break;
            }
        }
        if !bundle.is_empty() && !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        let pem = tokio::fs::read(extra)
            .await
            .map_err(|e| format!("Could not read the git CA file {} (ROUNDHOUSE_GIT_CA_FILE): {e}", extra.display()))?;
        bundle.extend(pem);
        Ok(Some(bundle))
    }

    async fn run_step(
        &self,
        job: &BuildJob,
        app: &Path,
        script: String,
        env: BTreeMap<String, String>,
        stdin: Option<Vec<u8>>,
        logs: &LogSink,
        cancel: &CancellationToken,
    ) -> Result<Step, String> {
        let home = self.home_dir(job.spec.id);
        let launch = Launch {
            unit: format!("b-{}", job.deployment_id),
            project: job.spec.project_id,
            environment: job.spec.environment_id,
            workdir: Mount { host: app.to_path_buf(), at: sandbox::APP_DIR.into(), writable: true },
            home: home.clone(),
            volume: None,
            script,
            env,
            limits: self.settings.build_limits,
            stdin: stdin.is_some(),
            refuses_root: false,
            hosts: false,
        };
        let log = logs.stream(Stream::Build, None);
        let mut running = self.run(launch, log.clone(), log, stdin).await.map_err(crate::runtime::RuntimeError::shown)?;
        let watched = [app.to_path_buf(), home];
        let over_budget = async {
            loop {
                tokio::time::sleep(DISK_CHECK_EVERY).await;
                if let Some(over) = self.over_budget(&watched).await {
                    return over;
                }
            }
        };
        let outcome = tokio::select! {
            status = running.child.wait() => match self.over_budget(&watched).await {
                // What a step wrote in its last moments counts too.
                Some(over) => Err(Some(over)),
                None => Ok(status),
            },
            _ = cancel.cancelled() => Err(None),
            over = over_budget => Err(Some(over)),
        };
        // Whatever the step left running (a daemon, a forked helper) ends with it.
        let oom = running.finish().await;
        match outcome {
            Err(None) => Err("Cancelled".into()),
            Err(Some(why)) => Ok(Step::Failed(why)),
            Ok(_) if oom => Ok(Step::Failed(format!("The build ran out of memory ({} MB limit).", self.settings.build_limits.memory_bytes >> 20))),
            Ok(Ok(status)) => Ok(Step::Exited(status.code().unwrap_or(-1))),
            Ok(Err(e)) => Ok(Step::Failed(format!("The build could not be waited for: {e}"))),
        }
    }
}

impl Local {
    /// What one build may use on disk.
    fn budget(&self) -> Budget {
        Budget { bytes: self.settings.build_disk_bytes, files: self.settings.build_max_files }
    }

    /// Why the trees at `dirs` are over the build's disk budget, if they are.
    async fn over_budget(&self, dirs: &[PathBuf]) -> Option<String> {
        let (dirs, mut budget) = (dirs.to_vec(), self.budget());
        let fits = tokio::task::spawn_blocking(move || dirs.iter().all(|d| size_within(d, &mut budget))).await.unwrap_or(true);
        if fits {
            return None;
        }
        Some(format!(
            "The build used more than {} MB of disk or made more than {} files and folders.",
            self.settings.build_disk_bytes >> 20,
            self.settings.build_max_files
        ))
    }
}

/// Bytes and entries (files, folders, links: each takes an inode) a tree may still grow by.
struct Budget {
    bytes: u64,
    files: u64,
}

impl Budget {
    fn take(&mut self, bytes: u64) -> bool {
        match (self.bytes.checked_sub(bytes), self.files.checked_sub(1)) {
            (Some(bytes), Some(files)) => {
                *self = Budget { bytes, files };
                true
            }
            _ => false,
        }
    }
}

/// Whether the tree at `dir` fits in the budget (links are not followed; the walk stops as
/// soon as it does not).
fn size_within(dir: &Path, budget: &mut Budget) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return true };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        use std::os::unix::fs::MetadataExt;
        if !budget.take(meta.blocks() * 512) {
            return false;
        }
        if meta.is_dir() && !size_within(&entry.path(), budget) {
            return false;
        }
    }
    true
}

/// Copies a directory source (an admin's), links as links, skipping build output and
/// anything that is not a file, folder or link; stops past the budget.
fn copy_tree(from: &Path, to: &Path, budget: &mut Budget) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            n += copy_tree(&entry.path(), &target, budget)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
            n += 1;
        } else if kind.is_file() {
            if !budget.take(entry.metadata()?.len()) {
                return Err(std::io::Error::other("the source is larger than the build disk limit (bytes or files)"));
            }
            std::fs::copy(entry.path(), &target)?;
            n += 1;
        }
    }
    Ok(n)
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A git URL as it may be shown in a log: without a password or token in it.
pub fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) if authority.contains('@') => {
                format!("{scheme}://•••@{}/{path}", authority.rsplit_once('@').map_or(authority, |(_, h)| h))
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn credentials_never_reach_the_build_log() {
        assert_eq!(without_credentials("https://user:tok3n@github.com/a/b.git"), "https://•••@github.com/a/b.git");
        assert_eq!(without_credentials("https://github.com/a/b.git"), "https://github.com/a/b.git");
        assert_eq!(without_credentials("git@github.com:a/b.git"), "git@github.com:a/b.git");
    }

    #[test]
    fn the_tree_copy_skips_build_output_and_vcs_and_stops_past_its_budget() {
        let base = std::env::temp_dir().join(format!("rh-copy-{}", std::process::id()));
        let src = base.join("src");
        std::fs::create_dir_all(src.join("lib")).unwrap();
        std::fs::write(src.join("lib/a.txt"), "a").unwrap();
        for skipped in SKIPPED {
            std::fs::create_dir_all(src.join(skipped)).unwrap();
            std::fs::write(src.join(skipped).join("inside"), "b").unwrap();
        }
        let kib = || Budget { bytes: 1024, files: 1000 };
        assert_eq!(copy_tree(&src, &base.join("dst"), &mut kib()).unwrap(), 1);
        assert!(base.join("dst/lib/a.txt").is_file());
        for skipped in SKIPPED {
            assert!(!base.join("dst").join(skipped).exists(), "{skipped} is not copied");
        }
        std::fs::write(src.join("lib/big"), vec![0u8; 4096]).unwrap();
        assert!(copy_tree(&src, &base.join("dst2"), &mut kib()).is_err());
        assert!(!size_within(&src, &mut kib()), "4 KiB do not fit in 1 KiB");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn empty_files_count_against_the_budget_as_entries() {
        let dir = std::env::temp_dir().join(format!("rh-inodes-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for i in 0..20 {
            std::fs::File::create(dir.join("sub").join(i.to_string())).unwrap();
        }
        // No byte used, but 21 entries (the folder and its 20 files).
        assert!(size_within(&dir, &mut Budget { bytes: 1 << 30, files: 21 }));
        assert!(!size_within(&dir, &mut Budget { bytes: 1 << 30, files: 20 }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
