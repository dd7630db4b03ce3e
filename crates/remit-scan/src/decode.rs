//! Decoding layers: `Content-Encoding` (gzip, deflate, br) with a decompressed-size limit,
//! JSON string escapes and percent-encoding with a map of the bytes they changed back to the source, and
//! plausible base64 runs.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

use crate::ScanError;

/// A body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentEncoding {
    /// No encoding.
    #[default]
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
    /// `deflate`: zlib-wrapped, or raw deflate as some servers send.
    Deflate,
    /// `br`.
    Brotli,
}

impl ContentEncoding {
    /// Parses a `Content-Encoding` header value. Stacked codings (`gzip, br`) and unknown
    /// ones are an error: the caller cannot have the body scanned and must decide.
    pub fn parse(value: &str) -> Result<Self, ScanError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Self::Identity),
            "gzip" | "x-gzip" => Ok(Self::Gzip),
            "deflate" => Ok(Self::Deflate),
            "br" => Ok(Self::Brotli),
            _ => Err(ScanError::UnsupportedEncoding {
                encoding: value.chars().take(64).collect(),
            }),
        }
    }
}

/// How a layer was decoded from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoding {
    /// gzip `Content-Encoding`, or a gzip stream found inside base64.
    Gzip,
    /// deflate `Content-Encoding`.
    Deflate,
    /// br `Content-Encoding`.
    Brotli,
    /// JSON string escapes (`\"`, `\\`, `\/`, `\uXXXX`, …) undone.
    Json,
    /// Percent-encoding undone.
    Url,
    /// A base64 (standard or URL-safe) run decoded.
    Base64,
}

impl Decoding {
    /// The layer's name as reported: `gzip`, `deflate`, `br`, `json`, `url`, `base64`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
            Self::Json => "json",
            Self::Url => "url",
            Self::Base64 => "base64",
        }
    }

    /// Whether a secret found in this layer can be replaced in place in the parent.
    pub fn in_place(self) -> bool {
        matches!(self, Self::Json | Self::Url)
    }
}

/// Decompresses a body, refusing to produce more than `limit` bytes.
pub fn decompress(
    body: &[u8],
    enc: ContentEncoding,
    limit: usize,
) -> Result<Cow<'_, [u8]>, ScanError> {
    fn read_all(mut r: impl Read, limit: usize, what: &'static str) -> Result<Vec<u8>, ScanError> {
        let mut out = Vec::new();
        let read = r.by_ref().take(limit as u64 + 1).read_to_end(&mut out);
        match read {
            Ok(_) if out.len() > limit => Err(ScanError::TooLarge { what, limit }),
            Ok(_) => Ok(out),
            Err(e) => Err(ScanError::Malformed {
                what,
                reason: e.to_string(),
            }),
        }
    }
    match enc {
        ContentEncoding::Identity => Ok(Cow::Borrowed(body)),
        ContentEncoding::Gzip => {
            read_all(flate2::read::MultiGzDecoder::new(body), limit, "gzip body").map(Cow::Owned)
        }
        ContentEncoding::Deflate => {
            match read_all(flate2::read::ZlibDecoder::new(body), limit, "deflate body") {
                Err(ScanError::Malformed { .. }) => read_all(
                    flate2::read::DeflateDecoder::new(body),
                    limit,
                    "deflate body",
                )
                .map(Cow::Owned),
                other => other.map(Cow::Owned),
            }
        }
        ContentEncoding::Brotli => {
            read_all(brotli::Decompressor::new(body, 4096), limit, "br body").map(Cow::Owned)
        }
    }
}

/// Where the bytes of a text decoded from a parent came from. Most bytes are copied:
/// byte `i` is then the parent's byte at the same distance from the last escape. The
/// others are listed.
#[derive(Debug, Default)]
pub(crate) struct ByteMap {
    /// Parent offset of the decoded segment's start.
    pub base: u32,
    /// Parent offset of its end.
    pub end: u32,
    /// The offsets in the decoded text of bytes the decoding produced (from an escape)
    /// rather than copied, in order.
    pub changed: Vec<u32>,
    /// For each changed byte, the parent span of the escape it came from.
    pub source: Vec<(u32, u32)>,
}

