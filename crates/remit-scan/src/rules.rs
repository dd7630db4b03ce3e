//! Rules: the gitleaks TOML format, parsed with spans so that every problem names the rule
//! and the line, and compiled into bounded regexes.
//!
//! Accepted fields are gitleaks' own (`title`, `[extend]`, `[[rules]]` with `id`,
//! `description`, `regex`, `secretGroup`, `entropy`, `keywords`, `path`, `tags`,
//! `[[rules.allowlists]]` / `[rules.allowlist]`, and a global `[allowlist]` /
//! `[[allowlists]]`). Fields that only make sense for files and commits (`path`, `paths`,
//! `commits`, `tags`, `skipReport`) are accepted and ignored: traffic has no path. A field
//! gitleaks does not define is an error, because a typo such as `keyword` for `keywords`
//! would otherwise silently turn a rule's prefilter off.
//!
//! One difference from gitleaks, for speed: when a rule's regex has a bounded longest match
//! (at most 2 KiB), the rule runs only on windows of that length either side of its
//! keywords' occurrences, so a match must lie within that distance of a keyword (gitleaks
//! only asks that the keyword appear somewhere in the text). Rules whose keywords are part
//! of the match — all the built-in ones, and gitleaks' own — behave the same either way.
//! When the regex shows that every match holds a keyword within a bounded distance of its
//! start (a bounded sequence, then a part matching only strings that hold a keyword), the
//! window reaches only that far before an occurrence. When that part matches only a few
//! strings ([`Anchor`]), the scan knows where a match's keyed part starts from each keyword
//! occurrence and runs the regex anchored there instead of over a window (searches
//! anchored at a known start need no reverse pass and keep the lazy DFA small); when
//! something of bounded length comes before the keyed part (the generic rule's name), an
//! anchored check of the keyed part and what follows it rules most occurrences out first.

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::AhoCorasick;
use regex::bytes::{Regex, RegexBuilder};
use regex_automata::meta;
use serde::Deserialize;
use serde_spanned::Spanned;

/// The most rules one file (or the built-in set plus one file) may hold.
pub const MAX_RULES: usize = 500;
/// The largest rule file accepted, in bytes.
pub const MAX_RULE_FILE_BYTES: usize = 1024 * 1024;
/// The most compiled memory one regex may use (regex's `size_limit`).
pub const MAX_REGEX_SIZE: usize = 1024 * 1024;
/// The most memory one regex's lazy DFA may use (regex's `dfa_size_limit`).
pub const MAX_REGEX_DFA_SIZE: usize = 2 * 1024 * 1024;
/// The most keywords one rule may have, and the longest keyword.
pub const MAX_KEYWORDS: usize = 64;
const MAX_KEYWORD_LEN: usize = 64;
const MAX_ALLOWLIST_ENTRIES: usize = 256;

/// The built-in rules, in gitleaks format.
pub const BUILTIN_RULES: &str = include_str!("builtin.toml");

