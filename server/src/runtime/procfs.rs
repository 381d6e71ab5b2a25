//! What /proc says about processes: which carry a tag in their environment (a process started
//! by this runtime, however deep or detached), which belong to a process group, and how much
//! CPU and memory a group uses.

use std::{fs, path::Path};

pub fn pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
}

/// Whether the process's environment holds `KEY=value` exactly.
pub fn has_env(pid: i32, entry: &str) -> bool {
    match fs::read(format!("/proc/{pid}/environ")) {
        Ok(env) => env.split(|b| *b == 0).any(|e| e == entry.as_bytes()),
        Err(_) => false,
    }
}

/// Processes whose environment holds `entry` (`ROUNDHOUSE_RUNTIME_ID=…`). Zombies are left out:
/// they are already dead and only wait for their parent.
pub fn tagged(entry: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    pids().filter(|&p| p != me && has_env(p, entry) && stat(p).is_some_and(|s| s.state != 'Z')).collect()
}

/// Whether one of the process's arguments is exactly `arg`.
pub fn has_arg(pid: i32, arg: &[u8]) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg))
}

#[derive(Debug, Clone)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let raw = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    let rest = &raw[raw.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) … utime(11) stime(12) … rss(21)
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        rss_pages: f.get(21)?.parse().ok()?,
    })
}

/// CPU ticks and resident bytes of every live process in a group.
pub fn group_usage(pgid: i32) -> (u64, u64) {
    let page = page_size();
    pids()
        .filter_map(stat)
        .filter(|s| s.pgrp == pgid && s.state != 'Z')
        .fold((0, 0), |(cpu, mem), s| (cpu + s.cpu_ticks, mem + s.rss_pages * page))
}

pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && stat(pid).is_some_and(|s| s.state != 'Z')
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as u64 } else { 100 }
}

/// Sends `signal` to a whole process group.
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill with a negative pid signals the group; no memory is involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

pub fn signal(pid: i32, signal: i32) {
    if pid > 1 {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_child_is_found_and_its_group_measured() {
        use std::os::unix::process::CommandExt;
        let tag = format!("RH_PROCFS_TEST={}", std::process::id());
        let (k, v) = tag.split_once('=').unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").env(k, v).process_group(0).spawn().unwrap();
        let pid = child.id() as i32;
        // Until the child has exec'd, /proc shows the parent's environment: wait for the tag.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tagged(&tag).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(tagged(&tag), vec![pid]);
        assert_eq!(stat(pid).unwrap().pgrp, pid, "leads its own group");
        let (_, mem) = group_usage(pid);
        assert!(mem > 0, "a live process has resident memory");
        signal_group(pid, libc::SIGKILL);
        child.wait().unwrap();
        assert!(tagged(&tag).is_empty());
        assert!(!alive(pid));
    }
}
