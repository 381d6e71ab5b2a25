//! Limits and accounting of one sandboxed unit (a build or an instance) through cgroups, by
//! the plain cgroupfs files, for both hierarchies:
//!
//! - **v2** (unified, `cgroup.controllers` at the mount root): one folder per unit under
//!   `<mount>/<root>/`, with `memory.max`, `cpu.max`, `pids.max`; killed by `cgroup.kill`.
//! - **v1** (one mount per controller, as on this machine): one folder per unit under
//!   `<mount>/<controller>/<root>/` for `memory`, `cpu`, `cpuacct`, `pids` and `freezer`.
//!
//! A process joins its unit before it runs anything (the spawner writes `0` to each
//! `cgroup.procs` in the child, before `exec`), so everything it ever starts is counted,
//! limited and killed with it — whatever it does with sessions, process groups or its
//! environment.

use std::{
    fs,
    io::{self, Write},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::Duration,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// Thousandths of a CPU.
    pub cpu_millis: u32,
    /// Processes and threads at once.
    pub pids: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The folder all of one runtime's units live in, in every hierarchy it uses.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    pub version: Version,
    /// v2: the one folder; v1: one folder per controller (memory first).
    dirs: Vec<(&'static str, PathBuf)>,
}

const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];
const V1_REQUIRED: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];
const CPU_PERIOD_US: u64 = 100_000;

impl CgroupRoot {
    /// Finds the hierarchy mounted at `mount` (normally `/sys/fs/cgroup`) and makes `name`
    /// in it, ready for units. Answers what is missing when it cannot.
    pub fn open(mount: &Path, name: &str) -> Result<Self, String> {
        if mount.join("cgroup.controllers").is_file() {
            let available = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
            let missing: Vec<&str> = ["memory", "cpu", "pids"].into_iter().filter(|c| !available.split_whitespace().any(|a| a == *c)).collect();
            if !missing.is_empty() {
                return Err(format!("cgroup v2 at {} lacks the {} controller(s)", mount.display(), missing.join(", ")));
            }
            let root = mount.join(name);
            // Units may only use the controllers their parents hand down.
            write(&mount.join("cgroup.subtree_control"), "+memory +cpu +pids")
                .map_err(|e| format!("cannot enable the memory, cpu and pids controllers in {} ({e})", mount.display()))?;
            mkdir(&root).map_err(|e| format!("cannot create the cgroup {} ({e})", root.display()))?;
            write(&root.join("cgroup.subtree_control"), "+memory +cpu +pids")
                .map_err(|e| format!("cannot enable controllers in {} ({e})", root.display()))?;
            return Ok(CgroupRoot { version: Version::V2, dirs: vec![("unified", root)] });
        }
        let mut dirs = Vec::new();
        for controller in V1_CONTROLLERS {
            let base = mount.join(controller);
            if !base.join("cgroup.procs").is_file() {
                if V1_REQUIRED.contains(&controller) {
                    return Err(format!("the cgroup v1 {controller} controller is not mounted at {}", base.display()));
                }
                continue;
            }
            let root = base.join(name);
            mkdir(&root).map_err(|e| format!("cannot create the cgroup {} ({e}): cgroups need root", root.display()))?;
            dirs.push((controller, root));
        }
        Ok(CgroupRoot { version: Version::V1, dirs })
    }

    fn unit_dirs(&self, unit: &str) -> Vec<(&'static str, PathBuf)> {
        self.dirs.iter().map(|(c, d)| (*c, d.join(unit))).collect()
    }

    /// A new unit with its limits set (an existing one of the same name is emptied first).
    pub fn create(&self, unit: &str, limits: &Limits) -> io::Result<Cgroup> {
        let group = Cgroup { version: self.version, dirs: self.unit_dirs(unit) };
        if group.dirs.iter().any(|(_, d)| d.exists()) {
            group.kill_all();
            group.remove();
        }
        for (_, dir) in &group.dirs {
            mkdir(dir)?;
        }
        group.set_limits(limits)?;
        Ok(group)
    }

