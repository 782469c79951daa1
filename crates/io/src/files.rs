//! How the io crate touches the file system: reads bounded by a format's limit and refused for
//! anything but a regular file, atomic writes (temporary file, fsync, rename, directory fsync), and
//! the removal of what killed writers leave behind.

use crate::{IoError, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// An `IoError::Io` naming `path`.
pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> IoError + '_ {
    move |source| IoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The length of `path` when it is a regular file (following links); anything else is refused
/// before it is opened: a link to `/dev/zero` would never end and opening a FIFO would block.
/// `what` names the kind of file in the error.
fn regular_len(path: &Path, what: &str) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(IoError::Corrupt {
            path: path.into(),
            message: format!("a {what} must be a regular file"),
        });
    }
    Ok(meta.len())
}

/// Opens `path` for reading when it is a regular file, with its length.
pub(crate) fn open_regular(path: &Path, what: &str) -> Result<(File, u64)> {
    let len = regular_len(path, what)?;
    Ok((File::open(path).map_err(io_err(path))?, len))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsynced, renamed over
/// `path`, then the directory fsynced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(source) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(IoError::Io {
            path: path.into(),
            source,
        });
    }
    sync_dir(path);
    Ok(())
}

/// Reads a whole file of at most `max` bytes, refusing anything but a regular file (a link to
/// `/dev/zero` would never end, a FIFO would block) before reading, and never reading past `max`.
/// `what` names the kind of file in the errors.
pub(crate) fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let refuse = |message: String| IoError::Corrupt {
        path: path.into(),
        message,
    };
    let len = regular_len(path, what)?;
    if len > max {
        return Err(refuse(format!(
            "a {what} of {len} bytes is more than the {max} this build reads"
        )));
    }
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(max.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    if bytes.len() as u64 > max {
        return Err(refuse(format!("a {what} that grows past {max} bytes")));
    }
    Ok(bytes)
}

/// What marks a file as one of our temporaries: `<name>.ferroflow-tmp-<pid>`.
const TEMP_TAG: &str = ".ferroflow-tmp-";

/// The temporary name this process writes `path` under before renaming it into place.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    temp_path_for(path, std::process::id())
}

/// The temporary name process `pid` writes `path` under.
pub(crate) fn temp_path_for(path: &Path, pid: u32) -> PathBuf {
    PathBuf::from(format!("{}{TEMP_TAG}{pid}", path.display()))
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Clears up after killed writers in the directory of `path`: first finishes the TensorFlow
/// checkpoint switches whose writer is gone (a kill between the renames of a pair, see
/// `tf_checkpoint/switch.rs`), then removes the temporary files ([`temp_path`]) of writers that no
/// longer run and whose switch is not still pending. Only where `/proc` tells which processes run
/// (Linux); files of this process and of any running one are kept. Best effort: what cannot be
/// listed, renamed or removed stays.
pub(crate) fn recover_dir(path: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let me = std::process::id();
    let gone = |pid: u32| pid != me && !Path::new("/proc").join(pid.to_string()).exists();
    let dir = dir_of(path);
    let pending = crate::tf_checkpoint::finish_switches(dir, &gone);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.rsplit_once(TEMP_TAG))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if gone(pid) && !pending.contains(&pid) && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let lock = dir.join(LOCK_NAME);
    if lock_holder(&lock).is_some_and(|(host, pid)| host == this_host() && gone(pid)) {
        let _ = std::fs::remove_file(lock);
    }
}

/// The lock a save holds on its directory (the state file `checkpoint` and the prefixes in it).
const LOCK_NAME: &str = "checkpoint.ferroflow-lock";

/// This host's name, as the lock records it (empty where `/proc` does not say).
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The host and process that hold `lock`, when it exists and says.
fn lock_holder(lock: &Path) -> Option<(String, u32)> {
    let text = std::fs::read_to_string(lock).ok()?;
    let (host, pid) = text.trim().rsplit_once(' ')?;
    Some((host.to_string(), pid.parse().ok()?))
}

/// A save's hold on its directory: two saves into one directory at once (two ranks of a job, two
/// threads) would race on the state file and on any prefix they share, so the second is refused
/// with [`IoError::Busy`]. The lock names its host and process; one left by a process of this host
/// that no longer runs is taken over. Released when dropped.
pub(crate) struct SaveLock {
    path: PathBuf,
}

impl SaveLock {
    /// Takes the lock of the directory holding `file`. The lock appears with its content at
    /// once (a temporary file linked to the lock's name, which fails if the name exists), so a
    /// writer killed at any moment leaves either no lock or one that names it.
    pub(crate) fn take(file: &Path) -> Result<SaveLock> {
        let path = dir_of(file).join(LOCK_NAME);
        let tmp = temp_path(&path);
        std::fs::write(&tmp, format!("{} {}", this_host(), std::process::id()))
            .map_err(io_err(&tmp))?;
        let taken = Self::link(&path, &tmp);
        let _ = std::fs::remove_file(&tmp);
        taken
    }

    fn link(path: &Path, tmp: &Path) -> Result<SaveLock> {
        for _ in 0..2 {
            match std::fs::hard_link(tmp, path) {
                Ok(()) => return Ok(SaveLock { path: path.into() }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = lock_holder(path);
                    let stale = holder.as_ref().is_some_and(|(host, pid)| {
                        *host == this_host()
                            && *pid != std::process::id()
                            && Path::new("/proc/self").exists()
                            && !Path::new("/proc").join(pid.to_string()).exists()
                    });
                    if !stale {
                        let holder = match holder {
                            Some((host, pid)) => format!("held by process {pid} on host '{host}'"),
                            None => "a lock that does not say whose it is".into(),
                        };
                        return Err(IoError::Busy {
                            path: path.into(),
                            holder,
                        });
                    }
                    let _ = std::fs::remove_file(path);
                }
                Err(e) => return Err(io_err(path)(e)),
            }
        }
        Err(IoError::Busy {
            path: path.into(),
            holder: "another process took it first".into(),
        })
    }
}

impl Drop for SaveLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Fsyncs the directory holding `path` so a rename survives a crash (best effort where unsupported).
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}
