//! The SQLite index over the segment files: `audit_entries`, `audit_checkpoints`,
//! `audit_bodies` and the position reached (`audit_state`), which `AuditReader` searches.
//!
//! The index is derived data. It is written behind the durable append, without fsync
//! (`synchronous = NORMAL` in WAL mode: consistent after a crash, possibly missing its
//! last transactions), only ever from bytes that are already durable in the segments, so
//! it never holds an entry the segments lack. Each transaction records the position it
//! reached in the same commit, so after a crash [`Indexer::catch_up`] resumes exactly
//! where the index stopped. While indexing it replays the chain (`seq`, `prev`), so the
//! writer resumes from the state the segments prove, not from what the index says.
//!
//! Lines the writer wrote in this process come with a `Feed`: for each entry, where the
//! writer put it, its length, position in the chain and leaf hash, and for each batch the
//! chain (last hash, Merkle frontier) after it, all computed by the writer as it appended.
//! The index still reads every line from the segment and checks that the entry at that
//! place has that length, `seq`, `replica` and `prev`, but takes the writer's leaf rather
//! than hashing the line again, and the writer's frontier at a batch's end rather than
//! pushing each leaf. Lines without a feed (at open, after a restart, in `remit audit`, or
//! when the feed was full) are hashed here as before.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use remit_audit::merkle::leaf_hash;
use remit_audit::{Frontier, Hash, SignedCheckpoint};
use serde::Deserialize;

use crate::segment::{self, Line, LineReader, ReviewLine, SegmentError};

/// Lines per index transaction at most.
pub const INDEX_TX_LINES: usize = 16_384;

/// Why the index could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A segment could not be read, or holds something the writer never writes.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The database failed.
    #[error("audit index: {0}")]
    Db(#[from] rusqlite::Error),
    /// The stored position or chain state is not usable.
    #[error(
        "audit index state of replica `{replica}` is damaged ({message}); run `remit audit verify`"
    )]
    State {
        /// The replica.
        replica: String,
        /// What is wrong.
        message: String,
    },
}

/// A position in a replica's segments: the segment (by its first entry) and a byte
/// offset in it, always just after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub segment: u64,
    pub offset: u64,
}

/// Entries held in a [`Feed`] at most (about 56 bytes each); the writer's batches beyond
/// this are not fed, and the index hashes their lines itself.
pub(crate) const FEED_ENTRIES: usize = 1 << 16;
/// Batches held in a [`Feed`] at most (each holds a frontier of up to 64 hashes).
pub(crate) const FEED_BATCHES: usize = 1 << 12;

/// One entry as the writer wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FedEntry {
    /// Its position in the chain.
    pub seq: u64,
    /// Its first byte in the segment file.
    pub offset: u64,
    /// Its length, without the `\n`.
    pub len: u64,
    /// `leaf_hash` of its bytes, as the writer computed it when it appended the entry.
    pub leaf: Hash,
}

/// One batch the writer wrote (into one segment) and the syncer made durable.
#[derive(Debug)]
pub(crate) struct FedBatch {
    /// The segment it is in.
    pub segment: u64,
    /// The offset just after its last line.
    pub end: u64,
    /// Its entries, in order (not its review copies and checkpoints).
    pub entries: Vec<FedEntry>,
    /// The writer's chain after its last entry: the last leaf and the frontier.
    pub after: Option<(Hash, Frontier)>,
}

/// What the writer computed for durable lines not yet indexed, oldest first: a bounded
/// queue ([`FEED_ENTRIES`], [`FEED_BATCHES`]). Matched to lines by their place in the
/// segments, so a batch missing from it (not fed because it was full) only means that
/// batch's lines are hashed by the index.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    batches: VecDeque<FedBatch>,
    /// The next entry of the first batch.
    next: usize,
    /// Whether an entry of the first batch was passed without its line being read as an
    /// entry (the file differs from the feed there).
    skipped: bool,
    entries: usize,
}