/// A rule file could not be loaded. The message names the file, the line and, where there
/// is one, the rule id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// The file is larger than [`MAX_RULE_FILE_BYTES`].
    #[error("`{origin}`: rule file is {size} bytes, over the limit of {limit}")]
    FileTooLarge {
        /// Where the rules came from.
        origin: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The file has more than [`MAX_RULES`] rules.
    #[error("`{origin}`: {count} rules, over the limit of {limit}")]
    TooManyRules {
        /// Where the rules came from.
        origin: String,
        /// How many rules it has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The file is not valid TOML, or a field outside any rule is wrong.
    #[error("`{origin}` line {line}: {message}")]
    Syntax {
        /// Where the rules came from.
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// One rule is wrong.
    #[error("`{origin}` line {line}: rule `{id}`: {message}")]
    Rule {
        /// Where the rules came from.
        origin: String,
        /// 1-based line of the offending field (or of the rule).
        line: usize,
        /// The rule's id, or `?` when it has none.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// What an allowlist's regexes are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegexTarget {
    /// The extracted secret (gitleaks' default).
    Secret,
    /// The whole regex match.
    Match,
    /// The line the match is on.
    Line,
}

/// How an allowlist's checks combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Any check that matches allows the finding (gitleaks' default).
    Or,
    /// All of the allowlist's (non-empty) checks must match.
    And,
}

/// A compiled allowlist: findings it matches are not reported.
#[derive(Debug, Clone)]
pub struct Allowlist {
    pub(crate) condition: Condition,
    pub(crate) target: RegexTarget,
    pub(crate) regexes: Vec<Regex>,
    /// Lower-case; matched as substrings of the lower-cased secret.
    pub(crate) stopwords: Vec<String>,
    /// The stopwords compiled (ASCII case-insensitive), when there are any.
    pub(crate) stop_matcher: Option<AhoCorasick>,
}

impl Allowlist {
    /// Whether this allowlist allows a finding. `line` gives the line holding the match,
    /// asked for only by an allowlist whose regexes target lines (finding it reads up to
    /// 2 KiB of text).
    pub(crate) fn allows<'t>(
        &self,
        secret: &'t [u8],
        matched: &'t [u8],
        line: impl FnOnce() -> &'t [u8],
    ) -> bool {
        let target = match self.target {
            RegexTarget::Secret => secret,
            RegexTarget::Match => matched,
            RegexTarget::Line if self.regexes.is_empty() => &[],
            RegexTarget::Line => line(),
        };
        let regex_hit = || self.regexes.iter().any(|r| r.is_match(target));
        let stop_hit = || match &self.stop_matcher {
            Some(m) => m.is_match(secret),
            None => {
                let lower = secret.to_ascii_lowercase();
                self.stopwords.iter().any(|w| memmem(&lower, w.as_bytes()))
            }
        };
        match self.condition {
            Condition::Or => regex_hit() || stop_hit(),
            Condition::And => {
                let checks = [
                    (!self.regexes.is_empty()).then(regex_hit),
                    (!self.stopwords.is_empty()).then(stop_hit),
                ];
                checks.iter().any(Option::is_some) && checks.iter().flatten().all(|b| *b)
            }
        }
    }
}

fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: String,
    pub(crate) description: String,
    /// Searched directly (not through `regex`'s wrapper) so that a search can be
    /// anchored at a position of a larger text.
    pub(crate) regex: meta::Regex,
    /// `None`: the first non-empty capture group, or the whole match if there is none.
    pub(crate) secret_group: Option<usize>,
    pub(crate) entropy: Option<f64>,
    /// Lower-case.
    pub(crate) keywords: Vec<String>,
    pub(crate) allowlists: Vec<Allowlist>,
    /// The longest match the regex can make, when bounded and small: the rule then runs
    /// only on windows of this size around its keywords' occurrences.
    pub(crate) window: Option<usize>,
    /// Whether the secret is always the whole match (one group around everything but
    /// zero-width assertions, as in `\b(ghp_[A-Za-z0-9]{36})\b`): the scan then needs no
    /// capture groups, only the match.
    pub(crate) secret_is_match: bool,
    /// When every match holds a keyword occurrence starting at most this far after the
    /// match's start: how far before an occurrence its window starts (otherwise
    /// `window`, as after it).
    pub(crate) lead: Option<usize>,
    /// Where matches start relative to keyword occurrences, when the regex shows it.
    pub(crate) anchor: Option<Anchor>,
    /// The bytes a match can start with anywhere but at the text's start, when that is
    /// not every byte (see [`first_bytes`]): an anchored search at a position holding
    /// another byte cannot match and is not run.
    pub(crate) first: Option<Box<[bool; 256]>>,
}

impl Rule {
    /// The rule's id, as reported in findings.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The rule's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The rule's keywords, lower-case. A rule without keywords runs on every body.
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// Generic rules (id starting with `generic`) give way to a specific rule that found
    /// the same secret.
    pub(crate) fn is_generic(&self) -> bool {
        self.id.starts_with("generic")
    }
}

/// A validated set of rules and the global allowlists.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) allowlists: Vec<Allowlist>,
}

impl RuleSet {
    /// The built-in rules (`src/builtin.toml`).
    pub fn builtin() -> Self {
        match Self::from_toml(BUILTIN_RULES, "builtin.toml") {
            Ok(set) => set,
            // The built-in file is tested; a broken one must not ship.
            Err(e) => panic!("built-in rules do not load: {e}"),
        }
    }

