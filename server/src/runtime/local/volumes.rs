//! What each service's volume holds, for billing (`Runtime::volume_sizes`). A volume is a
//! folder of the runtime (`volumes/<service>/`: the data mount and a database's files); its size
//! is the bytes of the files in it, found by walking it without following links.

use std::path::Path;
use uuid::Uuid;

/// Files counted per volume at most: a tenant cannot make the walk take forever.
const MAX_ENTRIES: usize = 1_000_000;

/// The bytes under `dir` (blocks in use, so a sparse file counts what it holds), not following
/// symbolic links; at most `MAX_ENTRIES` entries are looked at.
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return total;
            }
            let Ok(meta) = e.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// Each service's volume folder under `volumes` and what it holds.
pub fn sizes(volumes: &Path) -> Vec<(Uuid, u64)> {
    let Ok(entries) = std::fs::read_dir(volumes) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.parse::<Uuid>().ok()?;
            Some((id, dir_bytes(&e.path())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_counts_its_files_and_nothing_a_link_points_at() {
        let root = std::env::temp_dir().join(format!("rh-volumes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let id = Uuid::new_v4();
        let data = root.join(id.to_string()).join("data/deep");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a"), vec![1u8; 100_000]).unwrap();
        // A link to something big outside the volume is not the volume's.
        let outside = root.join("outside");
        std::fs::write(&outside, vec![1u8; 1_000_000]).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        let found = sizes(&root);
        assert_eq!(found.len(), 1, "only service folders: {found:?}");
        assert_eq!(found[0].0, id);
        let bytes = found[0].1;
        assert!((100_000..200_000).contains(&bytes), "{bytes}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
