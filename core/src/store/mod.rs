//! The SQLite store: one database file, one write connection owned by the writer, pooled readers.
//!
//! Writes are closures run by the writer on the one write connection. Jobs that arrive together share one
//! `BEGIN IMMEDIATE` transaction (group commit), each inside its own savepoint, and a job's caller hears back
//! only after that transaction committed. SQLite never runs on an async worker: the writer is its own thread,
//! reads run on the blocking pool. Under simulated time ([`Writer::BlockingPool`]) each batch runs on the
//! blocking pool instead, which keeps tokio's paused clock still while SQLite works. The per-table modules
//! are plain `fn(&Connection, ...)` functions; this module owns connections, not queries.
//!
//! Guards: a damaged file is refused at open (`PRAGMA quick_check`); deleted rows are overwritten
//! (`secure_delete`) and, after a delete, the WAL is checkpointed and truncated ([`Store::checkpoint`]) so no
//! copy of them lingers; and the writer commits only while the file it opened is still where it was opened
//! (one `stat` per batch), so a deleted data folder stops acknowledgements instead of losing them.

pub mod calls;
pub mod inbox;
pub mod memories;
pub mod messages;
mod schema;
pub mod search;
pub mod sessions;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Durability};

pub use schema::SCHEMA_VERSION;

/// The most jobs one transaction takes; the rest wait for the next one.
const MAX_BATCH: usize = 512;
/// How long a connection waits for another process's write lock (e.g. `memtray hook` writing directly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many idle reader connections are kept open.
const READER_POOL: usize = 4;

/// Errors of the storage layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// SQLITE_FULL: the disk, or the configured `max_db_bytes`, is full.
    #[error("the database is full (no disk space, or max_db_bytes reached)")]
    Full,
    /// The file or its folder cannot be written.
    #[error("the database is read-only")]
    ReadOnly,
    /// Another writer held the lock longer than the busy timeout.
    #[error("the database is locked by another writer")]
    Busy,
    /// The file is not a database, or is damaged.
    #[error("the database file is corrupt or not a SQLite database")]
    Corrupt,
    /// The file was written by a newer memtray.
    #[error(
        "the database schema version {found} is newer than this memtray understands ({supported}); upgrade memtray"
    )]
    TooNew {
        /// `user_version` in the file.
        found: i64,
        /// The newest this code knows.
        supported: i64,
    },
    /// The file was written by an older memtray and a read-only reader cannot migrate it.
    #[error(
        "the database schema version {found} is older than this memtray reads ({needed}); run `memtray serve` \
         once to upgrade it"
    )]
    TooOld {
        /// `user_version` in the file.
        found: i64,
        /// The version this code reads.
        needed: i64,
    },
    /// A read-only reader found no database file.
    #[error("there is no memtray database at {path} yet (run `memtray serve` once)")]
    NoDatabase {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A search had nothing to look for.
    #[error("the search query has no words to look for")]
    EmptySearch,
    /// A search in FTS5 syntax is malformed.
    #[error("the search query is not valid FTS5 syntax ({0})")]
    BadSearch(#[source] Arc<rusqlite::Error>),
    /// The data folder could not be created.
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The database has damaged pages (`PRAGMA quick_check` at open).
    #[error(
        "the database {} is damaged ({detail}); memtray will not start on it. Stop every memtray, then either move \
         it aside to start afresh (`mv memtray.db memtray.db.damaged`, and its -wal and -shm files with it) or \
         recover what it holds into a new file (`sqlite3 memtray.db.damaged .recover | sqlite3 memtray.db`)",
        path.display()
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What SQLite found (its first problems).
        detail: String,
    },
    /// The database file was deleted or replaced since it was opened: a commit would go to a file no one will
    /// open again, so nothing is committed.
    #[error("the database {} was deleted or replaced while memtray was running; restart memtray", path.display())]
    Gone {
        /// Where the database was.
        path: PathBuf,
    },
    /// The writer has stopped (shutdown).
    #[error("the store is closed")]
    Closed,
    /// A stored JSON column did not parse.
    #[error("stored JSON is malformed: {0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full,
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt,
            _ => StoreError::Sqlite(Arc::new(e)),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Json(Arc::new(e))
    }
}