    /// Parses a gitleaks-format rule file. `origin` names it in errors. A file with
    /// `[extend] useDefault = true` gets the built-in rules first (a rule of the file with
    /// the same id replaces the built-in one).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, RulesError> {
        Loader { text, origin }.load()
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

// ---- the raw, spanned shape of the file ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[allow(dead_code)]
    title: Option<String>,
    #[serde(default)]
    extend: Option<RawExtend>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    allowlist: Option<Spanned<RawAllowlist>>,
    #[serde(default)]
    allowlists: Vec<Spanned<RawAllowlist>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExtend {
    #[serde(default)]
    use_default: bool,
    #[allow(dead_code)]
    path: Option<String>,
    #[serde(default)]
    disabled_rules: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    id: Option<Spanned<String>>,
    description: Option<String>,
    regex: Option<Spanned<String>>,
    secret_group: Option<Spanned<i64>>,
    entropy: Option<Spanned<f64>>,
    keywords: Option<Spanned<Vec<String>>>,
    #[allow(dead_code)]
    path: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    tags: Vec<String>,
    #[allow(dead_code)]
    skip_report: Option<bool>,
    allowlist: Option<Spanned<RawAllowlist>>,
    #[serde(default)]
    allowlists: Vec<Spanned<RawAllowlist>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAllowlist {
    #[allow(dead_code)]
    description: Option<String>,
    condition: Option<String>,
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[allow(dead_code)]
    #[serde(default)]
    paths: Vec<String>,
    #[allow(dead_code)]
    #[serde(default)]
    commits: Vec<String>,
    /// Global allowlists only: the rules it applies to (all when empty).
    #[serde(default)]
    target_rules: Vec<String>,
}

/// A lenient view used only to name the rule an error falls in.
#[derive(Deserialize)]
struct LenientFile {
    #[serde(default)]
    rules: Vec<Spanned<LenientRule>>,
}

#[derive(Deserialize)]
struct LenientRule {
    id: Option<toml::Value>,
}

struct Loader<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Loader<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn rule_err(&self, span: Range<usize>, id: Option<&str>, message: String) -> RulesError {
        RulesError::Rule {
            origin: self.origin.to_owned(),
            line: self.line(span.start),
            id: id.unwrap_or("?").to_owned(),
            message,
        }
    }

    fn load(&self) -> Result<RuleSet, RulesError> {
        if self.text.len() > MAX_RULE_FILE_BYTES {
            return Err(RulesError::FileTooLarge {
                origin: self.origin.to_owned(),
                size: self.text.len(),
                limit: MAX_RULE_FILE_BYTES,
            });
        }
        let raw: RawFile = match toml::from_str(self.text) {
            Ok(raw) => raw,
            Err(e) => return Err(self.locate(&e)),
        };
        if raw.rules.len() > MAX_RULES {
            return Err(RulesError::TooManyRules {
                origin: self.origin.to_owned(),
                count: raw.rules.len(),
                limit: MAX_RULES,
            });
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for spanned in &raw.rules {
            let rule_span = spanned.span();
            let raw_rule = spanned.get_ref();
            let Some(id) = &raw_rule.id else {
                return Err(self.rule_err(rule_span, None, "missing `id`".to_owned()));
            };
            let id_str = id.get_ref().trim();
            if id_str.is_empty() || id_str.len() > 128 {
                return Err(self.rule_err(
                    id.span(),
                    None,
                    "`id` must be 1 to 128 characters".into(),
                ));
            }
            if let Some(first) = seen.get(id_str) {
                return Err(self.rule_err(
                    id.span(),
                    Some(id_str),
                    format!("duplicate id, first defined at line {first}"),
                ));
            }
            seen.insert(id_str.to_owned(), self.line(id.span().start));
            rules.push(self.rule(id_str, raw_rule, rule_span)?);
        }
        let mut allowlists = Vec::new();
        for al in raw.allowlist.iter().chain(raw.allowlists.iter()) {
            if !al.get_ref().target_rules.is_empty() {
                // A global allowlist for some rules only: attach it to those rules.
                let compiled = self.allowlist(al, None)?;
                for target in &al.get_ref().target_rules {
                    let Some(rule) = rules.iter_mut().find(|r| &r.id == target) else {
                        return Err(RulesError::Syntax {
                            origin: self.origin.to_owned(),
                            line: self.line(al.span().start),
                            message: format!("allowlist names unknown rule `{target}`"),
                        });
                    };
                    rule.allowlists.push(compiled.clone());
                }
            } else {
                allowlists.push(self.allowlist(al, None)?);
            }
        }
        let mut set = RuleSet { rules, allowlists };
        if let Some(extend) = raw.extend
            && extend.use_default
        {
            let mut base = RuleSet::builtin();
            base.rules.retain(|r| {
                !extend.disabled_rules.contains(&r.id) && !set.rules.iter().any(|o| o.id == r.id)
            });
            base.rules.append(&mut set.rules);
            base.allowlists.append(&mut set.allowlists);
            set = base;
            if set.rules.len() > MAX_RULES {
                return Err(RulesError::TooManyRules {
                    origin: self.origin.to_owned(),
                    count: set.rules.len(),
                    limit: MAX_RULES,
                });
            }
        }
        Ok(set)
    }

    /// Turns a TOML or serde error into one naming the line and, inside a rule, the rule.
    fn locate(&self, e: &toml::de::Error) -> RulesError {
        let message = e.message().trim().to_owned();
        let Some(span) = e.span() else {
            return RulesError::Syntax {
                origin: self.origin.to_owned(),
                line: 1,
                message,
            };
        };
        if let Ok(lenient) = toml::from_str::<LenientFile>(self.text) {
            // The innermost rule whose span holds the error; spans of array-of-tables
            // entries cover their body, so take the last one starting before the error.
            let rule = lenient.rules.iter().rfind(|r| r.span().start <= span.start);
            if let Some(rule) = rule {
                let id = match &rule.get_ref().id {
                    Some(toml::Value::String(s)) => s.clone(),
                    _ => "?".to_owned(),
                };
                return RulesError::Rule {
                    origin: self.origin.to_owned(),
                    line: self.line(span.start),
                    id,
                    message,
                };
            }
        }
        RulesError::Syntax {
            origin: self.origin.to_owned(),
            line: self.line(span.start),
            message,
        }
    }

    fn rule(&self, id: &str, raw: &RawRule, span: Range<usize>) -> Result<Rule, RulesError> {
        let Some(pattern) = &raw.regex else {
            return Err(self.rule_err(
                span,
                Some(id),
                "missing `regex` (rules matching only `path` do not apply to traffic)".into(),
            ));
        };
        let regex = compile_rule(pattern.get_ref()).map_err(|m| {
            self.rule_err(pattern.span(), Some(id), format!("invalid `regex`: {m}"))
        })?;
        let secret_group = match &raw.secret_group {
            None => None,
            Some(g) => {
                let n = *g.get_ref();
                // group_len counts group 0.
                let groups = regex
                    .group_info()
                    .group_len(regex_automata::PatternID::ZERO)
                    - 1;
                if n < 0 || n as usize > groups {
                    return Err(self.rule_err(
                        g.span(),
                        Some(id),
                        format!("`secretGroup` {n} but the regex has {groups} groups"),
                    ));
                }
                Some(n as usize)
            }
        };
        let entropy = match &raw.entropy {
            None => None,
            Some(e) => {
                let v = *e.get_ref();
                if !(0.0..=8.0).contains(&v) {
                    return Err(self.rule_err(
                        e.span(),
                        Some(id),
                        format!("`entropy` {v} is outside 0 to 8"),
                    ));
                }
                (v > 0.0).then_some(v)
            }
        };
        let empty = Vec::new();
        let kw = raw.keywords.as_ref().map_or(&empty, |k| k.get_ref());
        if kw.len() > MAX_KEYWORDS || kw.iter().any(|k| k.is_empty() || k.len() > MAX_KEYWORD_LEN) {
            return Err(self.rule_err(
                raw.keywords.as_ref().map_or(span.clone(), |k| k.span()),
                Some(id),
                format!("`keywords`: at most {MAX_KEYWORDS}, each 1 to {MAX_KEYWORD_LEN} bytes"),
            ));
        }
        let keywords: Vec<String> = kw.iter().map(|k| k.to_ascii_lowercase()).collect();
        let mut allowlists = Vec::new();
        for al in raw.allowlist.iter().chain(raw.allowlists.iter()) {
            allowlists.push(self.allowlist(al, Some(id))?);
        }
        let window = if kw.is_empty() {
            None
        } else {
            max_len(pattern.get_ref())
        };
        let secret_is_match = secret_is_match(pattern.get_ref(), secret_group);
        let lead =
            window.and_then(|w| keyword_lead(pattern.get_ref(), &keywords).filter(|l| *l < w));
        // Also for rules whose matches have no bound on their length: an anchored search
        // runs as far as the match does.
        let anchor = if kw.is_empty() {
            None
        } else {
            anchor(pattern.get_ref(), &keywords)
        };
        let first = parse(pattern.get_ref()).and_then(|hir| first_bytes(&hir));
        Ok(Rule {
            window,
            secret_is_match,
            lead,
            anchor,
            first,
            id: id.to_owned(),
            description: raw.description.clone().unwrap_or_default(),
            regex,
            secret_group,
            entropy,
            keywords,
            allowlists,
        })
    }

    fn allowlist(
        &self,
        al: &Spanned<RawAllowlist>,
        id: Option<&str>,
    ) -> Result<Allowlist, RulesError> {
        let raw = al.get_ref();
        let err = |message: String| match id {
            Some(id) => self.rule_err(al.span(), Some(id), message),
            None => RulesError::Syntax {
                origin: self.origin.to_owned(),
                line: self.line(al.span().start),
                message,
            },
        };
        let condition = match raw
            .condition
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("OR") => Condition::Or,
            Some("AND") => Condition::And,
            Some(other) => {
                return Err(err(format!(
                    "allowlist `condition` `{other}` is not `OR` or `AND`"
                )));
            }
        };
        let target = match raw.regex_target.as_deref() {
            None | Some("secret") => RegexTarget::Secret,
            Some("match") => RegexTarget::Match,
            Some("line") => RegexTarget::Line,
            Some(other) => {
                return Err(err(format!(
                    "allowlist `regexTarget` `{other}` is not `secret`, `match` or `line`"
                )));
            }
        };
        if raw.regexes.len() > MAX_ALLOWLIST_ENTRIES || raw.stopwords.len() > MAX_ALLOWLIST_ENTRIES
        {
            return Err(err(format!(
                "allowlist: at most {MAX_ALLOWLIST_ENTRIES} regexes and stopwords"
            )));
        }
        let mut regexes = Vec::with_capacity(raw.regexes.len());
        for r in &raw.regexes {
            regexes
                .push(compile(r).map_err(|m| err(format!("invalid allowlist regex `{r}`: {m}")))?);
        }
        let stopwords: Vec<String> = raw
            .stopwords
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        // One pass over the secret for all stopwords (the fallback lower-cases it and
        // looks for each).
        let stop_matcher = if stopwords.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&stopwords)
                .ok()
        };
        Ok(Allowlist {
            condition,
            target,
            regexes,
            stopwords,
            stop_matcher,
        })
    }
}

