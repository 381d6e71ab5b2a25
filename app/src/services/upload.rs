//! Uploaded source archives (`.tar.gz`): inspected entry by entry before they are accepted,
//! stored in Postgres (so any platform replica can build from them), named by the service.
//!
//! An archive is hostile input. It is accepted only if every entry is a plain file, a folder,
//! a link that stays inside the tree, or a hard link to an earlier file of the tree; no path is
//! absolute or climbs out with `..`; and it unpacks to a bounded size and number of entries.
//! It is unpacked later inside the service's sandbox, as the project's own user, so even a
//! parser disagreement could only write where that user may write anyway.

use super::{SourceKind, SourceUpload};
use crate::{
    auth::User,
    error::{AppError, AppResult},
    infra::Config,
};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::{
    collections::HashSet,
    io::Read,
    path::{Component, Path, PathBuf},
};
use uuid::Uuid;

/// The most entries an archive may hold.
pub const MAX_ENTRIES: usize = 100_000;
/// Uploads kept per service (the current one and those before it, for redeploys).
const KEPT: i64 = 10;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Compressed size.
    pub max_bytes: u64,
    /// Unpacked size of all entries together.
    pub max_unpacked: u64,
}

impl Limits {
    /// Unpacked, an archive may be at most 20 times its limit (and never more than a build's
    /// disk): a gzip bomb is cut off early.
    pub fn from_config(config: &Config) -> Self {
        let unpacked = (config.build_disk_mb * 1024 * 1024).min(config.upload_max_bytes.saturating_mul(20));
        Limits { max_bytes: config.upload_max_bytes, max_unpacked: unpacked }
    }
}

/// The most bytes a metadata entry (a GNU long name or link, a PAX header) may have: the tar
/// reader holds one whole in memory.
const MAX_META: u64 = 64 * 1024;
/// Archives inspected at once: each takes a core while it runs.
static INSPECTING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub unpacked_bytes: u64,
}

/// Why an archive is refused, for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("The archive is not a gzip-compressed tar file ({0}).")]
    Unreadable(String),
    #[error("The archive is empty.")]
    Empty,
    #[error("{path}: paths in the archive must be relative and stay inside it (no leading / and no ..).")]
    Escapes { path: String },
    #[error("{path}: links must point inside the archive with a relative target; this one points at {target}.")]
    LinkEscapes { path: String, target: String },
    #[error("{path}: only files, folders and links are allowed, not {kind}.")]
    Kind { path: String, kind: String },
    #[error("The archive unpacks to more than {limit_mb} MB.")]
    TooBig { limit_mb: u64 },
    #[error("The archive holds more than {MAX_ENTRIES} entries.")]
    TooMany,
    #[error("The archive has a metadata entry (a long name or PAX header) larger than {} KB.", MAX_META / 1024)]
    MetaTooBig,
}

/// A path as an error message shows it: at most 200 characters.
fn shown(path: &Path) -> String {
    let s = path.display().to_string();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A relative path made of plain names only.
fn clean_relative(path: &Path) -> bool {
    let mut any = false;
    for c in path.components() {
        match c {
            Component::Normal(_) => any = true,
            Component::CurDir => {}
            _ => return false,
        }
    }
    any
}

/// Where a symbolic link at `link` (relative to the root) pointing at `target` lands, if it
/// stays inside the tree: resolved lexically from the link's folder.
fn link_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = link.parent().map(|p| p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n),
        _ => None,
    }).collect()).unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(n) => depth.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

fn decoder<'a>(bytes: &'a [u8], limits: &Limits) -> impl Read + 'a {
    // The decompressed stream is capped too, so a gzip bomb is cut off while it is read.
    flate2::read::GzDecoder::new(bytes).take(limits.max_unpacked.saturating_add(16 * 1024 * 1024))
}

