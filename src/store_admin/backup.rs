//! `stocksync store backup` and `stocksync store restore` for the embedded store: a
//! consistent online copy of the SQLite file made with SQLite's online backup API while the
//! engine goes on writing, and the way back.
//!
//! **Backup** ([`backup_embedded`]): a read-only connection to the live file opens one read
//! transaction and holds it for the whole copy, so every page comes from the same snapshot
//! (in WAL mode a reader never blocks the writer, and the writer never changes what an open
//! read transaction sees; with the transaction held, SQLite has no reason to restart the
//! copy when the engine commits). Pages are copied [`PAGES_PER_STEP`] at a time into a
//! temporary file next to the destination, with a progress bar; the copy is then checked
//! with `PRAGMA integrity_check`, synced, and renamed into place, so a backup file either
//! is complete or does not exist. The report gives the offset watermarks in the copy: the
//! Kafka positions the restored ledger resumes from.
//!
//! **Restore** ([`restore_embedded`]): the backup is checked (integrity, store layout), then
//! copied with the same API into a temporary file next to the target, which replaces the
//! target (its `-wal` and `-shm` files removed first, so that no log of the replaced
//! database is replayed over the restored one). The engine must be stopped: the CLI checks
//! that the Kafka consumer group has no members, then sets the group's committed offsets to
//! the backup's watermarks ([`crate::ingest::kafka::set_committed_offsets`]), so that the
//! restarted engine reads again everything after them; idempotency keys make the records
//! the backup already holds harmless.
//!
//! PostgreSQL and ScyllaDB are backed up with their own tools (`pg_dump`/`pg_basebackup`,
//! `nodetool snapshot`); README "Backup and restore" says how.
//!
//! May depend on: `store`.

use crate::store::OffsetWatermark;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pages copied per step of the online backup (4 KiB pages: 4 MiB per step).
pub const PAGES_PER_STEP: i32 = 1_024;
/// How long a step waits when the source or destination is busy before trying again, in
/// milliseconds.
const BUSY_RETRY_MS: u64 = 50;
/// How long the connections wait for a lock before answering busy, in milliseconds.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// What went wrong in a backup or a restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The destination exists and `force` was not given.
    #[error("{0} exists; pass --force to replace it")]
    Exists(PathBuf),
    /// The source of a backup, or the backup of a restore, is missing.
    #[error("{0} does not exist")]
    Missing(PathBuf),
    /// The file is not an embedded stocksync store of the layout this build reads.
    #[error("{path} is not a stocksync embedded store this build reads: {reason}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// SQLite's integrity check found problems in the copy (the first lines of its answer).
    #[error("the copy at {path} failed SQLite's integrity check: {problems}")]
    Corrupt {
        /// The file checked.
        path: PathBuf,
        /// What `PRAGMA integrity_check` answered.
        problems: String,
    },
    /// SQLite or the file system failed.
    #[error("{operation}: {message}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The error.
        message: String,
    },
}

fn io(operation: &'static str) -> impl Fn(rusqlite::Error) -> BackupError {
    move |error| BackupError::Io {
        operation,
        message: error.to_string(),
    }
}

fn fs(operation: &'static str, path: &Path) -> impl Fn(std::io::Error) -> BackupError {
    let path = path.display().to_string();
    move |error| BackupError::Io {
        operation,
        message: format!("{path}: {error}"),
    }
}

/// What a backup or a restore copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// The file written.
    pub path: PathBuf,
    /// Database pages copied.
    pub pages: u64,
    /// Size of the file written, in bytes.
    pub bytes: u64,
    /// Events in the copy.
    pub events: u64,
    /// SKUs in the copy.
    pub skus: u64,
    /// The offset watermarks in the copy (every group's), ordered by group, topic and
    /// partition: where the restored ledger resumes reading Kafka.
    pub watermarks: Vec<OffsetWatermark>,
}