    /// The unit of that name, if it exists (after a restart of the platform).
    pub fn existing(&self, unit: &str) -> Option<Cgroup> {
        let group = Cgroup { version: self.version, dirs: self.unit_dirs(unit) };
        group.dirs.first().is_some_and(|(_, d)| d.is_dir()).then_some(group)
    }

    /// Every unit under this root.
    pub fn units(&self) -> Vec<String> {
        let Some((_, first)) = self.dirs.first() else { return Vec::new() };
        fs::read_dir(first)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Kills and removes every unit; answers how many there were.
    pub fn clear(&self) -> usize {
        let units = self.units();
        for unit in &units {
            if let Some(g) = self.existing(unit) {
                g.kill_all();
                g.remove();
            }
        }
        units.len()
    }

    /// `clear`, then the root itself goes too.
    pub fn destroy(&self) -> usize {
        let n = self.clear();
        for (_, dir) in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
        n
    }
}

/// One unit: a build or an instance, and every process it started.
#[derive(Debug, Clone)]
pub struct Cgroup {
    version: Version,
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Cgroup {
    fn dir(&self, controller: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.dirs.first().map(|(_, d)| d.as_path()),
            Version::V1 => self.dirs.iter().find(|(c, _)| *c == controller).map(|(_, d)| d.as_path()),
        }
    }