impl ByteMap {
    /// The parent offset where decoded byte `i`'s source starts; for `i` = the text's
    /// length, the end of the segment.
    pub(crate) fn parent_offset(&self, i: usize) -> usize {
        let k = self.changed.partition_point(|c| (*c as usize) < i);
        if self.changed.get(k).is_some_and(|c| *c as usize == i) {
            return self.source[k].0 as usize;
        }
        match k.checked_sub(1) {
            None => self.base as usize + i,
            Some(k) => self.source[k].1 as usize + (i - self.changed[k] as usize - 1),
        }
    }

    /// The decoded offset of parent offset `p`, if the byte there was copied; `p` must
    /// be inside the segment.
    pub(crate) fn text_offset(&self, p: usize) -> Option<usize> {
        let k = self.source.partition_point(|s| s.1 as usize <= p);
        if self.source.get(k).is_some_and(|s| s.0 as usize <= p) {
            return None;
        }
        match k.checked_sub(1) {
            None => p.checked_sub(self.base as usize),
            Some(k) => Some(self.changed[k] as usize + 1 + (p - self.source[k].1 as usize)),
        }
    }

    /// Whether decoded bytes `range` were all copied.
    pub(crate) fn copied(&self, range: std::ops::Range<usize>) -> bool {
        let k = self
            .changed
            .partition_point(|c| (*c as usize) < range.start);
        self.changed.get(k).is_none_or(|c| *c as usize >= range.end)
    }

    /// Makes this the empty map of a segment of `len` bytes at `base` in the parent, with
    /// room for `escapes` produced bytes (one an escape; `\u` escapes of more grow it), so
    /// that decoding a segment full of escapes does not grow the lists again and again. The
    /// lists keep their buffers.
    fn reset(&mut self, base: usize, len: usize, escapes: usize) {
        self.base = base as u32;
        self.end = (base + len) as u32;
        self.changed.clear();
        self.source.clear();
        self.changed.reserve(escapes);
        self.source.reserve(escapes);
    }

    fn produced(&mut self, at: usize, source: std::ops::Range<usize>) {
        self.changed.push(at as u32);
        self.source.push((source.start as u32, source.end as u32));
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    if s.len() < 4 {
        return None;
    }
    s[..4]
        .iter()
        .try_fold(0u32, |acc, b| Some(acc << 4 | u32::from(hex(*b)?)))
}

/// How far around an escape its decoded window reaches: longer than any secret a rule
/// looks for plus its context.
pub(crate) const ESCAPE_WINDOW: usize = 512;

/// Context kept either side of a JSON string literal holding escapes.
const JSON_CONTEXT: usize = 96;

/// Whether a JSON escape starts at `i`.
pub(crate) fn json_escape_at(text: &[u8], i: usize) -> bool {
    text[i] == b'\\'
        && matches!(
            text.get(i + 1),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u')
        )
}

/// Whether a `%XX` escape starts at `i`.
pub(crate) fn percent_escape_at(text: &[u8], i: usize) -> bool {
    text[i] == b'%'
        && i + 2 < text.len()
        && hex(text[i + 1]).is_some()
        && hex(text[i + 2]).is_some()
}

/// Merged windows around every escape starting with `needle` (as `at` tells): for JSON,
/// the string literal holding the escape and [`JSON_CONTEXT`] either side, at most [`ESCAPE_WINDOW`] either side of it; for
/// percent-encoding, [`ESCAPE_WINDOW`] either side. A few bytes more at the end so no
/// escape is cut in two. Into `out` (cleared first), so that a scan reuses its buffer.
pub(crate) fn escape_windows_into(
    text: &[u8],
    needle: u8,
    at: fn(&[u8], usize) -> bool,
    out: &mut Vec<std::ops::Range<usize>>,
) {
    let json = needle == b'\\';
    out.clear();
    let mut from = 0;
    while let Some(p) = memchr::memchr(needle, &text[from..]) {
        let i = from + p;
        from = i + 1;
        if !at(text, i) {
            continue;
        }
        let mut a = i.saturating_sub(ESCAPE_WINDOW);
        let mut b = (i + ESCAPE_WINDOW + 12).min(text.len());
        if json {
            // The string literal: the nearest unescaped quotes either side.
            // With some context either side: a rule may need the key before the value.
            if let Some(open) = opening_quote(text, a..i) {
                a = a.max(open.saturating_sub(JSON_CONTEXT));
            }
            // Escapes up to the closing quote are in this window already (when there is
            // none within reach, up to the window's end).
            match closing_quote(text, i + 2, b) {
                Some(close) => {
                    b = b.min(close + 1 + JSON_CONTEXT);
                    from = close;
                }
                None => from = b,
            }
        }
        match out.last_mut() {
            Some(last) if a <= last.end => last.end = last.end.max(b),
            _ => out.push(a..b),
        }
    }
}

/// The first `a` or `b` in `hay`, eight bytes at a time in a `u64`.
///
/// Written here rather than calling `memchr::memchr2` because it runs once per escape of
/// an escaped JSON string, where the next escape is usually a few bytes away: there
/// `memchr`'s per-call work (dispatch, short-haystack paths) cost more than the search
/// (callgrind: 1.6 % fewer instructions a 4 KB body this way; BENCHMARKS.md). Exact: in the
/// zero-byte test below a false flag can only follow a true one, so the lowest flag is a
/// match.
pub(crate) fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    const LO: u64 = u64::from_ne_bytes([0x01; 8]);
    const HI: u64 = u64::from_ne_bytes([0x80; 8]);
    let (va, vb) = (LO * u64::from(a), LO * u64::from(b));
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hits = zero(w ^ va) | zero(w ^ vb);
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|c| *c == a || *c == b)
        .map(|p| at + p)
}