/// Copies the embedded store at `source` (which the engine may be writing) into a new
/// file at `destination`, consistently, as one snapshot.
///
/// `progress` shows a progress bar on stderr. `force` replaces an existing destination.
///
/// Errors: [`BackupError::Missing`] without a source file, [`BackupError::Exists`] when the
/// destination exists and `force` is false, [`BackupError::NotAStore`] when the source is
/// not an embedded store of this build's layout, [`BackupError::Corrupt`] when the copy
/// fails the integrity check (nothing is left at `destination` then), [`BackupError::Io`]
/// otherwise.
pub fn backup_embedded(
    source: &Path,
    destination: &Path,
    force: bool,
    progress: bool,
) -> Result<CopyReport, BackupError> {
    if !source.exists() {
        return Err(BackupError::Missing(source.to_owned()));
    }
    if destination.exists() && !force {
        return Err(BackupError::Exists(destination.to_owned()));
    }
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(io("open the source"))?;
    from.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(io("open the source"))?;
    check_layout(&from, source)?;
    // One read transaction for the whole copy: every step reads the same snapshot.
    from.execute_batch("BEGIN; SELECT count(*) FROM sqlite_master;")
        .map_err(io("begin the snapshot"))?;
    let temporary = temporary_next_to(destination);
    let copied = copy_pages(&from, &temporary, progress);
    let _ = from.execute_batch("COMMIT;");
    drop(from);
    let pages = match copied {
        Ok(pages) => pages,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    finish(&temporary, destination, pages)
}

/// Replaces the embedded store at `target` with the backup at `backup`. The engine must be
/// stopped (nothing here can tell that a process has the file open; the CLI checks the
/// Kafka group first).
///
/// `force` replaces a target that exists; without it only a missing or empty target is
/// written.
///
/// Errors: [`BackupError::Missing`] without a backup file, [`BackupError::NotAStore`] or
/// [`BackupError::Corrupt`] when the backup is not a sound store of this layout (the target
/// is untouched then), [`BackupError::Exists`] when the target holds data and `force` is
/// false, [`BackupError::Io`] otherwise.
pub fn restore_embedded(
    backup: &Path,
    target: &Path,
    force: bool,
    progress: bool,
) -> Result<CopyReport, BackupError> {
    if !backup.exists() {
        return Err(BackupError::Missing(backup.to_owned()));
    }
    let from = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(io("open the backup"))?;
    check_layout(&from, backup)?;
    integrity(&from, backup)?;
    if target.exists()
        && std::fs::metadata(target)
            .map_err(fs("read the target", target))?
            .len()
            > 0
        && !force
    {
        return Err(BackupError::Exists(target.to_owned()));
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fs("create the target folder", parent))?;
    }
    let temporary = temporary_next_to(target);
    let pages = match copy_pages(&from, &temporary, progress) {
        Ok(pages) => pages,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    drop(from);
    // The replaced database's log must not be replayed over the restored one.
    for suffix in ["-wal", "-shm"] {
        let side = sidecar(target, suffix);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(fs("remove the old log", &side)(error)),
        }
    }
    finish(&temporary, target, pages)
}

/// Refuses a file that is not an embedded store of the layout this build reads.
fn check_layout(connection: &Connection, path: &Path) -> Result<(), BackupError> {
    let not_a_store = |reason: String| BackupError::NotAStore {
        path: path.to_owned(),
        reason,
    };
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| not_a_store(e.to_string()))?;
    let has_events: bool = connection
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| not_a_store(e.to_string()))?;
    if !has_events {
        return Err(not_a_store("it has no events table".to_owned()));
    }
    if version != crate::store::embedded::LAYOUT_VERSION {
        return Err(not_a_store(format!(
            "store layout {version}, this build reads layout {}",
            crate::store::embedded::LAYOUT_VERSION
        )));
    }
    Ok(())
}

/// `PRAGMA integrity_check` must answer `ok`.
fn integrity(connection: &Connection, path: &Path) -> Result<(), BackupError> {
    let mut statement = connection
        .prepare("PRAGMA integrity_check(20)")
        .map_err(io("check integrity"))?;
    let answers: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .map_err(io("check integrity"))?
        .collect::<Result<_, _>>()
        .map_err(io("check integrity"))?;
    if answers == ["ok"] {
        Ok(())
    } else {
        Err(BackupError::Corrupt {
            path: path.to_owned(),
            problems: answers.join("; "),
        })
    }
}

/// Copies every page of `from`'s main database into a new file at `to` with SQLite's
/// online backup API; returns the page count.
fn copy_pages(from: &Connection, to: &Path, progress: bool) -> Result<u64, BackupError> {
    let _ = std::fs::remove_file(to);
    let mut destination = Connection::open(to).map_err(io("create the copy"))?;
    destination
        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(io("create the copy"))?;
    let backup =
        rusqlite::backup::Backup::new(from, &mut destination).map_err(io("start the copy"))?;
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} pages, {per_sec}, eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("copying");
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    loop {
        let step = backup.step(PAGES_PER_STEP).map_err(io("copy pages"))?;
        let state = backup.progress();
        let total = u64::try_from(state.pagecount).unwrap_or(0);
        let done = total.saturating_sub(u64::try_from(state.remaining).unwrap_or(0));
        bar.set_length(total);
        bar.set_position(done);
        match step {
            rusqlite::backup::StepResult::Done => {
                bar.finish_and_clear();
                return Ok(total);
            }
            rusqlite::backup::StepResult::More => {}
            _ => std::thread::sleep(Duration::from_millis(BUSY_RETRY_MS)),
        }
    }
}

