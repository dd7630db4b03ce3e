//! The scanner: keyword prefilter, candidate regexes, entropy, allowlists, decoding layers,
//! and in-place redaction.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input, Span};
use sha2::{Digest, Sha256};

use crate::decode::{self, ByteMap, ContentEncoding, Decoding};
use crate::finding::{Finding, Findings, Fingerprint, Incomplete, shannon_entropy};
use crate::keywords::Keywords;
use crate::rules::{Allowlist, RuleSet};
use crate::{Limits, ScanError};

/// Scans bodies with one compiled rule set. Cheap to share (`&Scanner` is all a scan needs).
pub struct Scanner {
    set: RuleSet,
    ids: Vec<Arc<str>>,
    /// Keyword automaton; pattern `p` belongs to rules `kw_rules[p]`.
    keywords: Option<Keywords>,
    kw_rules: Vec<Vec<u16>>,
    /// For pattern `p` and each rule `r` with an anchor (see [`crate::rules::Anchor`]):
    /// `(r, offsets)`, the distances from an occurrence of `p` back to where that rule's
    /// keyed part would start.
    kw_offsets: Vec<Vec<(u16, Box<[u32]>)>>,
    /// Rules without keywords: candidates on every body.
    always: Vec<u16>,
    limits: Limits,
    /// Buffers of finished scans, taken by the next ones (allocating them anew for every
    /// body measured ~5 % of a scan).
    reuse: std::sync::Mutex<Vec<Reuse>>,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.ids.len())
            .field("limits", &self.limits)
            .finish()
    }
}

/// A body with its secrets replaced by `[REDACTED:rule-id]`.
#[derive(Clone)]
pub struct Redacted {
    /// The new body.
    pub body: Vec<u8>,
    /// Everything found, redacted or not.
    pub findings: Findings,
    /// How many findings could not be replaced in place (seen through base64 or a
    /// compressed layer): the caller must block, not forward, when this is not zero.
    pub unredacted: usize,
}

impl Redacted {
    /// Whether every finding was replaced and the scan was complete.
    pub fn is_complete(&self) -> bool {
        self.unredacted == 0 && self.findings.incomplete.is_none()
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may still hold a secret that could not be redacted in place.
        f.debug_struct("Redacted")
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("findings", &self.findings)
            .field("unredacted", &self.unredacted)
            .finish()
    }
}

/// Where a layer's text came from.
enum Origin {
    Root,
    /// Decoded from `parent`, each byte copied or produced from an escape there.
    Mapped {
        parent: usize,
        map: ByteMap,
    },
    /// Decoded from the segment `span` of `parent`.
    Segment {
        parent: usize,
        span: Range<usize>,
    },
}

struct Layer<'a> {
    text: Cow<'a, [u8]>,
    origin: Origin,
    path: Vec<Decoding>,
    /// The keyword occurrences in `text`, once the layer is scanned.
    hits: Hits,
}

/// One keyword occurrence: keyword `kw` at `start..end`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Hit {
    kw: u32,
    start: u32,
    end: u32,
}

/// Most keyword occurrences a layer keeps. Past it, only which keywords occur is kept:
/// the rules they trigger search the whole layer, and the layers decoded from it find
/// their own occurrences.
const MAX_HITS: usize = 1 << 16;

/// A rule with more occurrences of its keywords than this in one layer searches it whole.
const MAX_RULE_HITS: usize = 4096;

/// The keyword occurrences of a layer.
#[derive(Default)]
struct Hits {
    /// Every occurrence, in order of end (then start, then keyword); when `overflow`, only
    /// the first [`MAX_HITS`].
    list: Vec<Hit>,
    overflow: bool,
    /// When `overflow`: every keyword that occurs.
    present: Vec<bool>,
}

impl Hits {
    fn push(&mut self, hit: Hit, keywords: usize) {
        if self.list.len() < MAX_HITS {
            self.list.push(hit);
            return;
        }
        if !self.overflow {
            self.overflow = true;
            self.present = vec![false; keywords];
            for h in &self.list {
                self.present[h.kw as usize] = true;
            }
        }
        self.present[hit.kw as usize] = true;
    }
}

/// Buffers reused from layer to layer.
#[derive(Default)]
struct Scratch {
    /// Candidate rules, sorted.
    rules: Vec<u16>,
    /// (rule, start, end, pattern) of each keyword occurrence that triggers a rule, sorted.
    spans: Vec<(u16, u32, u32, u32)>,
    /// Positions where one rule's matches may start.
    starts: Vec<u32>,
    /// Per rule: search the whole layer.
    whole: Vec<bool>,
    windows: Vec<Range<usize>>,
}

/// The layer being searched: its text, and the layers to map a span to the root through.
struct Place<'x, 'a> {
    full: &'x [u8],
    layers: &'x [Layer<'a>],
    li: usize,
}

/// Where a layer's findings go.
struct Sink<'r> {
    findings: &'r mut Findings,
    seen: &'r mut Seen,
    rule_of: &'r mut Vec<u16>,
    pending: &'r mut Vec<Pending>,
}

/// A match to report: rule `r`'s match `matched` in layer `li`, its secret at `secret`
/// there, at `span` in the root text (`exact` as in [`Finding::exact`]).
struct Pending {
    r: u16,
    li: usize,
    matched: Range<usize>,
    secret: Range<usize>,
    span: Range<usize>,
    exact: bool,
}