/// The first `"` in `from..to` that is not escaped, reading escapes from `from` on
/// (`from` is where an escape or other text starts).
fn closing_quote(text: &[u8], from: usize, to: usize) -> Option<usize> {
    let to = to.min(text.len());
    let mut j = from;
    while j < to {
        let k = j + find2(&text[j..to], b'"', b'\\')?;
        if text[k] == b'"' {
            return Some(k);
        }
        j = k + 2;
    }
    None
}

/// The last `"` in `range` not preceded by an odd run of backslashes.
fn opening_quote(text: &[u8], range: std::ops::Range<usize>) -> Option<usize> {
    let hay = &text[range.start..range.end.min(text.len())];
    let escaped = |p: usize| text[..p].iter().rev().take_while(|c| **c == b'\\').count() % 2 == 1;
    memchr::memrchr_iter(b'"', hay)
        .map(|p| range.start + p)
        .find(|p| !escaped(*p))
}

/// Undoes JSON string escapes across the whole text (quotes and structure stay as they are),
/// so a secret inside an escaped JSON string reads as it was written. `base` is the
/// text's offset in the parent.
#[cfg(test)]
pub(crate) fn json_unescape(text: &[u8], base: usize) -> (Vec<u8>, ByteMap) {
    let (mut out, mut map) = (Vec::new(), ByteMap::default());
    json_unescape_into(text, base, &mut out, &mut map);
    (out, map)
}

/// [`json_unescape`] into `out` and `map` (emptied first), so that a scan reuses buffers.
pub(crate) fn json_unescape_into(text: &[u8], base: usize, out: &mut Vec<u8>, map: &mut ByteMap) {
    out.clear();
    out.reserve(text.len());
    // Room for an escape in 8 bytes, more than escaped JSON strings hold, without counting
    // them first (a pooled map has its room already; past it the lists grow).
    map.reset(base, text.len(), text.len() / 8);
    let mut i = 0;
    while let Some(p) = find2(&text[i..], b'\\', b'\\') {
        // Bytes up to the backslash are copied as they are.
        out.extend_from_slice(&text[i..i + p]);
        i += p;
        let simple = match text.get(i + 1) {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(8),
            Some(b'f') => Some(12),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            map.produced(out.len(), base + i..base + i + 2);
            out.push(c);
            i += 2;
            continue;
        }
        if text.get(i + 1) == Some(&b'u')
            && let Some(cp) = hex4(&text[i + 2..])
        {
            let mut len = 6;
            let mut ch = char::from_u32(cp);
            if (0xD800..0xDC00).contains(&cp)
                && text.get(i + 6) == Some(&b'\\')
                && text.get(i + 7) == Some(&b'u')
                && let Some(lo) = hex4(&text[(i + 8).min(text.len())..])
                && (0xDC00..0xE000).contains(&lo)
            {
                ch = char::from_u32(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
                len = 12;
            }
            let ch = ch.unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0u8; 4];
            for c in ch.encode_utf8(&mut buf).bytes() {
                map.produced(out.len(), base + i..base + i + len);
                out.push(c);
            }
            i += len;
            continue;
        }
        // A backslash that starts no escape stays as it is.
        out.push(b'\\');
        i += 1;
    }
    out.extend_from_slice(&text[i..]);
}