/// Checks the copy at `temporary`, reads what it holds, syncs it and renames it to `path`.
fn finish(temporary: &Path, path: &Path, pages: u64) -> Result<CopyReport, BackupError> {
    let read = || -> Result<(u64, u64, Vec<OffsetWatermark>), BackupError> {
        let copy = Connection::open(temporary).map_err(io("open the copy"))?;
        integrity(&copy, temporary)?;
        let events: i64 = copy
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .map_err(io("count events"))?;
        let skus: i64 = copy
            .query_row("SELECT count(*) FROM skus", [], |row| row.get(0))
            .map_err(io("count SKUs"))?;
        let mut statement = copy
            .prepare("SELECT grp, topic, part, next_offset FROM offsets ORDER BY grp, topic, part")
            .map_err(io("read the offset watermarks"))?;
        let watermarks = statement
            .query_map([], |row| {
                Ok(OffsetWatermark {
                    group: row.get(0)?,
                    topic: row.get(1)?,
                    partition: row.get(2)?,
                    next_offset: row.get(3)?,
                })
            })
            .map_err(io("read the offset watermarks"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io("read the offset watermarks"))?;
        // Everything in the database file itself, nothing left in a log beside it.
        copy.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(io("checkpoint the copy"))?;
        Ok((
            u64::try_from(events).unwrap_or(0),
            u64::try_from(skus).unwrap_or(0),
            watermarks,
        ))
    };
    let (events, skus, watermarks) = match read() {
        Ok(read) => read,
        Err(error) => {
            let _ = std::fs::remove_file(temporary);
            return Err(error);
        }
    };
    std::fs::File::open(temporary)
        .and_then(|file| file.sync_all())
        .map_err(fs("sync the copy", temporary))?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(sidecar(temporary, suffix));
    }
    std::fs::rename(temporary, path).map_err(fs("rename the copy into place", path))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(folder) = std::fs::File::open(parent)
    {
        let _ = folder.sync_all();
    }
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(CopyReport {
        path: path.to_owned(),
        pages,
        bytes,
        events,
        skus,
        watermarks,
    })
}

/// `path` with `.partial` appended: where a copy is written before it is renamed.
fn temporary_next_to(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// SQLite's side file of `path` (`-wal`, `-shm`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::embedded::EmbeddedStore;

    #[test]
    fn a_file_that_is_not_a_store_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x);")
            .unwrap();
        let out = dir.path().join("backup.db");
        let error = backup_embedded(&other, &out, false, false).unwrap_err();
        assert!(matches!(error, BackupError::NotAStore { .. }), "{error}");
        assert!(!out.exists());
        let error = restore_embedded(&other, &out, false, false).unwrap_err();
        assert!(matches!(error, BackupError::NotAStore { .. }), "{error}");
        assert!(!out.exists());
    }

    #[tokio::test]
    async fn an_existing_destination_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("stocksync.db");
        let store = EmbeddedStore::open(&source).unwrap();
        store.offsets("g").await.unwrap();
        let out = dir.path().join("backup.db");
        std::fs::write(&out, b"keep me").unwrap();
        let error = backup_embedded(&source, &out, false, false).unwrap_err();
        assert!(matches!(error, BackupError::Exists(_)), "{error}");
        assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
        let report = backup_embedded(&source, &out, true, false).unwrap();
        assert_eq!(report.events, 0);
        assert!(report.pages > 0);
        // Restoring over a store that holds data needs --force as well.
        let error = restore_embedded(&out, &source, false, false).unwrap_err();
        assert!(matches!(error, BackupError::Exists(_)), "{error}");
        assert!(!temporary_next_to(&source).exists());
    }

    #[test]
    fn a_missing_source_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = backup_embedded(
            &dir.path().join("nope.db"),
            &dir.path().join("b.db"),
            false,
            false,
        )
        .unwrap_err();
        assert!(error.to_string().contains("nope.db"), "{error}");
    }
}