/// The largest window a rule is narrowed to; rules that can match more scan whole layers.
const MAX_WINDOW: usize = 2048;

/// The longest match of a pattern, if bounded by [`MAX_WINDOW`].
fn max_len(pattern: &str) -> Option<usize> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    hir.properties().maximum_len().filter(|n| *n <= MAX_WINDOW)
}

/// How far before the start of a keyword occurrence a match can start, when every match
/// holds a keyword occurrence at a bounded distance from its start: the regex is a
/// sequence whose parts before some part are bounded, and that part matches only a few
/// strings, each holding a keyword. (The generic rule: at most 31 bytes of name, then
/// `api_key`, `secret`, `token` …; its matches otherwise reach ~200 bytes either way.)
fn keyword_lead(pattern: &str, keywords: &[String]) -> Option<usize> {
    let hir = parse(pattern)?;
    let split = split(&hir, keywords)?;
    split
        .before
        .checked_add(split.keyed.properties().maximum_len()?)
}

fn parse(pattern: &str) -> Option<regex_syntax::hir::Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()
}

/// The bytes a match of `hir` can start with at a position other than the text's start,
/// or `None` when that is every byte or the regex can match the empty string there.
/// Conservative: a byte that could start a match is always in the set. `^` (the text's
/// start) matches nowhere else, so a branch that begins with it starts no match there: the
/// generic rule's `(?:^|[^a-z0-9])` makes a match start only at a byte that is no letter
/// or digit. Every other zero-width assertion is read as if it always held.
pub(crate) fn first_bytes(hir: &regex_syntax::hir::Hir) -> Option<Box<[bool; 256]>> {
    let (set, nullable) = first_of(hir);
    if nullable || set.iter().all(|b| *b) {
        return None;
    }
    Some(Box::new(set))
}