/// Undoes percent-encoding, and `+` as a space (form encoding). A `+` that was meant
/// literally was already seen as such in the parent layer.
#[cfg(test)]
pub(crate) fn percent_decode(text: &[u8], base: usize) -> (Vec<u8>, ByteMap) {
    let (mut out, mut map) = (Vec::new(), ByteMap::default());
    percent_decode_into(text, base, &mut out, &mut map);
    (out, map)
}

/// [`percent_decode`] into `out` and `map` (emptied first), so that a scan reuses buffers.
pub(crate) fn percent_decode_into(text: &[u8], base: usize, out: &mut Vec<u8>, map: &mut ByteMap) {
    out.clear();
    out.reserve(text.len());
    let escapes = memchr::memchr2_iter(b'%', b'+', text).count();
    map.reset(base, text.len(), escapes);
    let mut i = 0;
    while let Some(p) = memchr::memchr2(b'%', b'+', &text[i..]) {
        out.extend_from_slice(&text[i..i + p]);
        i += p;
        if text[i] == b'+' {
            map.produced(out.len(), base + i..base + i + 1);
            out.push(b' ');
            i += 1;
            continue;
        }
        if i + 2 < text.len()
            && let (Some(h), Some(l)) = (hex(text[i + 1]), hex(text[i + 2]))
        {
            map.produced(out.len(), base + i..base + i + 3);
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b'%');
        i += 1;
    }
    out.extend_from_slice(&text[i..]);
}

const B64: u8 = 1;
const B64_STD: u8 = 2;
const B64_URL: u8 = 4;
/// A letter past `f` (a run without any, nor `+/-_`, is hex).
const B64_NOT_HEX: u8 = 8;

const fn b64_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_hexdigit() {
            B64
        } else if b.is_ascii_alphanumeric() {
            B64 | B64_NOT_HEX
        } else if b == b'+' || b == b'/' {
            B64 | B64_STD
        } else if b == b'-' || b == b'_' {
            B64 | B64_URL
        } else {
            0
        };
        i += 1;
    }
    t
}

static B64_CLASS: [u8; 256] = b64_table();

/// Whether a byte can be part of a base64 run.
pub(crate) fn is_b64(b: u8) -> bool {
    B64_CLASS[usize::from(b)] != 0
}

const INDIFFERENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);

/// A base64 run found in a text.
pub(crate) struct Run {
    pub start: usize,
    pub end: usize,
    pub url_safe: bool,
    /// Only hex digits, without padding: a digest or an id, never text.
    pub hex: bool,
}

/// Finds base64 runs of `min..` characters (with any trailing `=`), calling `f` for each;
/// runs longer than `max` are reported with `end - start > max` so the caller can decide.
pub(crate) fn base64_runs(text: &[u8], min: usize, mut f: impl FnMut(Run) -> bool) {
    let min = min.max(1);
    let n = text.len();
    let mut i = 0;
    // `i` is always where a run could start. A window of `min` bytes is checked from its
    // end, so a non-base64 byte lets the search jump past it (most text is skipped). A
    // window with none is the start of a run: its bytes' kinds are gathered on the way, and
    // the run is followed from the window's end (each byte is read once).
    'outer: while i + min <= n {
        let mut kinds = 0u8;
        for (k, b) in text[i..i + min].iter().enumerate().rev() {
            let c = B64_CLASS[usize::from(*b)];
            if c == 0 {
                i += k + 1;
                continue 'outer;
            }
            kinds |= c;
        }
        let start = i;
        i += min;
        for b in &text[i..] {
            let c = B64_CLASS[usize::from(*b)];
            if c == 0 {
                break;
            }
            kinds |= c;
            i += 1;
        }
        let mut end = i;
        while end < n && end - i < 2 && text[end] == b'=' {
            end += 1;
        }
        let mixed = kinds & B64_STD != 0 && kinds & B64_URL != 0;
        if !mixed
            && !f(Run {
                start,
                end,
                url_safe: kinds & B64_URL != 0,
                hex: kinds & (B64_NOT_HEX | B64_STD | B64_URL) == 0 && end == i,
            })
        {
            return;
        }
        i = end + 1;
    }
}