    fn set_limits(&self, l: &Limits) -> io::Result<()> {
        let quota = u64::from(l.cpu_millis) * CPU_PERIOD_US / 1000;
        match self.version {
            Version::V2 => {
                let d = self.dir("unified").ok_or_else(missing)?;
                write(&d.join("memory.max"), &l.memory_bytes.to_string())?;
                // No swap: the limit is the limit (absent when the kernel has no swap accounting).
                let _ = write(&d.join("memory.swap.max"), "0");
                write(&d.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                write(&d.join("pids.max"), &l.pids.to_string())?;
            }
            Version::V1 => {
                let m = self.dir("memory").ok_or_else(missing)?;
                write(&m.join("memory.limit_in_bytes"), &l.memory_bytes.to_string())?;
                let _ = write(&m.join("memory.memsw.limit_in_bytes"), &l.memory_bytes.to_string());
                let c = self.dir("cpu").ok_or_else(missing)?;
                write(&c.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(&c.join("cpu.cfs_quota_us"), &quota.to_string())?;
                write(&self.dir("pids").ok_or_else(missing)?.join("pids.max"), &l.pids.to_string())?;
            }
        }
        Ok(())
    }

    /// The limits in force, read back from the kernel's files.
    pub fn limits(&self) -> Option<Limits> {
        let (memory, cpu, pids) = match self.version {
            Version::V2 => {
                let d = self.dir("unified")?;
                let cpu = fs::read_to_string(d.join("cpu.max")).ok()?;
                let quota: u64 = cpu.split_whitespace().next()?.parse().ok()?;
                (read_u64(&d.join("memory.max"))?, quota, read_u64(&d.join("pids.max"))?)
            }
            Version::V1 => (
                read_u64(&self.dir("memory")?.join("memory.limit_in_bytes"))?,
                read_u64(&self.dir("cpu")?.join("cpu.cfs_quota_us"))?,
                read_u64(&self.dir("pids")?.join("pids.max"))?,
            ),
        };
        Some(Limits { memory_bytes: memory, cpu_millis: (cpu * 1000 / CPU_PERIOD_US) as u32, pids: pids as u32 })
    }

    /// The `cgroup.procs` files, open for writing, for a child to join before it `exec`s
    /// (`join_in_child`).
    pub fn procs_files(&self) -> io::Result<Vec<OwnedFd>> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (_, dir) in &self.dirs {
            // A controller mounted together with another (cpu,cpuacct) is one folder.
            let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if seen.contains(&canonical) {
                continue;
            }
            seen.push(canonical);
            out.push(fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs"))?.into());
        }
        Ok(out)
    }

    /// Every process of the unit (host pids).
    pub fn pids(&self) -> Vec<i32> {
        let Some(d) = self.dir("pids").or_else(|| self.dirs.first().map(|(_, d)| d.as_path())) else { return Vec::new() };
        fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pids().is_empty()
    }

    /// Sends `signal` to every process of the unit.
    pub fn signal_all(&self, signal: i32) {
        for pid in self.pids() {
            super::super::procfs::signal(pid, signal);
        }
    }

    /// SIGKILLs every process of the unit, forks in flight included, and waits (briefly) until
    /// none is left.
    pub fn kill_all(&self) {
        if self.version == Version::V2 {
            if let Some(d) = self.dir("unified") {
                if write(&d.join("cgroup.kill"), "1").is_ok() {
                    self.wait_empty();
                    return;
                }
            }
        }
        // Frozen, nothing can fork while it is being killed; thawed, the kills are delivered.
        let freezer = match self.version {
            Version::V1 => self.dir("freezer").map(|d| (d.join("freezer.state"), "FROZEN", "THAWED")),
            Version::V2 => self.dir("unified").map(|d| (d.join("cgroup.freeze"), "1", "0")),
        };
        for _ in 0..50 {
            if self.is_empty() {
                return;
            }
            if let Some((file, freeze, _)) = &freezer {
                let _ = write(file, freeze);
            }
            self.signal_all(libc::SIGKILL);
            if let Some((file, _, thaw)) = &freezer {
                let _ = write(file, thaw);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_empty(&self) {
        for _ in 0..200 {
            if self.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Memory in use, without the file cache the kernel can drop at any time.
    pub fn memory_bytes(&self) -> u64 {
        let (current, stat, inactive_key) = match self.version {
            Version::V2 => (self.dir("unified").map(|d| d.join("memory.current")), self.dir("unified").map(|d| d.join("memory.stat")), "inactive_file"),
            Version::V1 => (self.dir("memory").map(|d| d.join("memory.usage_in_bytes")), self.dir("memory").map(|d| d.join("memory.stat")), "total_inactive_file"),
        };
        let current = current.and_then(|f| read_u64(&f)).unwrap_or(0);
        let inactive = stat.and_then(|f| stat_value(&f, inactive_key)).unwrap_or(0);
        current.saturating_sub(inactive)
    }

    /// CPU time used so far, in nanoseconds.
    pub fn cpu_nanos(&self) -> u64 {
        match self.version {
            Version::V2 => self.dir("unified").and_then(|d| stat_value(&d.join("cpu.stat"), "usage_usec")).map(|us| us * 1000).unwrap_or(0),
            Version::V1 => self.dir("cpuacct").and_then(|d| read_u64(&d.join("cpuacct.usage"))).unwrap_or(0),
        }
    }

    /// How many processes the kernel killed for going over the memory limit.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            Version::V2 => self.dir("unified").and_then(|d| stat_value(&d.join("memory.events"), "oom_kill")),
            Version::V1 => self.dir("memory").and_then(|d| stat_value(&d.join("memory.oom_control"), "oom_kill")),
        }
        .unwrap_or(0)
    }

    /// Removes the unit's folders (it must be empty: call `kill_all` first).
    pub fn remove(&self) {
        for (_, dir) in &self.dirs {
            for _ in 0..20 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // A process that was just killed may take a moment to leave.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }
}

/// In a forked child, before `exec`: moves the calling process into the unit. Only a `write`
/// on descriptors opened beforehand, so it is safe after `fork`.
pub fn join_in_child(files: &[OwnedFd]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    for f in files {
        // SAFETY: writing two bytes from a static buffer to an open descriptor.
        let n = unsafe { libc::write(f.as_raw_fd(), b"0\n".as_ptr().cast(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn missing() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "a cgroup controller folder is missing")
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn write(file: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new().write(true).open(file)?.write_all(value.as_bytes())
}

fn read_u64(file: &Path) -> Option<u64> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
fn stat_value(file: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder laid out like a cgroup mount: creating a unit writes its limits into the files a
    /// kernel would read. (The real hierarchy is exercised by the integration tests.)
    fn fake_mount(v2: bool) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let m = std::env::temp_dir().join(format!("rh-cgroup-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&m);
        if v2 {
            fs::create_dir_all(&m).unwrap();
            fs::write(m.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
            fs::write(m.join("cgroup.subtree_control"), "").unwrap();
            fs::create_dir_all(m.join("rh")).unwrap();
            fs::write(m.join("rh/cgroup.subtree_control"), "").unwrap();
        } else {
            for c in V1_CONTROLLERS {
                fs::create_dir_all(m.join(c)).unwrap();
                fs::write(m.join(c).join("cgroup.procs"), "").unwrap();
            }
        }
        m
    }

    fn touch_unit_files(dir: &Path, files: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for f in files {
            fs::write(dir.join(f), "").unwrap();
        }
    }

    const LIMITS: Limits = Limits { memory_bytes: 512 << 20, cpu_millis: 500, pids: 128 };

    #[test]
    fn v2_units_get_memory_cpu_and_pids_limits() {
        let m = fake_mount(true);
        let root = CgroupRoot::open(&m, "rh").unwrap();
        assert_eq!(root.version, Version::V2);
        assert_eq!(fs::read_to_string(m.join("cgroup.subtree_control")).unwrap(), "+memory +cpu +pids");
        // The kernel creates a unit's files when its folder is made; the fake makes them first.
        touch_unit_files(&m.join("rh/i-1"), &["memory.max", "memory.swap.max", "cpu.max", "pids.max", "cgroup.procs"]);
        let unit = Cgroup { version: Version::V2, dirs: root.unit_dirs("i-1") };
        unit.set_limits(&LIMITS).unwrap();
        let read = |f: &str| fs::read_to_string(m.join("rh/i-1").join(f)).unwrap();
        assert_eq!(read("memory.max"), "536870912");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "128");
        fs::write(m.join("rh/i-1/memory.events"), "oom 2\noom_kill 2\n").unwrap();
        assert_eq!(unit.oom_kills(), 2);
        fs::remove_dir_all(&m).unwrap();
    }

    #[test]
    fn v1_units_have_a_folder_per_controller() {
        let m = fake_mount(false);
        let root = CgroupRoot::open(&m, "rh").unwrap();
        assert_eq!(root.version, Version::V1);
        for c in V1_CONTROLLERS {
            touch_unit_files(&m.join(c).join("rh/b-1"), &["cgroup.procs"]);
        }
        touch_unit_files(&m.join("memory/rh/b-1"), &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]);
        touch_unit_files(&m.join("cpu/rh/b-1"), &["cpu.cfs_period_us", "cpu.cfs_quota_us"]);
        touch_unit_files(&m.join("pids/rh/b-1"), &["pids.max"]);
        let unit = Cgroup { version: Version::V1, dirs: root.unit_dirs("b-1") };
        unit.set_limits(&LIMITS).unwrap();
        assert_eq!(fs::read_to_string(m.join("memory/rh/b-1/memory.limit_in_bytes")).unwrap(), "536870912");
        assert_eq!(fs::read_to_string(m.join("cpu/rh/b-1/cpu.cfs_quota_us")).unwrap(), "50000");
        assert_eq!(fs::read_to_string(m.join("cpu/rh/b-1/cpu.cfs_period_us")).unwrap(), "100000");
        assert_eq!(fs::read_to_string(m.join("pids/rh/b-1/pids.max")).unwrap(), "128");
        fs::write(m.join("memory/rh/b-1/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n").unwrap();
        fs::write(m.join("memory/rh/b-1/memory.usage_in_bytes"), "10485760\n").unwrap();
        fs::write(m.join("memory/rh/b-1/memory.stat"), "cache 0\ntotal_inactive_file 4194304\n").unwrap();
        assert_eq!((unit.oom_kills(), unit.memory_bytes()), (1, 6 << 20));
        assert_eq!(root.units(), vec!["b-1".to_string()]);
        fs::remove_dir_all(&m).unwrap();
    }

    #[test]
    fn a_missing_controller_is_named() {
        let m = fake_mount(false);
        fs::remove_dir_all(m.join("pids")).unwrap();
        let err = CgroupRoot::open(&m, "rh").unwrap_err();
        assert!(err.contains("pids controller is not mounted"), "{err}");
        fs::remove_dir_all(&m).unwrap();
    }
}
