//! The catalogue that ships with the platform: every `templates/*.toml` file of the repository
//! and the sample apps under `templates/samples/`, compiled into the binary.

use super::{parse, Spec};
use include_dir::{include_dir, Dir};

static DIR: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../templates");

/// The names of the bundled sample apps (`templates/samples/<name>/`).
pub fn samples() -> Vec<&'static str> {
    DIR.get_dir("samples")
        .map(|d| d.dirs().filter_map(|s| s.path().file_name()?.to_str()).collect())
        .unwrap_or_default()
}

/// Every bundled template file: (file name, text).
pub fn files() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = DIR
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "toml"))
        .filter_map(|f| Some((f.path().to_str()?, f.contents_utf8()?)))
        .collect();
    out.sort();
    out
}

/// Every bundled template, read and validated; the first file that is not valid is an error
/// (a golden test keeps this from shipping).
pub fn all() -> Result<Vec<Spec>, String> {
    let samples = samples();
    files()
        .into_iter()
        .map(|(name, text)| parse::read(text, &samples).map_err(|e| format!("templates/{name}:\n{e}")))
        .collect()
}

/// A bundled sample app packed as a `.tar.gz`, the form an uploaded source takes.
pub fn sample_archive(name: &str) -> Option<Vec<u8>> {
    let dir = DIR.get_dir(format!("samples/{name}"))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    fn add(tar: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>, dir: &Dir<'_>, root: &std::path::Path) -> std::io::Result<()> {
        for f in dir.files() {
            let rel = f.path().strip_prefix(root).map_err(std::io::Error::other)?;
            let mut header = tar::Header::new_gnu();
            header.set_size(f.contents().len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            tar.append_data(&mut header, rel, f.contents())?;
        }
        for d in dir.dirs() {
            add(tar, d, root)?;
        }
        Ok(())
    }
    add(&mut tar, dir, dir.path()).ok()?;
    tar.into_inner().ok()?.finish().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_bundled_template_is_valid() {
        let all = super::all().unwrap_or_else(|e| panic!("{e}"));
        assert!(all.len() >= 30, "the catalogue has {} templates", all.len());
        let mut slugs: Vec<_> = all.iter().map(|t| t.template.slug.as_str()).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), all.len(), "two bundled templates share a slug");
    }

    #[test]
    fn a_sample_packs_into_an_archive_the_upload_check_accepts() {
        for name in super::samples() {
            let archive = super::sample_archive(name).unwrap();
            let mut entries = 0;
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&archive[..]));
            for e in tar.entries().unwrap() {
                let e = e.unwrap();
                let path = e.path().unwrap().into_owned();
                assert!(path.is_relative() && !path.components().any(|c| c.as_os_str() == ".."), "{name}: {path:?}");
                entries += 1;
            }
            assert!(entries > 0, "{name} is empty");
        }
    }
}