/// The bytes `hir`'s matches can start with away from the text's start, and whether it
/// can match the empty string there.
fn first_of(hir: &regex_syntax::hir::Hir) -> ([bool; 256], bool) {
    use regex_syntax::hir::{Class, HirKind, Look};
    let mut set = [false; 256];
    match hir.kind() {
        HirKind::Empty => (set, true),
        HirKind::Literal(lit) => match lit.0.first() {
            Some(b) => {
                set[usize::from(*b)] = true;
                (set, false)
            }
            None => (set, true),
        },
        HirKind::Class(Class::Bytes(c)) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set[usize::from(b)] = true;
                }
            }
            (set, false)
        }
        HirKind::Class(Class::Unicode(c)) => {
            for r in c.ranges() {
                let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                for b in lo.min(0x80)..=hi.min(0x7f) {
                    set[b as usize] = true;
                }
                if hi >= 0x80 {
                    set[0x80..].fill(true);
                }
            }
            (set, false)
        }
        // Only at the text's start: no match starts with it anywhere else.
        HirKind::Look(Look::Start) => (set, false),
        HirKind::Look(_) => (set, true),
        HirKind::Repetition(rep) => {
            let (sub, nullable) = first_of(&rep.sub);
            (sub, nullable || rep.min == 0)
        }
        HirKind::Capture(cap) => first_of(&cap.sub),
        HirKind::Concat(parts) => {
            for part in parts {
                let (sub, nullable) = first_of(part);
                for (s, b) in set.iter_mut().zip(sub) {
                    *s |= b;
                }
                if !nullable {
                    return (set, false);
                }
            }
            (set, true)
        }
        HirKind::Alternation(branches) => {
            let mut any_nullable = false;
            for branch in branches {
                let (sub, nullable) = first_of(branch);
                for (s, b) in set.iter_mut().zip(sub) {
                    *s |= b;
                }
                any_nullable |= nullable;
            }
            (set, any_nullable)
        }
    }
}

/// A regex read as `before · keyed · rest`: `keyed` matches only a few strings, each
/// holding a keyword, and whatever comes before it is at most `before` bytes long.
struct Split {
    before: usize,
    keyed: regex_syntax::hir::Hir,
    /// What follows `keyed`, innermost sequence first (capture groups around them left out).
    rest: Vec<regex_syntax::hir::Hir>,
}

fn split(hir: &regex_syntax::hir::Hir, keywords: &[String]) -> Option<Split> {
    use regex_syntax::hir::HirKind;
    let holds_keyword = |h: &regex_syntax::hir::Hir| {
        strings(h).is_some_and(|set| {
            !set.is_empty()
                && set.iter().all(|s| {
                    keywords
                        .iter()
                        .any(|k| memchr::memmem::find(s, k.as_bytes()).is_some())
                })
        })
    };
    match hir.kind() {
        HirKind::Capture(c) => split(&c.sub, keywords),
        HirKind::Concat(parts) => {
            let mut before = 0usize;
            for (i, part) in parts.iter().enumerate() {
                // The keyed part may be a run of parts: `(?:sk|rk)` then `_live_`.
                for j in i + 1..=parts.len() {
                    let run = if j == i + 1 {
                        part.clone()
                    } else {
                        regex_syntax::hir::Hir::concat(parts[i..j].to_vec())
                    };
                    if strings(&run).is_none() {
                        // Longer runs only match more strings.
                        break;
                    }
                    if holds_keyword(&run) {
                        return Some(Split {
                            before,
                            keyed: run,
                            rest: parts[j..].to_vec(),
                        });
                    }
                }
                if let Some(mut inner) = split(part, keywords) {
                    inner.before = inner.before.checked_add(before)?;
                    inner.rest.extend(parts[i + 1..].iter().cloned());
                    return Some(inner);
                }
                before = before.checked_add(part.properties().maximum_len()?)?;
            }
            None
        }
        _ if holds_keyword(hir) => Some(Split {
            before: 0,
            keyed: hir.clone(),
            rest: Vec::new(),
        }),
        _ => None,
    }
}