impl Feed {
    /// Adds a batch written after every batch already in the feed, unless the feed is full
    /// (then its lines are hashed by the index). Whether it was added.
    pub fn push(&mut self, batch: FedBatch) -> bool {
        if self.batches.len() >= FEED_BATCHES || self.entries + batch.entries.len() > FEED_ENTRIES {
            return false;
        }
        self.entries += batch.entries.len();
        self.batches.push_back(batch);
        true
    }

    /// Moves every batch of `later` (written after this feed's) to the end of this one,
    /// within its bounds.
    pub fn append(&mut self, later: &mut Feed) {
        if self.batches.is_empty() {
            std::mem::swap(self, later);
            return;
        }
        // A partly read first batch is not moved on its own.
        debug_assert_eq!(later.next, 0);
        for b in later.batches.drain(..) {
            self.push(b);
        }
        later.entries = 0;
        later.next = 0;
        later.skipped = false;
    }

    fn pop(&mut self) {
        if let Some(b) = self.batches.pop_front() {
            self.entries -= b.entries.len();
        }
        self.next = 0;
        self.skipped = false;
    }

    /// The writer's entry at `offset` of `segment`, if it fed one there. Forgets every
    /// batch that ends at or before `offset` (the index has passed it).
    fn entry_at(&mut self, segment: u64, offset: u64) -> Option<FedEntry> {
        while self
            .batches
            .front()
            .is_some_and(|b| (b.segment, b.end) <= (segment, offset))
        {
            self.pop();
        }
        let b = self.batches.front()?;
        if b.segment != segment {
            return None;
        }
        while let Some(e) = b.entries.get(self.next) {
            match e.offset.cmp(&offset) {
                std::cmp::Ordering::Less => {
                    self.next += 1;
                    self.skipped = true;
                }
                std::cmp::Ordering::Equal => {
                    self.next += 1;
                    return Some(*e);
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// The writer's chain after the batch that ends at `end` of `segment`, if the index
    /// has just read that batch's last line and taken every entry of it from the feed.
    fn after(&mut self, segment: u64, end: u64) -> Option<(Hash, Frontier)> {
        let b = self.batches.front_mut()?;
        if (b.segment, b.end) != (segment, end) {
            return None;
        }
        let whole = self.next == b.entries.len() && !self.skipped;
        let after = b.after.take();
        self.pop();
        after.filter(|_| whole)
    }
}

/// The chain fields of an entry.
#[derive(Deserialize)]
struct EntryHead<'a> {
    /// Hex, compared as text with the hash it must name (cheaper than decoding it).
    #[serde(borrow)]
    prev: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    replica: Cow<'a, str>,
}

impl<'a> From<EntryHead<'a>> for EntryCols<'a> {
    fn from(h: EntryHead<'a>) -> Self {
        Self {
            prev: h.prev,
            seq: h.seq,
            replica: h.replica,
            record: RecordCols {
                kind: Cow::Borrowed("unknown"),
                decision_id: None,
                time: None,
                identity: None,
                authority: None,
                purpose: None,
                decision: None,
            },
        }
    }
}

/// The parts of an entry the index reads.
#[derive(Deserialize)]
struct EntryCols<'a> {
    #[serde(borrow)]
    prev: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    replica: Cow<'a, str>,
    #[serde(borrow)]
    record: RecordCols<'a>,
}

#[derive(Deserialize)]
struct RecordCols<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    decision_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    identity: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    authority: Option<AuthorityCols<'a>>,
    #[serde(borrow, default)]
    purpose: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    decision: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AuthorityCols<'a> {
    #[serde(borrow, default)]
    on_behalf_of: Option<Cow<'a, str>>,
}

/// Keeps one replica's index up to date with its segments.
pub(crate) struct Indexer {
    conn: rusqlite::Connection,
    dir: PathBuf,
    replica: String,
    pos: Pos,
    prev: Hash,
    frontier: Frontier,
    anchored: u64,
    /// Entries indexed with a leaf hash from a [`Feed`].
    fed_entries: u64,
}

