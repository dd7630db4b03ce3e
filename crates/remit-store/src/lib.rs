//! Persistence: the embedded SQLite store in the data directory. Today it holds the
//! tamper-evident audit log (entries, chain state, signed checkpoints, review copies);
//! runtime identity state, approvals and baselines join as later issues add them.
//!
//! Records are made durable by group commit ([`writer`]): every append waits on a bounded
//! queue, the writer chains everything queued into one transaction, and each append
//! resolves only after that transaction has committed with `synchronous = FULL`.
//! Throughput scales with batch size, not with fsyncs per request. The record is
//! serialised (RFC 8785) by the caller, so the writer's own work per record is one hash
//! and one insert.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod baselines;
pub mod keys;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use remit_audit::PublicKey;
use remit_core::decision::{SinkError, SinkFuture};
use remit_core::{AuditRecord, RecordSink};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::oneshot;

use writer::{Columns, Job, Review, Writer};

/// Records waiting to be written at most; beyond this an append fails (and the decision
/// is denied) rather than queueing without bound.
pub const QUEUE_LIMIT: usize = 8192;
/// Records per transaction at most.
pub const MAX_BATCH: usize = 1024;
/// The database file inside the data directory.
pub const DB_FILE: &str = "remit.db";
/// The lock file that keeps a second writer off a data directory.
pub const LOCK_FILE: &str = "remit.lock";

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
    /// A value is over its limit (a decision: refused, not truncated).
    #[error("{0}")]
    TooLarge(String),
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

/// How the store writes.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Fsync or not.
    pub durability: Durability,
    /// This replica's name: its chain in the audit log.
    pub replica: String,
    /// Sign a checkpoint after this many entries...
    pub checkpoint_every: u64,
    /// ...or this long after the last one, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Records per transaction at most (1: one fsync per record, for comparison).
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            replica: "replica-1".into(),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(1),
            max_batch: MAX_BATCH,
        }
    }
}

/// Opens the read pool on `data_dir`'s database, creating it if `create`.
async fn open_pool(data_dir: &Path, create: bool) -> Result<SqlitePool, StoreError> {
    let url = format!("sqlite://{}", data_dir.join(DB_FILE).display());
    let options = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    queue: SyncSender<Job>,
    replica: String,
    public_key: PublicKey,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` with default options.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, StoreOptions::default()).await
    }

    /// Opens the store: runs migrations, takes the data directory's writer lock, loads
    /// (or creates) the replica's signing key and resumes its chain.
    pub async fn open_with(data_dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let dir_err = |message: String| StoreError::DataDir {
            path: data_dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| dir_err(e.to_string()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(LOCK_FILE))
            .map_err(|e| dir_err(e.to_string()))?;
        lock.try_lock().map_err(|_| {
            dir_err("another remit process is writing to this data directory".into())
        })?;
        let pool = open_pool(data_dir, true).await?;
        let key = keys::load_or_create(data_dir)?;
        let public_key = key.public();
        let replica = options.replica.clone();
        let writer = Writer::open(&data_dir.join(DB_FILE), key, options, lock)?;
        let (queue, rx) = std::sync::mpsc::sync_channel(QUEUE_LIMIT);
        std::thread::Builder::new()
            .name("remit-audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| dir_err(e.to_string()))?;
        Ok(Self {
            pool,
            queue,
            replica,
            public_key,
        })
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The public key that verifies this replica's checkpoints.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// How many decision records are stored (all replicas).
    pub async fn count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries WHERE kind = 'decision'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The stored decision record with `id`, as JSON text.
    pub async fn record(&self, id: &str) -> Result<Option<String>, StoreError> {
        audit::record_json(&self.pool, id, "decision").await
    }

    /// The stored outcome record of decision `id`, as JSON text.
    pub async fn outcome(&self, id: &str) -> Result<Option<String>, StoreError> {
        audit::record_json(&self.pool, id, "outcome").await
    }

    /// Signs a checkpoint now over every entry written so far (at shutdown, say).
    pub async fn checkpoint(&self) -> Result<(), SinkError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Checkpoint(tx))?;
        rx.await.map_err(|_| SinkError::Closed)?
    }

    /// Signs a last checkpoint, stops the writer and releases the data directory. Later
    /// appends fail (and their requests are denied).
    pub async fn shutdown(&self) -> Result<(), SinkError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Shutdown(tx))?;
        let result = rx.await.map_err(|_| SinkError::Closed)?;
        self.pool.close().await;
        result
    }

    /// A reader over the same database.
    pub fn reader(&self) -> audit::AuditReader {
        audit::AuditReader::from_pool(self.pool.clone())
    }

    /// Closes the pool (tests use this to make the store unavailable).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn send(&self, job: Job) -> Result<(), SinkError> {
        // The writer ends only when every sender is gone, so a disconnected queue here
        // means it died: fail closed.
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SinkError::Full,
            TrySendError::Disconnected(_) => SinkError::Closed,
        })
    }
}

/// The indexed columns and canonical bytes of a record.
fn prepare(record: AuditRecord) -> Result<(Columns, Vec<u8>, Option<Review>), SinkError> {
    let bytes = remit_audit::canonical(&record).map_err(|e| SinkError::Store(e.to_string()))?;
    Ok(match record {
        AuditRecord::Decision(r) => {
            let d = &r.decision;
            let columns = Columns {
                kind: "decision",
                id: d.decision_id.clone(),
                time: r.time.clone(),
                identity: d.identity.as_ref().map(|i| i.as_str().to_owned()),
                human: d.authority.on_behalf_of.clone(),
                purpose: d.purpose.as_ref().map(|p| p.as_str().to_owned()),
                verdict: Some(d.verdict.as_str().to_owned()),
            };
            (columns, bytes, None)
        }
        AuditRecord::Outcome(o) => {
            let columns = Columns {
                kind: "outcome",
                id: o.decision_id.clone(),
                time: o.time.clone(),
                identity: None,
                human: None,
                purpose: None,
                verdict: None,
            };
            // The copy's bytes are not part of the record: moved, not cloned.
            let review = o.review_body.zip(o.review).map(|(body, n)| Review {
                body,
                total: o.response_bytes,
                truncated: n.truncated,
            });
            (columns, bytes, review)
        }
    })
}

impl RecordSink for SqliteStore {
    fn append(&self, record: AuditRecord) -> SinkFuture<'_> {
        Box::pin(async move {
            if self.pool.is_closed() {
                return Err(SinkError::Closed);
            }
            let (columns, record, review) = prepare(record)?;
            let (tx, rx) = oneshot::channel();
            self.send(Job::Record {
                columns,
                record,
                review,
                reply: tx,
            })?;
            rx.await.map_err(|_| SinkError::Closed)?
        })
    }
}