/// Where a rule's matches start relative to its keywords' occurrences, when its regex
/// shows it: every match is `before · keyed · rest` with `keyed` one of a few strings,
/// each holding a keyword. A match's `keyed` part then starts `o` bytes before an
/// occurrence of a keyword, for one of that keyword's `offsets`, so the scan only needs
/// to try those positions.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    /// Per keyword of the rule (in `keywords` order): where it occurs in the strings
    /// `keyed` matches, sorted. A keyword that is in none of them has none: a match is
    /// found through the keyword its `keyed` part does hold.
    pub(crate) offsets: Vec<Vec<u32>>,
    /// The longest the part before `keyed` can be: a match starts at most this far
    /// before its `keyed` part.
    pub(crate) before: u32,
    /// `keyed · rest`, or its leading parts up to [`MAX_TAIL_REACH`] bytes, to be run
    /// anchored, when `before` is not 0: a position where it does not match starts no
    /// match's `keyed` part, so a keyword occurrence none of
    /// whose positions match it needs no search at all. With `before` 0 (nothing but
    /// zero-width assertions before `keyed`) a match starts where `keyed` does and the
    /// rule's own regex is run anchored there instead.
    pub(crate) tail: Option<meta::Regex>,
}

/// The rule's [`Anchor`], if its regex has one.
fn anchor(pattern: &str, keywords: &[String]) -> Option<Anchor> {
    let hir = parse(pattern)?;
    let split = split(&hir, keywords)?;
    let strings = strings(&split.keyed)?;
    let mut offsets = vec![Vec::new(); keywords.len()];
    for s in &strings {
        for (k, kw) in keywords.iter().enumerate() {
            let kw = kw.as_bytes();
            // Every occurrence, overlapping ones too.
            let mut from = 0;
            while let Some(p) = memchr::memmem::find(&s[from..], kw) {
                offsets[k].push(u32::try_from(from + p).ok()?);
                from += p + 1;
            }
        }
    }
    for o in &mut offsets {
        o.sort_unstable();
        o.dedup();
    }
    let before = split.before;
    let tail = if before == 0 {
        None
    } else {
        // Any leading part of `keyed · rest` is as good a test (where the whole matches,
        // so does its beginning): it stops before the first part of unbounded or long
        // length, so that the test reads a few bytes, not a whole PEM body that the search
        // after it reads again.
        let mut parts = vec![split.keyed];
        let mut reach = parts[0].properties().maximum_len().unwrap_or(usize::MAX);
        for part in split.rest {
            match part.properties().maximum_len() {
                Some(n) if reach.saturating_add(n) <= MAX_TAIL_REACH => {
                    reach += n;
                    parts.push(part);
                }
                _ => break,
            }
        }
        Some(build_meta(&regex_syntax::hir::Hir::concat(parts))?)
    };
    Some(Anchor {
        offsets,
        before: u32::try_from(before).ok()?,
        tail,
    })
}

/// The longest text an anchor's tail check reads (see [`Anchor::tail`]).
const MAX_TAIL_REACH: usize = 256;

/// Every string a pattern matches, ASCII lower-cased, when there are at most 256.
fn strings(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::{Class, HirKind};
    const MOST: usize = 256;
    let out = match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => vec![Vec::new()],
        HirKind::Literal(l) => vec![l.0.to_ascii_lowercase()],
        HirKind::Class(Class::Bytes(c)) => {
            let mut bytes: Vec<u8> = c
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .map(|b| b.to_ascii_lowercase())
                .collect();
            bytes.sort_unstable();
            bytes.dedup();
            if bytes.len() > 8 {
                return None;
            }
            bytes.into_iter().map(|b| vec![b]).collect()
        }
        HirKind::Class(Class::Unicode(_)) => return None,
        HirKind::Capture(c) => strings(&c.sub)?,
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(strings(a)?);
                if all.len() > MOST {
                    return None;
                }
            }
            all
        }
        HirKind::Concat(parts) => {
            let mut all = vec![Vec::new()];
            for part in parts {
                let next = strings(part)?;
                if all.len() * next.len() > MOST {
                    return None;
                }
                all = all
                    .iter()
                    .flat_map(|a| {
                        next.iter().map(move |b| {
                            let mut s = a.clone();
                            s.extend_from_slice(b);
                            s
                        })
                    })
                    .collect();
            }
            all
        }
        HirKind::Repetition(r) => {
            let max = r.max?;
            if max > 4 {
                return None;
            }
            let one = strings(&r.sub)?;
            let mut all = Vec::new();
            let mut level = vec![Vec::new()];
            for n in 0..=max {
                if n >= r.min {
                    all.extend(level.iter().cloned());
                }
                if n < max {
                    if level.len() * one.len() > MOST {
                        return None;
                    }
                    level = level
                        .iter()
                        .flat_map(|a| {
                            one.iter().map(move |b| {
                                let mut s = a.clone();
                                s.extend_from_slice(b);
                                s
                            })
                        })
                        .collect();
                }
                if all.len() > MOST {
                    return None;
                }
            }
            all
        }
    };
    (out.len() <= MOST).then_some(out)
}