/// The maximal extents of base64-alphabet bytes in a text decoded from `parent` (see
/// [`ByteMap`]) that read differently there: those holding a byte the decoding produced,
/// and those next to one whose source continued the extent in the parent (as the `n` of
/// `\n` or a `+` turned into a space do). Every other extent is one of the parent's
/// runs as it was. In order.
#[cfg(test)]
pub(crate) fn changed_runs(
    text: &[u8],
    parent: &[u8],
    map: &ByteMap,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    changed_runs_into(text, parent, map, &mut out);
    out
}

/// [`changed_runs`] into `out` (cleared first), so that a scan reuses its buffer.
pub(crate) fn changed_runs_into(
    text: &[u8],
    parent: &[u8],
    map: &ByteMap,
    out: &mut Vec<std::ops::Range<usize>>,
) {
    let extent = |p: usize| {
        let mut a = p;
        while a > 0 && is_b64(text[a - 1]) {
            a -= 1;
        }
        let mut b = p;
        while b < text.len() && is_b64(text[b]) {
            b += 1;
        }
        a..b
    };
    let source_is_b64 = |at: usize| parent.get(at).is_some_and(|b| is_b64(*b));
    out.clear();
    let mut add = |p: usize| {
        // Changed bytes come in order: an extent already added is not walked again.
        if !out.last().is_some_and(|r| r.contains(&p)) {
            out.push(extent(p));
        }
    };
    for (d, (from, to)) in map.changed.iter().zip(&map.source) {
        let d = *d as usize;
        if is_b64(text[d]) {
            add(d);
            continue;
        }
        if d > 0 && is_b64(text[d - 1]) && source_is_b64(*from as usize) {
            add(d - 1);
        }
        if d + 1 < text.len() && is_b64(text[d + 1]) && source_is_b64(*to as usize - 1) {
            add(d + 1);
        }
    }
    out.sort_unstable_by_key(|r| r.start);
    out.dedup();
}

/// Decodes a run; `None` if it does not decode or its start already does not look like
/// text or gzip (most runs in traffic are identifiers and hashes).
pub(crate) fn base64_decode(run: &[u8], url_safe: bool) -> Option<Vec<u8>> {
    let engine = if url_safe { &URL } else { &STD };
    let head = run.first_chunk::<16>().and_then(|chars| {
        // Where ours fails (padding inside a short run, a byte outside the alphabet), the
        // crate's reading.
        decode_head(chars, url_safe).or_else(|| {
            let mut head = [0u8; 12];
            engine.decode_slice(chars, &mut head).ok().map(|_| head)
        })
    });
    if let Some(head) = head {
        let printable: usize = head
            .iter()
            .map(|b| usize::from(PRINTABLE[usize::from(*b)]))
            .sum();
        // A first byte that starts no UTF-8 sequence (a continuation byte, or one never
        // used) makes the text invalid without reading on: most ids and digests end here.
        if printable < 10
            && !is_gzip(&head)
            && (matches!(head[0], 0x80..=0xc1 | 0xf5..=0xff)
                || std::str::from_utf8(&head[..9]).is_err())
        {
            return None;
        }
    }
    let trimmed = run
        .strip_suffix(b"==")
        .or_else(|| run.strip_suffix(b"="))
        .unwrap_or(run);
    // Lengths of 1 mod 4 cannot be base64.
    if trimmed.len() % 4 == 1 {
        return engine.decode(&trimmed[..trimmed.len() - 1]).ok();
    }
    engine.decode(trimmed).ok()
}

