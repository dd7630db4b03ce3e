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
        tokio::spawn(writer(pool.clone(), rx));
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

async fn writer(pool: SqlitePool, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = write_batch(&pool, &batch)
            .await
            .map_err(|e| SinkError::Store(e.to_string()));
        for (_, reply) in batch.drain(..) {
            // The requester may have given up (timed out); nothing to do then.
            let _ = reply.send(result.clone());
        }
    }
}

/// Writes a batch as one multi-row INSERT in one transaction: one round trip to SQLite's
/// worker thread per batch rather than per record, which is what lets throughput grow with
/// concurrency.
async fn write_batch(pool: &SqlitePool, batch: &[Job]) -> Result<(), sqlx::Error> {
    let mut rows = Vec::with_capacity(batch.len());
    for (r, _) in batch {
        let json = serde_json::to_string(r).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        rows.push((r, json));
    }
    let mut tx = pool.begin().await?;
    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO decisions (id, time, replica, identity, class, verdict, action, record) ",
    );
    insert.push_values(&rows, |mut b, (r, json)| {
        b.push_bind(&r.decision.decision_id)
            .push_bind(&r.time)
            .push_bind(&r.replica)
            .push_bind(r.decision.identity.as_ref().map(|i| i.as_str()))
            .push_bind(r.decision.class.as_str())
            .push_bind(r.decision.verdict.as_str())
            .push_bind(r.decision.action.as_str())
            .push_bind(json);
    });
    insert.build().execute(&mut *tx).await?;
    tx.commit().await
}

impl RecordSink for SqliteStore {
    fn append(&self, record: DecisionRecord) -> SinkFuture<'_> {
        Box::pin(async move {
            if self.pool.is_closed() {
                return Err(SinkError::Closed);
            }
            let (tx, rx) = oneshot::channel();
            self.queue.try_send((record, tx)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SinkError::Full,
                mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
            })?;
            rx.await.map_err(|_| SinkError::Closed)?
        })
    }
}