impl Indexer {
    /// Loads the index's position and chain state for `replica` from `conn`.
    pub fn open(
        conn: rusqlite::Connection,
        data_dir: &Path,
        replica: &str,
    ) -> Result<Self, IndexError> {
        let dir = segment::replica_dir(data_dir, replica)?;
        let state_err = |message: String| IndexError::State {
            replica: replica.to_owned(),
            message,
        };
        type Row = (i64, Vec<u8>, Vec<u8>, Option<i64>, Option<i64>);
        let state: Option<Row> = match conn.query_row(
            "SELECT size, prev, frontier, segment, seg_offset FROM audit_state WHERE replica = ?1",
            [replica],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        ) {
            Ok(row) => Some(row),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) => return Err(e.into()),
        };
        let (pos, prev, frontier) = match state {
            None => (Pos::default(), Hash::ZERO, Frontier::new()),
            Some((size, prev, frontier, segment, offset)) => {
                let size = u64::try_from(size).map_err(|_| state_err("negative size".into()))?;
                let (segment, offset) = match (segment, offset) {
                    (Some(segment), Some(offset)) => (segment, offset),
                    // Written before segment files: the database was the log.
                    _ => (0, export_legacy(&conn, &dir, replica)?),
                };
                let pos = Pos {
                    segment: u64::try_from(segment)
                        .map_err(|_| state_err("negative segment".into()))?,
                    offset: u64::try_from(offset)
                        .map_err(|_| state_err("negative offset".into()))?,
                };
                let prev = Hash::from_slice(&prev).ok_or_else(|| state_err("bad prev".into()))?;
                let nodes = frontier
                    .chunks(32)
                    .map(|c| Hash::from_slice(c).ok_or_else(|| state_err("bad frontier".into())))
                    .collect::<Result<Vec<_>, _>>()?;
                let frontier =
                    Frontier::from_parts(size, nodes).map_err(|e| state_err(e.to_string()))?;
                (pos, prev, frontier)
            }
        };
        let anchored: i64 = conn.query_row(
            "SELECT COALESCE(MAX(tree_size), 0) FROM audit_checkpoints WHERE replica = ?1",
            [replica],
            |r| r.get(0),
        )?;
        Ok(Self {
            conn,
            dir,
            replica: replica.to_owned(),
            pos,
            prev,
            frontier,
            anchored: u64::try_from(anchored).unwrap_or(0),
            fed_entries: 0,
        })
    }

    /// The replica's segment directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The position indexed so far.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The chain as indexed: the last entry's hash and the frontier.
    pub fn chain_state(&self) -> (Hash, Frontier) {
        (self.prev, self.frontier.clone())
    }

    /// The largest tree size under a signed checkpoint.
    pub fn anchored(&self) -> u64 {
        self.anchored
    }

    /// How many entries were indexed with a leaf hash from a [`Feed`] (committed or not).
    pub fn fed_entries(&self) -> u64 {
        self.fed_entries
    }

    /// Indexes every whole line from the current position up to `until` (`None`: to the
    /// end of the last segment), in transactions of at most [`INDEX_TX_LINES`] lines,
    /// calling `progress` with the lines of each committed transaction. Bytes after the
    /// last whole line of the last segment are left alone (a torn write; see
    /// [`Indexer::torn_tail`]).
    pub fn catch_up(
        &mut self,
        until: Option<Pos>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), IndexError> {
        self.catch_up_fed(until, &mut Feed::default(), progress)
    }

    /// Like [`Indexer::catch_up`], taking leaf hashes and frontiers from `feed` for the
    /// lines the writer fed (checked against the lines read, see [`Feed`]).
    pub fn catch_up_fed(
        &mut self,
        until: Option<Pos>,
        feed: &mut Feed,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), IndexError> {
        loop {
            let path = segment::segment_path(&self.dir, self.pos.segment);
            let end = match until {
                Some(u) if u.segment == self.pos.segment => u.offset,
                _ => u64::MAX,
            };
            if until.is_none() && !path.exists() {
                if self.pos == Pos::default() && self.frontier.size() == 0 {
                    return Ok(()); // nothing written yet
                }
                return Err(SegmentError::Damaged {
                    path: path.display().to_string(),
                    offset: self.pos.offset,
                    message: "the index has read this segment but it is gone".into(),
                }
                .into());
            }
            if until.is_some_and(|u| u == self.pos) {
                return Ok(());
            }
            let mut reader = LineReader::open(&path, self.pos.offset, end)?;
            let (lines, full) = self.index_lines(&path, &mut reader, feed)?;
            if lines > 0 {
                progress(lines);
            }
            if full {
                continue;
            }
            if end != u64::MAX {
                return Ok(());
            }
            // The end of this segment: is there a next one (named by the next entry)?
            let next = self.frontier.size();
            if next != self.pos.segment && segment::segment_path(&self.dir, next).exists() {
                if reader.rest() > 0 {
                    return Err(SegmentError::Damaged {
                        path: path.display().to_string(),
                        offset: self.pos.offset,
                        message: "an unfinished line before the next segment".into(),
                    }
                    .into());
                }
                self.pos = Pos {
                    segment: next,
                    offset: 0,
                };
                continue;
            }
            if until.is_some() {
                return Err(SegmentError::Damaged {
                    path: path.display().to_string(),
                    offset: self.pos.offset,
                    message: "the writer moved to a segment that does not exist".into(),
                }
                .into());
            }
            return Ok(());
        }
    }

    /// The torn bytes after the last whole line of the segment the index has reached, if
    /// that is the last segment: (file, length to keep).
    pub fn torn_tail(&self) -> Result<Option<(PathBuf, u64)>, IndexError> {
        let path = segment::segment_path(&self.dir, self.pos.segment);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(segment::io_err(&path)(e).into()),
        };
        if len < self.pos.offset {
            return Err(SegmentError::Damaged {
                path: path.display().to_string(),
                offset: len,
                message: format!(
                    "the index has read up to byte {} but the segment ends here: it was truncated; run `remit audit verify`",
                    self.pos.offset
                ),
            }
            .into());
        }
        Ok((len > self.pos.offset).then_some((path, self.pos.offset)))
    }

    /// One transaction: lines from `reader` until its end or [`INDEX_TX_LINES`]. Returns
    /// the lines indexed and whether it stopped because of the limit.
    fn index_lines(
        &mut self,
        path: &Path,
        reader: &mut LineReader,
        feed: &mut Feed,
    ) -> Result<(u64, bool), IndexError> {
        let tx = self.conn.transaction()?;
        let mut lines = 0usize;
        let mut prev = self.prev;
        // The frontier is `frontier` with `leaves` pushed: leaves are pushed only at the
        // end of the transaction, and not at all when the writer's frontier after a batch
        // replaces them (`fed_since` says every leaf in `leaves` came from the feed).
        let mut frontier = self.frontier.clone();
        let mut leaves: Vec<Hash> = Vec::new();
        let mut fed_since = true;
        let mut anchored = self.anchored;
        let replica = self.replica.as_str();
        let segment_no = i64::try_from(self.pos.segment).unwrap_or(i64::MAX);
        let damaged = |offset: u64, message: String| SegmentError::Damaged {
            path: path.display().to_string(),
            offset,
            message,
        };
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit_entries (replica, seq, kind, id, time, identity, human, purpose, verdict, segment, seg_offset, len, leaf) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            let mut body = tx.prepare_cached(
                "INSERT OR REPLACE INTO audit_bodies (id, body, total, truncated) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut checkpoint = tx.prepare_cached(
                "INSERT OR REPLACE INTO audit_checkpoints (replica, tree_size, checkpoint) VALUES (?1, ?2, ?3)",
            )?;
            while lines < INDEX_TX_LINES {
                let Some((at, line)) = reader.next_line()? else {
                    break;
                };
                match segment::classify(line) {
                    Some(Line::Entry(bytes)) => {
                        // Readers hand entries out as text. Checked once for the whole
                        // line, so the parser (`from_str`) need not check each string again.
                        let text =
                            std::str::from_utf8(bytes).map_err(|e| damaged(at, e.to_string()))?;
                        // A record whose columns have another shape (a kind added later)
                        // is still indexed, by its chain fields alone.
                        let e: EntryCols<'_> = match serde_json::from_str(text) {
                            Ok(e) => e,
                            Err(_) => serde_json::from_str::<EntryHead<'_>>(text)
                                .map_err(|e| damaged(at, format!("not an entry: {e}")))?
                                .into(),
                        };
                        let expected = frontier.size() + leaves.len() as u64;
                        let id = e.record.decision_id.as_deref().unwrap_or("");
                        let mut prev_hex = [0u8; 64];
                        // 32 bytes always fit 64 hex digits.
                        let _ = hex::encode_to_slice(prev.0, &mut prev_hex);
                        if e.replica != replica
                            || e.seq != expected
                            || e.prev.as_bytes() != prev_hex.as_slice()
                        {
                            return Err(damaged(
                                at,
                                format!(
                                    "record {} (`{id}`) does not follow record {}; run `remit audit verify`",
                                    e.seq,
                                    expected.wrapping_sub(1)
                                ),
                            )
                            .into());
                        }
                        let leaf = match feed.entry_at(self.pos.segment, at) {
                            // The writer's leaf is the hash of the bytes it wrote here;
                            // these are those bytes if they have its length and `seq` (and,
                            // checked above, the `prev` and `replica` it wrote).
                            Some(f) if f.seq == e.seq && f.len == bytes.len() as u64 => {
                                debug_assert_eq!(f.leaf, leaf_hash(bytes), "fed leaf of {}", e.seq);
                                self.fed_entries += 1;
                                f.leaf
                            }
                            Some(f) => {
                                return Err(damaged(
                                    at,
                                    format!(
                                        "record {} ({} bytes) is not record {} ({} bytes) that this process wrote here; run `remit audit verify`",
                                        e.seq,
                                        bytes.len(),
                                        f.seq,
                                        f.len
                                    ),
                                )
                                .into());
                            }
                            None => {
                                fed_since = false;
                                leaf_hash(bytes)
                            }
                        };
                        let r = &e.record;
                        // Decisions and token records carry a verdict in `decision`.
                        let decision = r.kind == "decision" || r.kind == "token";
                        insert.execute(rusqlite::params![
                            replica,
                            i64::try_from(e.seq).unwrap_or(i64::MAX),
                            r.kind.as_ref(),
                            id,
                            r.time.as_deref().unwrap_or(""),
                            r.identity.as_deref(),
                            r.authority.as_ref().and_then(|a| a.on_behalf_of.as_deref()),
                            r.purpose.as_deref(),
                            r.decision.as_deref().filter(|_| decision),
                            segment_no,
                            i64::try_from(at).unwrap_or(i64::MAX),
                            i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                            &leaf.0[..],
                        ])?;
                        leaves.push(leaf);
                        prev = leaf;
                    }
                    Some(Line::Checkpoint(bytes)) => {
                        let cp: SignedCheckpoint = serde_json::from_slice(bytes)
                            .map_err(|e| damaged(at, format!("not a checkpoint: {e}")))?;
                        let size = cp.checkpoint.tree_size;
                        let have = frontier.size() + leaves.len() as u64;
                        if size != have || cp.checkpoint.replica != replica {
                            return Err(damaged(
                                at,
                                format!(
                                    "a checkpoint at tree size {size} after record {}",
                                    have.wrapping_sub(1)
                                ),
                            )
                            .into());
                        }
                        let text =
                            std::str::from_utf8(bytes).map_err(|e| damaged(at, e.to_string()))?;
                        checkpoint.execute(rusqlite::params![
                            replica,
                            i64::try_from(size).unwrap_or(i64::MAX),
                            text
                        ])?;
                        anchored = anchored.max(size);
                    }
                    Some(Line::Review(bytes)) => {
                        let r: ReviewLine = serde_json::from_slice(bytes)
                            .map_err(|e| damaged(at, format!("not a review copy: {e}")))?;
                        let kept = hex::decode(&r.review.body)
                            .map_err(|e| damaged(at, format!("review copy: {e}")))?;
                        body.execute(rusqlite::params![
                            r.review.id,
                            kept,
                            i64::try_from(r.review.total).unwrap_or(i64::MAX),
                            r.review.truncated
                        ])?;
                    }
                    None => return Err(damaged(at, "not an audit line".into()).into()),
                }
                lines += 1;
                if let Some((last, after)) = feed.after(self.pos.segment, reader.offset()) {
                    // The writer's chain after a batch whose every entry the index took from
                    // the feed and checked: the frontier that pushing those leaves gives.
                    if fed_since
                        && last == prev
                        && after.size() == frontier.size() + leaves.len() as u64
                    {
                        #[cfg(debug_assertions)]
                        {
                            let mut pushed = frontier.clone();
                            leaves.iter().for_each(|l| pushed.push(*l));
                            debug_assert_eq!(pushed, after, "fed frontier");
                        }
                        frontier = after;
                        leaves.clear();
                    }
                }
            }
        }
        for leaf in leaves.drain(..) {
            frontier.push(leaf);
        }
        let pos = Pos {
            segment: self.pos.segment,
            offset: reader.offset(),
        };
        if lines > 0 {
            let nodes: Vec<u8> = frontier.nodes().iter().flat_map(|h| h.0).collect();
            tx.prepare_cached(
                "INSERT INTO audit_state (replica, size, prev, frontier, segment, seg_offset) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (replica) DO UPDATE SET \
                 size = excluded.size, prev = excluded.prev, frontier = excluded.frontier, \
                 segment = excluded.segment, seg_offset = excluded.seg_offset",
            )?
            .execute(rusqlite::params![
                replica,
                i64::try_from(frontier.size()).unwrap_or(i64::MAX),
                &prev.0[..],
                nodes,
                i64::try_from(pos.segment).unwrap_or(i64::MAX),
                i64::try_from(pos.offset).unwrap_or(i64::MAX),
            ])?;
            tx.commit()?;
        }
        self.pos = pos;
        self.prev = prev;
        self.frontier = frontier;
        self.anchored = anchored;
        Ok((lines as u64, lines >= INDEX_TX_LINES))
    }
}