impl StoreError {
    /// True when the failure is about the database's condition for now (full, read-only, locked, closed),
    /// not the request or the data: the caller should answer "try again later" and acknowledge nothing.
    /// A corrupt file or a SQL error is not "for now": retrying cannot help.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Full | StoreError::ReadOnly | StoreError::Busy | StoreError::Closed)
    }
}

/// A result of the storage layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Told to each job after its transaction ended: `Ok` once committed.
type Deliver = Box<dyn FnOnce(Result<()>) + Send>;
/// A write job: runs inside the batch transaction (or is handed the error that kept the transaction from
/// starting), reports how it went, and returns how to deliver its result.
type Job = Box<dyn FnOnce(Result<&Connection>) -> (Result<()>, Deliver) + Send>;

enum Command {
    Run(Job),
    /// Between batches: copy the WAL into the database file and truncate it, then answer.
    Checkpoint(oneshot::Sender<Result<()>>),
    /// Finish what is queued, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// What ends a gathered batch other than its size.
enum Control {
    Checkpoint(oneshot::Sender<Result<()>>),
    Close(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to the database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Commands for the writer (its thread or task), which owns the receiver and exits on `Close` or when
    /// every `Store` clone is gone.
    writer: mpsc::Sender<Command>,
    /// Ends when the writer has stopped (its thread or its task); awaited by `close`. A std mutex: taken
    /// once, never held across an `.await`.
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Idle read-only connections, so a read does not pay for opening one. A std mutex: held only to push or
    /// pop, never across an `.await`.
    readers: Mutex<Vec<Connection>>,
    /// The database file.
    path: PathBuf,
    /// Per-connection settings, applied to every connection opened.
    settings: ConnectionSettings,
}

impl Store {
    /// Opens (creating if needed) the database in `config.data_dir`, migrates it, and starts the writer
    /// thread.
    pub async fn open(config: &Config) -> Result<Store> {
        Store::open_with(config, Writer::Thread).await
    }

