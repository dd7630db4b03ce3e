//! The keyword prefilter: every occurrence of every rule keyword, ASCII case-insensitive,
//! in one pass over a text.
//!
//! The built-in keywords (and any file's up to a bounded table size) compile into an
//! Aho-Corasick DFA of our own: bytes fold into a few classes, match states are numbered
//! last, so the inner loop is one class lookup, one table lookup and one comparison per
//! byte. A keyword set too large for the table falls back to the `aho-corasick` crate's
//! overlapping search. Both report every occurrence (overlapping ones too), so a keyword
//! inside a longer one is never hidden by it.
//!
//! Written here rather than using `aho-corasick`'s own DFA because on our keyword set that
//! search measured ~18 instructions a byte against ~6.5 here (callgrind; BENCHMARKS.md), and
//! the keyword pass is on every request body.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Most entries (states × byte classes) of the DFA table; larger sets use `aho-corasick`.
/// 2^20 entries is at most 4 MiB.
const MAX_TABLE: usize = 1 << 20;

/// Entries of a small DFA's table: every `u16` state plus any byte class, so that a
/// state and a class add up to an index in the table without wrapping or a bounds check.
const SMALL_TABLE: usize = (1 << 16) + 256;

/// Compiled keywords.
pub(crate) struct Keywords {
    imp: Imp,
    /// Length of each keyword.
    lens: Vec<u32>,
    /// The longest keyword.
    max_len: usize,
    /// Whether a byte occurs in some keyword (either case).
    in_keyword: [bool; 256],
}

enum Imp {
    /// The table has at most 2^16 entries (the built-in set): a state is a `u16`, and
    /// the table is allocated to [`SMALL_TABLE`] entries so that indexing needs no bounds
    /// check.
    Small(Dfa<u16>),
    Large(Dfa<u32>),
    Crate(AhoCorasick),
}

struct Dfa<T> {
    /// Byte class of each byte (case folded); class 0 is every byte in no keyword.
    class: [u8; 256],
    /// Number of classes: the stride of a state's row.
    stride: usize,
    /// `trans[s + class]`: the next state, premultiplied by `stride`.
    trans: Vec<T>,
    /// States at or above this (premultiplied) id end at least one keyword.
    match_min: usize,
    /// For match state `match_min + k * stride`: the keywords it ends, `outs[out_at[k]..out_at[k + 1]]`.
    out_at: Vec<u32>,
    outs: Vec<u32>,
}

impl Keywords {
    /// Compiles keywords (lower-case, non-empty). `None` only if even the fallback does not
    /// build.
    pub(crate) fn new(patterns: &[String]) -> Option<Self> {
        let lens = patterns.iter().map(|p| p.len() as u32).collect();
        let max_len = patterns.iter().map(String::len).max().unwrap_or(0);
        let mut in_keyword = [false; 256];
        for b in patterns.iter().flat_map(|p| p.bytes()) {
            in_keyword[usize::from(b.to_ascii_lowercase())] = true;
            in_keyword[usize::from(b.to_ascii_uppercase())] = true;
        }
        let imp = match build(patterns) {
            Some(imp) => imp,
            None => Imp::Crate(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(patterns)
                    .ok()?,
            ),
        };
        Some(Self {
            imp,
            lens,
            max_len,
            in_keyword,
        })
    }

    /// The longest keyword, in bytes.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Whether `b` occurs in some keyword (ASCII case-insensitive): a keyword occurrence
    /// can only hold bytes for which this is true.
    pub(crate) fn in_keyword(&self, b: u8) -> bool {
        self.in_keyword[usize::from(b)]
    }

    /// Calls `f(keyword, start, end)` for every occurrence, in order of `end`.
    pub(crate) fn for_each(&self, text: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        match &self.imp {
            Imp::Small(d) => d.run_small(text, &self.lens, self.max_len, &mut f),
            Imp::Large(d) => d.run(text, &self.lens, &mut f),
            Imp::Crate(ac) => {
                for m in ac.find_overlapping_iter(text) {
                    f(m.pattern().as_usize(), m.start(), m.end());
                }
            }
        }
    }
}

