//! Durable file writes: appends that are on disk before they are acknowledged, and whole-file
//! replacement by tmp + fsync + rename + fsync(dir), so a crash leaves either the old or the new
//! file, never a mix.
//!
//! Never: acknowledge a write before `sync_data`/`sync_all` returned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Fsyncs a directory, making renames and file creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably; the file gets permission bits `mode`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Opens `path` for appending, creating it (mode `mode`) if needed; a new file's directory entry
/// is made durable before returning.
pub(crate) fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let existed = path.exists();
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)?;
    if !existed {
        f.sync_all()?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(f)
}

/// Appends `bytes` and waits until they are on disk. On failure, tries to cut the file back to
/// its previous length so no torn line stays behind; returns whether that worked with the error.
pub(crate) fn append_synced(f: &mut File, bytes: &[u8]) -> Result<(), (io::Error, bool)> {
    let before = f.metadata().map_err(|e| (e, true))?.len();
    let res = f.write_all(bytes).and_then(|()| f.sync_data());
    match res {
        Ok(()) => Ok(()),
        Err(e) => {
            let repaired = f.set_len(before).and_then(|()| f.sync_data()).is_ok();
            Err((e, repaired))
        }
    }
}
