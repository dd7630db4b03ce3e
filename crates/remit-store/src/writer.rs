//! The audit writer: one thread per data directory that owns the replica's chain and its
//! open segment file, and makes records durable by group commit.
//!
//! It waits for one job, takes everything else queued (up to `max_batch`), appends each
//! record to the chain, and writes the batch's lines (entries, review copies and, when
//! due, a signed checkpoint) to the segment with one `write`. A failed write rolls the
//! in-memory chain back and cuts the file back to where the batch began, so the chain
//! never skips or forks; if the file cannot be cut back, the writer refuses everything
//! after (fail closed).
//!
//! The batch's waiters then go to the **syncer** thread ([`run_syncer`]), which calls
//! `fdatasync` once for everything written since its last one and only then has them
//! answered: by itself when nothing is written behind them, else by its answer thread
//! while it starts the next `fdatasync`. The writer hashes and writes batch N+1 while
//! batch N is being synced. A group nobody waits for (outcomes, queued without a waiter)
//! waits up to [`QUIET_SYNC_DELAY`] for one somebody does, so both share a sync. A failed
//! `fdatasync` cannot be undone (the page cache may have dropped the data), so it fails
//! that batch and every later one until a restart, whose recovery reads the segments.
//!
//! The index thread ([`run_index`]) follows behind, reading only what the writer has
//! published as durable. The writer waits for it only when it is more than
//! [`INDEX_LAG_LIMIT`] lines behind. With each batch the writer hands on what it computed
//! while appending (each entry's place and leaf hash, the chain after the batch), and the
//! syncer publishes it with the batch's durable position ([`index::Feed`]), so the index
//! does not hash those lines again.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use remit_audit::{AuditKey, Chain, Checkpoint};
use remit_core::decision::SinkError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{oneshot, watch};

use crate::index::{self, FedBatch, FedEntry, Feed, Indexer, Pos};
use crate::segment::{self, ReviewCopy, ReviewLine, SegmentError, io_err};
use crate::{DB_FILE, Durability, StoreError, StoreOptions};

/// The index may fall this many lines behind the durable segments before the writer
/// waits for it.
pub const INDEX_LAG_LIMIT: u64 = 1 << 18;
/// The index thread's nice value (Linux): it runs when the request path leaves a core.
#[cfg(target_os = "linux")]
const INDEX_NICE: i32 = 10;
/// The index waits for this many new lines...
const INDEX_MIN_LINES: u64 = 8192;
/// ...or this long, before a transaction (bigger transactions cost less per line),
/// unless a reader is waiting.
const INDEX_DELAY: Duration = Duration::from_millis(50);

/// A review copy to store beside its record.
#[derive(Debug)]
pub(crate) struct Review {
    pub id: String,
    pub body: Vec<u8>,
    pub total: u64,
    pub truncated: bool,
}

/// What the writer is asked to do.
#[derive(Debug)]
pub(crate) enum Job {
    /// Append a record (canonical JSON) and answer when it is durable; a record queued
    /// with no one to answer (an outcome) has no reply, and a failure to write it is logged.
    Record {
        record: Vec<u8>,
        review: Option<Review>,
        reply: Option<oneshot::Sender<Result<(), SinkError>>>,
    },
    /// Sign a checkpoint now if any entry is not yet under one.
    Checkpoint(oneshot::Sender<Result<(), SinkError>>),
    /// Sign a last checkpoint, let the index catch up, release the data directory; the
    /// reply comes after the lock is released.
    Shutdown(oneshot::Sender<Result<(), SinkError>>),
}

/// What the writer has made durable, and how far the index has read.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    durable: Mutex<Durable>,
    cv: Condvar,
    /// Lines written (not necessarily durable yet) since this process opened the log.
    pub written_lines: AtomicU64,
    /// Lines durable since this process opened the log.
    pub durable_lines: AtomicU64,
    /// Lines indexed since this process opened the log.
    pub indexed_lines: AtomicU64,
    /// False once the index thread has stopped on an error.
    pub index_failed: AtomicBool,
    /// Readers waiting for the index to catch up (it then does not wait for more).
    pub hurry: AtomicU64,
    /// Entries indexed with the leaf hash the writer handed on (not hashed again).
    pub fed_entries: AtomicU64,
}

impl Shared {
    /// Wakes the index thread (a reader is waiting).
    pub fn wake_index(&self) {
        let _guard = self.lock();
        self.cv.notify_all();
    }
}

#[derive(Debug)]
struct Durable {
    pos: Pos,
    closed: bool,
    /// The index thread waits until `durable_lines` reaches this (`u64::MAX`: it is not
    /// waiting): the syncer wakes it only then, not after every group.
    index_wants: u64,
    /// What the writer computed for the durable lines up to `pos` that the index has not
    /// taken yet (bounded; see [`Feed`]).
    feed: Feed,
}

