//! One private network per project environment: a network namespace of its own, with only a
//! loopback interface (and, when outbound traffic is on, a user-mode uplink by slirp4netns).
//!
//! Services of the environment listen and reach each other on its loopback; nothing else is
//! there — not the platform's ports, its PostgreSQL, nor the machine's other loopback services,
//! nor other projects' networks. The platform reaches in through sockets made inside the
//! namespace (`runtime::net`). The uplink refuses the host's loopback (`--disable-host-loopback`).
//!
//! A namespace lives as long as something uses it (builds, instances, private listeners hold a
//! `NetLease`) and is kept as a bind mount at `<dir>/<environment id>`, so other processes of the
//! platform can enter it by that path.

use std::{
    collections::HashMap,
    ffi::CString,
    io::{self, Read},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};
use uuid::Uuid;

pub struct Networks {
    dir: PathBuf,
    /// Set while this process lets go of what runs (instances left running for a later
    /// process): a network whose last user goes stays up.
    retain: std::sync::atomic::AtomicBool,
    /// slirp4netns, when services may reach the internet.
    uplink: Option<PathBuf>,
    /// `KEY=value` every helper process carries, so a later run can find and stop it.
    tag: (String, String),
    nets: Mutex<HashMap<Uuid, Net>>,
}

struct Net {
    users: usize,
    uplink: Option<Uplink>,
}

/// The network's slirp4netns: started by this process, or by an earlier one (adopted).
enum Uplink {
    Child(Child),
    Adopted(i32),
}

impl Uplink {
    fn end(self) {
        match self {
            Uplink::Child(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Uplink::Adopted(pid) => crate::runtime::procfs::signal(pid, libc::SIGKILL),
        }
    }

    fn pid(&self) -> i32 {
        match self {
            Uplink::Child(c) => c.id() as i32,
            Uplink::Adopted(pid) => *pid,
        }
    }
}

/// A use of an environment's network; the last one to go takes the network down.
pub struct NetLease {
    networks: Arc<Networks>,
    environment: Uuid,
    path: String,
}

impl NetLease {
    /// The runtime's name for the network: the path of its namespace.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl std::fmt::Debug for NetLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetLease({})", self.path)
    }
}

impl NetLease {
    /// Gives the use up without ever taking the network down: what runs in it is left running
    /// for a later process of the platform, which adopts the network (`Networks::adopt`).
    pub fn keep(self) {
        let mut nets = self.networks.nets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(net) = nets.get_mut(&self.environment) {
            net.users = net.users.saturating_sub(1);
        }
        drop(nets);
        std::mem::forget(self);
    }
}

impl Drop for NetLease {
    fn drop(&mut self) {
        self.networks.release(self.environment);
    }
}

