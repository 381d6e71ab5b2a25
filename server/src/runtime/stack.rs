//! Stack detection: how to build and start a source tree that does not say so itself.
//!
//! The tree is a tenant's: the platform reads only plain files at its top, never through a
//! link (a `Procfile` linking to the platform's key must read as no Procfile), and at most
//! `MAX_MANIFEST` bytes of each.

use std::{io::Read, os::unix::fs::OpenOptionsExt, path::Path};

const MAX_MANIFEST: u64 = 1024 * 1024;

/// Whether `name` is a plain file at the top of `dir` (a link is not).
fn has_file(dir: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file())
}

/// The text of a plain file at the top of `dir`, never followed through a link.
fn read_file(dir: &Path, name: &str) -> Option<String> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(dir.join(name)).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_MANIFEST).read_to_string(&mut text).ok()?;
    Some(text)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What was recognised, for the build log.
    pub stack: &'static str,
    pub build: Option<String>,
    pub start: Option<String>,
}

/// The build and start commands for `dir`: the service's own commands when set, otherwise what
/// the files in the tree suggest. `static_server` is the command that serves a directory.
pub fn detect(dir: &Path, build: Option<&str>, start: Option<&str>, static_server: &str) -> Plan {
    let has = |f: &str| has_file(dir, f);
    let procfile_web = read_file(dir, "Procfile")
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("web:").map(|c| c.trim().to_string())));
    let (stack, auto_build, auto_start): (&'static str, Option<String>, Option<String>) = if has("Cargo.toml") {
        let bin = cargo_package_name(&read_file(dir, "Cargo.toml").unwrap_or_default());
        ("Rust (Cargo.toml)", Some("cargo build --release".into()), bin.map(|b| format!("./target/release/{b}")))
    } else if has("package.json") {
        let install = if has("package-lock.json") { "npm ci" } else { "npm install" };
        ("Node.js (package.json)", Some(format!("{install} && npm run build --if-present")), Some("npm start".into()))
    } else if has("requirements.txt") || has("pyproject.toml") {
        let install = if has("requirements.txt") { "-r requirements.txt" } else { "." };
        let entry = ["main.py", "app.py", "server.py"].into_iter().find(|f| has(f)).map(|f| format!("python {f}"));
        (
            "Python (requirements.txt / pyproject.toml)",
            Some(format!("python3 -m venv .venv && .venv/bin/pip install --disable-pip-version-check -q {install}")),
            entry,
        )
    } else if has("index.html") {
        ("Static site (index.html)", None, Some(static_server.to_string()))
    } else {
        ("Unknown", None, None)
    };
    Plan {
        stack: if stack == "Unknown" && procfile_web.is_some() { "Procfile" } else { stack },
        build: build.map(str::to_string).or(auto_build),
        start: start.map(str::to_string).or(procfile_web).or(auto_start),
    }
}

/// `name` of the `[package]` table (or the first `[[bin]]`), by a line scan: enough for the
/// manifests people write by hand.
fn cargo_package_name(manifest: &str) -> Option<String> {
    let mut section = "";
    let mut package = None;
    let mut bin = None;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if let Some(value) = line.strip_prefix("name").map(str::trim).and_then(|r| r.strip_prefix('=')) {
            let value = value.trim().trim_matches('"').to_string();
            match section {
                "[package]" => package = package.or(Some(value)),
                "[[bin]]" => bin = bin.or(Some(value)),
                _ => {}
            }
        }
    }
    bin.or(package)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        for (name, body) in files {
            std::fs::write(d.0.join(name), body).unwrap();
        }
        d
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!("rh-stack-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn stacks_are_recognised_by_their_manifests() {
        let d = tree(&[("Cargo.toml", "[package]\nname = \"hello\"\nversion = \"0.1.0\"\n[dependencies]\nname = \"x\"\n")]);
        let p = detect(&d.0, None, None, "serve");
        assert_eq!((p.build.as_deref(), p.start.as_deref()), (Some("cargo build --release"), Some("./target/release/hello")));

        let d = tree(&[("package.json", "{}"), ("package-lock.json", "{}")]);
        let p = detect(&d.0, None, None, "serve");
        assert_eq!((p.build.as_deref(), p.start.as_deref()), (Some("npm ci && npm run build --if-present"), Some("npm start")));

        let d = tree(&[("requirements.txt", ""), ("app.py", "")]);
        let p = detect(&d.0, None, None, "serve");
        assert!(p.build.unwrap().contains("-r requirements.txt"));
        assert_eq!(p.start.as_deref(), Some("python app.py"));

        let d = tree(&[("index.html", "<h1>hi</h1>")]);
        let p = detect(&d.0, None, None, "serve .");
        assert_eq!((p.build, p.start.as_deref()), (None, Some("serve .")));

        let d = tree(&[("README", "")]);
        assert_eq!(detect(&d.0, None, None, "serve").start, None);
    }

    #[test]
    fn links_out_of_the_tree_are_not_read() {
        let outside = tree(&[("secret", "web: cat /root/.data/secret.key\n")]);
        let d = tree(&[("index.html", "<h1>hi</h1>")]);
        std::os::unix::fs::symlink(outside.0.join("secret"), d.0.join("Procfile")).unwrap();
        std::os::unix::fs::symlink(outside.0.join("secret"), d.0.join("Cargo.toml")).unwrap();
        let p = detect(&d.0, None, None, "serve .");
        assert_eq!((p.stack, p.start.as_deref()), ("Static site (index.html)", Some("serve .")), "{p:?}");
    }

    #[test]
    fn the_service_commands_and_a_procfile_win() {
        let d = tree(&[("package.json", "{}"), ("Procfile", "web: node server.js --fast\nworker: node w.js\n")]);
        assert_eq!(detect(&d.0, None, None, "s").start.as_deref(), Some("node server.js --fast"));
        let p = detect(&d.0, Some("make"), Some("./run"), "s");
        assert_eq!((p.build.as_deref(), p.start.as_deref()), (Some("make"), Some("./run")));
    }
}