/// The findings reported so far, by rule and place, and where each one's secret is read:
/// a match whose secret another layer reported already at the same place (a decoded layer
/// copies most of its parent) is dropped before its entropy, allowlists and digest are
/// computed. Bounded by [`Limits::max_findings`].
#[derive(Default)]
struct Seen {
    /// (rule, root span start, root span end, finding index).
    places: BTreeSet<(u16, usize, usize, usize)>,
    /// For each finding: its layer and the secret's span there.
    secret_at: Vec<(usize, Range<usize>)>,
}

impl Seen {
    /// The findings of rule `r` at root span `span`.
    fn at(&self, r: u16, span: &Range<usize>) -> impl Iterator<Item = usize> + '_ {
        self.places
            .range((r, span.start, span.end, 0)..=(r, span.start, span.end, usize::MAX))
            .map(|p| p.3)
    }

    /// Whether rule `r` reported the bytes `secret` at root span `span` already.
    fn has(&self, layers: &[Layer<'_>], r: u16, span: &Range<usize>, secret: &[u8]) -> bool {
        self.at(r, span).any(|i| {
            let (li, at) = &self.secret_at[i];
            layers[*li].text.get(at.clone()) == Some(secret)
        })
    }
}

/// Most sets of buffers a scanner keeps for later scans (one per scan running at once).
const MAX_REUSE: usize = 64;

/// What one scan leaves for the next: its buffers, and the capture slots of each rule's
/// regex (allocated on a rule's first match attempt). Kept by the scanner, whose regexes
/// the slots belong to.
#[derive(Default)]
struct Reuse {
    scratch: Scratch,
    pool: Pool,
    caps: Vec<Option<Captures>>,
}

/// Most buffers of each kind a [`Pool`] keeps.
const MAX_POOLED: usize = 16;
/// Most bytes of buffers a [`Pool`] holds (so at most [`MAX_REUSE`] times this for a
/// scanner): past it, a finished layer's buffers are freed.
const POOL_BYTES: usize = 256 * 1024;

/// The buffers of a scan's finished layers, for the layers of the next scans: decoded
/// texts, byte maps, keyword-occurrence lists, paths, and lists of windows and runs
/// (allocating them anew for every layer measured ~3 % of a scan's instructions;
/// BENCHMARKS.md). At most [`MAX_POOLED`] of each kind and [`POOL_BYTES`] in all.
#[derive(Default)]
struct Pool {
    texts: Vec<Vec<u8>>,
    maps: Vec<ByteMap>,
    lists: Vec<Vec<Hit>>,
    paths: Vec<Vec<Decoding>>,
    /// Bytes held by `texts`, `maps`, `lists` and `paths`.
    held: usize,
    /// Escape windows of the layer being derived from.
    windows: Vec<Range<usize>>,
    /// Changed base64 extents of the layer being derived from.
    runs: Vec<Range<usize>>,
    /// The layers being derived (empty between layers).
    new: Vec<Layer<'static>>,
}

fn map_bytes(map: &ByteMap) -> usize {
    map.changed.capacity() * 4 + map.source.capacity() * 8
}

fn list_bytes(list: &Vec<Hit>) -> usize {
    list.capacity() * std::mem::size_of::<Hit>()
}

impl Pool {
    /// An empty buffer for a decoded text.
    fn text(&mut self) -> Vec<u8> {
        let text = self.texts.pop().unwrap_or_default();
        self.held = self.held.saturating_sub(text.capacity());
        text
    }

    /// A byte map to be reset by the decoder.
    fn map(&mut self) -> ByteMap {
        let map = self.maps.pop().unwrap_or_default();
        self.held = self.held.saturating_sub(map_bytes(&map));
        map
    }

    /// An empty list of keyword occurrences.
    fn list(&mut self) -> Vec<Hit> {
        let mut list = self.lists.pop().unwrap_or_default();
        self.held = self.held.saturating_sub(list_bytes(&list));
        list.clear();
        list
    }

    /// `parent` and then `d`.
    fn path(&mut self, parent: &[Decoding], d: Decoding) -> Vec<Decoding> {
        let mut path = self.paths.pop().unwrap_or_default();
        self.held = self.held.saturating_sub(path.capacity());
        path.clear();
        path.extend_from_slice(parent);
        path.push(d);
        path
    }

    /// Keeps `item` of `bytes` in `kind` if the limits allow; frees it otherwise.
    fn keep<T>(held: &mut usize, kind: &mut Vec<T>, item: T, bytes: usize) {
        if kind.len() < MAX_POOLED && held.saturating_add(bytes) <= POOL_BYTES {
            *held += bytes;
            kind.push(item);
        }
    }

    /// Keeps the buffers of a finished layer (within the limits), and frees the rest.
    fn recycle(&mut self, layer: Layer<'_>) {
        if let Cow::Owned(text) = layer.text {
            let bytes = text.capacity();
            Self::keep(&mut self.held, &mut self.texts, text, bytes);
        }
        if let Origin::Mapped { map, .. } = layer.origin {
            let bytes = map_bytes(&map);
            Self::keep(&mut self.held, &mut self.maps, map, bytes);
        }
        let bytes = list_bytes(&layer.hits.list);
        Self::keep(&mut self.held, &mut self.lists, layer.hits.list, bytes);
        let bytes = layer.path.capacity();
        Self::keep(&mut self.held, &mut self.paths, layer.path, bytes);
    }

