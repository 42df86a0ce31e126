//! One process at a time on a results folder: an exclusive lock, held for
//! as long as a run, a resume or a merge writes the folder.
//!
//! The lock is `flock(2)` on `.lock` in the folder (see
//! [`crate::safe_fs::try_lock_exclusive`]): the kernel releases it when the
//! process ends, however it ends (SIGKILL, a crash), so a lock is never
//! stale; the file names the holder (`pid host`) for the message another
//! process gives. A second process is refused at once ("in use by pid P
//! (host H)") before it reads or removes anything.
//!
//! Anything at `.lock` that is not a regular file (a link, a FIFO) is
//! removed as an entry and the file made anew. The holder removes the file
//! when it is done. Because a file can be
//! removed between another process opening it and locking it, a lock counts
//! only when the file locked is still the one at `.lock` (same inode); else
//! the taker tries again with the new file.

use crate::error::{Error, Result};
use crate::experiment::folder::host_name;
use crate::safe_fs;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Name of the lock file in a results folder.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive lock on a results folder; released (and its file removed)
/// when dropped, or by the kernel when the process ends.
#[derive(Debug)]
pub struct FolderLock {
    path: PathBuf,
    file: File,
}

fn lock_error(dir: &Path, why: impl std::fmt::Display) -> Error {
    Error::Folder(format!(
        "cannot lock the results folder {}: {why}",
        dir.display()
    ))
}

impl FolderLock {
    /// Takes the lock on `dir`, or says who holds it: "results folder DIR
    /// is in use by pid P (host H)".
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::take(dir, false).map(|l| l.expect("a lock or an error"))
    }

    /// [`acquire`](Self::acquire) for a folder that is only read (a merge's
    /// input): `None` when the folder is read-only to this process (the lock
    /// file cannot be made there), which is then read without the lock.
    pub fn acquire_if_writable(dir: &Path) -> Result<Option<Self>> {
        Self::take(dir, true)
    }

    fn take(dir: &Path, optional: bool) -> Result<Option<Self>> {
        let path = dir.join(LOCK_FILE);
        for _ in 0..100 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                // Never through a link, never blocking on a FIFO.
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .mode(0o644)
                .open(&path);
            let file = match file {
                Ok(f) => f,
                Err(e)
                    if optional
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EACCES | libc::EROFS | libc::EPERM)
                        ) =>
                {
                    return Ok(None)
                }
                // A symbolic link there (O_NOFOLLOW): removed as a link,
                // its target untouched, and the lock file made anew.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    safe_fs::remove_entry(&path).map_err(|e| lock_error(dir, e))?;
                    continue;
                }
                Err(e) => return Err(lock_error(dir, e)),
            };
            let meta = file.metadata().map_err(|e| lock_error(dir, e))?;
            if !meta.is_file() {
                // A FIFO, a device node or a folder is not a lock file of ours.
                drop(file);
                safe_fs::remove_entry(&path).map_err(|e| lock_error(dir, e))?;
                continue;
            }
            if !safe_fs::try_lock_exclusive(&file).map_err(|e| lock_error(dir, e))? {
                return Err(in_use(dir, file));
            }
            // Still the file at `.lock`? (The holder before may have removed it.)
            match std::fs::symlink_metadata(&path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
                _ => continue,
            }
            let mut lock = FolderLock { path, file };
            lock.write_holder()
                .map_err(|e| lock_error(dir, format!("cannot write {LOCK_FILE}: {e}")))?;
            return Ok(Some(lock));
        }
        Err(lock_error(
            dir,
            "its lock file kept being replaced (another process is taking and releasing it)",
        ))
    }

    fn write_holder(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        writeln!(self.file, "{} {}", std::process::id(), host_name())?;
        self.file.flush()
    }
}

/// The refusal when another process holds the lock on `dir` (`file`, open).
fn in_use(dir: &Path, mut file: File) -> Error {
    let mut text = String::new();
    let _ = (&mut file).take(4096).read_to_string(&mut text);
    let mut words = text.split_whitespace();
    let pid = words.next().unwrap_or("?");
    let host = words.next().unwrap_or("this machine");
    Error::Folder(format!(
        "results folder {} is in use by pid {pid} (host {host}): wait for it to finish, or stop \
         it first; nothing was changed",
        dir.display()
    ))
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Removed while still held, so no one takes the old file after us.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second taker in this process (its own open file description) is
    /// refused with the holder's pid; once the first lock is dropped the
    /// folder is free again and its lock file gone.
    #[test]
    fn a_held_folder_is_refused_with_the_holders_pid() {
        let dir = std::env::temp_dir().join(format!("quantdepth-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = FolderLock::acquire(&dir).unwrap();
        let e = FolderLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&format!("is in use by pid {} (host ", std::process::id())),
            "{e}"
        );
        drop(first);
        assert!(!dir.join(LOCK_FILE).exists());
        let again = FolderLock::acquire(&dir).unwrap();
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
