//! Opening the store: the file's permissions, the connection and its pragmas, the savepoints a
//! write or a dry run works in, and the one query helper.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::lock::take_lock;
use super::schema::{MEMBERS_BY_MEMBER, SCHEMA, SCHEMA_VERSION, TEMP_TABLES, check_version, migrate};

/// How long a statement waits for another connection (a `status` reader, a checkpoint) to let go.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another ausi run holds the lock (the caller exits 75).
    #[error("another ausi run is using {path} (started {since})")]
    Locked { path: String, since: String },
    #[error("state store {path} was written by a newer ausi (schema {found}, this one reads {supported})")]
    TooNew { path: String, found: i64, supported: i64 },
    #[error("state store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A file of the store that other users could read when [`StateStore::open`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseFile {
    pub path: PathBuf,
    /// Its permission bits as found, e.g. `0o644`.
    pub mode: u32,
    /// Whether it is 0600 now (false: the change was refused, e.g. another user owns it).
    pub fixed: bool,
}

/// The page cache of a dry run, in KiB (see [`StateStore::begin_dry_run`]).
const DRY_RUN_CACHE_KIB: i64 = 16 * 1024;

/// The open state database. Dropping it closes the connection first, then releases the lock.
pub struct StateStore {
    pub(crate) conn: Connection,
    /// Held for the store's lifetime by [`StateStore::open`]; `None` for a read-only store.
    pub(super) _lock: Option<File>,
    /// Files [`StateStore::open`] found readable by others (and narrowed).
    pub(super) loose: Vec<LooseFile>,
    path: String,
    /// The first run this store began: runs from here on are ours, not "previous" ones.
    pub(super) first_own_run: Option<i64>,
    /// The schema of the file (a read-only store may be older than [`SCHEMA_VERSION`]).
    pub(super) schema: i64,
    /// Between [`StateStore::begin_dry_run`] and [`StateStore::end_dry_run`]: the page cache
    /// (`PRAGMA cache_size`) to restore when the dry run ends.
    dry_run: Option<i64>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("path", &self.path).field("locked", &self._lock.is_some()).finish()
    }
}

impl StateStore {
    /// Opens (creating) the database and takes an exclusive lock on `<path>.lock` with std's `File::try_lock()` —
    /// a second process gets `Locked` at once (the holder's pid and `now` are written into the lock file for the
    /// message). The lock is released when the store is dropped (also when the process is killed: the OS drops it).
    ///
    /// The files are private to their owner (see the module's documentation): a new database is
    /// created 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` the database's
    /// mode), and files found readable by others are narrowed and listed in [`StateStore::loose_files`].
    pub fn open(path: &Path, now: &str) -> Result<StateStore, StateError> {
        let display = path.display().to_string();
        let mut loose = Vec::new();
        let lock = take_lock(path, &display, now, &mut loose)?;
        let io = |source| StateError::Io { path: display.clone(), source };
        private::create(path).map_err(io)?;
        for file in [path.to_owned(), sibling(path, "-wal"), sibling(path, "-shm")] {
            loose.extend(private::narrow_path(&file).map_err(io)?);
        }
        let sql = |source| StateError::Sqlite { path: display.clone(), source };

        // No SQLITE_OPEN_URI: a path is a path, even one starting with `file:`.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Refuse a newer schema before changing anything in the file.
        let found = check_version(&conn, &display)?;
        // WAL + NORMAL: a commit survives the process being killed (only power loss may roll the last
        // commits back, and the tenant look-up by externalId covers that too).
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(sql(rusqlite::Error::InvalidParameterName(format!("journal_mode is {mode}, not wal"))));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;

        // Creation is one transaction: a kill leaves either no tables or all of them.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        tx.execute_batch(SCHEMA).map_err(sql)?;
        tx.execute_batch(MEMBERS_BY_MEMBER).map_err(sql)?;
        // Schema 1 stores gain the mirror tables; having no watermark, their next run is full.
        migrate(&tx, found).map_err(sql)?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        conn.execute_batch(TEMP_TABLES).map_err(sql)?;

        Ok(StateStore {
            conn,
            _lock: Some(lock),
            loose,
            path: display,
            first_own_run: None,
            schema: SCHEMA_VERSION,
            dry_run: None,
        })
    }