    /// Frees the window and run lists if a large layer grew them past the budget.
    fn trim(&mut self) {
        let range = std::mem::size_of::<Range<usize>>();
        if self.windows.capacity() * range > POOL_BYTES {
            self.windows = Vec::new();
        }
        if self.runs.capacity() * range > POOL_BYTES {
            self.runs = Vec::new();
        }
    }
}

/// One scan's state.
struct Run<'a> {
    scratch: Scratch,
    layers: Vec<Layer<'a>>,
    findings: Findings,
    seen: Seen,
    /// Matches whose secret a decoded layer reads undone, reported at the end unless
    /// that layer reports it (see [`Scanner::resolve_pending`]).
    pending: Vec<Pending>,
    /// Index of each finding's rule (parallel to `findings.items`).
    rule_of: Vec<u16>,
    decoded_bytes: usize,
    done: bool,
    pool: Pool,
}

impl Scanner {
    /// A scanner over a rule set, with default limits.
    pub fn new(set: RuleSet) -> Self {
        Self::with_limits(set, Limits::default())
    }

    /// A scanner over the built-in rules, with default limits.
    pub fn builtin() -> Self {
        Self::new(RuleSet::builtin())
    }

    /// A scanner over a rule set with the given limits.
    pub fn with_limits(set: RuleSet, mut limits: Limits) -> Self {
        // Offsets in decoded layers are 32-bit.
        limits.max_decoded_bytes = limits.max_decoded_bytes.min(u32::MAX as usize / 2);
        limits.max_body_bytes = limits.max_body_bytes.min(u32::MAX as usize / 2);
        let mut patterns: Vec<String> = Vec::new();
        let mut kw_rules: Vec<Vec<u16>> = Vec::new();
        let mut always = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in set.rules.iter().enumerate() {
            let i = i as u16;
            if rule.keywords.is_empty() {
                always.push(i);
            }
            for kw in &rule.keywords {
                match index.get(kw.as_str()) {
                    Some(p) if kw_rules[*p].contains(&i) => {}
                    Some(p) => kw_rules[*p].push(i),
                    None => {
                        index.insert(kw, patterns.len());
                        patterns.push(kw.clone());
                        kw_rules.push(vec![i]);
                    }
                }
            }
        }
        let mut kw_offsets: Vec<Vec<(u16, Box<[u32]>)>> = vec![Vec::new(); patterns.len()];
        for (i, rule) in set.rules.iter().enumerate() {
            let Some(anchor) = &rule.anchor else { continue };
            for (kw, offsets) in rule.keywords.iter().zip(&anchor.offsets) {
                if let Some(p) = index.get(kw.as_str())
                    && !kw_offsets[*p].iter().any(|(r, _)| usize::from(*r) == i)
                {
                    kw_offsets[*p].push((i as u16, offsets.clone().into_boxed_slice()));
                }
            }
        }
        drop(index);
        let keywords = if patterns.is_empty() {
            None
        } else {
            Keywords::new(&patterns)
        };
        if keywords.is_none() {
            // An automaton that does not build (it always should: keywords are bounded)
            // must not silently skip rules: every rule becomes a candidate everywhere.
            always = (0..set.rules.len() as u16).collect();
        }
        let ids = set.rules.iter().map(|r| Arc::from(r.id.as_str())).collect();
        Self {
            set,
            ids,
            keywords,
            kw_rules,
            kw_offsets,
            always,
            limits,
            reuse: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.set
    }

    /// Scans a body as received with its `Content-Encoding`. Spans in the findings are
    /// offsets in the decompressed body.
    pub fn scan(&self, body: &[u8], encoding: ContentEncoding) -> Result<Findings, ScanError> {
        if body.len() > self.limits.max_body_bytes {
            return Err(ScanError::TooLarge {
                what: "body",
                limit: self.limits.max_body_bytes,
            });
        }
        let text = decode::decompress(body, encoding, self.limits.max_decoded_bytes)?;
        let path = match encoding {
            ContentEncoding::Identity => vec![],
            ContentEncoding::Gzip => vec![Decoding::Gzip],
            ContentEncoding::Deflate => vec![Decoding::Deflate],
            ContentEncoding::Brotli => vec![Decoding::Brotli],
        };
        Ok(self.scan_text(text, path))
    }

    /// Scans a body and replaces every secret that sits in the body itself (raw, or behind
    /// JSON escapes or percent-encoding) with `[REDACTED:rule-id]`. Findings seen through
    /// base64 cannot be replaced in place and are counted in [`Redacted::unredacted`].
    /// The body must not be compressed: undo its `Content-Encoding` first with
    /// [`crate::decompress`] and send it on without one.
    pub fn redact(&self, body: &[u8]) -> Result<Redacted, ScanError> {
        let findings = self.scan(body, ContentEncoding::Identity)?;
        let mut spans: Vec<(Range<usize>, &str)> = Vec::new();
        let mut unredacted = 0;
        for f in &findings.items {
            if f.exact {
                spans.push((f.span.clone(), &f.rule));
            } else {
                unredacted += 1;
            }
        }
        spans.sort_by_key(|(s, _)| (s.start, std::cmp::Reverse(s.end)));
        let mut out = Vec::with_capacity(body.len());
        let mut at = 0;
        for (span, rule) in spans {
            if span.start < at {
                // Overlaps one already replaced: extend the cut if it reaches further.
                at = at.max(span.end);
                continue;
            }
            out.extend_from_slice(&body[at..span.start]);
            out.extend_from_slice(b"[REDACTED:");
            out.extend_from_slice(rule.as_bytes());
            out.push(b']');
            at = span.end;
        }
        out.extend_from_slice(&body[at.min(body.len())..]);
        Ok(Redacted {
            body: out,
            findings,
            unredacted,
        })
    }

    /// Scans already-decompressed text; `path` names the decodings it went through.
    pub(crate) fn scan_text<'a>(&self, text: Cow<'a, [u8]>, path: Vec<Decoding>) -> Findings {
        let mut reuse = self
            .reuse
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_default();
        if reuse.caps.len() != self.set.rules.len() {
            reuse.caps = vec![None; self.set.rules.len()];
        }
        // Room for the usual number of layers, so that the list does not grow.
        let mut layers = Vec::with_capacity(self.limits.max_layers.min(15) + 1);
        layers.push(Layer {
            text,
            origin: Origin::Root,
            path,
            hits: Hits::default(),
        });
        let mut run = Run {
            layers,
            pool: std::mem::take(&mut reuse.pool),
            scratch: std::mem::take(&mut reuse.scratch),
            findings: Findings::default(),
            seen: Seen::default(),
            pending: Vec::new(),
            rule_of: Vec::new(),
            decoded_bytes: 0,
            done: false,
        };
        let mut i = 0;
        while i < run.layers.len() && !run.done {
            self.scan_layer(&mut run, i, &mut reuse.caps);
            if !run.done {
                self.derive(&mut run, i);
            }
            i += 1;
        }
        self.resolve_pending(&mut run);
        self.drop_generic_overlaps(&mut run);
        reuse.scratch = std::mem::take(&mut run.scratch);
        for layer in run.layers.drain(..) {
            run.pool.recycle(layer);
        }
        run.pool.trim();
        reuse.pool = std::mem::take(&mut run.pool);
        if let Ok(mut pool) = self.reuse.lock()
            && pool.len() < MAX_REUSE
        {
            pool.push(reuse);
        }
        run.findings
    }