impl<T> Dfa<T> {
    #[inline]
    fn report(&self, s: usize, end: usize, lens: &[u32], f: &mut impl FnMut(usize, usize, usize)) {
        let k = (s - self.match_min) / self.stride;
        let (a, z) = (self.out_at[k] as usize, self.out_at[k + 1] as usize);
        for p in &self.outs[a..z] {
            let p = *p as usize;
            f(p, end - lens[p] as usize, end);
        }
    }
}

impl Dfa<u16> {
    fn run_small(
        &self,
        text: &[u8],
        lens: &[u32],
        max_len: usize,
        f: &mut impl FnMut(usize, usize, usize),
    ) {
        let Ok(trans) = <&[u16; SMALL_TABLE]>::try_from(&self.trans[..]) else {
            return self.run(text, lens, f);
        };
        let class = &self.class;
        let match_min = self.match_min as u16;
        let step = |s: u16, b: u8| trans[usize::from(s) + usize::from(class[usize::from(b)])];
        // A DFA walk is one dependent load after another: its speed is the load latency.
        // Four walks over four quarters of the text, interleaved, overlap their loads.
        // Each quarter but the first starts `max_len` bytes early (the state after that
        // many bytes is the true one) and reports only occurrences ending inside it.
        const LANES: usize = 4;
        let quarter = text.len() / LANES;
        if quarter < 4 * max_len.max(16) {
            let mut s = 0u16;
            for (i, b) in text.iter().enumerate() {
                s = step(s, *b);
                if s >= match_min {
                    self.report(usize::from(s), i + 1, lens, f);
                }
            }
            return;
        }
        let bounds: [usize; LANES + 1] = [0, quarter, 2 * quarter, 3 * quarter, text.len()];
        let from = |k: usize| bounds[k].saturating_sub(if k == 0 { 0 } else { max_len });
        // Matches seen by lanes 1..4, reported after lane 0's: (lane, state, end).
        let mut later: Vec<(usize, u16, usize)> = Vec::new();
        let mut emit = |k: usize, s: u16, end: usize, f: &mut dyn FnMut(u16, usize)| {
            if end > bounds[k] {
                if k == 0 {
                    f(s, end);
                } else {
                    later.push((k, s, end));
                }
            }
        };
        let mut report = |s: u16, end: usize| self.report(usize::from(s), end, lens, f);
        // Lock step over the length every lane has.
        let common = (0..LANES)
            .map(|k| bounds[k + 1] - from(k))
            .min()
            .unwrap_or(0);
        let lane = |k: usize| &text[from(k)..from(k) + common];
        let mut st = [0u16; LANES];
        let (l0, l1, l2, l3) = (lane(0), lane(1), lane(2), lane(3));
        // The walk runs in a function of its own until some lane is in a match state, so
        // that its few values stay in registers (inline, the reporting code's values
        // pushed them onto the stack: ~10 instructions a byte instead of ~6).
        let lanes = [l0, l1, l2, l3];
        let mut i = 0;
        while i < common {
            i = walk4(trans, class, &lanes, i, &mut st, match_min);
            for (k, sk) in st.iter().enumerate() {
                if *sk >= match_min {
                    emit(k, *sk, from(k) + i, &mut report);
                }
            }
        }
        // Each lane's rest.
        for k in 0..LANES {
            let mut s = st[k];
            let start = from(k) + common;
            for (i, b) in text[start..bounds[k + 1]].iter().enumerate() {
                s = step(s, *b);
                if s >= match_min {
                    emit(k, s, start + i + 1, &mut report);
                }
            }
        }
        later.sort_by_key(|(k, _, end)| (*k, *end));
        for (_, s, end) in later {
            report(s, end);
        }
    }
}

/// Steps four DFA walks over `lanes` (all of one length) from `i` until one of them is
/// in a match state after a byte (returns the index after that byte) or the lanes end.
#[inline(never)]
fn walk4(
    trans: &[u16; SMALL_TABLE],
    class: &[u8; 256],
    lanes: &[&[u8]; 4],
    mut i: usize,
    st: &mut [u16; 4],
    match_min: u16,
) -> usize {
    let [l0, l1, l2, l3] = *lanes;
    let n = l0.len().min(l1.len()).min(l2.len()).min(l3.len());
    let (l0, l1, l2, l3) = (&l0[..n], &l1[..n], &l2[..n], &l3[..n]);
    // States held as `usize`: a `u16` state plus a class is an index in the table (see
    // `SMALL_TABLE`), with no wrapping, truncation or bounds check.
    let [mut s0, mut s1, mut s2, mut s3] = st.map(usize::from);
    let match_min = usize::from(match_min);
    let step = |s: usize, b: u8| usize::from(trans[s + usize::from(class[usize::from(b)])]);
    while i < n {
        s0 = step(s0, l0[i]);
        s1 = step(s1, l1[i]);
        s2 = step(s2, l2[i]);
        s3 = step(s3, l3[i]);
        i += 1;
        // `match_min` is a power of two: the or is at or above it only if one of the
        // states is.
        if s0 | s1 | s2 | s3 >= match_min {
            break;
        }
    }
    // Each came from the table: it fits.
    *st = [s0, s1, s2, s3].map(|s| s as u16);
    i
}