    /// Opens the database with the given kind of writer.
    pub async fn open_with(config: &Config, writer: Writer) -> Result<Store> {
        let data_dir = config.data_dir.clone();
        let path = data_dir.join("memtray.db");
        let settings = ConnectionSettings::from(config);
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&data_dir)
                    .map_err(|source| StoreError::DataDir { path: data_dir.clone(), source: Arc::new(source) })?;
                let mut conn = open_connection(&path, settings, false)?;
                check_integrity(&conn, &path)?;
                schema::migrate(&mut conn)?;
                let file = DbFile::identify(&path)?;
                Ok::<_, StoreError>(Writing { conn, file })
            })
        };
        let writing = opened.await.map_err(|_| StoreError::Closed)??;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let writer_task = match writer {
            Writer::BlockingPool => tokio::spawn(pooled_writer(writing, rx)),
            Writer::Thread => {
                let (done, stopped) = oneshot::channel::<()>();
                std::thread::Builder::new()
                    .name("memtray-store-writer".into())
                    .spawn(move || {
                        thread_writer(writing, rx);
                        let _ = done.send(());
                    })
                    .map_err(|e| StoreError::DataDir { path: path.clone(), source: Arc::new(e) })?;
                tokio::spawn(async move {
                    let _ = stopped.await;
                })
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                writer: tx,
                writer_task: Mutex::new(Some(writer_task)),
                readers: Mutex::new(Vec::new()),
                path,
                settings,
            }),
        })
    }

    /// Runs `f` in a write transaction on the writer and returns its result once committed.
    /// If `f` fails, its own changes are rolled back and nothing else in the batch is affected.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = conn.and_then(f);
            let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
            let deliver: Deliver = Box::new(move |committed| {
                let _ = tx.send(committed.and(result));
            });
            (outcome, deliver)
        });
        self.inner.writer.send(Command::Run(job)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Copies the WAL into the database file and truncates it, on the writer between batches: after a delete,
    /// so the deleted text (overwritten in the file by `secure_delete`) has no copy left in the WAL. A reader
    /// in the way makes it wait (the busy timeout) or leave the WAL as is; that is not an error.
    pub async fn checkpoint(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.inner.writer.send(Command::Checkpoint(tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// After a delete: [`Store::checkpoint`], a failure only logged (the delete itself is committed).
    pub async fn wipe_after_delete(&self) {
        if let Err(e) = self.checkpoint().await {
            tracing::warn!(error = %e, "could not checkpoint the WAL after a delete");
        }
    }

    /// Runs `f` on a read connection off the async workers.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f)).await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection on the calling thread (for blocking contexts).
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.inner.readers.lock().expect("reader pool poisoned").pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.inner.path, self.inner.settings, true)?,
        };
        let result = f(&conn);
        let mut pool = self.inner.readers.lock().expect("reader pool poisoned");
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        result
    }

    /// Lets queued writes finish, then stops the writer task and closes every connection. Later writes fail
    /// with `Closed`.
    pub async fn close(&self) {
        // Readers first, so the write connection is the last to close: SQLite then checkpoints the WAL and
        // removes it.
        self.inner.readers.lock().expect("reader pool poisoned").clear();
        let (tx, rx) = oneshot::channel();
        if self.inner.writer.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let task = self.inner.writer_task.lock().expect("writer handle poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.inner.readers.lock().expect("reader pool poisoned").clear();
    }
}

/// Migrates an in-memory database of another module's unit tests.
#[cfg(test)]
pub(crate) fn migrate_for_tests(conn: &mut Connection) {
    schema::migrate(conn).expect("the schema migrates");
}

/// Opens the database for a short-lived writer outside the server (`memtray hook`): creates and migrates it if
/// needed. Safe beside a running server: SQLite's locks and the busy timeout order the writers.
pub fn open_direct(config: &Config, busy_timeout: Duration) -> Result<Connection> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StoreError::DataDir { path: config.data_dir.clone(), source: Arc::new(source) })?;
    let mut conn = open_connection(&config.data_dir.join("memtray.db"), ConnectionSettings::from(config), false)?;
    conn.busy_timeout(busy_timeout)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// A read-only way into the database for processes beside the server, or without one (`memtray mcp`,
/// `memtray search` when no server answers). It never creates, migrates or writes: the file must exist and
/// carry this code's schema. One connection is opened on first use and kept; cheap to clone.
#[derive(Clone)]
pub struct ReadOnly {
    inner: Arc<ReadOnlyInner>,
}

struct ReadOnlyInner {
    /// The database file.
    path: PathBuf,
    /// Per-connection settings.
    settings: ConnectionSettings,
    /// The idle connection, taken for each read and put back after. A std mutex: held only to take or put,
    /// never across an `.await`.
    idle: Mutex<Option<Connection>>,
}

impl ReadOnly {
    /// A reader of the database in `config.data_dir`; nothing is opened until the first read.
    pub fn new(config: &Config) -> ReadOnly {
        ReadOnly {
            inner: Arc::new(ReadOnlyInner {
                path: config.data_dir.join("memtray.db"),
                settings: ConnectionSettings::from(config),
                idle: Mutex::new(None),
            }),
        }
    }

    /// Runs `f` on the read-only connection off the async workers.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let reader = self.clone();
        tokio::task::spawn_blocking(move || reader.read_blocking(f)).await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the read-only connection on the calling thread.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.inner.idle.lock().expect("reader poisoned").take();
        let conn = match idle {
            Some(c) => c,
            None => open_read_only(&self.inner.path, self.inner.settings)?,
        };
        let result = f(&conn);
        *self.inner.idle.lock().expect("reader poisoned") = Some(conn);
        result
    }
}