/// Whether the secret a pattern yields (its group `secret_group`, or without one its
/// first non-empty group, or the match) is always the whole match.
fn secret_is_match(pattern: &str, secret_group: Option<usize>) -> bool {
    use regex_syntax::hir::HirKind;
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
    else {
        return false;
    };
    let groups = hir.properties().explicit_captures_len();
    match (secret_group, groups) {
        (Some(0), _) => return true,
        (Some(1) | None, 1) => {}
        _ => return false,
    }
    let is_group =
        |h: &regex_syntax::hir::Hir| matches!(h.kind(), HirKind::Capture(c) if c.index == 1);
    match hir.kind() {
        HirKind::Capture(c) => c.index == 1,
        HirKind::Concat(parts) => {
            parts.iter().filter(|p| is_group(p)).count() == 1
                && parts
                    .iter()
                    .all(|p| is_group(p) || matches!(p.kind(), HirKind::Look(_)))
        }
        _ => false,
    }
}

/// The syntax of rule regexes: bytes, ASCII classes (as `compile` has them).
fn syntax() -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .nest_limit(64)
}

/// How rule regexes search: as [`compile`]'s regexes do (leftmost first, empty matches
/// anywhere, the same size limits).
fn meta_config() -> meta::Config {
    meta::Config::new()
        .match_kind(regex_automata::MatchKind::LeftmostFirst)
        .utf8_empty(false)
        .nfa_size_limit(Some(MAX_REGEX_SIZE))
        .onepass_size_limit(Some(MAX_REGEX_SIZE))
        .hybrid_cache_capacity(MAX_REGEX_DFA_SIZE)
}

/// Compiles a rule's regex (RE2 syntax) for byte haystacks, ASCII classes, with limits.
fn compile_rule(pattern: &str) -> Result<meta::Regex, String> {
    meta::Builder::new()
        .syntax(syntax())
        .configure(meta_config())
        .build(pattern)
        .map_err(|e| match (e.size_limit(), e.syntax_error()) {
            (Some(limit), _) => format!("compiled regex exceeds size limit of {limit} bytes"),
            (None, Some(syntax)) => first_error_line(&syntax.to_string()),
            (None, None) => first_error_line(&e.to_string()),
        })
}

/// Compiles a pattern already parsed (part of a rule's regex whose whole compiled).
fn build_meta(hir: &regex_syntax::hir::Hir) -> Option<meta::Regex> {
    meta::Builder::new()
        .configure(meta_config())
        .build_from_hir(hir)
        .ok()
}

/// regex's messages are multi-line with a caret diagram: keep the line saying what is wrong.
fn first_error_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or(s.lines().next().unwrap_or(""))
        .trim()
        .to_owned()
}