impl<T: Copy + Into<u32>> Dfa<T> {
    #[inline]
    fn run(&self, text: &[u8], lens: &[u32], f: &mut impl FnMut(usize, usize, usize)) {
        let trans = &self.trans[..];
        let mut s = 0usize;
        for (i, b) in text.iter().enumerate() {
            s = trans[s + usize::from(self.class[usize::from(*b)])].into() as usize;
            if s >= self.match_min {
                self.report(s, i + 1, lens, f);
            }
        }
    }
}

/// Builds the DFA, or `None` when its table would be over [`MAX_TABLE`].
fn build(patterns: &[String]) -> Option<Imp> {
    let mut class = [0u8; 256];
    let mut classes = 1usize;
    for p in patterns {
        for b in p.bytes() {
            let b = b.to_ascii_lowercase();
            if class[usize::from(b)] == 0 {
                if classes == 256 {
                    return None;
                }
                class[usize::from(b)] = classes as u8;
                classes += 1;
            }
        }
    }
    for b in b'A'..=b'Z' {
        class[usize::from(b)] = class[usize::from(b.to_ascii_lowercase())];
    }
    let stride = classes;
    let most_states = patterns.iter().map(String::len).sum::<usize>() + 1;
    if most_states.checked_mul(stride)? > MAX_TABLE {
        return None;
    }
    // The trie; `NONE` marks a missing edge.
    const NONE: u32 = u32::MAX;
    let mut goto: Vec<u32> = vec![NONE; stride];
    let mut outs: Vec<Vec<u32>> = vec![Vec::new()];
    for (p, pat) in patterns.iter().enumerate() {
        let mut s = 0usize;
        for b in pat.bytes() {
            let c = usize::from(class[usize::from(b)]);
            if goto[s * stride + c] == NONE {
                let t = outs.len();
                goto[s * stride + c] = t as u32;
                goto.extend(std::iter::repeat_n(NONE, stride));
                outs.push(Vec::new());
            }
            s = goto[s * stride + c] as usize;
        }
        if !outs[s].contains(&(p as u32)) {
            outs[s].push(p as u32);
        }
    }
    let n = outs.len();
    // Breadth first: a state's failure state is shallower, so its row is complete already.
    let mut fail = vec![0u32; n];
    let mut queue = std::collections::VecDeque::new();
    for t in goto.iter_mut().take(stride) {
        match *t {
            NONE => *t = 0,
            child => queue.push_back(child),
        }
    }
    while let Some(s) = queue.pop_front() {
        let s = s as usize;
        let f = fail[s] as usize;
        if s != 0 {
            let inherited = outs[f].clone();
            for p in inherited {
                if !outs[s].contains(&p) {
                    outs[s].push(p);
                }
            }
        }
        for c in 0..stride {
            let next_of_fail = goto[f * stride + c];
            match goto[s * stride + c] {
                NONE => goto[s * stride + c] = next_of_fail,
                t => {
                    fail[t as usize] = if s == 0 { 0 } else { next_of_fail };
                    queue.push_back(t);
                }
            }
        }
    }
    // Rows of states without output first (the root's row at 0), then those of match
    // states. With a small table, match rows start at a power of two, so that "is any of
    // these states a match state" is one comparison of their bitwise or.
    let non_match = outs.iter().filter(|o| o.is_empty()).count();
    let matching = n - non_match;
    let small_min = (non_match * stride).next_power_of_two();
    let small = small_min + matching * stride <= 1 << 16;
    let match_min = if small { small_min } else { non_match * stride };
    let mut offset = vec![0usize; n];
    let (mut plain, mut hit) = (0, match_min);
    let mut out_at = vec![0u32];
    let mut flat = Vec::new();
    for (s, o) in outs.iter().enumerate() {
        if o.is_empty() {
            offset[s] = plain;
            plain += stride;
        } else {
            offset[s] = hit;
            hit += stride;
            flat.extend_from_slice(o);
            out_at.push(flat.len() as u32);
        }
    }
    let mut trans = vec![0u32; hit];
    for s in 0..n {
        for c in 0..stride {
            trans[offset[s] + c] = offset[goto[s * stride + c] as usize] as u32;
        }
    }
    Some(if small {
        let mut small: Vec<u16> = trans.iter().map(|t| *t as u16).collect();
        small.resize(SMALL_TABLE, 0);
        Imp::Small(Dfa {
            class,
            stride,
            trans: small,
            match_min,
            out_at,
            outs: flat,
        })
    } else {
        Imp::Large(Dfa {
            class,
            stride,
            trans,
            match_min,
            out_at,
            outs: flat,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(patterns: &[&str], text: &[u8]) -> Vec<(usize, usize, usize)> {
        let lower = text.to_ascii_lowercase();
        let mut out = Vec::new();
        for end in 1..=text.len() {
            for (p, pat) in patterns.iter().enumerate() {
                if pat.len() <= end && &lower[end - pat.len()..end] == pat.as_bytes() {
                    out.push((p, end - pat.len(), end));
                }
            }
        }
        out
    }

    fn found(kw: &Keywords, text: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut v = Vec::new();
        kw.for_each(text, |p, s, e| v.push((p, s, e)));
        v.sort_by_key(|(p, s, e)| (*e, *p, *s));
        v
    }

    #[test]
    fn every_occurrence_case_insensitive_like_a_naive_search() {
        let patterns = [
            "key",
            "secretaccesskey",
            "secret",
            "sk-",
            "sk-ant-",
            "ask",
            "a",
            "private key",
        ];
        let owned: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        let kw = Keywords::new(&owned).expect("builds");
        assert!(matches!(kw.imp, Imp::Small(_)));
        let texts: [&[u8]; 5] = [
            b"SecretAccessKey=1 ask sk-ant-x TASK-sK- Private KEY",
            b"",
            b"aaaa",
            b"secretaccesskeysecretaccesskey",
            b"\xff\x00sk-\xc3\xa9key",
        ];
        for text in texts {
            let mut want = naive(&patterns, text);
            want.sort_by_key(|(p, s, e)| (*e, *p, *s));
            assert_eq!(found(&kw, text), want, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn interleaved_walks_over_long_texts_find_what_a_naive_search_does() {
        let patterns = [
            "key",
            "secretaccesskey",
            "sk-",
            "sk-ant-",
            "ab",
            "private key",
        ];
        let owned: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        let kw = Keywords::new(&owned).expect("builds");
        let alphabet = b"abkeyS-Kcrtp ivx";
        let mut seed = 0x2545_f491_u64;
        for len in [0, 1, 100, 271, 272, 273, 1000, 4099, 10_007] {
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    alphabet[(seed >> 33) as usize % alphabet.len()]
                })
                .collect();
            let mut want = naive(&patterns, &text);
            want.sort_by_key(|(p, s, e)| (*e, *p, *s));
            assert!(len < 4000 || want.len() > 10, "the text holds keywords");
            assert_eq!(found(&kw, &text), want, "length {len}");
            // Reported in order of end.
            let mut ends = Vec::new();
            kw.for_each(&text, |_, _, e| ends.push(e));
            assert!(ends.windows(2).all(|w| w[0] <= w[1]), "length {len}");
        }
    }

    #[test]
    fn a_set_too_large_for_the_table_uses_the_crate() {
        // 3,000 keywords of 64 distinct-ish bytes: over the table limit.
        let owned: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    "{i:0>8}{}",
                    "abcdefghijklmnopqrstuvwxyz0123456789_-.".repeat(2)
                )
            })
            .map(|s| s[..64].to_owned())
            .collect();
        let kw = Keywords::new(&owned).expect("builds");
        assert!(matches!(kw.imp, Imp::Crate(_)));
        let text = format!("xx{}yy", owned[1234].to_uppercase());
        assert_eq!(found(&kw, text.as_bytes()), vec![(1234, 2, 66)]);
    }
}