/// Opens an existing database read-only, refusing a schema other than this code's. Safe beside a running
/// server (WAL readers never block its writer), and on a file no server has open.
fn open_read_only(path: &Path, settings: ConnectionSettings) -> Result<Connection> {
    if !path.exists() {
        return Err(StoreError::NoDatabase { path: path.to_path_buf() });
    }
    let conn = open_connection(path, settings, true)?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found, supported: SCHEMA_VERSION });
    }
    if found < SCHEMA_VERSION {
        return Err(StoreError::TooOld { found, needed: SCHEMA_VERSION });
    }
    Ok(conn)
}

/// Opens a connection with the pragmas every memtray connection carries.
pub fn open_connection(path: &Path, s: ConnectionSettings, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    let sync = match s.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are overwritten with zeros, not left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    if s.max_db_bytes > 0 {
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = (s.max_db_bytes / page_size.max(1) as u64).clamp(1, i64::MAX as u64) as i64;
        conn.pragma_update(None, "max_page_count", pages)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The per-connection settings taken from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionSettings {
    /// Commit durability.
    pub durability: Durability,
    /// Size cap (0 = none).
    pub max_db_bytes: u64,
}

impl From<&Config> for ConnectionSettings {
    fn from(c: &Config) -> Self {
        ConnectionSettings { durability: c.durability, max_db_bytes: c.max_db_bytes }
    }
}

/// How the writer runs its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// On a thread of its own: the fastest (no hand-off per batch); what memtray runs with.
    Thread,
    /// As a task that runs each batch on the blocking pool. Tokio's paused test clock does not advance
    /// while a blocking task runs, so a core on simulated time sees its writes take no time, as they
    /// should; a thread of its own would let the clock jump while a write is under way.
    BlockingPool,
}

/// The write connection and the file it was opened on.
struct Writing {
    conn: Connection,
    file: DbFile,
}

/// The database file as it was when the writer opened it: its device and inode.
struct DbFile {
    path: PathBuf,
    id: Option<(u64, u64)>,
    /// Told the log once that the file is gone (the writer's own thread; a `Cell` suffices).
    reported: std::cell::Cell<bool>,
}

impl DbFile {
    fn identify(path: &Path) -> Result<DbFile> {
        let id = file_id(path)
            .map_err(|source| StoreError::DataDir { path: path.to_path_buf(), source: Arc::new(source) })?;
        Ok(DbFile { path: path.to_path_buf(), id, reported: std::cell::Cell::new(false) })
    }

    /// True while the path still names the file that was opened (one `stat`).
    fn still_there(&self) -> bool {
        let same = matches!(file_id(&self.path), Ok(id) if id == self.id);
        if !same && !self.reported.replace(true) {
            tracing::error!(
                database = %self.path.display(),
                "the database file was deleted or replaced while memtray was running; nothing more is stored \
                 (every write answers 503 database_missing) until memtray is restarted"
            );
        }
        same
    }
}

/// The device and inode of `path` (just "it exists" where there are none).
fn file_id(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some((meta.dev(), meta.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(None)
    }
}

/// `PRAGMA quick_check` (at most a few problems reported): a database with damaged pages is refused with
/// what SQLite found, where the file is and how to recover, instead of answering 503 forever.
fn check_integrity(conn: &Connection, path: &Path) -> Result<()> {
    let damaged = |detail: String| StoreError::Damaged { path: path.to_path_buf(), detail };
    let found: rusqlite::Result<Vec<String>> =
        conn.prepare("PRAGMA quick_check(3)").and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match found {
        Ok(problems) if problems.len() == 1 && problems[0] == "ok" => Ok(()),
        Ok(problems) => Err(damaged(problems.join("; "))),
        Err(e) => match StoreError::from(e) {
            StoreError::Corrupt => Err(damaged("SQLite reports the file as malformed".into())),
            other => Err(other),
        },
    }
}

/// Takes what has arrived (up to a batch) after the first command: the jobs, and the checkpoint or close
/// request that ended the batch, if one did.
fn gather(first: Command, rx: &mut mpsc::Receiver<Command>) -> (Vec<Job>, Option<Control>) {
    let mut jobs = Vec::new();
    match first {
        Command::Run(job) => jobs.push(job),
        Command::Checkpoint(reply) => return (jobs, Some(Control::Checkpoint(reply))),
        Command::Close(reply) => return (jobs, Some(Control::Close(reply))),
    }
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Command::Run(job)) => jobs.push(job),
            Ok(Command::Checkpoint(reply)) => return (jobs, Some(Control::Checkpoint(reply))),
            Ok(Command::Close(reply)) => return (jobs, Some(Control::Close(reply))),
            Err(_) => break,
        }
    }
    (jobs, None)
}

