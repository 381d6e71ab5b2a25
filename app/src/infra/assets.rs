//! The names the dashboard's bundle is served under: `roundhouse-<hash>.js` and `.wasm` (one
//! hash for both: the glue and the module go together) and `roundhouse-<hash>.css`, each hash
//! of the files' content. A name never changes its content, so browsers keep the files for a
//! year without asking again (`/pkg` serves them `immutable`), and a new build is fetched by its
//! new name at once. Without the files (tests render pages without a site), the plain names.

use sha2::{Digest, Sha256};
use std::{path::Path, sync::OnceLock};

/// The bundle's names in one build of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The stem of the js and wasm files (`roundhouse-3f9a1c2b7d`).
    pub bundle: String,
    /// The stylesheet's file name (`roundhouse-8c01d9e4f2.css`).
    pub css: String,
}

/// The plain (unhashed) name of the files.
pub const STEM: &str = "roundhouse";

fn digest(files: &[&Path]) -> Option<String> {
    let mut hash = Sha256::new();
    for file in files {
        hash.update(std::fs::read(file).ok()?);
    }
    Some(hex::encode(&hash.finalize()[..5]))
}

/// The names for the files in `pkg` (read once per process and folder).
pub fn names_in(pkg: &Path) -> Names {
    let bundle = digest(&[&pkg.join(format!("{STEM}.js")), &pkg.join(format!("{STEM}.wasm"))]);
    let css = digest(&[&pkg.join(format!("{STEM}.css"))]);
    Names {
        bundle: bundle.map_or_else(|| STEM.to_string(), |h| format!("{STEM}-{h}")),
        css: css.map_or_else(|| format!("{STEM}.css"), |h| format!("{STEM}-{h}.css")),
    }
}

/// The names for the site the server serves, computed once.
pub fn names(site_root: &str, pkg_dir: &str) -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| names_in(&Path::new(site_root).join(pkg_dir)))
}

/// The plain file a hashed name stands for, if `name` is one of the current names
/// (`roundhouse-3f9a1c2b7d.wasm` → `roundhouse.wasm`); a stale or unknown hash is `None`.
pub fn plain_name(current: &Names, name: &str) -> Option<String> {
    let (stem, ext) = name.split_once('.')?;
    let ext_ok = match ext {
        "js" | "wasm" | "js.br" | "js.gz" | "wasm.br" | "wasm.gz" => stem == current.bundle,
        "css" | "css.br" | "css.gz" => format!("{stem}.css") == current.css,
        _ => false,
    };
    (ext_ok && stem != STEM).then(|| format!("{STEM}.{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_content_and_only_current_names_map_back() {
        let dir = std::env::temp_dir().join(format!("rh-assets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = names_in(&dir);
        assert_eq!(plain, Names { bundle: "roundhouse".into(), css: "roundhouse.css".into() }, "no files, plain names");
        std::fs::write(dir.join("roundhouse.js"), "glue").unwrap();
        std::fs::write(dir.join("roundhouse.wasm"), "module").unwrap();
        std::fs::write(dir.join("roundhouse.css"), "css").unwrap();
        let first = names_in(&dir);
        assert!(first.bundle.starts_with("roundhouse-") && first.bundle.len() == "roundhouse-".len() + 10, "{first:?}");
        assert_eq!(plain_name(&first, &format!("{}.wasm", first.bundle)).as_deref(), Some("roundhouse.wasm"));
        assert_eq!(plain_name(&first, &first.css).as_deref(), Some("roundhouse.css"));
        assert_eq!(plain_name(&first, "roundhouse.wasm"), None, "a plain name is not a hashed one");
        std::fs::write(dir.join("roundhouse.wasm"), "module, rebuilt").unwrap();
        let second = names_in(&dir);
        assert_ne!(first.bundle, second.bundle, "new content, new name");
        assert_eq!(first.css, second.css, "the stylesheet did not change");
        assert_eq!(plain_name(&second, &format!("{}.wasm", first.bundle)), None, "a stale name is not served");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
