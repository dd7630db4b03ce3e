//! Reading the audit log: verification, inclusion proofs, search, tail and export. A
//! reader works on a running gateway's data directory or a stopped one's; it never
//! writes records.
//!
//! Search, tail, proofs and export find entries in the SQLite index, which holds where
//! each entry is in the segment files and its hash; the entry itself is read from the
//! segment there and must hash to what the index holds (else [`EntryError`]). Opening a
//! reader on a stopped data directory first brings the index up to date with the segment
//! files (the index is derived data; the segments are not touched); a reader from a
//! running store waits for the index to hold everything acknowledged before each read.
//! `verify` checks the index, then the segment files, and that the index is a copy of
//! the segments.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use remit_audit::merkle::leaf_hash;
use remit_audit::{Hash, InclusionProof, PublicKey, SignedCheckpoint, Summary, Tamper, Verifier};
use serde::Deserialize;
use sqlx::sqlite::SqlitePool;
use tokio::sync::watch;

use crate::segment::{self, EntryError, EntryFiles, Line, LineReader, Place, SegmentError};
use crate::writer::Shared;
use crate::{DB_FILE, LOCK_FILE, StoreError};

/// How long a read from a running store waits for the index at most before it reads
/// what the index holds.
pub const INDEX_WAIT: Duration = Duration::from_secs(10);

/// Results of one search at most.
pub const MAX_SEARCH: u32 = 10_000;

/// Why verification did not pass.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log was changed.
    #[error(transparent)]
    Tamper(#[from] Tamper),
    /// A stored checkpoint is not a readable checkpoint.
    #[error("the checkpoint at tree size {tree_size} is not readable: {message}")]
    Checkpoint {
        /// Its tree size column.
        tree_size: i64,
        /// What is wrong.
        message: String,
    },
    /// The segment files were changed (the durable copy; named by position and id).
    #[error("in the segment files: {0}")]
    Segment(Tamper),
    /// A segment file holds a line the writer never writes.
    #[error("in the segment files: {0}")]
    SegmentDamaged(SegmentError),
    /// The index and the segment files hold different entries at one position.
    #[error(
        "record {seq} (`{id}`) differs between the segment files and the index: one of them was changed"
    )]
    Diverged {
        /// The position.
        seq: u64,
        /// The record id (from the segments).
        id: String,
    },
    /// The index holds an entry the segment files lack.
    #[error(
        "record {seq} (`{id}`) is in the index but not in the segment files: the segment files were truncated or records removed from them"
    )]
    IndexAhead {
        /// The first position missing from the segments.
        seq: u64,
        /// Its record id (from the index).
        id: String,
    },
    /// An index row places its entry where no entry can be (a negative column, a length
    /// over a line's limit).
    #[error("in the index: {0}")]
    IndexEntry(EntryError),
    /// Rows the index says it holds are gone.
    #[error(
        "record {seq} (`{id}`) is in the segment files but was removed from the index (which says it holds {claimed} records)"
    )]
    IndexBehind {
        /// The first position missing from the index.
        seq: u64,
        /// Its record id (from the segments).
        id: String,
        /// How many entries the index says it holds.
        claimed: u64,
    },
    /// The database or a segment file could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// No decision has this id.
    #[error("no decision record has id `{0}`")]
    NotFound(String),
    /// The record is newer than the last checkpoint.
    #[error(
        "record `{0}` is not under a signed checkpoint yet; try again after the next one (at most `checkpoint_interval`)"
    )]
    NotAnchored(String),
    /// The stored log is damaged; run `remit audit verify`.
    #[error("the stored log is damaged ({0}); run `remit audit verify`")]
    Damaged(String),
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VerifyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}
impl From<sqlx::Error> for ProveError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What to search for; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// The acting identity.
    pub identity: Option<String>,
    /// The human a delegated request acted for.
    pub human: Option<String>,
    /// The declared purpose.
    pub purpose: Option<String>,
    /// The verdict (`allow`, `deny`, `approval_required`, `rate_limited`).
    pub verdict: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    pub since: Option<String>,
    /// Before this time (RFC 3339, exclusive).
    pub until: Option<String>,
    /// Results at most (capped at [`MAX_SEARCH`]).
    pub limit: u32,
    /// The record kind: `decision` when unset, or `token` (the token endpoint's records),
    /// `approval`.
    pub kind: Option<String>,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Insertion order across replicas (for `tail`).
    pub cursor: i64,
    /// The replica.
    pub replica: String,
    /// Its position in the replica's chain.
    pub seq: i64,
    /// The canonical entry text.
    pub entry: String,
}