/// Runs a gathered batch, then its checkpoint if one was asked for; returns the close request if one came.
fn run_gathered(w: &Writing, jobs: Vec<Job>, control: Option<Control>) -> Option<oneshot::Sender<()>> {
    if !jobs.is_empty() {
        run_batch(w, jobs);
    }
    match control {
        None => None,
        Some(Control::Checkpoint(reply)) => {
            let _ = reply.send(checkpoint(&w.conn));
            None
        }
        Some(Control::Close(reply)) => Some(reply),
    }
}

fn checkpoint(conn: &Connection) -> Result<()> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        tracing::debug!("a reader kept the WAL from being truncated; it is truncated at a later checkpoint");
    }
    Ok(())
}

/// The writer thread: take what has arrived, run it in one transaction, commit, then answer everyone.
fn thread_writer(w: Writing, mut rx: mpsc::Receiver<Command>) {
    let mut close_reply = None;
    while close_reply.is_none() {
        let Some(first) = rx.blocking_recv() else { break };
        let (jobs, control) = gather(first, &mut rx);
        close_reply = run_gathered(&w, jobs, control);
    }
    // Jobs that raced with Close are dropped with the receiver: their callers see `Closed`.
    rx.close();
    drop(w);
    if let Some(reply) = close_reply {
        let _ = reply.send(());
    }
}

/// The writer task: the same, each batch on the blocking pool.
async fn pooled_writer(w: Writing, mut rx: mpsc::Receiver<Command>) {
    let mut w = Some(w);
    let mut close_reply = None;
    while close_reply.is_none() {
        let Some(first) = rx.recv().await else { break };
        let (jobs, control) = gather(first, &mut rx);
        let Some(writing) = w.take() else { break };
        match tokio::task::spawn_blocking(move || {
            let close = run_gathered(&writing, jobs, control);
            (writing, close)
        })
        .await
        {
            Ok((writing, close)) => {
                w = Some(writing);
                close_reply = close;
            }
            Err(e) => {
                // A job panicked: its batch's callers see `Closed`, and so does everyone after.
                tracing::error!(error = %e, "the store's writer stopped");
                break;
            }
        }
    }
    // Jobs that raced with Close are dropped with the receiver: their callers see `Closed`.
    rx.close();
    drop(w);
    if let Some(reply) = close_reply {
        let _ = reply.send(());
    }
}