impl Networks {
    pub fn new(dir: PathBuf, uplink: Option<PathBuf>, tag: (String, String)) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(Networks { dir, retain: Default::default(), uplink, tag, nets: Mutex::new(HashMap::new()) }))
    }

    fn path(&self, environment: Uuid) -> PathBuf {
        self.dir.join(environment.simple().to_string())
    }

    /// The environment's network, made if it does not exist. Blocking (it may start the uplink):
    /// call it from a blocking thread.
    pub fn acquire(self: &Arc<Self>, environment: Uuid) -> Result<NetLease, String> {
        let path = self.path(environment);
        let mut nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        match nets.get_mut(&environment) {
            Some(net) => net.users += 1,
            None => {
                create_namespace(&path).map_err(|e| format!("Could not create the environment's network: {e}"))?;
                let uplink = match &self.uplink {
                    None => None,
                    Some(bin) => match start_uplink(bin, &path, &self.tag) {
                        Ok(child) => Some(Uplink::Child(child)),
                        Err(e) => {
                            remove_namespace(&path);
                            return Err(format!("Could not connect the environment's network to the internet (slirp4netns): {e}"));
                        }
                    },
                };
                nets.insert(environment, Net { users: 1, uplink });
            }
        }
        Ok(NetLease { networks: self.clone(), environment, path: path.to_string_lossy().into_owned() })
    }

    fn release(&self, environment: Uuid) {
        let mut nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(net) = nets.get_mut(&environment) else { return };
        net.users = net.users.saturating_sub(1);
        if net.users > 0 || self.retain.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Some(uplink) = nets.remove(&environment).and_then(|n| n.uplink) {
            uplink.end();
        }
        remove_namespace(&self.path(environment));
    }

    /// Lets go of every network as it is (see `retain`), or takes them back in hand.
    pub fn retain(&self, on: bool) {
        self.retain.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes over the networks of `environments` that an earlier process of the platform made
    /// (their namespaces are still mounted here), with their uplinks: what runs in them was
    /// adopted, and the networks must not be made again under it.
    pub fn adopt(&self, environments: &std::collections::HashSet<Uuid>) {
        let mut nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        let tag = format!("{}={}", self.tag.0, self.tag.1);
        for &environment in environments {
            let path = self.path(environment);
            if nets.contains_key(&environment) || !path.exists() {
                continue;
            }
            let needle = path.as_os_str().as_encoded_bytes().to_vec();
            // The uplink is root's and runs slirp4netns: a tenant's process carries the tag and
            // may name the path too, but is neither.
            let is_uplink = |pid: i32| {
                use std::os::unix::fs::MetadataExt;
                let root = std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == 0);
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
                let named = crate::runtime::procfs::has_arg(pid, &needle);
                root && named && exe.is_some() && exe.as_deref() == self.uplink.as_deref().and_then(|b| std::fs::canonicalize(b).ok()).as_deref()
            };
            let uplink = crate::runtime::procfs::tagged(&tag).into_iter().find(|&pid| is_uplink(pid)).map(Uplink::Adopted);
            nets.insert(environment, Net { users: 0, uplink });
        }
    }

    /// The processes of the networks of `environments` (their uplinks).
    pub fn uplink_pids(&self, environments: &std::collections::HashSet<Uuid>) -> Vec<i32> {
        let nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        environments.iter().filter_map(|e| nets.get(e)?.uplink.as_ref().map(Uplink::pid)).collect()
    }

    /// Takes down every network of this runtime, in use or left by an earlier run.
    pub fn destroy_all(&self) -> usize {
        self.destroy_except(&Default::default())
    }

    /// Takes down every network of this runtime but those of `keep`.
    pub fn destroy_except(&self, keep: &std::collections::HashSet<Uuid>) -> usize {
        let mut nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<Uuid> = nets.keys().filter(|e| !keep.contains(e)).copied().collect();
        for environment in gone {
            if let Some(uplink) = nets.remove(&environment).and_then(|n| n.uplink) {
                uplink.end();
            }
        }
        let mut n = 0;
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let kept = entry.file_name().to_str().and_then(|n| n.parse::<Uuid>().ok()).is_some_and(|e| keep.contains(&e));
            if !kept {
                remove_namespace(&entry.path());
                n += 1;
            }
        }
        n
    }
}

/// A new network namespace with its loopback up, bind-mounted at `path`.
fn create_namespace(path: &Path) -> io::Result<()> {
    remove_namespace(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(path)?;
    let target = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // `unshare` changes only the calling thread: a thread of its own, gone afterwards.
    let made = std::thread::spawn(move || -> io::Result<()> {
        // SAFETY: plain syscalls on this thread; the strings outlive the calls.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            loopback_up()?;
            // Services may listen on any port, as in a container.
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
            let source = CString::new("/proc/thread-self/ns/net").map_err(io::Error::other)?;
            if libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?;
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// `ip link set lo up`, in the calling thread's namespace.
unsafe fn loopback_up() -> io::Result<()> {
    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut req: libc::ifreq = std::mem::zeroed();
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    let result = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
        Err(io::Error::last_os_error())
    } else {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    libc::close(fd);
    result
}

fn remove_namespace(path: &Path) {
    if let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: unmounting a path we own; failure (not mounted) is fine.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_file(path);
}

/// slirp4netns for the namespace at `path`, waiting until it has configured `tap0`.
///
/// It runs in a mount namespace of its own with every mount private: its own sandboxing
/// (`--enable-sandbox`) unmounts the old root, and that must not reach the host's mounts.
fn start_uplink(bin: &Path, path: &Path, tag: &(String, String)) -> io::Result<Child> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (mut ready_r, ready_w) = unsafe {
        use std::os::fd::FromRawFd;
        (std::fs::File::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    };
    let write_end = ready_w.as_raw_fd();
    let mut cmd = Command::new(bin);
    cmd.args(["--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp", "--ready-fd=3", "--netns-type=path"])
        .arg(path)
        .arg("tap0")
        .env_clear()
        .env(&tag.0, &tag.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            let root = b"/\0";
            if libc::mount(std::ptr::null(), root.as_ptr().cast(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(io::Error::last_os_error());
            }
            // dup2 clears close-on-exec on the copy: slirp4netns writes "1" to fd 3 when ready.
            if libc::dup2(write_end, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(ready_w);
    // Wait for the byte, with a deadline, on a helper thread (a blocking read has no timeout).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let _ = tx.send(ready_r.read(&mut b).map(|n| n == 1));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(true)) => Ok(child),
        outcome => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::other(match outcome {
                Ok(Err(e)) => e.to_string(),
                Err(_) => "it did not get ready within 10 s".into(),
                _ => "it exited before the network was ready".into(),
            }))
        }
    }
}
