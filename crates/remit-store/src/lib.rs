//! Persistence: the embedded SQLite store in the data directory (decision records today;
//! runtime identity state, approvals and baselines as later issues add them).
//!
//! Records are written by one writer task with group commit: every append waits on a
//! bounded queue, the writer takes everything queued (up to [`MAX_BATCH`]) into one
//! transaction, and each append resolves only after that transaction has committed with
//! `synchronous = FULL`. Throughput scales with batch size, not with fsyncs per request.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use remit_core::decision::{SinkError, SinkFuture};
use remit_core::{DecisionRecord, RecordSink};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

/// Records waiting to be written at most; beyond this an append fails (and the decision
/// is denied) rather than queueing without bound.
pub const QUEUE_LIMIT: usize = 8192;
/// Records per transaction at most.
pub const MAX_BATCH: usize = 512;
/// The database file inside the data directory.
pub const DB_FILE: &str = "remit.db";

/// Why the store could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be prepared.
    #[error("data directory `{path}`: {message}")]
    DataDir {
        /// The directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// How durable a committed record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is fsynced: a record survives power loss (the default).
    #[default]
    Fsync,
    /// Commits reach the operating system but are fsynced only at WAL checkpoints: a
    /// record survives a crash of remit, not of the machine. Set by `danger_skip_fsync`.
    DangerSurvivesProcessCrashOnly,
}

type Job = (DecisionRecord, oneshot::Sender<Result<(), SinkError>>);

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    queue: mpsc::Sender<Job>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` and runs migrations; every
    /// commit is fsynced.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, Durability::Fsync).await
    }

    /// Opens the store with a chosen durability.
    pub async fn open_with(data_dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::DataDir {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let url = format!("sqlite://{}", data_dir.join(DB_FILE).display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Fsync => SqliteSynchronous::Full,
                Durability::DangerSurvivesProcessCrashOnly => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let (queue, rx) = mpsc::channel(QUEUE_LIMIT);
        let conn = open_writer(&data_dir.join(DB_FILE), durability)?;
        std::thread::Builder::new()
            .name("remit-record-writer".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError::DataDir {
                path: data_dir.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Self { pool, queue })
    }

    /// How many decision records are stored.
    pub async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM decisions")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The stored record with `id`, as JSON text.
    pub async fn record(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT record FROM decisions WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Closes the pool (tests use this to make the store unavailable).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The writer's own connection. The writer is a plain thread with a synchronous SQLite
/// connection (rusqlite) rather than an sqlx connection: sqlx runs SQLite on a worker thread
/// behind a channel, so each statement of a group commit (BEGIN, INSERT, COMMIT) is a
/// cross-thread hand-off, and on a busy core each hand-off waits for the scheduler. Here a
/// whole batch costs one wake-up of this thread. sqlx still owns migrations and reads.
fn open_writer(path: &Path, durability: Durability) -> Result<rusqlite::Connection, StoreError> {
    let err = |e: rusqlite::Error| StoreError::DataDir {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let conn = rusqlite::Connection::open(path).map_err(err)?;
    let sync = match durability {
        Durability::Fsync => "FULL",
        Durability::DangerSurvivesProcessCrashOnly => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000;"
    ))
    .map_err(err)?;
    Ok(conn)
}

/// Group commit: wait for one record, take everything else queued (up to [`MAX_BATCH`]),
/// commit them in one transaction, then answer each waiter with the outcome.
fn writer(mut conn: rusqlite::Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = write_batch(&mut conn, &batch).map_err(|e| SinkError::Store(e.to_string()));
        for (_, reply) in batch.drain(..) {
            // The requester may have given up (timed out); nothing to do then.
            let _ = reply.send(result.clone());
        }
    }
}

fn write_batch(conn: &mut rusqlite::Connection, batch: &[Job]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO decisions (id, time, replica, identity, class, verdict, action, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (r, _) in batch {
            let json = serde_json::to_string(r)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            insert.execute(rusqlite::params![
                r.decision.decision_id,
                r.time,
                r.replica,
                r.decision.identity.as_ref().map(|i| i.as_str()),
                r.decision.class.as_str(),
                r.decision.verdict.as_str(),
                r.decision.action.as_str(),
                json,
            ])?;
        }
    }
    tx.commit()
}

impl RecordSink for SqliteStore {
    fn append(&self, record: DecisionRecord) -> SinkFuture<'_> {
        Box::pin(async move {
            if self.pool.is_closed() {
                return Err(SinkError::Closed);
            }
            // The writer thread ends only when every sender is gone, so a closed queue here
            // means it died: fail closed.
            let (tx, rx) = oneshot::channel();
            self.queue.try_send((record, tx)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SinkError::Full,
                mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
            })?;
            rx.await.map_err(|_| SinkError::Closed)?
        })
    }
}