    /// Every keyword occurrence in layer `li`. A layer decoded from its parent with a
    /// per-byte map (JSON escapes, percent-encoding) is not searched again: an occurrence
    /// made only of copied bytes is one of the parent's, moved; the others hold a byte the
    /// decoding produced, so only the text around such bytes is searched.
    fn keyword_hits(&self, layers: &[Layer<'_>], li: usize, pool: &mut Pool) -> Hits {
        let mut hits = Hits {
            list: pool.list(),
            ..Hits::default()
        };
        let Some(kw) = &self.keywords else {
            return hits;
        };
        let n = self.kw_rules.len();
        let layer = &layers[li];
        let text: &[u8] = &layer.text;
        let Origin::Mapped { parent, map } = &layer.origin else {
            // About one occurrence in 64 bytes of chat traffic (`max_tokens`, `key` …).
            hits.list.reserve(text.len() / 64 + 8);
            kw.for_each(text, |p, start, end| {
                let (kw, start, end) = (p as u32, start as u32, end as u32);
                hits.push(Hit { kw, start, end }, n);
            });
            return hits;
        };
        let from = &layers[*parent];
        if from.hits.overflow {
            kw.for_each(text, |p, start, end| {
                let (kw, start, end) = (p as u32, start as u32, end as u32);
                hits.push(Hit { kw, start, end }, n);
            });
            return hits;
        }
        let (lo, hi) = (map.base, map.end);
        let mut found = std::mem::take(&mut hits.list);
        found.reserve(from.hits.list.len().min(MAX_HITS) + 16);
        let first = from.hits.list.partition_point(|h| h.end <= lo);
        for h in &from.hits.list[first..] {
            if h.end > hi {
                break;
            }
            if h.start < lo {
                continue;
            }
            let len = (h.end - h.start) as usize;
            if let Some(c) = map.text_offset(h.start as usize)
                && c + len <= text.len()
                && map.copied(c..c + len)
            {
                let (start, end) = (c as u32, (c + len) as u32);
                found.push(Hit {
                    kw: h.kw,
                    start,
                    end,
                });
            }
        }
        let reach = kw.max_len();
        let mut around: Vec<Range<usize>> = Vec::new();
        for c in &map.changed {
            let c = *c as usize;
            if !kw.in_keyword(text[c]) {
                continue;
            }
            let (a, b) = (c.saturating_sub(reach - 1), (c + reach).min(text.len()));
            match around.last_mut() {
                Some(last) if a <= last.end => last.end = last.end.max(b),
                _ => around.push(a..b),
            }
        }
        for r in around {
            kw.for_each(&text[r.clone()], |p, start, end| {
                let (start, end) = ((r.start + start) as u32, (r.start + end) as u32);
                found.push(Hit {
                    kw: p as u32,
                    start,
                    end,
                });
            });
        }
        found.sort_unstable_by_key(|h| (h.end, h.start, h.kw));
        found.dedup();
        if found.len() <= MAX_HITS {
            // The usual case: the list as it is.
            hits.list = found;
            return hits;
        }
        for h in found.drain(..) {
            hits.push(h, n);
        }
        let bytes = list_bytes(&found);
        Pool::keep(&mut pool.held, &mut pool.lists, found, bytes);
        hits
    }

    /// Fills `scratch` with the candidate rules for a layer: `rules`, sorted, and for each
    /// rule searched around its keywords, the spans of their occurrences (`spans`, sorted
    /// by rule and start). A candidate without spans searches the whole layer (rules
    /// without keywords, rules over [`MAX_RULE_HITS`], rules triggered past [`MAX_HITS`]).
    fn candidates(&self, hits: &Hits, scratch: &mut Scratch) {
        let Scratch {
            rules,
            spans,
            whole,
            ..
        } = scratch;
        rules.clear();
        spans.clear();
        if hits.list.is_empty() && !hits.overflow && self.always.is_empty() {
            // No keyword and no rule without keywords: no candidate (most decoded layers).
            return;
        }
        whole.clear();
        whole.resize(self.set.rules.len(), false);
        for r in &self.always {
            whole[*r as usize] = true;
        }
        for h in &hits.list {
            for r in &self.kw_rules[h.kw as usize] {
                spans.push((*r, h.start, h.end, h.kw));
            }
        }
        if hits.overflow {
            for (p, present) in hits.present.iter().enumerate() {
                if *present {
                    for r in &self.kw_rules[p] {
                        whole[*r as usize] = true;
                    }
                }
            }
        }
        spans.sort_unstable();
        // A rule with too many occurrences searches the whole layer.
        let mut i = 0;
        while i < spans.len() {
            let r = spans[i].0;
            let n = spans[i..].iter().take_while(|s| s.0 == r).count();
            if n > MAX_RULE_HITS {
                whole[r as usize] = true;
            }
            i += n;
        }
        spans.retain(|s| !whole[s.0 as usize]);
        rules.extend(spans.iter().map(|s| s.0));
        rules.extend((0..whole.len() as u16).filter(|r| whole[*r as usize]));
        rules.sort_unstable();
        rules.dedup();
    }

    /// Fills `out` with the spans of a layer of `len` bytes a rule must search: merged
    /// windows around its keywords' occurrences `spans` (sorted by start), or the whole
    /// layer.
    fn windows(
        &self,
        rule: u16,
        spans: &[(u16, u32, u32, u32)],
        len: usize,
        out: &mut Vec<Range<usize>>,
    ) {
        out.clear();
        let Some(w) = self.set.rules[rule as usize].window else {
            out.push(0..len);
            return;
        };
        let lead = self.set.rules[rule as usize].lead.unwrap_or(w);
        if spans.is_empty() {
            out.push(0..len);
            return;
        }
        for (_, start, end, _) in spans {
            let (a, b) = (
                (*start as usize).saturating_sub(lead),
                (*end as usize + w + 1).min(len),
            );
            match out.last_mut() {
                Some(last) if a <= last.end => last.end = last.end.max(b),
                _ => out.push(a..b),
            }
        }
    }

    /// Where keyword pattern `p`'s occurrences place the keyed part of rule `r`'s matches.
    fn offsets(&self, r: u16, p: u32) -> &[u32] {
        self.kw_offsets
            .get(p as usize)
            .and_then(|rs| rs.iter().find(|(x, _)| *x == r))
            .map_or(&[], |(_, o)| o)
    }

    fn scan_layer(&self, run: &mut Run<'_>, li: usize, caps: &mut [Option<Captures>]) {
        let hits = self.keyword_hits(&run.layers, li, &mut run.pool);
        let mut scratch = std::mem::take(&mut run.scratch);
        self.candidates(&hits, &mut scratch);
        run.layers[li].hits = hits;
        let Run {
            layers,
            findings,
            seen,
            rule_of,
            pending,
            done,
            ..
        } = run;
        let mut sink = Sink {
            findings,
            seen,
            rule_of,
            pending,
        };
        let layers: &[Layer<'_>] = layers;
        let full: &[u8] = &layers[li].text;
        let place = Place { full, layers, li };
        let Scratch {
            rules,
            spans,
            starts,
            windows,
            ..
        } = &mut scratch;
        let mut from = 0;
        for r in rules.iter().copied() {
            let n = spans[from..].iter().take_while(|s| s.0 == r).count();
            let spans = &spans[from..from + n];
            from += n;
            let rule = &self.set.rules[r as usize];
            let caps = caps[r as usize].get_or_insert_with(|| rule.regex.create_captures());
            let stop = match &rule.anchor {
                Some(anchor) if !spans.is_empty() => {
                    starts.clear();
                    for span in spans {
                        for o in self.offsets(r, span.3) {
                            let Some(q) = span.1.checked_sub(*o) else {
                                continue;
                            };
                            match &anchor.tail {
                                // Matches start where their keyed part does.
                                None => starts.push(q),
                                // A match starts at most `before` bytes before a keyed
                                // part, and only where the keyed part and all after it
                                // match.
                                Some(tail) => {
                                    let input = Input::new(full)
                                        .range(q as usize..)
                                        .anchored(Anchored::Yes);
                                    if tail.is_match(input) {
                                        starts.extend(q.saturating_sub(anchor.before)..=q);
                                    }
                                }
                            }
                        }
                    }
                    starts.sort_unstable();
                    starts.dedup();
                    self.search_at(r, &place, starts, caps, &mut sink)
                }
                _ => {
                    self.windows(r, spans, full.len(), windows);
                    self.search_windows(r, &place, windows, caps, &mut sink)
                }
            };
            if stop {
                *done = true;
                break;
            }
        }
        run.scratch = scratch;
    }

    /// Runs rule `r` anchored at each of `starts` (sorted) in `full`, skipping those
    /// inside a match already found. Returns whether the findings limit was reached.
    fn search_at(
        &self,
        r: u16,
        place: &Place<'_, '_>,
        starts: &[u32],
        caps: &mut Captures,
        sink: &mut Sink<'_>,
    ) -> bool {
        let rule = &self.set.rules[r as usize];
        let full = place.full;
        let mut at = 0;
        for q in starts.iter().map(|q| *q as usize) {
            if q < at || q > full.len() {
                continue;
            }
            // No match starts with the byte there (nor at the end: it is not empty).
            if let Some(first) = &rule.first
                && q > 0
                && full.get(q).is_none_or(|b| !first[usize::from(*b)])
            {
                continue;
            }
            let input = Input::new(full).range(q..).anchored(Anchored::Yes);
            let found = if rule.secret_is_match {
                rule.regex.search(&input).map(|m| m.span())
            } else {
                rule.regex.search_captures(&input, caps);
                caps.get_match().map(|m| m.span())
            };
            let Some(m) = found else { continue };
            at = if m.end > m.start { m.end } else { m.end + 1 };
            if self.consider(r, place, m, caps, sink) {
                return true;
            }
        }
        false
    }

    /// Runs rule `r` over each of `windows` of `full`. Returns whether the findings
    /// limit was reached.
    fn search_windows(
        &self,
        r: u16,
        place: &Place<'_, '_>,
        windows: &[Range<usize>],
        caps: &mut Captures,
        sink: &mut Sink<'_>,
    ) -> bool {
        let rule = &self.set.rules[r as usize];
        let full = place.full;
        for window in windows.iter().cloned() {
            // The window's end cuts the haystack; a match reaching the cut might be a
            // truncated one, so it counts only where the cut is the real end.
            let text = &full[..window.end];
            let mut at = window.start;
            while at <= text.len() {
                let input = Input::new(text).range(at..);
                let found = if rule.secret_is_match {
                    rule.regex.search(&input).map(|m| m.span())
                } else {
                    rule.regex.search_captures(&input, caps);
                    caps.get_match().map(|m| m.span())
                };
                let Some(m) = found else { break };
                at = if m.end > m.start { m.end } else { m.end + 1 };
                if m.end >= window.end && window.end < full.len() {
                    break;
                }
                if self.consider(r, place, m, caps, sink) {
                    return true;
                }
            }
        }
        false
    }

    /// Checks match `m` of rule `r` in layer `li` (its groups in `caps` unless the secret
    /// is the match): entropy, allowlists, then reports it unless it was reported
    /// already. Returns whether the findings limit was reached.
    fn consider(
        &self,
        r: u16,
        place: &Place<'_, '_>,
        m: Span,
        caps: &Captures,
        sink: &mut Sink<'_>,
    ) -> bool {
        let Place { full, layers, li } = *place;
        let rule = &self.set.rules[r as usize];
        let secret_span = match rule.secret_group {
            _ if rule.secret_is_match => Some(m),
            Some(g) => caps.get_group(g),
            None => (1..caps.group_len())
                .filter_map(|g| caps.get_group(g))
                .find(|s| s.end > s.start)
                .or(Some(m)),
        };
        let Some(Span { start: s, end: e }) = secret_span else {
            return false;
        };
        if e <= s {
            return false;
        }
        let secret = &full[s..e];
        let (span, exact) = map_to_root(layers, li, s..e);
        if sink.seen.has(layers, r, &span, secret) {
            return false;
        }
        if layers[li].path.len() < self.limits.max_depth && decodes_further(full, s..e) {
            // A layer decoded from this one reads the secret undone; its finding at this
            // place, if any, is the one kept (see `resolve_pending`).
            sink.pending.push(Pending {
                r,
                li,
                matched: m.start..m.end,
                secret: s..e,
                span,
                exact,
            });
            return false;
        }
        let found = Pending {
            r,
            li,
            matched: m.start..m.end,
            secret: s..e,
            span,
            exact,
        };
        self.report(layers, found, sink)
    }

    /// Checks a match's entropy and allowlists, then reports it. Returns whether the
    /// findings limit was reached.
    fn report(&self, layers: &[Layer<'_>], found: Pending, sink: &mut Sink<'_>) -> bool {
        let Pending {
            r,
            li,
            matched: m,
            secret: at,
            span,
            exact,
        } = found;
        let rule = &self.set.rules[r as usize];
        let full: &[u8] = &layers[li].text;
        let secret = &full[at.clone()];
        if let Some(min) = rule.entropy
            && shannon_entropy(secret) < min
        {
            return false;
        }
        let matched = &full[m.clone()];
        let allowed =
            |al: &Allowlist| al.allows(secret, matched, || line_around(full, m.start, m.end));
        if rule.allowlists.iter().any(allowed) || self.set.allowlists.iter().any(allowed) {
            return false;
        }
        if sink.findings.items.len() >= self.limits.max_findings {
            sink.findings.incomplete = Some(Incomplete::FindingsLimit);
            return true;
        }
        let digest: [u8; 32] = Sha256::digest(secret).into();
        let index = sink.findings.items.len();
        sink.seen.places.insert((r, span.start, span.end, index));
        sink.seen.secret_at.push((li, at));
        sink.findings.items.push(Finding {
            rule: self.ids[r as usize].clone(),
            span,
            layers: layers[li].path.clone(),
            exact,
            fingerprint: Fingerprint::from_digest(&digest),
            credential: None,
            digest,
        });
        sink.rule_of.push(r);
        false
    }

    /// Reports the matches put off because a decoded layer would read their secret undone
    /// (see [`decodes_further`]), unless a finding of the same rule sits at the same place:
    /// one finding per secret occurrence, the most-decoded layer's. The latest put off
    /// (the most decoded) are tried first; those reported join the findings in the order
    /// found.
    fn resolve_pending(&self, run: &mut Run<'_>) {
        let Run {
            layers,
            findings,
            seen,
            rule_of,
            pending,
            ..
        } = run;
        if pending.is_empty() {
            return;
        }
        let from = findings.items.len();
        let mut sink = Sink {
            findings,
            seen,
            rule_of,
            pending: &mut Vec::new(),
        };
        for found in pending.drain(..).rev() {
            if sink.seen.at(found.r, &found.span).next().is_some() {
                continue;
            }
            if self.report(layers, found, &mut sink) {
                break;
            }
        }
        sink.findings.items[from..].reverse();
        sink.rule_of[from..].reverse();
    }

    /// Adds the layers decoded from layer `li`.
    fn derive(&self, run: &mut Run<'_>, li: usize) {
        let limits = &self.limits;
        let parent = &run.layers[li];
        let text: &[u8] = &parent.text;
        let pool = &mut run.pool;
        let mut room = Room {
            layers: limits.max_layers.saturating_sub(run.layers.len()),
            bytes: limits.max_decoded_bytes.saturating_sub(run.decoded_bytes),
            deeper: parent.path.len() < limits.max_depth,
            incomplete: None,
            new: std::mem::take(&mut pool.new),
        };
        // Only text near an escape reads differently once decoded; the rest was scanned
        // as it is. Each window around escapes is a layer of its own.
        let mut windows = std::mem::take(&mut pool.windows);
        type EscapeAt = fn(&[u8], usize) -> bool;
        type Decoder = fn(&[u8], usize, &mut Vec<u8>, &mut ByteMap);
        let escapes: [(u8, EscapeAt, Decoder, Decoding); 2] = [
            (
                b'\\',
                decode::json_escape_at,
                decode::json_unescape_into,
                Decoding::Json,
            ),
            (
                b'%',
                decode::percent_escape_at,
                decode::percent_decode_into,
                Decoding::Url,
            ),
        ];
        for (needle, at, decoder, decoding) in escapes {
            decode::escape_windows_into(text, needle, at, &mut windows);
            for w in windows.iter().cloned() {
                if needle == b'\\' && room.deeper && self.inert_json_window(text, &w, &parent.hits)
                {
                    continue;
                }
                let (mut decoded, mut map) = (pool.text(), pool.map());
                decoder(&text[w.clone()], w.start, &mut decoded, &mut map);
                room.push(Layer {
                    text: Cow::Owned(decoded),
                    origin: Origin::Mapped { parent: li, map },
                    path: pool.path(&parent.path, decoding),
                    hits: Hits::default(),
                });
            }
        }
        pool.windows = windows;
        let mut runs = std::mem::take(&mut pool.runs);
        let mut decode_run = |r: decode::Run| {
            // Hex digests and similar are base64-shaped but never encode text.
            if r.hex {
                return true;
            }
            let mut end = r.end;
            if end - r.start > limits.max_base64_len {
                room.incomplete = Some(Incomplete::DecodeBudget);
                end = r.start + limits.max_base64_len / 4 * 4;
            }
            let Some(bytes) = decode::base64_decode(&text[r.start..end], r.url_safe) else {
                return true;
            };
            let (bytes, path) = if decode::is_gzip(&bytes) {
                match decode::decompress(&bytes, ContentEncoding::Gzip, room.bytes) {
                    Ok(b) => {
                        let mut p = pool.path(&parent.path, Decoding::Base64);
                        p.push(Decoding::Gzip);
                        (b.into_owned(), p)
                    }
                    Err(ScanError::TooLarge { .. }) => {
                        room.incomplete = Some(Incomplete::DecodeBudget);
                        return true;
                    }
                    Err(_) => return true,
                }
            } else if decode::plausible_text(&bytes) {
                (bytes, pool.path(&parent.path, Decoding::Base64))
            } else {
                return true;
            };
            room.push(Layer {
                text: Cow::Owned(bytes),
                origin: Origin::Segment {
                    parent: li,
                    span: r.start..r.end,
                },
                path,
                hits: Hits::default(),
            });
            room.layers > 0 && room.bytes > 0
        };
        match &parent.origin {
            Origin::Mapped { parent: grand, map } => {
                // Runs this layer's decoding left as they were are decoded in the parent.
                let from: &[u8] = &run.layers[*grand].text;
                decode::changed_runs_into(text, from, map, &mut runs);
                for ext in runs.iter().cloned() {
                    // With room for padding after the run.
                    let end = (ext.end + 2).min(text.len());
                    let mut more = true;
                    decode::base64_runs(&text[ext.start..end], limits.min_base64_len, |r| {
                        more = decode_run(decode::Run {
                            start: ext.start + r.start,
                            end: ext.start + r.end,
                            url_safe: r.url_safe,
                            hex: r.hex,
                        });
                        more
                    });
                    if !more {
                        break;
                    }
                }
            }
            _ => decode::base64_runs(text, limits.min_base64_len, decode_run),
        }
        let Room {
            mut new,
            incomplete,
            ..
        } = room;
        run.pool.runs = runs;
        for layer in new.drain(..) {
            run.decoded_bytes += layer.text.len();
            run.layers.push(layer);
        }
        run.pool.new = new;
        if let Some(why) = incomplete {
            run.findings.incomplete.get_or_insert(why);
        }
    }

    /// Whether decoding the JSON escapes of window `w` of a layer would give a layer in
    /// which nothing can be found: every escape is `\"`, and the window holds no keyword
    /// occurrence of the layer (`hits`), no `%` and no other backslash. Such a layer reads
    /// as its parent but for quotes: it would hold no keyword occurrence (a `"` is in no
    /// keyword, which is checked), no base64 run that reads differently from the parent's
    /// (a `"` and its source `\"` are outside the alphabet), and nothing to decode again;
    /// and with every rule searching only around keywords, no rule would run in it. Most
    /// escaped JSON in traffic is like this (tool results: `{\"rows\": 36, …}`), so such
    /// windows are not decoded at all (they take no layer or decoding budget either).
    fn inert_json_window(&self, text: &[u8], w: &Range<usize>, hits: &Hits) -> bool {
        let Some(kw) = &self.keywords else {
            return false;
        };
        if !self.always.is_empty() || hits.overflow || kw.in_keyword(b'"') {
            return false;
        }
        let first = hits.list.partition_point(|h| (h.end as usize) <= w.start);
        // In order of end, so past `w.end` plus a keyword's length none overlaps.
        let past = w.end + kw.max_len();
        if hits.list[first..]
            .iter()
            .take_while(|h| (h.end as usize) < past)
            .any(|h| (h.start as usize) < w.end)
        {
            return false;
        }
        let window = &text[w.clone()];
        if memchr::memchr(b'%', window).is_some() {
            return false;
        }
        let mut i = 0;
        while let Some(p) = decode::find2(&window[i..], b'\\', b'\\') {
            if window.get(i + p + 1) != Some(&b'"') {
                return false;
            }
            i += p + 2;
        }
        true
    }

    /// A generic rule's finding gives way to a specific rule's finding overlapping it.
    fn drop_generic_overlaps(&self, run: &mut Run<'_>) {
        let generic: Vec<bool> = run
            .rule_of
            .iter()
            .map(|r| self.set.rules[*r as usize].is_generic())
            .collect();
        if !generic.iter().any(|g| *g) || generic.iter().all(|g| *g) {
            return;
        }
        let specific: Vec<Range<usize>> = run
            .findings
            .items
            .iter()
            .zip(&generic)
            .filter(|(_, g)| !**g)
            .map(|(f, _)| f.span.clone())
            .collect();
        let mut keep = generic.iter();
        run.findings.items.retain(|f| {
            let is_generic = keep.next().copied().unwrap_or(false);
            !is_generic
                || !specific
                    .iter()
                    .any(|s| s.start < f.span.end && f.span.start < s.end)
        });
    }
}

/// What is left of the decoding budget while deriving layers.
struct Room {
    layers: usize,
    bytes: usize,
    deeper: bool,
    incomplete: Option<Incomplete>,
    new: Vec<Layer<'static>>,
}

impl Room {
    fn push(&mut self, layer: Layer<'static>) {
        if !self.deeper {
            self.incomplete = Some(Incomplete::NestingDepth);
        } else if self.layers == 0 || layer.text.len() > self.bytes {
            self.incomplete = Some(Incomplete::DecodeBudget);
        } else {
            self.layers -= 1;
            self.bytes -= layer.text.len();
            self.new.push(layer);
        }
    }
}

/// Whether the bytes `secret` of `text` hold an escape (JSON, or percent-encoding) that
/// [`Scanner::derive`] decodes into a layer of its own: that layer reads the secret as it
/// was before it was escaped.
fn decodes_further(text: &[u8], secret: Range<usize>) -> bool {
    memchr::memchr2_iter(b'\\', b'%', &text[secret.clone()]).any(|p| {
        let i = secret.start + p;
        decode::json_escape_at(text, i) || decode::percent_escape_at(text, i)
    })
}

/// Maps a span in layer `li` to the root text. Exact while every step is a per-byte map.
fn map_to_root(
    layers: &[Layer<'_>],
    mut li: usize,
    mut span: Range<usize>,
) -> (Range<usize>, bool) {
    let mut exact = true;
    loop {
        match &layers[li].origin {
            Origin::Root => return (span, exact),
            Origin::Mapped { parent, map } => {
                let s = map.parent_offset(span.start);
                let e = map.parent_offset(span.end);
                span = s..e.max(s);
                li = *parent;
            }
            Origin::Segment { parent, span: seg } => {
                span = seg.clone();
                exact = false;
                li = *parent;
            }
        }
    }
}

/// The line holding `start..end`, at most 1 KiB either side.
fn line_around(text: &[u8], start: usize, end: usize) -> &[u8] {
    let lo = start.saturating_sub(1024);
    let hi = (end + 1024).min(text.len());
    let s = memchr::memrchr(b'\n', &text[lo..start]).map_or(lo, |p| lo + p + 1);
    let e = memchr::memchr(b'\n', &text[end..hi]).map_or(hi, |p| end + p);
    &text[s..e]
}