/// Reads the whole archive without writing anything and says whether it may be unpacked.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Summary, ArchiveError> {
    // First the raw entries: no metadata entry is read whole before its size is known.
    let mut raw = tar::Archive::new(decoder(bytes, limits));
    for entry in raw.entries().map_err(|e| ArchiveError::Unreadable(e.to_string()))?.raw(true) {
        let entry = entry.map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
        let meta = matches!(
            entry.header().entry_type(),
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink | tar::EntryType::XHeader | tar::EntryType::XGlobalHeader
        );
        if meta && entry.header().size().unwrap_or(u64::MAX) > MAX_META {
            return Err(ArchiveError::MetaTooBig);
        }
    }
    let mut archive = tar::Archive::new(decoder(bytes, limits));
    let entries = archive.entries().map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    let mut files = 0usize;
    let mut total = 0u64;
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
        files += 1;
        if files > MAX_ENTRIES {
            return Err(ArchiveError::TooMany);
        }
        let path = entry.path().map_err(|e| ArchiveError::Unreadable(e.to_string()))?.into_owned();
        let shown = shown(&path);
        let kind = entry.header().entry_type();
        // `tar czf x.tgz -C dir .` starts with the folder itself, `./`.
        if kind == tar::EntryType::Directory && path.components().all(|c| c == Component::CurDir) {
            continue;
        }
        if !clean_relative(&path) || path.as_os_str().len() > 4096 {
            return Err(ArchiveError::Escapes { path: shown });
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {}
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(|e| ArchiveError::Unreadable(e.to_string()))?.unwrap_or_default().into_owned();
                if target.as_os_str().is_empty() || !link_inside(&path, &target) {
                    return Err(ArchiveError::LinkEscapes { path: shown, target: self::shown(&target) });
                }
            }
            tar::EntryType::Link => {
                let target = entry.link_name().map_err(|e| ArchiveError::Unreadable(e.to_string()))?.unwrap_or_default().into_owned();
                if !clean_relative(&target) || !seen.contains(&target) {
                    return Err(ArchiveError::LinkEscapes { path: shown, target: self::shown(&target) });
                }
            }
            other => {
                let kind = match other {
                    tar::EntryType::Char => "a character device",
                    tar::EntryType::Block => "a block device",
                    tar::EntryType::Fifo => "a named pipe",
                    tar::EntryType::GNUSparse => "a sparse file",
                    _ => "this kind of entry",
                };
                return Err(ArchiveError::Kind { path: shown, kind: kind.to_string() });
            }
        }
        total = total.saturating_add(entry.header().size().unwrap_or(0));
        if total > limits.max_unpacked {
            return Err(ArchiveError::TooBig { limit_mb: limits.max_unpacked / (1024 * 1024) });
        }
        seen.insert(path);
    }
    if files == 0 {
        return Err(ArchiveError::Empty);
    }
    Ok(Summary { files, unpacked_bytes: total })
}

/// Accepts an archive as the new source of an upload service of `owner`'s.
pub async fn store(db: &PgPool, config: &Config, owner: &User, service_id: Uuid, bytes: Vec<u8>) -> AppResult<SourceUpload> {
    let service = super::service::get(db, owner.id, service_id).await?;
    if service.source_kind != SourceKind::Upload {
        return Err(AppError::validation(
            "source_kind",
            format!("This service's source is {} ({}): switch it to upload before uploading an archive.", service.source_kind.as_str(), service.source),
        ));
    }
    let limits = Limits::from_config(config);
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_large(limits.max_bytes));
    }
    // Off the async workers, a few at a time: a hostile archive costs CPU, not the platform.
    let permit = INSPECTING.acquire().await.map_err(|_| AppError::Internal)?;
    let bytes = std::sync::Arc::new(bytes);
    let inspected = bytes.clone();
    let summary = tokio::task::spawn_blocking(move || inspect(&inspected, &limits))
        .await
        .map_err(|_| AppError::Internal)?
        .map_err(|e| AppError::validation("archive", e.to_string()))?;
    drop(permit);
    let mut tx = db.begin().await?;
    let upload = record(&mut tx, owner.id, service_id, &bytes, &summary).await?;
    // Older uploads go, but never one an unfinished deployment still builds from.
    sqlx::query(
        "DELETE FROM source_uploads u WHERE u.service_id = $1
           AND u.id NOT IN (SELECT id FROM source_uploads WHERE service_id = $1 ORDER BY created_at DESC LIMIT $2)
           AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.service_id = $1
                           AND d.status IN ('queued', 'building') AND d.spec->>'source' = u.id::text)",
    )
    .bind(service_id)
    .bind(KEPT)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(%service_id, upload_id = %upload.id, bytes = bytes.len(), files = summary.files, "source archive uploaded");
    Ok(upload)
}

