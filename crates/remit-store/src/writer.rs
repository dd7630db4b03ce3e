//! The audit writer: one thread per data directory that owns the replica's chain and a
//! synchronous SQLite connection, and makes records durable by group commit.
//!
//! It waits for one job, takes everything else queued (up to `max_batch`), appends each
//! record to the chain, writes the entries, the chain state and (when due) a signed
//! checkpoint in one transaction, commits, and only then answers the waiters. A failed
//! transaction rolls the in-memory chain back too, so the chain never skips or forks.
//!
//! It is a plain thread with `rusqlite` rather than an sqlx connection: sqlx runs SQLite
//! on a worker thread behind a channel, so each statement of a group commit would be a
//! cross-thread hand-off; here a whole batch costs one wake-up.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use remit_audit::{AuditKey, Chain, Checkpoint, Frontier, Hash};
use remit_core::decision::SinkError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;

use crate::{Durability, StoreError, StoreOptions};

/// The indexed columns of one entry.
#[derive(Debug)]
pub(crate) struct Columns {
    pub kind: &'static str,
    pub id: String,
    pub time: String,
    pub identity: Option<String>,
    pub human: Option<String>,
    pub purpose: Option<String>,
    pub verdict: Option<String>,
}

/// A review copy to store beside its record.
#[derive(Debug)]
pub(crate) struct Review {
    pub body: Vec<u8>,
    pub total: u64,
    pub truncated: bool,
}

/// What the writer is asked to do.
#[derive(Debug)]
// Almost every job is a record; boxing it would add an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Job {
    /// Append a record (canonical JSON) and answer when it is durable.
    Record {
        columns: Columns,
        record: Vec<u8>,
        review: Option<Review>,
        reply: oneshot::Sender<Result<(), SinkError>>,
    },
    /// Sign a checkpoint now if any entry is not yet under one.
    Checkpoint(oneshot::Sender<Result<(), SinkError>>),
    /// Sign a last checkpoint, close the database and release the data directory; the
    /// reply comes after the lock is released.
    Shutdown(oneshot::Sender<Result<(), SinkError>>),
}

