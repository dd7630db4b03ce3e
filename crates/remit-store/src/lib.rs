//! Persistence in the data directory. Today it holds the tamper-evident audit log;
//! runtime identity state, approvals and baselines join as later issues add them.
//!
//! The audit log's durable copy is a directory of append-only **segment files** per
//! replica ([`segment`]): entries, review copies and signed checkpoints, one line each.
//! Records are made durable by group commit ([`writer`]): every append waits on a bounded
//! queue, the writer chains everything queued and appends it with one `write` and one
//! `fdatasync`, and each append resolves only after that. Throughput scales with batch
//! size, not with fsyncs per request. The record is serialised (RFC 8785) by the caller,
//! so the writer's own work per record is one hash and a copy.
//!
//! The embedded SQLite database is an **index** over the segments ([`index`]), written
//! behind them by its own thread without fsync and caught up from them at every open,
//! so it never holds an entry the segments lack. `AuditReader` searches it and
//! `verify` checks both the segments and the index against each other.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alerts;
pub mod approvals;
pub mod audit;
pub mod baselines;
pub mod index;
pub mod keys;
pub mod redis_claims;
pub mod segment;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use remit_audit::PublicKey;
use remit_core::decision::{SinkError, SinkFuture};
use remit_core::{AuditRecord, Queued, RecordSink};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::oneshot;

use writer::{Job, Review, Writer};

pub use writer::INDEX_LAG_LIMIT;

/// Records waiting to be written at most; beyond this an append fails (and the decision
/// is denied) rather than queueing without bound.
pub const QUEUE_LIMIT: usize = 8192;
/// Records per batch (one write, one fdatasync) at most.
pub const MAX_BATCH: usize = 4096;
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
    /// A segment file could not be read or written, or is damaged.
    #[error(transparent)]
    Segment(#[from] segment::SegmentError),
    /// The index could not be brought up to date with the segments.
    #[error(transparent)]
    Index(#[from] index::IndexError),
    /// An entry is not in the segment files where the index places it, or is not the
    /// entry the index names.
    #[error(transparent)]
    Entry(#[from] segment::EntryError),
    /// A value is over its limit (a decision: refused, not truncated).
    #[error("{0}")]
    TooLarge(String),
}

/// How durable a committed record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every batch is fdatasynced before it is acknowledged: a record survives power loss
    /// (the default).
    #[default]
    Fsync,
    /// Batches reach the operating system but are not synced: a record survives a crash
    /// of remit, not of the machine. Set by `danger_skip_fsync`.
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
    /// Records per batch at most (1: one fsync per record, for comparison).
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
    live: audit::Live,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` with default options.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, StoreOptions::default()).await
    }

    /// Opens the store: runs migrations, takes the data directory's writer lock, loads
    /// (or creates) the replica's signing key, recovers the replica's segments (indexing
    /// what the index lacks, cutting off a torn last line) and resumes its chain.
    pub async fn open_with(data_dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        Self::open_segmented(data_dir, options, segment::SEGMENT_LIMIT).await
    }

    /// Opens the store, starting a new segment file once one holds `segment_limit` bytes
    /// (tests roll segments over with a small one).
    async fn open_segmented(
        data_dir: &Path,
        options: StoreOptions,
        segment_limit: u64,
    ) -> Result<Self, StoreError> {
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
        let (writer, shared, indexed) = Writer::open(data_dir, key, options, segment_limit, lock)?;
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
            live: audit::Live::new(data_dir, shared, indexed),
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
        self.live.caught_up().await;
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries WHERE kind = 'decision'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The stored decision record with `id`, as JSON text.
    pub async fn record(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.live.caught_up().await;
        audit::record_json(&self.pool, self.live.data_dir(), id, "decision").await
    }

    /// The stored record of approval step `id` (a grant or denial, or a refused attempt),
    /// as JSON text.
    pub async fn approval_record(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.live.caught_up().await;
        audit::record_json(&self.pool, self.live.data_dir(), id, "approval").await
    }

    /// The stored record of token request `id` (an issued token's `jti`), as JSON text.
    pub async fn token_record(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.live.caught_up().await;
        audit::record_json(&self.pool, self.live.data_dir(), id, "token").await
    }

    /// The stored outcome record of decision `id`, as JSON text.
    pub async fn outcome(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.live.caught_up().await;
        audit::record_json(&self.pool, self.live.data_dir(), id, "outcome").await
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

    /// A reader over the same log; it sees every record acknowledged before each read.
    pub fn reader(&self) -> audit::AuditReader {
        audit::AuditReader::from_pool(self.pool.clone(), self.live.clone())
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

/// A record's canonical bytes, and the review copy to keep beside it.
fn prepare(record: AuditRecord) -> Result<(Vec<u8>, Option<Review>), SinkError> {
    let bytes = remit_audit::canonical(&record).map_err(|e| SinkError::Store(e.to_string()))?;
    // An entry is the record plus ~150 bytes; a review copy is written in hex.
    if bytes.len() > segment::MAX_LINE / 2 {
        return Err(SinkError::Store(format!(
            "an audit record of {} bytes is over the limit of {}",
            bytes.len(),
            segment::MAX_LINE / 2
        )));
    }
    let review = match record {
        AuditRecord::Decision(_) | AuditRecord::Approval(_) | AuditRecord::Token(_) => None,
        // The copy's bytes are not part of the record: moved, not cloned.
        AuditRecord::Outcome(o) => o.review_body.zip(o.review).map(|(body, n)| Review {
            id: o.decision_id,
            body,
            total: o.response_bytes,
            truncated: n.truncated,
        }),
    };
    // Written in hex, beside the entry, on a line of its own.
    if let Some(r) = &review
        && r.body.len() > segment::MAX_LINE / 2 - 1024
    {
        return Err(SinkError::Store(format!(
            "a review copy of {} bytes is over the limit of {}",
            r.body.len(),
            segment::MAX_LINE / 2 - 1024
        )));
    }
    Ok((bytes, review))
}

impl RecordSink for SqliteStore {
    fn append(&self, record: AuditRecord) -> SinkFuture<'_> {
        Box::pin(async move {
            if self.pool.is_closed() {
                return Err(SinkError::Closed);
            }
            let (record, review) = prepare(record)?;
            let (tx, rx) = oneshot::channel();
            self.send(Job::Record {
                record,
                review,
                reply: Some(tx),
            })?;
            rx.await.map_err(|_| SinkError::Closed)?
        })
    }

    fn queue(&self, record: AuditRecord) -> Queued {
        if self.pool.is_closed() {
            return Queued::Failed(SinkError::Closed);
        }
        let queued = prepare(record).and_then(|(record, review)| {
            self.send(Job::Record {
                record,
                review,
                reply: None,
            })
        });
        match queued {
            Ok(()) => Queued::Queued,
            Err(e) => Queued::Failed(e),
        }
    }

    fn approvals(&self) -> Option<&dyn remit_core::approval::ApprovalStore> {
        Some(self)
    }
}