/// Stores an inspected archive as the service's current source (on the caller's transaction).
pub async fn record(conn: &mut sqlx::PgConnection, actor: Uuid, service_id: Uuid, bytes: &[u8], summary: &Summary) -> AppResult<SourceUpload> {
    let sha256 = hex::encode(Sha256::digest(bytes));
    let upload: SourceUpload = sqlx::query_as(
        "INSERT INTO source_uploads (service_id, sha256, size_bytes, files, archive, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, service_id, sha256, size_bytes, files, created_at",
    )
    .bind(service_id)
    .bind(&sha256)
    .bind(bytes.len() as i64)
    .bind(summary.files as i32)
    .bind(bytes)
    .bind(actor)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE services SET source = $2, updated_at = now() WHERE id = $1")
        .bind(service_id)
        .bind(upload.id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(upload)
}

/// The archive an upload service of `owner`'s deploys from now, if any.
pub async fn current(db: &PgPool, owner: Uuid, service_id: Uuid) -> AppResult<Option<SourceUpload>> {
    let service = super::service::get(db, owner, service_id).await?;
    let Ok(id) = Uuid::parse_str(&service.source) else { return Ok(None) };
    if service.source_kind != SourceKind::Upload {
        return Ok(None);
    }
    Ok(sqlx::query_as("SELECT id, service_id, sha256, size_bytes, files, created_at FROM source_uploads WHERE id = $1 AND service_id = $2")
        .bind(id)
        .bind(service_id)
        .fetch_optional(db)
        .await?)
}

pub fn too_large(max_bytes: u64) -> AppError {
    AppError::TooLarge { message: format!("Source archives are at most {} MB.", max_bytes / (1024 * 1024)) }
}

/// The archive a deployment builds from (unscoped: the reconciler's view).
pub async fn archive(db: &PgPool, service_id: Uuid, upload_id: &str) -> AppResult<Vec<u8>> {
    let id = Uuid::parse_str(upload_id).map_err(|_| AppError::not_found("Source archive"))?;
    let bytes: Option<Vec<u8>> = sqlx::query_scalar("SELECT archive FROM source_uploads WHERE id = $1 AND service_id = $2")
        .bind(id)
        .bind(service_id)
        .fetch_optional(db)
        .await?;
    bytes.ok_or_else(|| AppError::not_found("Source archive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_bytes: 1 << 20, max_unpacked: 1 << 20 };

    enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
    }

    /// Writes headers by hand: the tar builder itself refuses some of the hostile paths.
    fn targz(entries: &[E]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            for e in entries {
                let mut h = tar::Header::new_gnu();
                let (path, body): (&str, &[u8]) = match e {
                    E::File(p, body) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        (p, body)
                    }
                    E::Dir(p) => {
                        h.set_entry_type(tar::EntryType::Directory);
                        (p, b"")
                    }
                    E::Symlink(p, t) | E::Hardlink(p, t) => {
                        h.set_entry_type(if matches!(e, E::Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link });
                        let name = h.as_old_mut();
                        name.linkname[..t.len()].copy_from_slice(t.as_bytes());
                        (p, b"")
                    }
                    E::Fifo(p) => {
                        h.set_entry_type(tar::EntryType::Fifo);
                        (p, b"")
                    }
                };
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append(&h, body).unwrap();
            }
            b.into_inner().unwrap().finish().unwrap();
        }
        out
    }

    #[test]
    fn a_plain_tree_with_inner_links_is_accepted() {
        let a = targz(&[
            E::Dir("./"),
            E::Dir("app"),
            E::File("app/main.py", b"print(1)"),
            E::Symlink("app/current", "main.py"),
            E::Symlink("app/lib/up", "../main.py"),
            E::Hardlink("app/copy.py", "app/main.py"),
        ]);
        assert_eq!(inspect(&a, &LIMITS).unwrap(), Summary { files: 6, unpacked_bytes: 8 });
    }

    #[test]
    fn paths_and_links_out_of_the_tree_are_refused() {
        for (entries, expected) in [
            (vec![E::File("../evil", b"x")], "../evil: paths in the archive must be relative"),
            (vec![E::File("/etc/cron.d/x", b"x")], "/etc/cron.d/x: paths"),
            (vec![E::File("a/../../b", b"x")], "a/../../b: paths"),
            (vec![E::Symlink("key", "/root/.data/secret.key")], "key: links must point inside the archive"),
            (vec![E::Symlink("a/b", "../../etc")], "a/b: links must point inside"),
            (vec![E::Hardlink("shadow", "/etc/shadow")], "shadow: links must point inside"),
            (vec![E::Hardlink("x", "later")], "x: links must point inside"),
            (vec![E::Fifo("pipe")], "pipe: only files, folders and links are allowed, not a named pipe"),
        ] {
            let err = inspect(&targz(&entries), &LIMITS).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn a_huge_long_name_is_refused_before_it_is_read() {
        // A GNU long-name entry of 8 MB of `a`s (compressing to almost nothing).
        let mut out = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::GNULongName);
            h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            let name = vec![b'a'; 8 << 20];
            h.set_size(name.len() as u64);
            h.set_cksum();
            b.append(&h, &name[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let limits = Limits { max_bytes: 1 << 20, max_unpacked: 64 << 20 };
        assert_eq!(inspect(&out, &limits).unwrap_err(), ArchiveError::MetaTooBig);
    }

    #[test]
    fn size_entries_and_garbage_are_bounded() {
        let big = vec![0u8; 600 * 1024];
        let a = targz(&[E::File("a", &big), E::File("b", &big)]);
        assert_eq!(inspect(&a, &LIMITS).unwrap_err(), ArchiveError::TooBig { limit_mb: 1 });
        assert!(matches!(inspect(b"not gzip at all", &LIMITS), Err(ArchiveError::Unreadable(_))));
        assert_eq!(inspect(&targz(&[]), &LIMITS).unwrap_err(), ArchiveError::Empty);
    }
}