pub(crate) struct Writer {
    conn: rusqlite::Connection,
    chain: Chain,
    key: AuditKey,
    key_id: String,
    anchored: u64,
    last_checkpoint: Instant,
    options: StoreOptions,
    // Held for the writer's life: a second writer on the same data directory would fork
    // the chain.
    _lock: std::fs::File,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::DataDir {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Writer {
    /// Opens the writer's connection and resumes the replica's chain from its state row.
    pub fn open(
        path: &Path,
        key: AuditKey,
        options: StoreOptions,
        lock: std::fs::File,
    ) -> Result<Self, StoreError> {
        let err = db_err(path);
        let conn = rusqlite::Connection::open(path).map_err(&err)?;
        let sync = match options.durability {
            Durability::Fsync => "FULL",
            Durability::DangerSurvivesProcessCrashOnly => "NORMAL",
        };
        conn.execute_batch(&format!(
            // A 64 MiB page cache keeps index pages resident (no re-reads, no spills mid
            // batch); the WAL is checkpointed every 8192 pages rather than 1000.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; \
             PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 8192;"
        ))
        .map_err(&err)?;
        let replica = options.replica.as_str();
        let state: Option<(i64, Vec<u8>, Vec<u8>)> = conn
            .query_row(
                "SELECT size, prev, frontier FROM audit_state WHERE replica = ?1",
                [replica],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(&err)?;
        let corrupt = |message: String| StoreError::DataDir {
            path: path.display().to_string(),
            message: format!(
                "the audit chain state of replica `{replica}` is damaged ({message}); run `remit audit verify`"
            ),
        };
        let chain = match state {
            None => Chain::new(replica),
            Some((size, prev, frontier)) => {
                let size = u64::try_from(size).map_err(|_| corrupt("negative size".into()))?;
                let prev = Hash::from_slice(&prev).ok_or_else(|| corrupt("bad prev".into()))?;
                let nodes = frontier
                    .chunks(32)
                    .map(|c| Hash::from_slice(c).ok_or_else(|| corrupt("bad frontier".into())))
                    .collect::<Result<Vec<_>, _>>()?;
                let frontier =
                    Frontier::from_parts(size, nodes).map_err(|e| corrupt(e.to_string()))?;
                Chain::resume(replica, prev, frontier)
            }
        }
        .map_err(|e| corrupt(e.to_string()))?;
        let anchored: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(tree_size), 0) FROM audit_checkpoints WHERE replica = ?1",
                [replica],
                |r| r.get(0),
            )
            .map_err(&err)?;
        let key_id = key.public().key_id();
        Ok(Self {
            conn,
            chain,
            key,
            key_id,
            anchored: u64::try_from(anchored).unwrap_or(0),
            last_checkpoint: Instant::now(),
            options,
            _lock: lock,
        })
    }

    /// Runs until every sender is gone, then signs a last checkpoint.
    pub fn run(mut self, rx: Receiver<Job>) {
        let mut batch: Vec<Job> = Vec::with_capacity(self.options.max_batch);
        loop {
            let wait = self
                .options
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed())
                .max(Duration::from_millis(1));
            match rx.recv_timeout(wait) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {
                    if self.chain.size() > self.anchored
                        && let Err(e) = self.commit(&mut Vec::new(), true)
                    {
                        tracing::error!(error = %e, "an audit checkpoint was not written; retrying at the next interval");
                    }
                    self.last_checkpoint = Instant::now();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if self.chain.size() > self.anchored
                        && let Err(e) = self.commit(&mut Vec::new(), true)
                    {
                        tracing::error!(error = %e, "the final audit checkpoint was not written");
                    }
                    return;
                }
            }
            while batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let forced = batch
                .iter()
                .any(|j| matches!(j, Job::Checkpoint(_) | Job::Shutdown(_)));
            let unanchored = self.chain.size() - self.anchored + batch.len() as u64;
            let due = forced
                || unanchored >= self.options.checkpoint_every
                || self.last_checkpoint.elapsed() >= self.options.checkpoint_interval;
            let result = self
                .commit(&mut batch, due)
                .map_err(|e| SinkError::Store(e.to_string()));
            metrics::histogram!("remit_audit_batch_records").record(batch.len() as f64);
            if let Err(e) = &result {
                tracing::error!(error = %e, "an audit batch was not written; its requests are denied");
            }
            let mut shutdown = None;
            for job in batch.drain(..) {
                let reply = match job {
                    Job::Record { reply, .. } | Job::Checkpoint(reply) => reply,
                    Job::Shutdown(reply) => {
                        shutdown = Some(reply);
                        continue;
                    }
                };
                // The requester may have given up (timed out); nothing to do then.
                let _ = reply.send(result.clone());
            }
            if let Some(reply) = shutdown {
                drop(rx);
                drop(self);
                let _ = reply.send(result);
                return;
            }
        }
    }

    /// Writes a batch (and a checkpoint when `checkpoint`) in one transaction; on failure
    /// the chain is as it was.
    fn commit(&mut self, batch: &mut [Job], checkpoint: bool) -> Result<(), rusqlite::Error> {
        let before = self.chain.clone();
        let result = self.write(batch, checkpoint);
        match result {
            Ok(Some(size)) => {
                self.anchored = size;
                self.last_checkpoint = Instant::now();
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.chain = before;
                Err(e)
            }
        }
    }

    fn write(
        &mut self,
        batch: &mut [Job],
        checkpoint: bool,
    ) -> Result<Option<u64>, rusqlite::Error> {
        let tx = self.conn.transaction()?;
        let replica = self.options.replica.as_str();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit_entries (replica, seq, kind, id, time, identity, human, purpose, verdict, entry, leaf) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut body = tx.prepare_cached(
                "INSERT OR REPLACE INTO audit_bodies (id, body, total, truncated) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for job in batch.iter() {
                let Job::Record {
                    columns: c,
                    record,
                    review,
                    ..
                } = job
                else {
                    continue;
                };
                let entry = self.chain.append(record);
                // Entries are built from canonical JSON, which is UTF-8.
                let text = std::str::from_utf8(&entry.bytes)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                insert.execute(rusqlite::params![
                    replica,
                    i64::try_from(entry.seq).unwrap_or(i64::MAX),
                    c.kind,
                    c.id,
                    c.time,
                    c.identity,
                    c.human,
                    c.purpose,
                    c.verdict,
                    text,
                    &entry.leaf.0[..],
                ])?;
                if let Some(r) = review {
                    body.execute(rusqlite::params![
                        c.id,
                        r.body,
                        i64::try_from(r.total).unwrap_or(i64::MAX),
                        r.truncated
                    ])?;
                }
            }
        }
        let frontier: Vec<u8> = self
            .chain
            .frontier()
            .nodes()
            .iter()
            .flat_map(|h| h.0)
            .collect();
        let size = i64::try_from(self.chain.size()).unwrap_or(i64::MAX);
        tx.prepare_cached(
            "INSERT INTO audit_state (replica, size, prev, frontier) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (replica) DO UPDATE SET size = excluded.size, prev = excluded.prev, frontier = excluded.frontier",
        )?
        .execute(rusqlite::params![replica, size, &self.chain.prev().0[..], frontier])?;
        let mut signed = None;
        if checkpoint && self.chain.size() > self.anchored {
            let cp = self.key.sign(Checkpoint {
                v: remit_audit::checkpoint::CHECKPOINT_VERSION,
                replica: replica.to_owned(),
                tree_size: self.chain.size(),
                root: self.chain.root(),
                time: OffsetDateTime::now_utc()
                    .format(&Rfc3339)
                    .unwrap_or_default(),
                key_id: self.key_id.clone(),
            });
            let json = serde_json::to_string(&cp)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            tx.prepare_cached(
                "INSERT INTO audit_checkpoints (replica, tree_size, checkpoint) VALUES (?1, ?2, ?3)",
            )?
            .execute(rusqlite::params![replica, size, json])?;
            signed = Some(self.chain.size());
            metrics::counter!("remit_audit_checkpoints_total").increment(1);
        }
        tx.commit()?;
        Ok(signed)
    }
}
