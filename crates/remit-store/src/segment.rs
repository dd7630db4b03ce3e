//! Segment files: the durable audit log itself, one append-only directory per replica.
//!
//! `<data dir>/audit/<replica>/<first seq, 20 digits>.seg` holds lines, each ending in `\n`:
//!
//! - an **entry**, exactly the canonical JSON that is hashed (`{"prev":…}`; canonical
//!   JSON has no raw newline, so an entry is one line);
//! - a **signed checkpoint** (`{"checkpoint":…,"signature":…}`) after the last entry it
//!   covers;
//! - a **review copy** (`{"review":{"body":"<hex>","id":…,"total":…,"truncated":…}}`)
//!   after the outcome entry that names its digest.
//!
//! The writer appends a whole batch with one `write` and one `fdatasync`, and only then
//! answers. A line without its `\n` at the end of the last segment is a write torn by a
//! crash; it was never acknowledged and recovery cuts it off. The SQLite tables are an
//! index over these files ([`crate::index`]).

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory of all segment files, inside the data directory.
pub const SEGMENT_DIR: &str = "audit";
/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_LIMIT: u64 = 256 << 20;
/// One line at most (an entry with its record, or a review copy in hex).
pub const MAX_LINE: usize = 4 << 20;
const EXTENSION: &str = "seg";

/// Why a segment could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Reading or writing a file failed.
    #[error("audit segment `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A file's content is not what the writer writes.
    #[error("audit segment `{path}` at byte {offset}: {message}")]
    Damaged {
        /// The file.
        path: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A replica name that cannot be a directory name.
    #[error("replica `{0}` cannot name a directory (use letters, digits, `.`, `_`, `-`)")]
    BadReplica(String),
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A replica's segment directory.
pub fn replica_dir(data_dir: &Path, replica: &str) -> Result<PathBuf, SegmentError> {
    let ok = !replica.is_empty()
        && replica.len() <= 128
        && !replica.starts_with('.')
        && replica
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(SegmentError::BadReplica(replica.to_owned()));
    }
    Ok(data_dir.join(SEGMENT_DIR).join(replica))
}

/// The file of the segment whose first entry is `first`.
pub fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.{EXTENSION}"))
}