impl Default for Durable {
    fn default() -> Self {
        Self {
            pos: Pos::default(),
            closed: false,
            index_wants: u64::MAX,
            feed: Feed::default(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Durable> {
        // Only positions and the feed are behind the lock; a panic elsewhere leaves them
        // valid (a feed is only ever pushed whole or taken whole).
        self.durable.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Written batches waiting for the syncer at most; beyond this the writer waits.
const SYNC_QUEUE: usize = 2;

type Reply = oneshot::Sender<Result<(), SinkError>>;

/// A written batch, waiting to be synced and answered.
struct Pending {
    file: Arc<File>,
    path: PathBuf,
    pos: Pos,
    lines: u64,
    replies: Vec<Reply>,
    /// The batch's entries and chain, for the index once the batch is durable.
    fed: Option<FedBatch>,
}

pub(crate) struct Writer {
    file: Arc<File>,
    dir: PathBuf,
    segment: u64,
    len: u64,
    /// A segment is closed once it holds this many bytes ([`segment::SEGMENT_LIMIT`]; less
    /// in tests).
    segment_limit: u64,
    buf: Vec<u8>,
    broken: bool,
    chain: Chain,
    key: AuditKey,
    key_id: String,
    anchored: u64,
    last_checkpoint: Instant,
    options: StoreOptions,
    shared: Arc<Shared>,
    index: Option<std::thread::JoinHandle<()>>,
    syncer: Option<std::sync::mpsc::SyncSender<Pending>>,
    syncer_thread: Option<std::thread::JoinHandle<()>>,
    sync_failed: Arc<AtomicBool>,
    // Held for the writer's life: a second writer on the same data directory would fork
    // the chain.
    _lock: File,
}

fn seg_err(e: SegmentError) -> StoreError {
    StoreError::Segment(e)
}

/// Indexes what the index lacks of a replica's log in `data_dir`, leaving its files alone.
pub(crate) fn catch_up(data_dir: &Path, replica: &str) -> Result<(), StoreError> {
    let db = data_dir.join(DB_FILE);
    let conn = index::open_db(&db).map_err(|e| StoreError::DataDir {
        path: db.display().to_string(),
        message: e.to_string(),
    })?;
    Indexer::open(conn, data_dir, replica)?.catch_up(None, &mut |_| {})?;
    Ok(())
}

/// Recovers a replica's log in `data_dir` (indexes what the index lacks, cuts off a torn
/// last line) and returns the indexer positioned at the end.
pub(crate) fn recover(data_dir: &Path, replica: &str) -> Result<Indexer, StoreError> {
    let db = data_dir.join(DB_FILE);
    let conn = index::open_db(&db).map_err(|e| StoreError::DataDir {
        path: db.display().to_string(),
        message: e.to_string(),
    })?;
    let mut indexer = Indexer::open(conn, data_dir, replica)?;
    indexer.catch_up(None, &mut |_| {})?;
    if let Some((path, keep)) = indexer.torn_tail()? {
        tracing::warn!(segment = %path.display(), keep, "cutting off a torn last audit line (never acknowledged)");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_len(keep)?;
                f.sync_all()
            })
            .map_err(io_err(&path))
            .map_err(seg_err)?;
    }
    let last = segment::list(indexer.dir())
        .map_err(seg_err)?
        .last()
        .copied();
    if last.is_some_and(|l| l > indexer.pos().segment) {
        return Err(seg_err(SegmentError::Damaged {
            path: indexer.dir().display().to_string(),
            offset: 0,
            message: format!(
                "segment {:020} does not follow segment {:020}; run `remit audit verify`",
                last.unwrap_or_default(),
                indexer.pos().segment
            ),
        }));
    }
    Ok(indexer)
}

impl Writer {
    /// Recovers the replica's log, resumes its chain from the segments and opens the last
    /// segment for appending; starts the index thread.
    pub fn open(
        data_dir: &Path,
        key: AuditKey,
        options: StoreOptions,
        segment_limit: u64,
        lock: File,
    ) -> Result<(Self, Arc<Shared>, watch::Receiver<u64>), StoreError> {
        let replica = options.replica.as_str();
        let dir = segment::replica_dir(data_dir, replica).map_err(seg_err)?;
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)
                .map_err(io_err(&dir))
                .map_err(seg_err)?;
            let audit = data_dir.join(segment::SEGMENT_DIR);
            for d in [&audit, data_dir] {
                segment::sync_dir(d).map_err(seg_err)?;
            }
        }
        let indexer = recover(data_dir, replica)?;
        // Other replicas' logs in this directory (a renamed replica) are indexed too: an
        // index dropped by a migration is rebuilt here. Only this replica's must succeed.
        for other in segment::replicas(data_dir).map_err(seg_err)? {
            if other != replica
                && let Err(e) = catch_up(data_dir, &other)
            {
                tracing::warn!(replica = %other, error = %e, "another replica's audit index could not be brought up to date; `remit audit verify` reports why");
            }
        }
        let (prev, frontier) = indexer.chain_state();
        let chain = remit_audit::Chain::resume(replica, prev, frontier).map_err(|e| {
            StoreError::DataDir {
                path: data_dir.display().to_string(),
                message: e.to_string(),
            }
        })?;
        let pos = indexer.pos();
        let anchored = indexer.anchored();
        let (file, len) = open_segment(&dir, pos.segment).map_err(seg_err)?;
        let shared = Arc::new(Shared::default());
        shared.lock().pos = Pos {
            segment: pos.segment,
            offset: len,
        };
        let (progress, watcher) = watch::channel(0u64);
        let index = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("remit-audit-index".into())
                .spawn(move || run_index(indexer, &shared, &progress))
                .map_err(|e| StoreError::DataDir {
                    path: data_dir.display().to_string(),
                    message: e.to_string(),
                })?
        };
        let sync_failed = Arc::new(AtomicBool::new(false));
        let (syncer, pending) = std::sync::mpsc::sync_channel(SYNC_QUEUE);
        let syncer_thread = {
            let (shared, failed) = (shared.clone(), sync_failed.clone());
            let fsync = options.durability == Durability::Fsync;
            // Batches of one are the one-fsync-per-record comparison: one sync each.
            let group_limit = if options.max_batch <= 1 {
                1
            } else {
                usize::MAX
            };
            std::thread::Builder::new()
                .name("remit-audit-sync".into())
                .spawn(move || run_syncer(&pending, &shared, fsync, group_limit, &failed))
                .map_err(|e| StoreError::DataDir {
                    path: data_dir.display().to_string(),
                    message: e.to_string(),
                })?
        };
        let key_id = key.public().key_id();
        Ok((
            Self {
                file: Arc::new(file),
                dir,
                segment: pos.segment,
                len,
                segment_limit,
                buf: Vec::with_capacity(1 << 20),
                broken: false,
                chain,
                key,
                key_id,
                anchored,
                last_checkpoint: Instant::now(),
                options,
                shared: shared.clone(),
                index: Some(index),
                syncer: Some(syncer),
                syncer_thread: Some(syncer_thread),
                sync_failed,
                _lock: lock,
            },
            shared,
            watcher,
        ))
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
                    // Nobody is left to tell; `close` has logged any failure.
                    let _ = self.close();
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
            metrics::histogram!("remit_audit_batch_records").record(batch.len() as f64);
            let shutdown = batch.iter().position(|j| matches!(j, Job::Shutdown(_)));
            let shutdown = shutdown.map(|i| batch.remove(i));
            let result = self.commit(&mut batch, due);
            if let Err(e) = &result {
                tracing::error!(error = %e, "an audit batch was not written; its requests are denied");
            }
            if let Some(Job::Shutdown(reply)) = shutdown {
                drop(rx);
                let synced = self.close();
                drop(self);
                let _ = reply.send(result.and(synced));
                return;
            }
            self.wait_for_index();
        }
    }

    /// Waits for the syncer to answer everything written, tells the index thread no more
    /// is coming and waits for it to finish. Whether every batch was synced.
    fn close(&mut self) -> Result<(), SinkError> {
        drop(self.syncer.take());
        if let Some(syncer) = self.syncer_thread.take()
            && syncer.join().is_err()
        {
            tracing::error!("the audit sync thread panicked");
            self.sync_failed.store(true, Ordering::Release);
        }
        self.shared.lock().closed = true;
        self.shared.cv.notify_all();
        if let Some(index) = self.index.take()
            && index.join().is_err()
        {
            tracing::error!(
                "the audit index thread panicked; the index is rebuilt at the next start"
            );
        }
        if self.sync_failed.load(Ordering::Acquire) {
            Err(SinkError::Store("an audit fdatasync failed".into()))
        } else {
            Ok(())
        }
    }

    /// Waits while the index is more than [`INDEX_LAG_LIMIT`] lines behind (unless it has
    /// stopped: then it is rebuilt at the next start, and records stay durable).
    fn wait_for_index(&self) {
        let s = &self.shared;
        let mut guard = s.lock();
        while s.durable_lines.load(Ordering::Acquire)
            > s.indexed_lines.load(Ordering::Acquire) + INDEX_LAG_LIMIT
            && !s.index_failed.load(Ordering::Acquire)
        {
            guard =
                s.cv.wait_timeout(guard, Duration::from_millis(10))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
        }
    }

    /// Writes a batch (and a checkpoint when `checkpoint`) with one write and hands its
    /// waiters to the syncer, which answers them once it is durable; on a failed write
    /// they are answered now, and the chain and the file are as they were.
    fn commit(&mut self, batch: &mut Vec<Job>, checkpoint: bool) -> Result<(), SinkError> {
        let result = self.write_batch(batch, checkpoint);
        let mut unanswered = 0usize;
        let replies = batch.drain(..).filter_map(|job| match job {
            Job::Record { reply: None, .. } => {
                unanswered += 1;
                None
            }
            Job::Record {
                reply: Some(reply), ..
            }
            | Job::Checkpoint(reply)
            | Job::Shutdown(reply) => Some(reply),
        });
        match result {
            Ok(pending) => {
                let mut pending = pending;
                pending.replies.extend(replies);
                if pending.lines == 0 && pending.replies.is_empty() {
                    return Ok(());
                }
                let Some(syncer) = &self.syncer else {
                    return Err(SinkError::Closed);
                };
                self.shared
                    .written_lines
                    .fetch_add(pending.lines, Ordering::AcqRel);
                if let Err(std::sync::mpsc::SendError(p)) = syncer.send(pending) {
                    for reply in p.replies {
                        let _ = reply.send(Err(SinkError::Closed));
                    }
                    return Err(SinkError::Closed);
                }
                Ok(())
            }
            Err(e) => {
                for reply in replies {
                    // The requester may have given up (timed out); nothing to do then.
                    let _ = reply.send(Err(e.clone()));
                }
                if unanswered > 0 {
                    tracing::error!(records = unanswered, error = %e, "audit records queued without a waiter (outcomes) were not written");
                }
                Err(e)
            }
        }
    }

    fn write_batch(&mut self, batch: &[Job], checkpoint: bool) -> Result<Pending, SinkError> {
        if self.broken || self.sync_failed.load(Ordering::Acquire) {
            return Err(SinkError::Store(
                "an earlier audit write failed and could not be undone; restart remit".into(),
            ));
        }
        let before = self.chain.clone();
        match self.write(batch, checkpoint) {
            Ok((signed, lines, entries)) => {
                if let Some(size) = signed {
                    self.anchored = size;
                    self.last_checkpoint = Instant::now();
                }
                let fed = (!entries.is_empty()).then(|| FedBatch {
                    segment: self.segment,
                    end: self.len,
                    entries,
                    after: Some((self.chain.prev(), self.chain.frontier().clone())),
                });
                Ok(Pending {
                    file: self.file.clone(),
                    path: segment::segment_path(&self.dir, self.segment),
                    pos: Pos {
                        segment: self.segment,
                        offset: self.len,
                    },
                    lines,
                    replies: Vec::new(),
                    fed,
                })
            }
            Err(e) => {
                self.chain = before;
                let path = segment::segment_path(&self.dir, self.segment);
                if let Err(undo) = self.file.set_len(self.len) {
                    tracing::error!(segment = %path.display(), error = %undo, "a failed audit write could not be cut back; refusing further records");
                    self.broken = true;
                }
                Err(SinkError::Store(e.to_string()))
            }
        }
    }

    /// The batch's lines, written (not yet synced): (the checkpoint's tree size if one
    /// was signed, lines written, the entries as written).
    fn write(
        &mut self,
        batch: &[Job],
        checkpoint: bool,
    ) -> Result<(Option<u64>, u64, Vec<FedEntry>), SegmentError> {
        if self.len >= self.segment_limit && self.chain.size() != self.segment {
            let (file, len) = open_segment(&self.dir, self.chain.size())?;
            self.file = Arc::new(file);
            self.segment = self.chain.size();
            self.len = len;
        }
        let path = segment::segment_path(&self.dir, self.segment);
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut lines = 0u64;
        let mut entries = Vec::with_capacity(batch.len());
        for job in batch {
            let Job::Record { record, review, .. } = job else {
                continue;
            };
            let start = buf.len();
            let (seq, leaf) = self.chain.append_to(record, &mut buf);
            entries.push(FedEntry {
                seq,
                offset: self.len + start as u64,
                len: (buf.len() - start) as u64,
                leaf,
            });
            buf.push(b'\n');
            lines += 1;
            if let Some(r) = review {
                let line = ReviewLine {
                    review: ReviewCopy {
                        body: hex::encode(&r.body),
                        id: r.id.clone(),
                        total: r.total,
                        truncated: r.truncated,
                    },
                };
                serde_json::to_writer(&mut buf, &line)
                    .map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
                buf.push(b'\n');
                lines += 1;
            }
        }
        let mut signed = None;
        if checkpoint && self.chain.size() > self.anchored {
            let cp = self.key.sign(Checkpoint {
                v: remit_audit::checkpoint::CHECKPOINT_VERSION,
                replica: self.options.replica.clone(),
                tree_size: self.chain.size(),
                root: self.chain.root(),
                time: OffsetDateTime::now_utc()
                    .format(&Rfc3339)
                    .unwrap_or_default(),
                key_id: self.key_id.clone(),
            });
            serde_json::to_writer(&mut buf, &cp)
                .map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
            buf.push(b'\n');
            lines += 1;
            signed = Some(self.chain.size());
            metrics::counter!("remit_audit_checkpoints_total").increment(1);
        }
        let result = if buf.is_empty() {
            Ok(())
        } else {
            (&*self.file).write_all(&buf)
        };
        let written = buf.len() as u64;
        self.buf = buf;
        result.map_err(io_err(&path))?;
        self.len += written;
        Ok((signed, lines, entries))
    }
}