/// 1 for the bytes a decoded head counts as text (printable ASCII, tab, newline, return).
static PRINTABLE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(b as u8, 0x20..=0x7e | b'\t' | b'\n' | b'\r') as u8;
        b += 1;
    }
    t
};

/// The value of each character of the standard (or URL-safe) base64 alphabet, or `0xff`.
const fn b64_values(url_safe: bool) -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        if i < 10 {
            t[b'0' as usize + i] = 52 + i as u8;
        }
        i += 1;
    }
    if url_safe {
        t[b'-' as usize] = 62;
        t[b'_' as usize] = 63;
    } else {
        t[b'+' as usize] = 62;
        t[b'/' as usize] = 63;
    }
    t
}

static B64_STD_VALUE: [u8; 256] = b64_values(false);
static B64_URL_VALUE: [u8; 256] = b64_values(true);

/// The 12 bytes 16 base64 characters decode to, as the `base64` crate decodes them, or
/// `None` for a character outside the alphabet (padding included).
///
/// Written here rather than asking the `base64` crate: this runs on every base64-shaped run
/// of every body (ids, digests …) only to turn most of them down, and the crate's general
/// decoder cost ~225 instructions a head against ~85 here (callgrind).
fn decode_head(chars: &[u8; 16], url_safe: bool) -> Option<[u8; 12]> {
    let value = if url_safe {
        &B64_URL_VALUE
    } else {
        &B64_STD_VALUE
    };
    let mut head = [0u8; 12];
    for (quad, out) in chars.chunks_exact(4).zip(head.chunks_exact_mut(3)) {
        let mut v = 0u32;
        for c in quad {
            let x = value[usize::from(*c)];
            if x == 0xff {
                return None;
            }
            v = v << 6 | u32::from(x);
        }
        out.copy_from_slice(&v.to_be_bytes()[1..]);
    }
    Some(head)
}

/// Whether decoded bytes look like text worth scanning (≥ 90 % printable ASCII or
/// whitespace, or valid UTF-8 with no control characters).
pub(crate) fn plausible_text(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return false;
    }
    let printable = bytes
        .iter()
        .filter(|b| matches!(b, 0x20..=0x7e | b'\t' | b'\n' | b'\r'))
        .count();
    if printable * 10 >= bytes.len() * 9 {
        return true;
    }
    std::str::from_utf8(bytes)
        .is_ok_and(|s| !s.chars().any(|c| c.is_control() && !c.is_whitespace()))
}