/// Compiles a gitleaks (RE2-syntax) regex for byte haystacks, ASCII classes, with limits.
fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(MAX_REGEX_SIZE)
        .dfa_size_limit(MAX_REGEX_DFA_SIZE)
        .nest_limit(64)
        .build()
        .map_err(|e| first_error_line(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_are_the_bytes_a_match_can_start_with_past_the_start() {
        let first = |p: &str| parse(p).and_then(|h| first_bytes(&h));
        let set = first(r"(?i)(?:^|[^a-z0-9])[a-z0-9_.-]{0,30}?(?:key|token)=\w+").expect("set");
        for b in [b' ', b'"', b'_', b'-', b'\n', 0xff] {
            assert!(set[usize::from(b)], "{b}");
        }
        for b in [b'a', b'K', b'0', b'z'] {
            assert!(!set[usize::from(b)], "{b}");
        }
        let set = first(r"\b(ghp_[A-Za-z0-9]{36})\b").expect("set");
        assert_eq!(set.iter().filter(|b| **b).count(), 1);
        assert!(set[usize::from(b'g')]);
        let set = first(r"(?:x?|y)z").expect("set");
        assert!(set[usize::from(b'x')] && set[usize::from(b'y')] && set[usize::from(b'z')]);
        // A match that can be empty, or start with any byte, filters nothing.
        assert!(first(r"a*").is_none());
        assert!(first(r"(?s).abc").is_none());
        // `^` matches only at the text's start.
        let set = first(r"(?:^|b)c").expect("set");
        assert_eq!(set.iter().filter(|b| **b).count(), 1);
        assert!(set[usize::from(b'b')]);
    }

    #[test]
    fn a_secret_is_the_match_only_for_one_group_around_all_but_assertions() {
        assert!(secret_is_match(r"\b(ghp_[A-Za-z0-9]{36})\b", None));
        assert!(secret_is_match(r"(?s)(-----BEGIN.{3,}?-----END)", None));
        assert!(secret_is_match(r"\b(ab)\b", Some(1)));
        assert!(secret_is_match(r"x(a)(b)", Some(0)));
        // A byte after the group is part of the match.
        assert!(!secret_is_match(
            r"\b(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)",
            None
        ));
        assert!(!secret_is_match(r"key=(\w+)", Some(1)));
        assert!(!secret_is_match(r"(a)|(b)", None));
        assert!(!secret_is_match(r"(a)(b)", None));
        assert!(!secret_is_match(r"abc", None));
        let set = RuleSet::builtin();
        let whole: Vec<&str> = set
            .rules
            .iter()
            .filter(|r| r.secret_is_match)
            .map(|r| r.id.as_str())
            .collect();
        assert!(whole.contains(&"github-pat") && whole.contains(&"private-key"));
        assert!(!whole.contains(&"generic-secret") && !whole.contains(&"gcp-api-key"));
    }

    #[test]
    fn a_window_starts_just_before_a_keyword_when_every_match_holds_one_near_its_start() {
        let kw = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            keyword_lead(r"\b(ghp_[A-Za-z0-9]{36})\b", &kw(&["ghp_"])),
            Some(4)
        );
        assert_eq!(
            keyword_lead(
                r"(?i)x{0,3}(?:api[_.-]?key|token)=(\w+)",
                &kw(&["key", "token"])
            ),
            Some(3 + 7)
        );
        // A part matching a string without a keyword: no bound.
        assert_eq!(keyword_lead(r"(?:key|kex)=\w+", &kw(&["key"])), None);
        // Unbounded before the keyword: no bound.
        assert_eq!(keyword_lead(r"\w+key=\w+", &kw(&["key"])), None);
        let set = RuleSet::builtin();
        let rule = |id: &str| set.rules.iter().find(|r| r.id == id).expect("rule");
        assert_eq!(rule("generic-secret").lead, Some(1 + 30 + 11));
        assert_eq!(rule("aws-access-key-id").lead, Some(4));
        let generic = rule("generic-secret");
        assert!(generic.lead < generic.window);
    }

    #[test]
    fn an_anchor_places_matches_relative_to_keyword_occurrences() {
        let kw = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // `ghp_` starts the match: offset 0, nothing before it, no tail needed.
        let a = anchor(r"\b(ghp_[A-Za-z0-9]{36})\b", &kw(&["ghp_"])).expect("anchor");
        assert_eq!(
            (a.offsets, a.before, a.tail.is_none()),
            (vec![vec![0]], 0, true)
        );
        // Keywords inside longer keyed strings, overlapping ones too; one in none of them.
        let a = anchor(
            r"(?i)[a-z]{0,3}(?:api[_.-]?key|apikey|token)=(\w+)",
            &kw(&["key", "token", "secret"]),
        )
        .expect("anchor");
        assert_eq!(a.offsets, vec![vec![3, 4], vec![0], vec![]]);
        assert_eq!(a.before, 3);
        let tail = a.tail.expect("tail");
        let hay = b"x; api_key=abc";
        let at = |q: usize| {
            tail.is_match(
                regex_automata::Input::new(&hay[..])
                    .range(q..)
                    .anchored(regex_automata::Anchored::Yes),
            )
        };
        assert!(at(3) && !at(2) && !at(4));
        // Unbounded before the keyed part, or a keyed part that is not a few strings: none.
        assert!(anchor(r"\w+key=\w+", &kw(&["key"])).is_none());
        assert!(anchor(r"(?:key|kex)=\w+", &kw(&["key"])).is_none());
        let set = RuleSet::builtin();
        let rule = |id: &str| set.rules.iter().find(|r| r.id == id).expect("rule");
        assert_eq!(
            rule("generic-secret").anchor.as_ref().map(|a| a.before),
            Some(31)
        );
        let pem = rule("private-key").anchor.as_ref().expect("PEM anchor");
        assert_eq!(pem.before, 10 + 40);
        // The PEM rule's tail check stops before the key's unbounded body: it holds at the
        // keyed part of a header whose body and footer are nowhere, and not elsewhere.
        let tail = pem.tail.as_ref().expect("PEM tail");
        let hay = b"-----BEGIN RSA PRIVATE KEY-----\nMIIE (cut off here)";
        let at = |q: usize| {
            tail.is_match(
                regex_automata::Input::new(&hay[..])
                    .range(q..)
                    .anchored(regex_automata::Anchored::Yes),
            )
        };
        assert!(at(15) && !at(14) && !at(16));
        // The generic rule's tail is all of `keyed · rest` (bounded, under the reach): the
        // value after the name must be there.
        let generic = rule("generic-secret")
            .anchor
            .as_ref()
            .expect("generic anchor");
        let tail = generic.tail.as_ref().expect("generic tail");
        let hay = b"x api_key = 'abcdefghijklmnop' api_key = 'short'";
        let at = |q: usize| {
            tail.is_match(
                regex_automata::Input::new(&hay[..])
                    .range(q..)
                    .anchored(regex_automata::Anchored::Yes),
            )
        };
        assert!(at(2) && !at(31));
        let stripe = rule("stripe-secret-key")
            .anchor
            .as_ref()
            .expect("run of parts");
        assert_eq!((stripe.before, &stripe.offsets[0]), (0, &vec![0]));
    }
}