impl Drop for Writer {
    /// If the writer ends any other way than [`Writer::close`] (a panic), the index thread
    /// still finishes what is durable and stops.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.cv.notify_all();
    }
}

/// Opens (creating, and syncing the directory, if new) the segment starting at `first`
/// for appending: the file and its length.
fn open_segment(dir: &Path, first: u64) -> Result<(File, u64), SegmentError> {
    let path = segment::segment_path(dir, first);
    let existed = path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    if !existed {
        file.sync_all().map_err(io_err(&path))?;
        segment::sync_dir(dir)?;
    }
    let len = file.metadata().map_err(io_err(&path))?.len();
    Ok((file, len))
}

/// The index thread: indexes what the writer publishes as durable until the writer
/// closes and everything is indexed, or an error stops it (the index is then rebuilt
/// from the segments at the next start).
fn run_index(mut indexer: Indexer, shared: &Shared, progress: &watch::Sender<u64>) {
    // The index is derived data off the request path: it yields the CPU to the writer,
    // the syncer and the requests. [`INDEX_LAG_LIMIT`] bounds how far behind it can fall.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), INDEX_NICE)
    {
        tracing::debug!(error = %e, "the audit index thread keeps its priority");
    }
    let mut done = 0u64;
    let mut feed = Feed::default();
    loop {
        let (until, closed) = {
            let mut st = shared.lock();
            while st.pos == indexer.pos() && !st.closed {
                // Any new durable line wakes it...
                st.index_wants = shared.durable_lines.load(Ordering::Acquire) + 1;
                st = shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            let since = Instant::now();
            while !st.closed
                && shared.hurry.load(Ordering::Acquire) == 0
                && shared.durable_lines.load(Ordering::Acquire) < done + INDEX_MIN_LINES
                && let Some(left) = INDEX_DELAY.checked_sub(since.elapsed())
            {
                // ...then only enough of them for a transaction (or a reader, or time).
                st.index_wants = done + INDEX_MIN_LINES;
                st = shared
                    .cv
                    .wait_timeout(st, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            st.index_wants = u64::MAX;
            // Taken with the position it belongs to: the feed never runs ahead of `until`.
            feed.append(&mut st.feed);
            (st.pos, st.closed)
        };
        let result = indexer.catch_up_fed(Some(until), &mut feed, &mut |n| {
            done += n;
            shared.indexed_lines.store(done, Ordering::Release);
            progress.send_replace(done);
            shared.cv.notify_all();
        });
        shared
            .fed_entries
            .store(indexer.fed_entries(), Ordering::Release);
        if let Err(e) = result {
            tracing::error!(error = %e, "the audit index stopped; records stay durable in the segments and are indexed at the next start");
            metrics::counter!("remit_audit_index_failures_total").increment(1);
            shared.index_failed.store(true, Ordering::Release);
            shared.cv.notify_all();
            return;
        }
        if closed && indexer.pos() == until {
            return;
        }
    }
}

/// Synced groups whose waiters are not yet answered at most; beyond this the syncer
/// waits before its next `fdatasync`.
const ANSWER_QUEUE: usize = 4;

/// A synced group's outcome and the waiters to tell.
type Answers = (Result<(), SinkError>, Vec<Reply>);

/// The syncer thread: one `fdatasync` for every batch written since the last (at most
/// `group_limit` batches), then the batches' position is published to the index and
/// their waiters answered. Answering (waking each waiting task) is handed to a thread of
/// its own, so the next `fdatasync` starts at once rather than after a group's wake-ups.
fn run_syncer(
    rx: &std::sync::mpsc::Receiver<Pending>,
    shared: &Shared,
    fsync: bool,
    group_limit: usize,
    failed: &AtomicBool,
) {
    std::thread::scope(|scope| {
        let (answers, to_answer) = std::sync::mpsc::sync_channel::<Answers>(ANSWER_QUEUE);
        let answerer = std::thread::Builder::new()
            .name("remit-audit-answer".into())
            .spawn_scoped(scope, move || {
                while let Ok((result, replies)) = to_answer.recv() {
                    answer(&result, replies);
                }
            });
        // Without the thread, the syncer answers itself.
        let answers = match answerer {
            Ok(_) => Some(answers),
            Err(e) => {
                tracing::warn!(error = %e, "no audit answer thread; the syncer answers");
                None
            }
        };
        sync_groups(rx, shared, fsync, group_limit, failed, answers.as_ref());
        // Dropping the sender ends the answerer; the scope waits for it.
    });
}

/// Tells every waiter of a group how it went.
fn answer(result: &Result<(), SinkError>, replies: Vec<Reply>) {
    for reply in replies {
        // The requester may have given up (timed out); nothing to do then.
        let _ = reply.send(result.clone());
    }
}

fn sync_groups(
    rx: &std::sync::mpsc::Receiver<Pending>,
    shared: &Shared,
    fsync: bool,
    group_limit: usize,
    failed: &AtomicBool,
    answers: Option<&std::sync::mpsc::SyncSender<Answers>>,
) {
    let mut group: Vec<Pending> = Vec::new();
    // A batch taken to learn whether another was queued behind a group: the next group's.
    let mut next: Option<Pending> = None;
    loop {
        let first = match next.take() {
            Some(p) => p,
            None => match rx.recv() {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        group.push(first);
        while group.len() < group_limit
            && let Ok(more) = rx.try_recv()
        {
            group.push(more);
        }
        if fsync && group_limit > 1 && group.iter().all(|p| p.replies.is_empty()) {
            wait_for_a_waiter(rx, &mut group, group_limit);
        }
        let mut result = if failed.load(Ordering::Acquire) {
            Err(SinkError::Store(
                "an earlier audit fdatasync failed; restart remit".into(),
            ))
        } else {
            Ok(())
        };
        if fsync && result.is_ok() {
            // Each file once, in order (a batch may have started a new segment).
            for (i, p) in group.iter().enumerate() {
                let synced_later = group[i + 1..].iter().any(|q| Arc::ptr_eq(&q.file, &p.file));
                if synced_later {
                    continue;
                }
                if let Err(e) = p.file.sync_data() {
                    tracing::error!(segment = %p.path.display(), error = %e, "an audit fdatasync failed; refusing further records until a restart");
                    failed.store(true, Ordering::Release);
                    result = Err(SinkError::Store(format!("audit fdatasync: {e}")));
                    break;
                }
            }
        }
        let lines: u64 = group.iter().map(|p| p.lines).sum();
        if result.is_ok()
            && lines > 0
            && let Some(last) = group.last()
        {
            let mut st = shared.lock();
            st.pos = last.pos;
            // A stopped index takes nothing more (it is rebuilt at the next start).
            let feeding = !shared.index_failed.load(Ordering::Acquire);
            for fed in group.iter_mut().filter_map(|p| p.fed.take()) {
                // A full feed drops the batch: the index then hashes its lines itself.
                if feeding {
                    st.feed.push(fed);
                }
            }
            // Counted under the lock the index waits with, so no wake-up is lost.
            let durable = shared.durable_lines.fetch_add(lines, Ordering::AcqRel) + lines;
            let wake = durable >= st.index_wants;
            drop(st);
            if wake {
                shared.cv.notify_all();
            }
        }
        let mut replies = Vec::new();
        for p in group.drain(..) {
            if replies.is_empty() {
                replies = p.replies;
            } else {
                replies.extend(p.replies);
            }
        }
        if replies.is_empty() {
            continue;
        }
        // Nothing written behind this group: there is no next fdatasync to hurry to, so
        // answering here saves the answer thread's wake-up (most of a request's latency
        // when requests come one at a time).
        next = rx.try_recv().ok();
        match answers {
            Some(answers) if next.is_some() => {
                if let Err(std::sync::mpsc::SendError((result, replies))) =
                    answers.send((result, replies))
                {
                    answer(&result, replies);
                }
            }
            _ => answer(&result, replies),
        }
    }
}

/// How long a group nobody waits for (outcomes, which are queued without a waiter; a
/// checkpoint on its timer) waits for a batch that somebody does wait for, so one
/// `fdatasync` serves both: without it, a request's decision record can queue behind the
/// previous response's outcome and pay for two. It bounds how long such lines stay
/// unsynced.
pub(crate) const QUIET_SYNC_DELAY: Duration = Duration::from_millis(2);

/// Adds to `group` (which has no waiters) the batches written within
/// [`QUIET_SYNC_DELAY`], up to the first one with a waiter.
fn wait_for_a_waiter(
    rx: &std::sync::mpsc::Receiver<Pending>,
    group: &mut Vec<Pending>,
    group_limit: usize,
) {
    let deadline = Instant::now() + QUIET_SYNC_DELAY;
    while group.len() < group_limit {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        match rx.recv_timeout(left) {
            Ok(p) => {
                let waited_for = !p.replies.is_empty();
                group.push(p);
                if waited_for {
                    return;
                }
            }
            // Disconnected: sync what there is; the loop then ends.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use remit_audit::{Chain, Hash};
    use remit_core::{
        ActionName, AuditRecord, Authority, Class, Decision, DecisionRecord, OutcomeRecord,
        RecordSink, ResourceRef, ResourceType, ReviewNote, Verdict,
    };
    use rusqlite::types::Value;

    use super::*;
    use crate::SqliteStore;
    use crate::index::{FedBatch, FedEntry};

    fn decision(id: usize) -> AuditRecord {
        AuditRecord::Decision(DecisionRecord {
            v: remit_core::decision::RECORD_VERSION,
            time: "2026-11-27T00:00:00Z".into(),
            replica: "replica-1".into(),
            decision: Decision {
                verdict: if id.is_multiple_of(3) {
                    Verdict::Deny
                } else {
                    Verdict::Allow
                },
                decision_id: format!("d-{id}"),
                identity: Some(remit_core::IdentityId::parse(&format!("job-{}", id % 4)).unwrap()),
                credential_id: None,
                class: Class::Unclassified,
                authority: Authority::none(),
                purpose: Some(remit_core::Purpose::parse("billing").unwrap()),
                action: ActionName::parse("status.read").unwrap(),
                resource: ResourceRef {
                    rtype: ResourceType::parse("Service").unwrap(),
                    id: "api".into(),
                },
                sensitive: false,
                reasons: vec![],
                policies: vec!["status.public".into()],
                obligations: vec![],
                approval: None,
                retry_after_s: None,
                rate_limit: None,
                record_sets: Vec::new(),
                scan: None,
            },
            method: "GET".into(),
            path: format!("/status/{id}"),
            route: Some("GET /status".into()),
            mcp_method: None,
            mcp_tool: None,
            source_ip: None,
            body_sha256: None,
            peer_spiffe_id: None,
            decide_us: 3,
            alerts: Vec::new(),
        })
    }

    fn outcome(id: usize) -> AuditRecord {
        let body = format!("{{\"ticket\": {id}}}").into_bytes();
        AuditRecord::Outcome(OutcomeRecord {
            v: 2,
            time: "2026-11-27T00:00:01Z".into(),
            replica: "replica-1".into(),
            decision_id: format!("d-{id}"),
            status: 200,
            response_sha256: "00".repeat(32),
            response_bytes: 40,
            complete: true,
            latency_us: 900,
            error: None,
            review: Some(ReviewNote {
                stored_bytes: body.len() as u64,
                limit: 64,
                truncated: false,
                sha256: "11".repeat(32),
                redacted: 0,
                withheld: None,
            }),
            review_body: Some(body),
            scan: None,
            record_sets: Vec::new(),
        })
    }

    /// Every row the index holds, table by table, in a comparable form.
    fn index_rows(data_dir: &Path) -> Vec<(String, Vec<Vec<Value>>)> {
        let conn = rusqlite::Connection::open(data_dir.join(DB_FILE)).unwrap();
        [
            "SELECT rowid, replica, seq, kind, id, time, identity, human, purpose, verdict, segment, seg_offset, len, leaf FROM audit_entries ORDER BY rowid",
            "SELECT id, body, total, truncated FROM audit_bodies ORDER BY id",
            "SELECT replica, tree_size, checkpoint FROM audit_checkpoints ORDER BY replica, tree_size",
            "SELECT replica, size, prev, frontier, segment, seg_offset FROM audit_state ORDER BY replica",
        ]
        .iter()
        .map(|q| {
            let mut stmt = conn.prepare(q).unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
                .unwrap()
                .collect::<Result<Vec<Vec<Value>>, _>>()
                .unwrap();
            ((*q).to_owned(), rows)
        })
        .collect()
    }

    fn copy_segments(from: &Path, to: &Path) {
        let (from, to) = (
            segment::replica_dir(from, "replica-1").unwrap(),
            segment::replica_dir(to, "replica-1").unwrap(),
        );
        std::fs::create_dir_all(&to).unwrap();
        for first in segment::list(&from).unwrap() {
            std::fs::copy(
                segment::segment_path(&from, first),
                segment::segment_path(&to, first),
            )
            .unwrap();
        }
    }

    #[tokio::test]
    async fn the_index_fed_by_the_writer_equals_the_index_rebuilt_from_the_segments() {
        let fed = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            checkpoint_every: 7,
            checkpoint_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        };
        // Small segments, so the writer rolls over to new files many times.
        let store = SqliteStore::open_segmented(fed.path(), options.clone(), 4096)
            .await
            .unwrap();
        for round in 0..6 {
            // Concurrent appends share batches; outcomes (with review copies) are queued
            // without a waiter; checkpoints are due every 7 entries and forced here too.
            let tasks: Vec<_> = (0..10)
                .map(|i| {
                    let store = store.clone();
                    let id = round * 10 + i;
                    tokio::spawn(async move {
                        store.append(decision(id)).await.unwrap();
                        assert!(matches!(
                            store.queue(outcome(id)),
                            remit_core::Queued::Queued
                        ));
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            store.checkpoint().await.unwrap();
        }
        assert_eq!(store.count().await.unwrap(), 60);
        store.shutdown().await.unwrap();
        // Read once the index thread has finished (shutdown waits for it).
        let fed_entries = store.live.shared().fed_entries.load(Ordering::Acquire);
        assert_eq!(
            fed_entries, 120,
            "every entry of this run came through the feed"
        );
        let dir = segment::replica_dir(fed.path(), "replica-1").unwrap();
        assert!(
            segment::list(&dir).unwrap().len() >= 3,
            "segments rolled over"
        );

        // The same segments, indexed from the files alone (hashing every line).
        let rebuilt = tempfile::tempdir().unwrap();
        copy_segments(fed.path(), rebuilt.path());
        let store = SqliteStore::open_segmented(rebuilt.path(), options, 4096)
            .await
            .unwrap();
        assert_eq!(store.live.shared().fed_entries.load(Ordering::Acquire), 0);
        store.shutdown().await.unwrap();

        let (a, b) = (index_rows(fed.path()), index_rows(rebuilt.path()));
        for ((query, a), (_, b)) in a.iter().zip(&b) {
            assert!(!a.is_empty(), "{query}");
            assert_eq!(a, b, "{query}");
        }
    }

    /// A segment of `batches` (entries each, a review line after every second entry),
    /// the feed the writer would hand on for it, and its end.
    fn written_segment(dir: &Path, batches: &[usize]) -> (Vec<FedBatch>, Pos) {
        let seg_dir = segment::replica_dir(dir, "replica-1").unwrap();
        std::fs::create_dir_all(&seg_dir).unwrap();
        let mut chain = Chain::new("replica-1").unwrap();
        let (mut out, mut fed) = (Vec::new(), Vec::new());
        for &n in batches {
            let mut entries = Vec::new();
            for _ in 0..n {
                let seq = chain.size();
                let kind = if seq.is_multiple_of(2) {
                    "decision"
                } else {
                    "outcome"
                };
                let record = format!(r#"{{"decision_id":"d-{seq}","kind":"{kind}"}}"#);
                let start = out.len();
                let (seq, leaf) = chain.append_to(record.as_bytes(), &mut out);
                entries.push(FedEntry {
                    seq,
                    offset: start as u64,
                    len: (out.len() - start) as u64,
                    leaf,
                });
                out.push(b'\n');
                if seq % 2 == 1 {
                    out.extend_from_slice(
                        format!(r#"{{"review":{{"body":"00","id":"d-{seq}","total":1,"truncated":false}}}}"#)
                            .as_bytes(),
                    );
                    out.push(b'\n');
                }
            }
            fed.push(FedBatch {
                segment: 0,
                end: out.len() as u64,
                entries,
                after: Some((chain.prev(), chain.frontier().clone())),
            });
        }
        std::fs::write(segment::segment_path(&seg_dir, 0), &out).unwrap();
        let end = Pos {
            segment: 0,
            offset: out.len() as u64,
        };
        (fed, end)
    }

    /// Indexes the segment in `dir` with `feed` into a new index: the result and the
    /// entries taken from the feed.
    async fn index_with(dir: &Path, feed: Vec<FedBatch>, until: Pos) -> (Result<(), String>, u64) {
        let _ = std::fs::remove_file(dir.join(DB_FILE));
        crate::open_pool(dir, true).await.unwrap().close().await;
        let conn = index::open_db(&dir.join(DB_FILE)).unwrap();
        let mut indexer = Indexer::open(conn, dir, "replica-1").unwrap();
        let mut f = Feed::default();
        for b in feed {
            assert!(f.push(b));
        }
        let result = indexer
            .catch_up_fed(Some(until), &mut f, &mut |_| {})
            .map_err(|e| e.to_string());
        (result, indexer.fed_entries())
    }

    #[tokio::test]
    async fn an_index_fed_in_part_equals_one_that_hashed_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let (fed, end) = written_segment(dir.path(), &[3, 1, 4, 2]);
        let (r, n) = index_with(dir.path(), Vec::new(), end).await;
        assert_eq!((r, n), (Ok(()), 0));
        let hashed = index_rows(dir.path());
        // All of it, every other batch (a full feed drops batches), one batch without the
        // writer's frontier.
        let every_other = || {
            let (fed, _) = written_segment(dir.path(), &[3, 1, 4, 2]);
            fed.into_iter().step_by(2).collect::<Vec<_>>()
        };
        let mut no_frontier = written_segment(dir.path(), &[3, 1, 4, 2]).0;
        no_frontier[1].after = None;
        // A fed entry placed where no line starts is passed over, and its batch's
        // frontier not taken.
        let mut misplaced = written_segment(dir.path(), &[3, 1, 4, 2]).0;
        misplaced[2].entries[1].offset -= 1;
        for (feed, want) in [
            (fed, 10),
            (every_other(), 7),
            (no_frontier, 10),
            (misplaced, 9),
        ] {
            let (r, n) = index_with(dir.path(), feed, end).await;
            assert_eq!((r, n), (Ok(()), want));
            assert_eq!(index_rows(dir.path()), hashed);
        }
    }

    #[tokio::test]
    async fn a_fed_entry_that_is_not_the_line_at_its_place_stops_the_index() {
        let dir = tempfile::tempdir().unwrap();
        for wrong in [|e: &mut FedEntry| e.seq += 1, |e: &mut FedEntry| e.len -= 1] {
            let (mut fed, end) = written_segment(dir.path(), &[2, 2]);
            wrong(&mut fed[1].entries[0]);
            let (r, _) = index_with(dir.path(), fed, end).await;
            let err = r.unwrap_err();
            assert!(err.contains("that this process wrote here"), "{err}");
        }
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    #[should_panic(expected = "fed leaf")]
    async fn a_fed_leaf_that_is_not_the_hash_of_the_line_is_caught_in_debug_builds() {
        let dir = tempfile::tempdir().unwrap();
        let (mut fed, end) = written_segment(dir.path(), &[2]);
        fed[0].entries[1].leaf = Hash::ZERO;
        let _ = index_with(dir.path(), fed, end).await;
    }

    fn pending(file: &Arc<File>, waiter: bool) -> Pending {
        Pending {
            file: file.clone(),
            path: PathBuf::from("segment"),
            pos: Pos::default(),
            lines: 1,
            replies: if waiter {
                vec![oneshot::channel().0]
            } else {
                Vec::new()
            },
            fed: None,
        }
    }

    /// A group nobody waits for (an outcome) takes in what is written behind it up to the
    /// first batch somebody waits for (the next request's decision), so one `fdatasync`
    /// serves both; alone, it waits no longer than `QUIET_SYNC_DELAY`.
    #[test]
    fn a_group_nobody_waits_for_shares_its_sync_with_the_next_waited_for_batch() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(File::create(dir.path().join("segment")).unwrap());
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        for waiter in [false, true, false] {
            tx.send(pending(&file, waiter)).unwrap();
        }
        let mut group = vec![pending(&file, false)];
        wait_for_a_waiter(&rx, &mut group, usize::MAX);
        let waiters: Vec<bool> = group.iter().map(|p| !p.replies.is_empty()).collect();
        assert_eq!(
            waiters,
            [false, false, true],
            "up to the first waited-for batch"
        );
        assert!(
            rx.try_recv().is_ok_and(|p| p.replies.is_empty()),
            "the rest stays queued"
        );

        let started = Instant::now();
        let mut group = vec![pending(&file, false)];
        wait_for_a_waiter(&rx, &mut group, usize::MAX);
        assert_eq!(group.len(), 1);
        assert!(
            started.elapsed() >= QUIET_SYNC_DELAY,
            "it waited for a waiter"
        );

        let mut group = vec![pending(&file, false), pending(&file, false)];
        wait_for_a_waiter(&rx, &mut group, 2);
        assert_eq!(group.len(), 2, "a full group waits for nothing");
        drop(tx);
        wait_for_a_waiter(&rx, &mut vec![pending(&file, false)], usize::MAX);
    }

    /// Regression guard for the shared sync: an outcome with nothing written after it is
    /// still made durable and indexed (on its own, after `QUIET_SYNC_DELAY`), and a reader
    /// waits for it.
    #[tokio::test]
    async fn an_outcome_with_nothing_after_it_is_made_durable_and_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store.append(decision(1)).await.unwrap();
        assert!(matches!(
            store.queue(outcome(1)),
            remit_core::Queued::Queued
        ));
        // The writer may not have taken the outcome yet: wait until it has written it.
        let shared = store.live.shared();
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.written_lines.load(Ordering::Acquire) < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        store.live.caught_up().await;
        let written = shared.written_lines.load(Ordering::Acquire);
        // The decision, the outcome and its review copy.
        assert_eq!(written, 3);
        assert_eq!(shared.durable_lines.load(Ordering::Acquire), written);
        assert_eq!(shared.indexed_lines.load(Ordering::Acquire), written);
        store.shutdown().await.unwrap();
    }
}
