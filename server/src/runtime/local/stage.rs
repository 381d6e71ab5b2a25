//! Read-only bind mounts of host files the sandbox shows but that may sit where a project's
//! uid cannot pass (a toolchain under `/root`, the platform's binary): bubblewrap runs as that
//! uid and can only mount what it can reach, so they are mounted once, at start, under
//! `/run/roundhouse/<runtime>/stage/`, a place it can.

use std::{
    ffi::CString,
    io,
    path::{Path, PathBuf},
};

pub struct Stage {
    dir: PathBuf,
}

impl Stage {
    pub fn new(dir: PathBuf) -> Self {
        Stage { dir }
    }

    /// `host` (a folder) shown read-only at `<stage>/<name>`.
    pub fn dir(&self, name: &str, host: &Path) -> io::Result<PathBuf> {
        let at = self.dir.join(name);
        unmount(&at);
        std::fs::create_dir_all(&at)?;
        bind_read_only(host, &at)?;
        Ok(at)
    }

    /// `host` (a file) shown read-only at `<stage>/<name>`.
    pub fn file(&self, name: &str, host: &Path) -> io::Result<PathBuf> {
        let at = self.dir.join(name);
        unmount(&at);
        std::fs::create_dir_all(&self.dir)?;
        use std::os::unix::fs::PermissionsExt;
        for d in [self.dir.as_path(), self.dir.parent().unwrap_or(&self.dir)] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711))?;
        }
        drop(std::fs::File::create(&at)?);
        bind_read_only(host, &at)?;
        Ok(at)
    }

    /// Unmounts everything staged and removes the stage.
    pub fn remove(&self) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            unmount(&entry.path());
            let _ = std::fs::remove_dir(entry.path()).or_else(|_| std::fs::remove_file(entry.path()));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}

fn bind_read_only(host: &Path, at: &Path) -> io::Result<()> {
    let (src, dst) = (cstring(host)?, cstring(at)?);
    // SAFETY: mount(2) with valid C strings; the second call makes the bind read-only.
    unsafe {
        if libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        if libc::mount(std::ptr::null(), dst.as_ptr(), std::ptr::null(), flags, std::ptr::null()) != 0 {
            let e = io::Error::last_os_error();
            libc::umount2(dst.as_ptr(), libc::MNT_DETACH);
            return Err(e);
        }
    }
    Ok(())
}

fn unmount(at: &Path) {
    if let Ok(c) = cstring(at) {
        // SAFETY: unmounting our own mount point; failure (nothing mounted) is fine.
        while unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {}
    }
}
