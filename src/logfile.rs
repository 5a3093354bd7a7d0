//! The log file of scheduled runs (`--log-file`): appended to by every run, rotated when a run
//! starts on a new day (UTC) or finds it larger than [`MAX_BYTES`], keeping [`KEEP`] old files
//! beside it (`ausi.log.2026-11-28`, then `ausi.log.2026-11-28.1` for a second one that day).
//!
//! A run is a short process, so checking once at start is enough; two runs rotating at the same
//! moment at worst both append to the fresh file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Rotated files kept beside the current one (two weeks of daily files).
pub const KEEP: usize = 14;
/// A file larger than this is rotated even on the same day.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Opens `path` for appending (creating its directory), rotating the previous file first when
/// it is from an earlier day or too large.
pub fn open(path: &Path) -> io::Result<File> {
    open_at(path, SystemTime::now())
}

fn open_at(path: &Path, now: SystemTime) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = fs::metadata(path) {
        let written = meta.modified().map(day).unwrap_or_else(|_| day(now));
        if written != day(now) || meta.len() >= MAX_BYTES {
            // Another run may have rotated it a moment ago: that is fine.
            let _ = fs::rename(path, free_name(path, &written));
            prune(path);
        }
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Logs name users and DNs: not for everyone's eyes.
        options.mode(0o640);
    }
    options.open(path)
}

/// `YYYY-MM-DD` (UTC) of a file time.
fn day(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn rotated_prefix(path: &Path) -> String {
    format!("{}.", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

fn free_name(path: &Path, day: &str) -> PathBuf {
    let base = format!("{}{day}", rotated_prefix(path));
    let mut candidate = path.with_file_name(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Deletes the oldest rotated files beyond [`KEEP`].
fn prune(path: &Path) {
    let (Some(dir), prefix) = (path.parent(), rotated_prefix(path)) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut old: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH), e.path()))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(KEEP);
    for (_, file) in old.into_iter().take(excess) {
        let _ = fs::remove_file(file);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_new_day_rotates_and_only_the_newest_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/ausi.log");
        writeln!(open(&path).unwrap(), "first").unwrap();
        writeln!(open(&path).unwrap(), "second").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "first\nsecond\n", "same day: appended");
        let tomorrow = SystemTime::now() + Duration::from_secs(86_400);
        writeln!(open_at(&path, tomorrow).unwrap(), "third").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "third\n");
        let rotated = path.with_file_name(format!("ausi.log.{}", day(SystemTime::now())));
        assert_eq!(fs::read_to_string(&rotated).unwrap(), "first\nsecond\n");
        for i in 0..(KEEP + 5) {
            fs::write(path.with_file_name(format!("ausi.log.2000-01-{i:02}")), "old").unwrap();
        }
        fs::write(&path, "x").unwrap();
        open_at(&path, tomorrow + Duration::from_secs(86_400)).unwrap();
        let count = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(count, KEEP + 1, "the current file and KEEP rotated ones");
    }
}