/// The first sequence numbers of a replica's segments, in order (empty if none).
pub fn list(dir: &Path) -> Result<Vec<u64>, SegmentError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for item in read {
        let item = item.map_err(io_err(dir))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if let Ok(first) = stem.parse::<u64>()
            && stem.len() == 20
        {
            out.push(first);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Every replica with a segment directory.
pub fn replicas(data_dir: &Path) -> Result<Vec<String>, SegmentError> {
    let dir = data_dir.join(SEGMENT_DIR);
    let read = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut out = Vec::new();
    for item in read {
        let item = item.map_err(io_err(&dir))?;
        if let Some(name) = item.file_name().to_str()
            && replica_dir(data_dir, name).is_ok()
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a directory entry (a new segment, a new directory) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SegmentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// What one line is.
#[derive(Debug)]
pub enum Line<'a> {
    /// A chain entry (its bytes, exactly as hashed).
    Entry(&'a [u8]),
    /// A signed checkpoint (JSON).
    Checkpoint(&'a [u8]),
    /// A review copy (JSON).
    Review(&'a [u8]),
}

/// Classifies a line (without its `\n`).
pub fn classify(line: &[u8]) -> Option<Line<'_>> {
    if line.starts_with(b"{\"prev\":") {
        Some(Line::Entry(line))
    } else if line.starts_with(b"{\"checkpoint\":") {
        Some(Line::Checkpoint(line))
    } else if line.starts_with(b"{\"review\":") {
        Some(Line::Review(line))
    } else {
        None
    }
}

/// A review copy as stored in a segment.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewLine {
    pub review: ReviewCopy,
}

/// The copy of a response body kept for review.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewCopy {
    /// The bytes kept, hex.
    pub body: String,
    /// The decision it belongs to.
    pub id: String,
    /// The response's full length.
    pub total: u64,
    /// Whether `body` is shorter than the response.
    pub truncated: bool,
}

/// Reads whole lines from one segment file, from an offset up to a limit.
pub(crate) struct LineReader {
    path: PathBuf,
    file: File,
    /// File offset of `buf[start]`.
    offset: u64,
    /// Read no further than this.
    end: u64,
    buf: Vec<u8>,
    start: usize,
}

/// Bytes read from a segment at once.
const READ_CHUNK: usize = 1 << 20;

impl LineReader {
    /// Opens `path` at `offset`, reading at most up to `end` (`u64::MAX`: the end of the
    /// file).
    pub fn open(path: &Path, offset: u64, end: u64) -> Result<Self, SegmentError> {
        let mut file = File::open(path).map_err(io_err(path))?;
        file.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
        Ok(Self {
            path: path.to_owned(),
            file,
            offset,
            end,
            buf: Vec::new(),
            start: 0,
        })
    }

    /// The file offset just after the last line returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next whole line (without `\n`) and its offset; `None` at the end. Bytes after
    /// the last `\n` are left unread (see [`LineReader::rest`]).
    pub fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, SegmentError> {
        loop {
            if let Some(n) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let at = self.offset;
                let from = self.start;
                self.start += n + 1;
                self.offset += n as u64 + 1;
                return Ok(Some((at, &self.buf[from..from + n])));
            }
            let pending = self.buf.len() - self.start;
            if pending > MAX_LINE {
                return Err(SegmentError::Damaged {
                    path: self.path.display().to_string(),
                    offset: self.offset,
                    message: format!("a line longer than {MAX_LINE} bytes"),
                });
            }
            let read_to = self.offset + pending as u64;
            if read_to >= self.end {
                return Ok(None);
            }
            self.buf.drain(..self.start);
            self.start = 0;
            let want =
                usize::try_from((self.end - read_to).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
            let have = self.buf.len();
            self.buf.resize(have + want, 0);
            let got = self
                .file
                .read(&mut self.buf[have..])
                .map_err(io_err(&self.path))?;
            self.buf.truncate(have + got);
            if got == 0 {
                return Ok(None);
            }
        }
    }

    /// How many bytes follow the last whole line (a torn line when at the end).
    pub fn rest(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Where the index says an entry is: the segment (by its first entry), the line's first
/// byte and its length without the `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The segment's first entry.
    pub segment: u64,
    /// The line's first byte in the segment file.
    pub offset: u64,
    /// The line's length, without its `\n`.
    pub len: u64,
}

impl Place {
    /// A place as stored in the index's integer columns; `None` if a column is negative.
    pub fn from_columns(segment: i64, offset: i64, len: i64) -> Option<Self> {
        Some(Self {
            segment: u64::try_from(segment).ok()?,
            offset: u64::try_from(offset).ok()?,
            len: u64::try_from(len).ok()?,
        })
    }
}

/// Why an entry could not be read where the index places it.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The place is beyond the end of the segment files (past a segment's end, or in a
    /// segment that does not exist): the segments lack an entry the index holds.
    #[error(
        "the index places record {seq} of replica `{replica}` at {place}, beyond the end of the segment files: they were truncated or removed; run `remit audit verify`"
    )]
    Beyond {
        /// The replica.
        replica: String,
        /// The record's position.
        seq: i64,
        /// The place, described.
        place: String,
    },
    /// The place cannot be an entry's (a length over [`MAX_LINE`], a negative column).
    #[error(
        "the index places record {seq} of replica `{replica}` at {place}, which {problem}: the index and the segment files disagree; run `remit audit verify`"
    )]
    Misplaced {
        /// The replica.
        replica: String,
        /// The record's position.
        seq: i64,
        /// The place, described.
        place: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The bytes there are not the entry whose hash the index holds.
    #[error(
        "record {seq} of replica `{replica}` at {place} does not match the hash the index holds: the segment file or the index was changed; run `remit audit verify`"
    )]
    Mismatch {
        /// The replica.
        replica: String,
        /// The record's position.
        seq: i64,
        /// The place, described.
        place: String,
    },
}

