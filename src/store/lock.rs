//! The lock: one writer at a time, an OS file lock on `<path>.lock` that names its holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::db::{private, sibling};
use super::{LooseFile, StateError};

pub(super) fn lock_path(path: &Path) -> PathBuf {
    sibling(path, ".lock")
}

/// Takes the exclusive lock, then records who holds it. Never truncates before the lock is ours.
/// A lock file found readable by others is narrowed once the lock is ours (and added to `loose`).
pub(super) fn take_lock(path: &Path, display: &str, now: &str, loose: &mut Vec<LooseFile>) -> Result<File, StateError> {
    let lock_path = lock_path(path);
    let io = |source| StateError::Io { path: lock_path.display().to_string(), source };
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    private::mode(&mut options);
    let mut file = options.open(&lock_path).map_err(io)?;
    // `File::try_lock` is stable since Rust 1.89 (flock on Unix, LockFileEx on Windows); the lock belongs
    // to this open file, so a second open in the same process is refused too.
    #[allow(clippy::incompatible_msrv)]
    let locked = file.try_lock();
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(StateError::Locked { path: display.to_owned(), since: holder(&mut file) });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let record = (|| -> std::io::Result<()> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{} {}", std::process::id(), now)?;
        file.flush()
    })();
    record.map_err(io)?;
    loose.extend(private::narrow_file(&file, &lock_path).map_err(io)?);
    Ok(file)
}

/// "<when> by pid <pid>", from the holder's lock file (unreadable on Windows while locked).
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return "at an unknown time".to_owned();
    }
    match text.trim().split_once(' ') {
        Some((pid, when)) if !when.is_empty() => format!("{when} by pid {pid}"),
        _ => "at an unknown time".to_owned(),
    }
}