/// A read-only view of the audit log.
#[derive(Debug, Clone)]
pub struct AuditReader {
    pool: SqlitePool,
    data_dir: PathBuf,
    live: Option<Live>,
}

/// A running store's progress: what is durable, what is indexed.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    data_dir: PathBuf,
    shared: Arc<Shared>,
    indexed: watch::Receiver<u64>,
}

impl Live {
    pub(crate) fn new(data_dir: &Path, shared: Arc<Shared>, indexed: watch::Receiver<u64>) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            shared,
            indexed,
        }
    }

    /// What the writer and the index share.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Waits (at most [`INDEX_WAIT`]) until the index holds every line written now (an
    /// outcome may be written but not yet durable: see `writer::QUIET_SYNC_DELAY`).
    pub(crate) async fn caught_up(&self) {
        let target = self.shared.written_lines.load(Ordering::Acquire);
        if self.shared.index_failed.load(Ordering::Acquire) {
            return;
        }
        let mut rx = self.indexed.clone();
        if *rx.borrow() >= target {
            return;
        }
        /// Counts a waiting reader for as long as it waits (also if it is cancelled).
        struct Hurry<'a>(&'a Shared);
        impl Drop for Hurry<'_> {
            fn drop(&mut self) {
                self.0.hurry.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.shared.hurry.fetch_add(1, Ordering::AcqRel);
        let _hurry = Hurry(&self.shared);
        self.shared.wake_index();
        // A stopped index thread ends the wait early (its sender is gone).
        let _ = tokio::time::timeout(INDEX_WAIT, rx.wait_for(|n| *n >= target)).await;
    }
}

/// The record id of an entry, for naming it.
fn entry_id(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E<'a> {
        #[serde(borrow)]
        record: R<'a>,
    }
    #[derive(Deserialize)]
    struct R<'a> {
        #[serde(borrow, default)]
        decision_id: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<E<'_>>(bytes)
        .ok()
        .and_then(|e| e.record.decision_id.map(Cow::into_owned))
        .unwrap_or_else(|| "?".into())
}

/// What [`walk_segments`] calls with each line: its file, offset and bytes.
type LineVisit<'a> = dyn FnMut(&Path, u64, &[u8]) -> Result<(), VerifyError> + 'a;

/// Calls `visit` with every whole line of a replica's segments, in order. A torn last
/// line (a write in progress, or torn by a crash and never acknowledged) is skipped.
fn walk_segments(dir: &Path, visit: &mut LineVisit<'_>) -> Result<(), VerifyError> {
    let segments = segment::list(dir).map_err(StoreError::from)?;
    for (i, first) in segments.iter().enumerate() {
        let path = segment::segment_path(dir, *first);
        let mut reader = LineReader::open(&path, 0, u64::MAX).map_err(StoreError::from)?;
        while let Some((at, line)) = reader.next_line().map_err(seg_damaged)? {
            visit(&path, at, line)?;
        }
        if reader.rest() > 0 && i + 1 < segments.len() {
            return Err(VerifyError::SegmentDamaged(SegmentError::Damaged {
                path: path.display().to_string(),
                offset: reader.offset(),
                message: "an unfinished line before the next segment".into(),
            }));
        }
    }
    Ok(())
}

fn seg_damaged(e: SegmentError) -> VerifyError {
    match e {
        e @ SegmentError::Damaged { .. } => VerifyError::SegmentDamaged(e),
        e => VerifyError::Store(e.into()),
    }
}

/// An index row's replica, position, place and leaf hash.
type Located = (String, i64, i64, i64, i64, Vec<u8>);

/// The columns of [`Located`].
const LOCATED: &str = "replica, seq, segment, seg_offset, len, leaf";

/// The place a row gives, or [`EntryError::Misplaced`] for negative columns.
fn place_of(
    replica: &str,
    seq: i64,
    segment: i64,
    offset: i64,
    len: i64,
) -> Result<Place, EntryError> {
    Place::from_columns(segment, offset, len).ok_or_else(|| EntryError::Misplaced {
        replica: replica.to_owned(),
        seq,
        place: format!("segment {segment}, byte {offset}, {len} bytes"),
        problem: "has a negative column".into(),
    })
}