/// Bytes read from a segment at once for [`EntryFiles`]: reading in order (an export, a
/// verification), most entries are served from the last read.
const ENTRY_WINDOW: usize = 64 << 10;

/// Reads entries at the places the index gives, keeping the last segment open and the
/// last bytes read, so that reading in order costs about one read per window.
pub(crate) struct EntryFiles {
    data_dir: PathBuf,
    open: Option<OpenSegment>,
}

struct OpenSegment {
    replica: String,
    segment: u64,
    path: PathBuf,
    file: File,
    /// File offset of `window[0]`.
    start: u64,
    window: Vec<u8>,
}

impl EntryFiles {
    /// Reads the segments of `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            open: None,
        }
    }

    /// The bytes at `place` in `replica`'s segments, exactly `place.len` of them, and the
    /// byte after them if the file has one. Errors only for a place that is not in the
    /// files ([`EntryError::Misplaced`]) or a failed read.
    pub fn raw(
        &mut self,
        replica: &str,
        seq: i64,
        place: Place,
    ) -> Result<(&[u8], Option<u8>), crate::StoreError> {
        let misplaced = |problem: &str| EntryError::Misplaced {
            replica: replica.to_owned(),
            seq,
            place: describe(place),
            problem: problem.to_owned(),
        };
        let beyond = || EntryError::Beyond {
            replica: replica.to_owned(),
            seq,
            place: describe(place),
        };
        let len = usize::try_from(place.len)
            .ok()
            .filter(|&l| l <= MAX_LINE)
            .ok_or_else(|| misplaced("is longer than a line can be"))?;
        let reuse = self
            .open
            .as_ref()
            .is_some_and(|o| o.replica == replica && o.segment == place.segment);
        if !reuse {
            let path = segment_path(&replica_dir(&self.data_dir, replica)?, place.segment);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(beyond().into());
                }
                Err(e) => return Err(io_err(&path)(e).into()),
            };
            self.open = Some(OpenSegment {
                replica: replica.to_owned(),
                segment: place.segment,
                path,
                file,
                start: 0,
                window: Vec::new(),
            });
        }
        let Some(o) = self.open.as_mut() else {
            return Err(misplaced("could not be opened").into());
        };
        // The entry and the byte after it.
        let want = len + 1;
        let end = place.offset.saturating_add(want as u64);
        let held = o.start + o.window.len() as u64;
        if place.offset < o.start || end > held {
            o.window.clear();
            o.window.resize(want.max(ENTRY_WINDOW), 0);
            o.file
                .seek(SeekFrom::Start(place.offset))
                .map_err(io_err(&o.path))?;
            let mut got = 0;
            while got < o.window.len() {
                match o.file.read(&mut o.window[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(&o.path)(e).into()),
                }
            }
            o.window.truncate(got);
            o.start = place.offset;
        }
        let from = usize::try_from(place.offset - o.start).unwrap_or(usize::MAX);
        let Some(bytes) = o.window.get(from..from.saturating_add(len)) else {
            return Err(beyond().into());
        };
        Ok((bytes, o.window.get(from + len).copied()))
    }

    /// The entry at `place`, checked: a whole line whose hash is `leaf`.
    pub fn entry(
        &mut self,
        replica: &str,
        seq: i64,
        place: Place,
        leaf: &[u8],
    ) -> Result<String, crate::StoreError> {
        let (bytes, after) = self.raw(replica, seq, place)?;
        let whole = after == Some(b'\n');
        if !whole || leaf != remit_audit::merkle::leaf_hash(bytes).0.as_slice() {
            return Err(EntryError::Mismatch {
                replica: replica.to_owned(),
                seq,
                place: describe(place),
            }
            .into());
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            EntryError::Mismatch {
                replica: replica.to_owned(),
                seq,
                place: describe(place),
            }
            .into()
        })
    }
}

fn describe(place: Place) -> String {
    format!(
        "byte {} ({} bytes) of segment {:020}",
        place.offset, place.len, place.segment
    )
}
