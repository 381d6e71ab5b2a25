//! Whether this machine can sandbox what tenants deploy, checked once at start by doing it:
//! each missing piece is named, so the operator knows exactly what to install or allow.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// A program on PATH or in the usual system folders.
pub fn find(program: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The checks that need no setup: root, bubblewrap, slirp4netns. Answers the programs.
pub fn programs(outbound: bool) -> Result<(PathBuf, Option<PathBuf>), Vec<String>> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("the platform must run as root to give each project its own uid, network and cgroup".to_string());
    }
    let bwrap = find("bwrap");
    if bwrap.is_none() {
        missing.push("bubblewrap is not installed (apt-get install bubblewrap)".to_string());
    }
    let slirp = if outbound { find("slirp4netns") } else { None };
    if outbound && slirp.is_none() {
        missing.push("slirp4netns is not installed (apt-get install slirp4netns), or set ROUNDHOUSE_SANDBOX_OUTBOUND=false".to_string());
    }
    match (missing.is_empty(), bwrap) {
        (true, Some(b)) => Ok((b, slirp)),
        _ => Err(missing),
    }
}

/// Runs `true` in a sandbox as `uid`: proves unprivileged user namespaces work for bubblewrap.
pub fn trial_run(bwrap: &Path, uid: u32) -> Result<(), String> {
    let mut cmd = Command::new(bwrap);
    cmd.args([
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--disable-userns",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        "/usr/bin/true",
    ])
    .env_clear()
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chdir(c"/".as_ptr()) != 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(uid, uid, uid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().map_err(|e| format!("bubblewrap could not be started ({e})"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(if err.contains("namespace") || err.contains("Operation not permitted") || err.contains("setting up uid map") {
        format!(
            "unprivileged user namespaces are not allowed on this machine ({err}): enable them (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)"
        )
    } else {
        format!("a trial sandbox failed: {err}")
    })
}

/// The first folder above `path` that other users cannot pass through, if any.
pub fn closed_ancestor(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors().skip(1).find(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0)).map(Path::to_path_buf)
}
