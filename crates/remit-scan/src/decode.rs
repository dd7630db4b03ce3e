//! Decoding layers: `Content-Encoding` (gzip, deflate, br) with a decompressed-size limit,
//! JSON string escapes and percent-encoding with an offset map back to the source, and
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

/// Text decoded from a parent, with `map[i]` = the parent offset where decoded byte `i`'s
/// source starts; `map[len]` = the end of the source.
pub(crate) struct Mapped {
    pub text: Vec<u8>,
    pub map: Vec<u32>,
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
/// escape is cut in two.
pub(crate) fn escape_windows(
    text: &[u8],
    needle: u8,
    at: fn(&[u8], usize) -> bool,
) -> Vec<std::ops::Range<usize>> {
    let json = needle == b'\\';
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut skip_to = 0;
    for i in memchr_iter(needle, text) {
        if i < skip_to || !at(text, i) {
            continue;
        }
        let mut a = i.saturating_sub(ESCAPE_WINDOW);
        let mut b = (i + ESCAPE_WINDOW + 12).min(text.len());
        if json {
            // The string literal: the nearest unescaped quotes either side.
            // With some context either side: a rule may need the key before the value.
            if let Some(open) = unescaped_quote(text, a..i, true) {
                a = a.max(open.saturating_sub(JSON_CONTEXT));
            }
            // Escapes up to the closing quote are in this window already (when there is
            // none within reach, up to the window's end).
            match unescaped_quote(text, i + 2..b, false) {
                Some(close) => {
                    b = b.min(close + 1 + JSON_CONTEXT);
                    skip_to = close;
                }
                None => skip_to = b,
            }
        }
        match out.last_mut() {
            Some(last) if a <= last.end => last.end = last.end.max(b),
            _ => out.push(a..b),
        }
    }
    out
}

/// The first (or, `back`, last) `"` in `range` not preceded by an odd run of backslashes.
fn unescaped_quote(text: &[u8], range: std::ops::Range<usize>, back: bool) -> Option<usize> {
    let hay = &text[range.start..range.end.min(text.len())];
    let escaped = |p: usize| text[..p].iter().rev().take_while(|c| **c == b'\\').count() % 2 == 1;
    if back {
        memchr::memrchr_iter(b'"', hay)
            .map(|p| range.start + p)
            .find(|p| !escaped(*p))
    } else {
        memchr_iter(b'"', hay)
            .map(|p| range.start + p)
            .find(|p| !escaped(*p))
    }
}

use memchr::memchr_iter;

/// Undoes JSON string escapes across the whole text (quotes and structure stay as they are),
/// so a secret inside an escaped JSON string reads as it was written. `base` is added to
/// every offset in the map.
pub(crate) fn json_unescape(text: &[u8], base: usize) -> Mapped {
    let mut out = Vec::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b == b'\\' && i + 1 < text.len() {
            let simple = match text[i + 1] {
                b'"' => Some(b'"'),
                b'\\' => Some(b'\\'),
                b'/' => Some(b'/'),
                b'b' => Some(8),
                b'f' => Some(12),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                _ => None,
            };
            if let Some(c) = simple {
                out.push(c);
                map.push((base + i) as u32);
                i += 2;
                continue;
            }
            if text[i + 1] == b'u'
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
                    out.push(c);
                    map.push((base + i) as u32);
                }
                i += len;
                continue;
            }
        }
        out.push(b);
        map.push((base + i) as u32);
        i += 1;
    }
    map.push((base + text.len()) as u32);
    Mapped { text: out, map }
}

/// Undoes percent-encoding, and `+` as a space (form encoding). A `+` that was meant
/// literally was already seen as such in the parent layer.
pub(crate) fn percent_decode(text: &[u8], base: usize) -> Mapped {
    let mut out = Vec::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%'
            && i + 2 < text.len()
            && let (Some(h), Some(l)) = (hex(text[i + 1]), hex(text[i + 2]))
        {
            out.push(h << 4 | l);
            map.push((base + i) as u32);
            i += 3;
            continue;
        }
        out.push(if text[i] == b'+' { b' ' } else { text[i] });
        map.push((base + i) as u32);
        i += 1;
    }
    map.push((base + text.len()) as u32);
    Mapped { text: out, map }
}

const B64: u8 = 1;
const B64_STD: u8 = 2;
const B64_URL: u8 = 4;

const fn b64_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphanumeric() {
            B64
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
}

/// Finds base64 runs of `min..` characters (with any trailing `=`), calling `f` for each;
/// runs longer than `max` are reported with `end - start > max` so the caller can decide.
pub(crate) fn base64_runs(text: &[u8], min: usize, mut f: impl FnMut(Run) -> bool) {
    let min = min.max(1);
    let n = text.len();
    let mut i = 0;
    // `i` is always where a run could start. A window of `min` bytes is checked from its
    // end, so a non-base64 byte lets the search jump past it (most text is skipped).
    'outer: while i + min <= n {
        let mut j = i + min;
        while j > i {
            j -= 1;
            if B64_CLASS[text[j] as usize] == 0 {
                i = j + 1;
                continue 'outer;
            }
        }
        let start = i;
        let mut kinds = 0u8;
        while i < n {
            let c = B64_CLASS[text[i] as usize];
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
            })
        {
            return;
        }
        i = end + 1;
    }
}

/// Decodes a run; `None` if it does not decode or its start already does not look like
/// text or gzip (most runs in traffic are identifiers and hashes).
pub(crate) fn base64_decode(run: &[u8], url_safe: bool) -> Option<Vec<u8>> {
    // Hex digests and similar are base64-shaped but never encode text.
    if run.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let engine = if url_safe { &URL } else { &STD };
    let mut head = [0u8; 12];
    if run.len() >= 16 && engine.decode_slice(&run[..16], &mut head).is_ok() {
        let printable = head
            .iter()
            .filter(|b| matches!(b, 0x20..=0x7e | b'\t' | b'\n' | b'\r'))
            .count();
        if printable < 10 && !is_gzip(&head) && std::str::from_utf8(&head[..9]).is_err() {
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