fn run_batch(w: &Writing, jobs: Vec<Job>) {
    let conn = &w.conn;
    let mut jobs = jobs.into_iter();
    'transaction: while jobs.len() > 0 {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = StoreError::from(e);
            for job in jobs {
                let (_, deliver) = job(Err(err.clone()));
                deliver(Err(err.clone()));
            }
            return;
        }
        let mut delivers: Vec<Deliver> = Vec::new();
        for job in jobs.by_ref() {
            if let Err(e) = conn.prepare_cached("SAVEPOINT job").and_then(|mut s| s.execute([])) {
                let err = StoreError::from(e);
                let (_, deliver) = job(Err(err.clone()));
                deliver(Err(err));
                continue;
            }
            let (outcome, deliver) = job(Ok(conn));
            if conn.is_autocommit() {
                // Some errors (SQLITE_FULL, I/O) make SQLite roll back the whole transaction, not just the
                // savepoint: nothing this batch did so far is committed, so nobody in it may hear success.
                let err = outcome.err().unwrap_or(StoreError::Closed);
                deliver(Err(err.clone()));
                for deliver in delivers.drain(..) {
                    deliver(Err(err.clone()));
                }
                continue 'transaction;
            }
            let end = if outcome.is_ok() { "RELEASE job" } else { "ROLLBACK TO job" };
            let _ = conn.prepare_cached(end).and_then(|mut s| s.execute([]));
            if outcome.is_err() {
                let _ = conn.prepare_cached("RELEASE job").and_then(|mut s| s.execute([]));
            }
            delivers.push(deliver);
        }
        let committed = if w.file.still_there() {
            conn.execute_batch("COMMIT").map_err(StoreError::from)
        } else {
            Err(StoreError::Gone { path: w.file.path.clone() })
        };
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for deliver in delivers {
            deliver(committed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config::with_data_dir(dir)
    }

    #[tokio::test]
    async fn a_failed_job_does_not_undo_its_neighbours() {
        for writer in [Writer::Thread, Writer::BlockingPool] {
            a_failed_job_does_not_undo_its_neighbours_with(writer).await;
        }
    }

    async fn a_failed_job_does_not_undo_its_neighbours_with(writer: Writer) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(&config(dir.path()), writer).await.unwrap();
        store.write(|c| Ok(c.execute_batch("CREATE TABLE t(x INTEGER UNIQUE)")?)).await.unwrap();
        let a = store.write(|c| Ok(c.execute("INSERT INTO t VALUES (1)", [])?));
        let b = store.write(|c| {
            c.execute("INSERT INTO t VALUES (2)", [])?;
            Ok(c.execute("INSERT INTO t VALUES (1)", [])?)
        });
        let c = store.write(|c| Ok(c.execute("INSERT INTO t VALUES (3)", [])?));
        let (a, b, c) = tokio::join!(a, b, c);
        assert!(a.is_ok() && c.is_ok());
        assert!(b.is_err());
        let rows: Vec<i64> = store
            .read(|c| {
                let mut s = c.prepare("SELECT x FROM t ORDER BY x")?;
                let rows = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(rows, [1, 3], "the failed job's first insert was rolled back with it");
    }

    #[tokio::test]
    async fn writes_after_close_fail_cleanly() {
        for writer in [Writer::Thread, Writer::BlockingPool] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(&config(dir.path()), writer).await.unwrap();
            store.close().await;
            let err = store.write(|_| Ok(())).await.unwrap_err();
            assert!(matches!(err, StoreError::Closed), "{writer:?}: {err}");
        }
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&config(dir.path())).await.unwrap();
        store.write(|c| Ok(c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?)).await.unwrap();
        store.close().await;
        let err = Store::open(&config(dir.path())).await.err().expect("newer schema must be refused");
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[tokio::test]
    async fn the_size_cap_reports_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.max_db_bytes = 256 * 1024;
        let store = Store::open(&cfg).await.unwrap();
        store.write(|c| Ok(c.execute_batch("CREATE TABLE blob(b BLOB)")?)).await.unwrap();
        let big = vec![7u8; 64 * 1024];
        let mut full = None;
        for _ in 0..16 {
            let b = big.clone();
            if let Err(e) = store.write(move |c| Ok(c.execute("INSERT INTO blob VALUES (?1)", [b])?)).await {
                full = Some(e);
                break;
            }
        }
        let err = full.expect("a 256 KiB cap must fill up");
        assert!(matches!(err, StoreError::Full), "{err}");
        assert!(err.is_unavailable());
    }
}