    /// A second connection to this store's file, for the run's writer: the applier commits its
    /// journal and results through it while the planner reads the mirror through `self` (WAL:
    /// readers and the one writer do not wait for each other). It takes no lock (this store
    /// holds it) and has no temporary tables (the applier writes none). Only for a store
    /// opened with [`StateStore::open`], outside a dry run's savepoint.
    pub fn writer(&self) -> Result<StateStore, StateError> {
        let sql = |source| StateError::Sqlite { path: self.path.clone(), source };
        let path = self.conn.path().filter(|p| !p.is_empty()).ok_or_else(|| {
            sql(rusqlite::Error::InvalidParameterName("the store has no file for a second connection".into()))
        })?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // journal_mode is the file's (WAL, set by `open`); these two are per connection.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;
        Ok(StateStore {
            conn,
            _lock: None,
            loose: Vec::new(),
            path: self.path.clone(),
            first_own_run: self.first_own_run,
            schema: self.schema,
            dry_run: None,
        })
    }

    /// The files [`StateStore::open`] found readable by other users, and whether it fixed them.
    pub fn loose_files(&self) -> &[LooseFile] {
        &self.loose
    }

    /// Read-only open for `status`: no lock, never creates (returns Ok(None) when the file does not exist,
    /// or holds no store yet). Works while a run holds the lock (WAL readers do not block the writer).
    pub fn open_read_only(path: &Path) -> Result<Option<StateStore>, StateError> {
        if let Ok(false) = path.try_exists() {
            return Ok(None);
        }
        let display = path.display().to_string();
        let sql = |source| StateError::Sqlite { path: display.clone(), source };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        let Some(schema) = check_version(&conn, &display)? else {
            return Ok(None);
        };
        Ok(Some(StateStore {
            conn,
            _lock: None,
            loose: Vec::new(),
            path: display,
            first_own_run: None,
            schema,
            dry_run: None,
        }))
    }

    /// The folder of the store's files (private to their owner): where a run's scratch files go.
    pub fn folder(&self) -> Option<PathBuf> {
        Path::new(&self.path).parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_owned)
    }

    pub(super) fn sql(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite { path: self.path.clone(), source }
    }

    /// [`StateStore::in_transaction`] for statements on the connection.
    pub(crate) fn mirror_sql<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        self.in_transaction(|store| f(&store.conn).map_err(|e| store.sql(e)))
    }

    /// `f` in one transaction (a savepoint, so it nests): all of it or none of it, and its
    /// statements share the database's locks. Outside a transaction SQLite takes and drops them
    /// for every statement (two `fcntl` calls or more each), and a validation that asks one
    /// question a user paid that 10,000 times at 10,000 users.
    ///
    /// Inside a dry run, `f` runs in the dry run's savepoint, which is rolled back whole: a
    /// savepoint nested in it would copy every page `f` changes into SQLite's sub-journal (a
    /// temporary file) for nothing. A dry run that fails half-way is rolled back whole too, with
    /// the error.
    pub fn in_transaction<T, E: From<StateError>>(
        &mut self,
        f: impl FnOnce(&mut StateStore) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.dry_run.is_some() {
            return f(self);
        }
        self.conn.execute_batch("SAVEPOINT work").map_err(|e| self.sql(e))?;
        match f(self) {
            Ok(out) => {
                self.conn.execute_batch("RELEASE work").map_err(|e| self.sql(e))?;
                Ok(out)
            }
            Err(e) => {
                // The error is the caller's; a failed rollback leaves the connection's transaction
                // for the next statement to report.
                let _ = self.conn.execute_batch("ROLLBACK TO work; RELEASE work");
                Err(e)
            }
        }
    }

    /// A dry run works in a savepoint that [`StateStore::end_dry_run`] rolls back: it runs the
    /// same engine, and leaves the mirror, the dirty set and the watermark as they were.
    ///
    /// Nothing it changes is ever committed, so a page it changed that leaves SQLite's page cache
    /// is written to the WAL and read back when needed again: with the default 2 MB cache, a
    /// 10k-user dry run read the WAL ~30,000 times. It runs with a cache of up to
    /// [`DRY_RUN_CACHE_KIB`] (allocated only as pages are used), which holds a 10k-user mirror.
    pub fn begin_dry_run(&mut self) -> Result<(), StateError> {
        let cache: i64 = self.conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).map_err(|e| self.sql(e))?;
        self.conn.execute_batch("SAVEPOINT dry_run").map_err(|e| self.sql(e))?;
        self.conn.pragma_update(None, "cache_size", -DRY_RUN_CACHE_KIB).map_err(|e| self.sql(e))?;
        self.dry_run = Some(cache);
        Ok(())
    }

    pub fn end_dry_run(&mut self) -> Result<(), StateError> {
        let cache = self.dry_run.take();
        self.conn.execute_batch("ROLLBACK TO dry_run; RELEASE dry_run").map_err(|e| self.sql(e))?;
        match cache {
            Some(cache) => self.conn.pragma_update(None, "cache_size", cache).map_err(|e| self.sql(e)),
            None => Ok(()),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    pub fn set_meta(&mut self, key: &str, value: Option<&str>) -> Result<(), StateError> {
        let result = match value {
            Some(v) => self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", [key, v]),
            None => self.conn.execute("DELETE FROM meta WHERE key = ?1", [key]),
        };
        result.map(|_| ()).map_err(|e| self.sql(e))
    }

    pub(super) fn query_strings(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<String>, StateError> {
        let read = || -> rusqlite::Result<Vec<String>> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params, |r| r.get(0))?;
            rows.collect()
        };
        read().map_err(|e| self.sql(e))
    }
}