/// Whether decoded bytes start a gzip stream.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b, 0x08])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-byte map the sparse one stands for: parent offset of each byte's source.
    fn dense(text: &[u8], map: &ByteMap) -> Vec<usize> {
        (0..=text.len()).map(|i| map.parent_offset(i)).collect()
    }

    #[test]
    fn byte_maps_point_each_byte_at_its_source() {
        let parent = br#"xx"a\"b\u00e9c\\d\u0041"yy"#;
        let (text, map) = json_unescape(&parent[2..24], 2);
        assert_eq!(text, "\"a\"b\u{e9}c\\dA\"".as_bytes());
        // " a \" b é(2 bytes) c \\ d \u0041 "
        assert_eq!(
            dense(&text, &map),
            vec![2, 3, 4, 6, 7, 7, 13, 14, 16, 17, 23, 24]
        );
        assert_eq!(map.changed, vec![2, 4, 5, 7, 9]);
        for (i, p) in dense(&text, &map).iter().enumerate().take(text.len()) {
            let copied = !map.changed.contains(&(i as u32));
            assert_eq!(map.copied(i..i + 1), copied, "byte {i}");
            if copied {
                assert_eq!(text[i], parent[*p]);
                assert_eq!(map.text_offset(*p), Some(i));
            }
        }
        // Inside an escape: no copied byte there.
        assert_eq!(map.text_offset(5), None);
        assert_eq!(map.text_offset(19), None);
        assert!(!map.copied(1..4));
        assert!(map.copied(6..7));
    }

    #[test]
    fn percent_decoding_marks_escapes_and_plus_signs() {
        let (text, map) = percent_decode(b"a%41+b%zz", 10);
        assert_eq!(text, b"aA b%zz");
        assert_eq!(map.changed, vec![1, 2]);
        assert_eq!(dense(&text, &map), vec![10, 11, 14, 15, 16, 17, 18, 19]);
        assert_eq!(map.text_offset(16), Some(4));
    }

    #[test]
    fn the_head_of_a_run_decodes_as_the_crate_decodes_it() {
        let mut seed = 0x9e37_79b9_u64;
        let alphabet = b"ABCXYZabcxyz0189+/-_=.";
        for _ in 0..20_000 {
            let mut chars = [0u8; 16];
            for c in &mut chars {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Mostly valid characters, now and then one that is not.
                let k = (seed >> 33) as usize;
                *c = if k.is_multiple_of(8) {
                    alphabet[k / 8 % alphabet.len()]
                } else {
                    b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmM0NTY3"[k / 8 % 44]
                };
            }
            if chars.contains(&b'=') {
                continue;
            }
            for (url_safe, engine) in [(false, &STD), (true, &URL)] {
                let mut want = [0u8; 12];
                let want = engine.decode_slice(chars, &mut want).ok().map(|_| want);
                assert_eq!(decode_head(&chars, url_safe), want, "{chars:?} {url_safe}");
            }
        }
    }

    #[test]
    fn base64_runs_are_the_maximal_runs_a_naive_search_finds() {
        let naive = |text: &[u8], min: usize| {
            let mut out = Vec::new();
            let mut i = 0;
            while i < text.len() {
                if !is_b64(text[i]) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < text.len() && is_b64(text[i]) {
                    i += 1;
                }
                if i - start < min {
                    continue;
                }
                let mut end = i;
                while end < text.len() && end - i < 2 && text[end] == b'=' {
                    end += 1;
                }
                let run = &text[start..i];
                let std = run.iter().any(|b| matches!(b, b'+' | b'/'));
                let url = run.iter().any(|b| matches!(b, b'-' | b'_'));
                let hex = run.iter().all(u8::is_ascii_hexdigit) && end == i;
                if !(std && url) {
                    out.push((start, end, url, hex));
                }
                i = end + 1;
            }
            out
        };
        let alphabet = b"abcdef0123GHxyz+/-_=  .\"";
        let mut seed = 0x2545_f491_u64;
        for len in [0, 1, 5, 23, 24, 25, 100, 1000, 4000] {
            for min in [1, 4, 24] {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        // Long stretches of one kind, as ids and digests are.
                        let k = (seed >> 33) as usize;
                        if k.is_multiple_of(16) {
                            alphabet[k / 16 % alphabet.len()]
                        } else {
                            alphabet[k / 16 % 10]
                        }
                    })
                    .collect();
                let mut got = Vec::new();
                base64_runs(&text, min, |r| {
                    got.push((r.start, r.end, r.url_safe, r.hex));
                    true
                });
                assert_eq!(got, naive(&text, min), "length {len}, min {min}");
            }
        }
    }

    #[test]
    fn find2_finds_the_first_of_two_bytes_as_memchr2_does() {
        let mut seed = 0x51_7cc1_b727_220a_u64;
        for len in 0..80 {
            for _ in 0..50 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        // Bytes near the needles (borrows), the needles, and 0x80 and up.
                        b"\\\"![]\x00\x01\x7f\x80\xdb\xdcabc"[(seed >> 33) as usize % 14]
                    })
                    .collect();
                for (a, b) in [(b'"', b'\\'), (b'\\', b'\\'), (0x80, 0x00)] {
                    assert_eq!(
                        find2(&hay, a, b),
                        memchr::memchr2(a, b, &hay),
                        "{hay:?} {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn changed_runs_are_those_an_escape_touches() {
        // `\/` inside a run, and a run after `\n` whose `n` continued it in the parent.
        let parent = br#"QUJDREVGR0hJSktMTU5P\/UFJTVA abc\nQUJDREVGR0hJSktMTU5PUFJT xyz QUJDREVGR0hJSktMTU5PUFJT"#;
        let (text, map) = json_unescape(parent, 0);
        let runs: Vec<&[u8]> = changed_runs(&text, parent, &map)
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(
            runs,
            vec![
                &b"QUJDREVGR0hJSktMTU5P/UFJTVA"[..],
                &b"QUJDREVGR0hJSktMTU5PUFJT"[..]
            ]
        );
    }
}
