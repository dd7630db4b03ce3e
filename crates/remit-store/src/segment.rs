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
            if let Some(n) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
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