/// `path` with `suffix` appended to its file name (`state.db` → `state.db-wal`).
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Files only their owner may read. On Unix: created 0600, and narrowed to the owner's bits when
/// group or others have any. Elsewhere (Windows) a new file inherits the folder's ACL, which the
/// installation restricts (`%ProgramData%\ausi`); nothing is widened or changed here.
pub(super) mod private {
    use std::fs::{File, OpenOptions};
    use std::path::Path;

    use super::LooseFile;

    /// Makes `options` create a file 0600.
    #[cfg(unix)]
    pub(in crate::store) fn mode(options: &mut OpenOptions) {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }

    #[cfg(not(unix))]
    pub(in crate::store) fn mode(_options: &mut OpenOptions) {}

    /// Creates `path` (empty, 0600) when it does not exist yet, so that SQLite finds it private:
    /// it gives the `-wal` and `-shm` files it creates the database's mode. An existing file is
    /// not opened here (closing a second descriptor of a database drops the process's locks on it).
    pub(in crate::store) fn create(path: &Path) -> std::io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        mode(&mut options);
        match options.open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Narrows `path` (if it exists) to its owner's permissions when others have any.
    #[cfg(unix)]
    pub(in crate::store) fn narrow_path(path: &Path) -> std::io::Result<Option<LooseFile>> {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return Ok(None);
        }
        let fixed = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).is_ok();
        Ok(Some(LooseFile { path: path.to_owned(), mode, fixed }))
    }

    #[cfg(not(unix))]
    pub(in crate::store) fn narrow_path(_path: &Path) -> std::io::Result<Option<LooseFile>> {
        Ok(None)
    }

    /// [`narrow_path`] for a file this process holds open (by its descriptor).
    #[cfg(unix)]
    pub(in crate::store) fn narrow_file(file: &File, path: &Path) -> std::io::Result<Option<LooseFile>> {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return Ok(None);
        }
        let fixed = file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700)).is_ok();
        Ok(Some(LooseFile { path: path.to_owned(), mode, fixed }))
    }

    #[cfg(not(unix))]
    pub(in crate::store) fn narrow_file(_file: &File, _path: &Path) -> std::io::Result<Option<LooseFile>> {
        Ok(None)
    }
}

pub(super) fn conversion(column: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}
