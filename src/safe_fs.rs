//! Files read and written without surprises: every file the library reads
//! back (a config, a results folder's `meta.json`, `shard.json`, point
//! records, the GPU kernel cache, IDX data) is opened only when it is a
//! regular file, without ever blocking, and read up to a cap; files it
//! creates are created new, never through a symbolic link.
//!
//! - A FIFO opened for reading blocks until a writer appears, so a named
//!   pipe where a file is expected would hang a run forever: files are
//!   opened with `O_NONBLOCK` (which lets `open` return at once on a FIFO)
//!   and their type is checked (`fstat`) before a byte is read.
//! - A device (`/dev/zero`) or a huge file would be read until memory runs
//!   out: every read stops at a cap chosen by the caller (generous for the
//!   files quantdepth writes), and says so.
//! - A symbolic link where a new file is created would write through it to
//!   wherever it points: new files are opened with `O_CREAT | O_EXCL |
//!   O_NOFOLLOW`, which refuses any existing name, link or not.
//!
//! The errors are `std::io::Error`s whose message says what the file is
//! ("a FIFO (named pipe), not a regular file"); callers add the path.
//! Unix only (as is the rest of the folder handling: `flock`, `/proc`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a file type is, in words ("a FIFO (named pipe)").
pub fn kind_of(ft: &std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a folder"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// A byte count as a reader takes it in: `1 MiB`, `256 MiB`, `4 GiB`, `700 B`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn not_regular(ft: &std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {}, not a regular file", kind_of(ft)),
    )
}

fn too_large(len: u64, cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "it is larger than {} ({}), more than such a file ever holds",
            fmt_bytes(cap),
            if len > cap {
                fmt_bytes(len)
            } else {
                "still growing".to_string()
            }
        ),
    )
}

/// Opens `path` for reading when it is a regular file (a symbolic link to
/// one is followed), never blocking: the type is checked before opening
/// (`stat`) and again on the open file (`fstat`), so a FIFO, a device or a
/// socket is refused without a byte read. Returns the file and its length.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let before = std::fs::metadata(path)?;
    if !before.is_file() {
        return Err(not_regular(&before.file_type()));
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(not_regular(&m.file_type()));
    }
    Ok((f, m.len()))
}

/// The bytes of the regular file `path`, refused when it holds more than
/// `cap` bytes (checked before reading, and while reading: a file that grows
/// is stopped at the cap).
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let (f, len) = open_regular(path)?;
    if len > cap {
        return Err(too_large(len, cap));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64, cap));
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text; text that is not UTF-8 is refused with
/// the offset of its first bad byte.
pub fn read_capped_text(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_capped(path, cap)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (byte {} is not)",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Creates the file `path`, which must not exist: `O_CREAT | O_EXCL |
/// O_NOFOLLOW`, so an existing file, folder or symbolic link of that name
/// (dangling or not) is an error (`AlreadyExists`) and nothing is written
/// through a link.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(path)
}

/// What is at `path` itself (a symbolic link is not followed); `None` when
/// nothing is.
pub fn entry_type(path: &Path) -> io::Result<Option<std::fs::FileType>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes what is at `path` without following a symbolic link: a link is
/// removed as a link (its target untouched), a folder with its contents
/// (`remove_dir_all`, which does not follow links inside either), anything
/// else as a file. Nothing there is not an error.
pub fn remove_entry(path: &Path) -> io::Result<()> {
    match entry_type(path)? {
        None => Ok(()),
        Some(ft) if ft.is_dir() => std::fs::remove_dir_all(path),
        Some(_) => std::fs::remove_file(path),
    }
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(true)` when
/// taken, `Ok(false)` when another open file description holds it. The
/// lock goes when the file is closed (the process ends, killed or not).
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns; no memory is passed.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn dir(tag: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("quantdepth-safefs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    /// A FIFO (directly or behind a link) is refused at once, never
    /// waited on; /dev/zero is refused as a device; a file over the cap is
    /// refused with both sizes; a file at the cap is read whole.
    #[test]
    fn only_regular_files_are_read_and_only_up_to_the_cap() {
        let d = dir("read");
        let fifo = d.join("fifo");
        mkfifo(&fifo);
        std::os::unix::fs::symlink(&fifo, d.join("link")).unwrap();
        for p in [fifo.clone(), d.join("link")] {
            let t = Instant::now();
            let e = read_capped(&p, 100).unwrap_err().to_string();
            assert!(t.elapsed() < Duration::from_secs(5));
            assert_eq!(e, "it is a FIFO (named pipe), not a regular file");
        }
        let e = read_capped(Path::new("/dev/zero"), 100).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a character device, not a regular file"
        );
        std::fs::write(d.join("big"), vec![b'x'; 1025]).unwrap();
        let e = read_capped(&d.join("big"), 1024).unwrap_err().to_string();
        assert!(e.contains("larger than 1 KiB (1.0 KiB)"), "{e}");
        assert_eq!(read_capped(&d.join("big"), 1025).unwrap().len(), 1025);
        std::fs::write(d.join("bad"), [b'a', 0xff]).unwrap();
        let e = read_capped_text(&d.join("bad"), 10)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "it is not UTF-8 text (byte 1 is not)");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// create_new refuses an existing name, a dangling link included, and
    /// writes nothing through a link; remove_entry removes a link, not its
    /// target.
    #[test]
    fn new_files_are_never_created_through_a_link() {
        let d = dir("create");
        let target = d.join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, d.join("link")).unwrap();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        for name in ["link", "dangling", "target"] {
            let e = create_new(&d.join(name)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{name}");
        }
        assert!(!d.join("nowhere").exists());
        std::fs::create_dir(d.join("sub")).unwrap();
        std::os::unix::fs::symlink(d.join("sub"), d.join("sublink")).unwrap();
        std::fs::write(d.join("sub/x"), b"x").unwrap();
        remove_entry(&d.join("sublink")).unwrap();
        remove_entry(&d.join("link")).unwrap();
        assert_eq!(std::fs::read(d.join("sub/x")).unwrap(), b"x");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(fmt_bytes(1 << 20), "1 MiB");
        let _ = std::fs::remove_dir_all(&d);
    }
}