/// Reads the entry a row locates, checked against its hash.
fn read_located(files: &mut EntryFiles, row: &Located) -> Result<String, StoreError> {
    let (replica, seq, segment, offset, len, leaf) = row;
    let place = place_of(replica, *seq, *segment, *offset, *len)?;
    files.entry(replica, *seq, place, leaf)
}

pub(crate) async fn record_json(
    pool: &SqlitePool,
    data_dir: &Path,
    id: &str,
    kind: &str,
) -> Result<Option<String>, StoreError> {
    let row: Option<Located> = sqlx::query_as(&format!(
        "SELECT {LOCATED} FROM audit_entries WHERE id = ? AND kind = ? ORDER BY rowid LIMIT 1"
    ))
    .bind(id)
    .bind(kind)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let entry = read_located(&mut EntryFiles::new(data_dir), &row)?;
    Ok(Some(entry).and_then(|e| {
        let v: serde_json::Value = serde_json::from_str(&e).ok()?;
        Some(v.get("record")?.to_string())
    }))
}

impl AuditReader {
    /// Opens the data directory's log; it must exist. If no gateway is writing to it,
    /// the index is first brought up to date with the segment files (failing that, the
    /// reader reads the index as it is and `verify` reports what is wrong).
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        if !data_dir.join(DB_FILE).is_file() {
            return Err(StoreError::DataDir {
                path: data_dir.display().to_string(),
                message: format!("no audit log here (no `{DB_FILE}`)"),
            });
        }
        let pool = crate::open_pool(data_dir, false).await?;
        let dir = data_dir.to_owned();
        let caught_up = tokio::task::spawn_blocking(move || catch_up_stopped(&dir)).await;
        if let Ok(Err(e)) = caught_up {
            tracing::warn!(error = %e, "the audit index could not be brought up to date with the segment files");
        }
        Ok(Self {
            pool,
            data_dir: data_dir.to_owned(),
            live: None,
        })
    }

    pub(crate) fn from_pool(pool: SqlitePool, live: Live) -> Self {
        Self {
            pool,
            data_dir: live.data_dir.clone(),
            live: Some(live),
        }
    }

    async fn caught_up(&self) {
        if let Some(live) = &self.live {
            live.caught_up().await;
        }
    }

    /// Every replica with entries, checkpoints or segment files.
    pub async fn replicas(&self) -> Result<Vec<String>, StoreError> {
        let mut all: Vec<String> = sqlx::query_scalar(
            "SELECT replica FROM audit_state UNION SELECT DISTINCT replica FROM audit_entries \
             UNION SELECT DISTINCT replica FROM audit_checkpoints ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        all.extend(segment::replicas(&self.data_dir)?);
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// How many entries a replica has stored.
    pub async fn entry_count(&self, replica: &str) -> Result<u64, StoreError> {
        self.caught_up().await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries WHERE replica = ?")
            .bind(replica)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A replica's signed checkpoints, by tree size.
    pub async fn checkpoints(&self, replica: &str) -> Result<Vec<SignedCheckpoint>, VerifyError> {
        self.caught_up().await;
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT tree_size, checkpoint FROM audit_checkpoints WHERE replica = ? ORDER BY tree_size",
        )
        .bind(replica)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(tree_size, json)| {
                serde_json::from_str(&json).map_err(|e| VerifyError::Checkpoint {
                    tree_size,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Verifies a replica's whole log against its checkpoints with `keys`, calling
    /// `progress` every few thousand entries with a count that rises to the number of
    /// entries (half for the index, half for the segment files).
    ///
    /// The index is replayed first (its rows: positions, ids, hashes, and the entries
    /// read where the rows place them), then the segment files, each against its own
    /// signed checkpoints; a fault in the segment files is reported before one the index
    /// replay met (which may be its consequence). Then the two must agree: at every
    /// position the same entry at the same place, the index holding nothing the segments
    /// lack and every row it says it holds. The index may be behind the segments (it is
    /// written behind them); that is not an error.
    pub async fn verify(
        &self,
        replica: &str,
        keys: &[PublicKey],
        progress: &mut dyn FnMut(u64),
    ) -> Result<Summary, VerifyError> {
        self.caught_up().await;
        let verifier = Verifier::new(replica, keys, self.checkpoints(replica).await?)?;
        // The index's entries are read from the segment files where it places them, so a
        // change to the segment files shows here too: the segments are checked whatever
        // this finds, and what is wrong with them is what is reported.
        let index = self.verify_index(replica, verifier, progress).await;
        let index_entries = index.as_ref().map_or(0, |s| s.entries);
        let dir = segment::replica_dir(&self.data_dir, replica).map_err(StoreError::from)?;
        let claimed: Option<i64> =
            sqlx::query_scalar("SELECT size FROM audit_state WHERE replica = ?")
                .bind(replica)
                .fetch_optional(&self.pool)
                .await?;
        let claimed = claimed.and_then(|c| u64::try_from(c).ok()).unwrap_or(0);

        // The segments' checkpoints first (the verifier checks them before any entry).
        let mut checkpoints = Vec::new();
        walk_segments(&dir, &mut |path, at, line| {
            if let Some(Line::Checkpoint(bytes)) = segment::classify(line) {
                let cp: SignedCheckpoint = serde_json::from_slice(bytes).map_err(|e| {
                    VerifyError::SegmentDamaged(SegmentError::Damaged {
                        path: path.display().to_string(),
                        offset: at,
                        message: format!("not a checkpoint: {e}"),
                    })
                })?;
                checkpoints.push(cp);
            }
            Ok(())
        })?;
        let mut verifier =
            Verifier::new(replica, keys, checkpoints).map_err(VerifyError::Segment)?;
        // The index's rows, in order, to hold beside the segments' entries. Read in
        // slices so the file walk (synchronous) never holds a database stream.
        type Row = (i64, String, i64, i64, i64, Vec<u8>);
        let mut rows: std::collections::VecDeque<Row> = std::collections::VecDeque::new();
        let mut next_seq = 0i64;
        let mut index_done = false;
        let mut segment_lines: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut result = Ok(());
        let segments = segment::list(&dir).map_err(StoreError::from)?;
        let mut first_missing_from_index: Option<(u64, String)> = None;
        let mut diverged: Option<(u64, String)> = None;
        for (i, first) in segments.iter().enumerate() {
            let path = segment::segment_path(&dir, *first);
            let mut reader = LineReader::open(&path, 0, u64::MAX).map_err(StoreError::from)?;
            loop {
                // Lines in slices of up to 4096, then the index rows that match them.
                segment_lines.clear();
                while segment_lines.len() < 4096 {
                    let Some((at, line)) = reader.next_line().map_err(seg_damaged)? else {
                        break;
                    };
                    segment_lines.push((at, line.to_vec()));
                }
                if segment_lines.is_empty() {
                    break;
                }
                for (at, line) in &segment_lines {
                    let bytes = match segment::classify(line) {
                        Some(Line::Entry(bytes)) => bytes,
                        Some(_) => continue,
                        None => {
                            return Err(VerifyError::SegmentDamaged(SegmentError::Damaged {
                                path: path.display().to_string(),
                                offset: *at,
                                message: "not an audit line".into(),
                            }));
                        }
                    };
                    let seq = verifier.entries();
                    let id = entry_id(bytes);
                    verifier
                        .entry(seq, &id, bytes, None)
                        .map_err(VerifyError::Segment)?;
                    if rows.is_empty() && !index_done {
                        let more: Vec<Row> = sqlx::query_as(
                            "SELECT seq, id, segment, seg_offset, len, leaf FROM audit_entries \
                             WHERE replica = ? AND seq >= ? ORDER BY seq LIMIT 4096",
                        )
                        .bind(replica)
                        .bind(next_seq)
                        .fetch_all(&self.pool)
                        .await?;
                        index_done = more.is_empty();
                        rows.extend(more);
                    }
                    match rows.pop_front() {
                        Some((s, _, segment, offset, len, leaf)) => {
                            next_seq = s + 1;
                            let here = Place {
                                segment: *first,
                                offset: *at,
                                len: bytes.len() as u64,
                            };
                            // Reported after the segments' own check, which (if it
                            // fails) says which copy was changed.
                            if (u64::try_from(s).ok() != Some(seq)
                                || Place::from_columns(segment, offset, len) != Some(here)
                                || Hash::from_slice(&leaf) != Some(leaf_hash(bytes)))
                                && diverged.is_none()
                            {
                                diverged = Some((seq, id));
                            }
                        }
                        None => {
                            if first_missing_from_index.is_none() {
                                first_missing_from_index = Some((seq, id));
                            }
                        }
                    }
                    if (seq + 1) % 4096 == 0 {
                        progress((index_entries + seq).div_ceil(2));
                    }
                }
            }
            if reader.rest() > 0 && i + 1 < segments.len() {
                result = Err(VerifyError::SegmentDamaged(SegmentError::Damaged {
                    path: path.display().to_string(),
                    offset: reader.offset(),
                    message: "an unfinished line before the next segment".into(),
                }));
                break;
            }
        }
        result?;
        let summary = verifier.finish().map_err(VerifyError::Segment)?;
        let index = index?;
        progress((index.entries + summary.entries) / 2);
        if let Some((seq, id)) = diverged {
            return Err(VerifyError::Diverged { seq, id });
        }
        if index.entries > summary.entries {
            let seq = summary.entries;
            let id: Option<String> =
                sqlx::query_scalar("SELECT id FROM audit_entries WHERE replica = ? AND seq = ?")
                    .bind(replica)
                    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                    .fetch_optional(&self.pool)
                    .await?;
            return Err(VerifyError::IndexAhead {
                seq,
                id: id.unwrap_or_default(),
            });
        }
        if index.entries < claimed
            && let Some((seq, id)) = first_missing_from_index
        {
            return Err(VerifyError::IndexBehind { seq, id, claimed });
        }
        Ok(summary)
    }

    /// Replays the index's entries (read from the segment files where it places them,
    /// with the index's hash as the hint that names a changed one) against its own
    /// checkpoints. An entry placed beyond the end of the segment files is one the index
    /// holds and the segments lack.
    async fn verify_index(
        &self,
        replica: &str,
        mut verifier: Verifier,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Summary, VerifyError> {
        let mut files = EntryFiles::new(&self.data_dir);
        let mut rows = sqlx::query_as::<_, (i64, String, i64, i64, i64, Vec<u8>)>(
            "SELECT seq, id, segment, seg_offset, len, leaf FROM audit_entries WHERE replica = ? ORDER BY seq",
        )
        .bind(replica)
        .fetch(&self.pool);
        while let Some((seq, id, segment, offset, len, leaf)) = rows.try_next().await? {
            let place =
                place_of(replica, seq, segment, offset, len).map_err(VerifyError::IndexEntry)?;
            let bytes = match files.raw(replica, seq, place) {
                Ok((bytes, _)) => bytes,
                Err(StoreError::Entry(EntryError::Beyond { .. })) => {
                    return Err(VerifyError::IndexAhead {
                        seq: u64::try_from(seq).unwrap_or(u64::MAX),
                        id,
                    });
                }
                Err(StoreError::Entry(e)) => return Err(VerifyError::IndexEntry(e)),
                Err(e) => return Err(e.into()),
            };
            verifier.entry(
                u64::try_from(seq).unwrap_or(u64::MAX),
                &id,
                bytes,
                Hash::from_slice(&leaf),
            )?;
            if verifier.entries().is_multiple_of(4096) {
                progress(verifier.entries() / 2);
            }
        }
        drop(rows);
        let index = verifier.finish()?;
        progress(index.entries / 2);
        Ok(index)
    }

    /// An inclusion proof for decision `id` against the first checkpoint that covers it.
    pub async fn prove(&self, id: &str) -> Result<InclusionProof, ProveError> {
        self.caught_up().await;
        let found: Option<Located> = sqlx::query_as(&format!(
            "SELECT {LOCATED} FROM audit_entries WHERE id = ? AND kind = 'decision' ORDER BY rowid LIMIT 1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let found = found.ok_or_else(|| ProveError::NotFound(id.to_owned()))?;
        let entry = read_located(&mut EntryFiles::new(&self.data_dir), &found)?;
        let (replica, seq, ..) = found;
        let cp: Option<String> = sqlx::query_scalar(
            "SELECT checkpoint FROM audit_checkpoints WHERE replica = ? AND tree_size > ? ORDER BY tree_size LIMIT 1",
        )
        .bind(&replica)
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?;
        let cp: SignedCheckpoint =
            serde_json::from_str(&cp.ok_or_else(|| ProveError::NotAnchored(id.to_owned()))?)
                .map_err(|e| ProveError::Damaged(e.to_string()))?;
        let size = i64::try_from(cp.checkpoint.tree_size)
            .map_err(|_| ProveError::Damaged("tree size".into()))?;
        let mut leaves = Vec::new();
        let mut rows = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT leaf FROM audit_entries WHERE replica = ? AND seq < ? ORDER BY seq",
        )
        .bind(&replica)
        .bind(size)
        .fetch(&self.pool);
        while let Some(leaf) = rows.try_next().await? {
            leaves.push(
                Hash::from_slice(&leaf).ok_or_else(|| ProveError::Damaged("a leaf hash".into()))?,
            );
        }
        let seq = u64::try_from(seq).map_err(|_| ProveError::Damaged("seq".into()))?;
        InclusionProof::build(&leaves, seq, entry, cp)
            .map_err(|e| ProveError::Damaged(e.to_string()))
    }

    /// Entries of the kind `search` names (decisions by default) matching it, oldest first.
    pub async fn search(&self, s: &Search) -> Result<Vec<StoredEntry>, StoreError> {
        self.caught_up().await;
        let limit = s.limit.clamp(1, MAX_SEARCH);
        let rows: Vec<CursorRow> = sqlx::query_as(&format!(
            "SELECT rowid, {LOCATED} FROM audit_entries WHERE kind = ?8 \
             AND (?1 IS NULL OR identity = ?1) AND (?2 IS NULL OR human = ?2) \
             AND (?3 IS NULL OR purpose = ?3) AND (?4 IS NULL OR verdict = ?4) \
             AND (?5 IS NULL OR time >= ?5) AND (?6 IS NULL OR time < ?6) \
             ORDER BY rowid LIMIT ?7"
        ))
        .bind(&s.identity)
        .bind(&s.human)
        .bind(&s.purpose)
        .bind(&s.verdict)
        .bind(&s.since)
        .bind(&s.until)
        .bind(limit)
        .bind(s.kind.as_deref().unwrap_or("decision"))
        .fetch_all(&self.pool)
        .await?;
        let mut files = EntryFiles::new(&self.data_dir);
        rows.into_iter().map(|r| stored(&mut files, r)).collect()
    }

    /// Entries written after `cursor` (0: from the start), at most `limit`, in the order
    /// they were written.
    pub async fn after(&self, cursor: i64, limit: u32) -> Result<Vec<StoredEntry>, StoreError> {
        self.caught_up().await;
        let rows: Vec<CursorRow> = sqlx::query_as(&format!(
            "SELECT rowid, {LOCATED} FROM audit_entries WHERE rowid > ? ORDER BY rowid LIMIT ?"
        ))
        .bind(cursor)
        .bind(limit.clamp(1, MAX_SEARCH))
        .fetch_all(&self.pool)
        .await?;
        let mut files = EntryFiles::new(&self.data_dir);
        rows.into_iter().map(|r| stored(&mut files, r)).collect()
    }

    /// The cursor of the last entry written (0 when empty).
    pub async fn last_cursor(&self) -> Result<i64, StoreError> {
        self.caught_up().await;
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM audit_entries")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Calls `visit` with every entry, replica by replica in chain order.
    pub async fn export(
        &self,
        visit: &mut dyn FnMut(StoredEntry) -> std::io::Result<()>,
    ) -> Result<(), ExportError> {
        self.caught_up().await;
        let query = format!("SELECT rowid, {LOCATED} FROM audit_entries ORDER BY replica, seq");
        let mut rows = sqlx::query_as::<_, CursorRow>(&query).fetch(&self.pool);
        let mut files = EntryFiles::new(&self.data_dir);
        while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
            visit(stored(&mut files, row)?)?;
        }
        Ok(())
    }

    /// The review copy kept for decision `id`, if any: (bytes, total, truncated).
    pub async fn review_body(&self, id: &str) -> Result<Option<(Vec<u8>, i64, bool)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT body, total, truncated FROM audit_bodies WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// A row's cursor (rowid) and [`Located`] columns.
type CursorRow = (i64, String, i64, i64, i64, i64, Vec<u8>);

/// The entry a row locates, read from its segment and checked.
fn stored(
    files: &mut EntryFiles,
    (cursor, replica, seq, segment, offset, len, leaf): CursorRow,
) -> Result<StoredEntry, StoreError> {
    let row = (replica, seq, segment, offset, len, leaf);
    let entry = read_located(files, &row)?;
    let (replica, seq, ..) = row;
    Ok(StoredEntry {
        cursor,
        replica,
        seq,
        entry,
    })
}

/// Brings the index of a stopped data directory up to date with its segment files. Does
/// nothing while a gateway holds the data directory (its index thread does this).
fn catch_up_stopped(data_dir: &Path) -> Result<(), StoreError> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))
        .map_err(|e| StoreError::DataDir {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
    if lock.try_lock().is_err() {
        return Ok(());
    }
    for replica in segment::replicas(data_dir)? {
        crate::writer::catch_up(data_dir, &replica)?;
    }
    Ok(())
}