/// Opens the index database for writing: WAL, and no fsync on commit (the segments are
/// the durable copy).
pub(crate) fn open_db(path: &Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        // A 64 MiB page cache keeps index pages resident; the WAL is checkpointed every
        // 8192 pages rather than 1000.
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
         PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 8192;",
    )?;
    Ok(conn)
}

/// Writes the entries, review copies and checkpoints of a log kept in the database alone
/// (before segment files; its entries' text is in `audit_entries_before_segments`) to the
/// replica's first segment, indexes the entries at their new place and records that the
/// index holds all of it. Returns the segment's length.
fn export_legacy(
    conn: &rusqlite::Connection,
    dir: &Path,
    replica: &str,
) -> Result<i64, IndexError> {
    use std::io::Write as _;
    if !segment::list(dir)?.is_empty() {
        return Err(IndexError::State {
            replica: replica.to_owned(),
            message: "the index has no segment position but segment files exist".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(segment::io_err(dir))?;
    let path = segment::segment_path(dir, 0);
    let tmp = dir.join("legacy-export.tmp");
    let io = segment::io_err(&tmp);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(&io)?);
    // Where the next line starts.
    let mut at = 0u64;
    let checkpoints: Vec<(i64, String)> = conn
        .prepare(
            "SELECT tree_size, checkpoint FROM audit_checkpoints WHERE replica = ?1 ORDER BY tree_size",
        )?
        .query_map([replica], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut next = checkpoints.iter().peekable();
    /// Writes one line, moving `at` past it.
    fn put(
        out: &mut std::io::BufWriter<std::fs::File>,
        at: &mut u64,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        *at += bytes.len() as u64 + 1;
        out.write_all(bytes).and_then(|()| out.write_all(b"\n"))
    }
    while let Some((_, cp)) = next.next_if(|(size, _)| *size == 0) {
        put(&mut out, &mut at, cp.as_bytes()).map_err(&io)?;
    }
    // Committed only once the segment is in place.
    let tx = conn.unchecked_transaction()?;
    let mut stmt = tx.prepare(
        "SELECT e.seq, e.kind, e.id, e.time, e.identity, e.human, e.purpose, e.verdict, e.entry, e.leaf, \
         b.body, b.total, b.truncated FROM audit_entries_before_segments e \
         LEFT JOIN audit_bodies b ON e.kind = 'outcome' AND b.id = e.id \
         WHERE e.replica = ?1 ORDER BY e.seq",
    )?;
    let mut insert = tx.prepare(
        "INSERT INTO audit_entries (replica, seq, kind, id, time, identity, human, purpose, verdict, segment, seg_offset, len, leaf) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11, ?12)",
    )?;
    let mut rows = stmt.query([replica])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let id: String = row.get(2)?;
        let entry: String = row.get(8)?;
        insert.execute(rusqlite::params![
            replica,
            seq,
            row.get::<_, String>(1)?,
            id,
            row.get::<_, String>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, Option<String>>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, Option<String>>(7)?,
            i64::try_from(at).unwrap_or(i64::MAX),
            i64::try_from(entry.len()).unwrap_or(i64::MAX),
            row.get::<_, Vec<u8>>(9)?,
        ])?;
        put(&mut out, &mut at, entry.as_bytes()).map_err(&io)?;
        let body: Option<Vec<u8>> = row.get(10)?;
        if let Some(body) = body {
            let copy = segment::ReviewLine {
                review: segment::ReviewCopy {
                    body: hex::encode(body),
                    id,
                    total: u64::try_from(row.get::<_, i64>(11)?).unwrap_or(0),
                    truncated: row.get(12)?,
                },
            };
            let text = serde_json::to_vec(&copy).map_err(|e| io(std::io::Error::other(e)))?;
            put(&mut out, &mut at, &text).map_err(&io)?;
        }
        while let Some((_, cp)) = next.next_if(|(size, _)| *size <= seq + 1) {
            put(&mut out, &mut at, cp.as_bytes()).map_err(&io)?;
        }
    }
    drop(rows);
    drop(stmt);
    drop(insert);
    // Checkpoints over entries the database lacks stay, for `verify` to report.
    for (_, cp) in next {
        put(&mut out, &mut at, cp.as_bytes()).map_err(&io)?;
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(&io)?;
    let len = file.metadata().map_err(&io)?.len();
    drop(file);
    std::fs::rename(&tmp, &path).map_err(segment::io_err(&path))?;
    segment::sync_dir(dir)?;
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE audit_state SET segment = 0, seg_offset = ?2 WHERE replica = ?1",
        rusqlite::params![replica, len],
    )?;
    tx.execute(
        "DELETE FROM audit_entries_before_segments WHERE replica = ?1",
        [replica],
    )?;
    tx.commit()?;
    tracing::info!(replica, segment = %path.display(), "wrote the database-only audit log to its first segment file");
    Ok(len)
}
