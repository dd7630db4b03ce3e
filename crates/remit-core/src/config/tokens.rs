//! The `[tokens]` table and `[[issuer]]` entries of `remit.toml`: remit's own token
//! service and the external JWT issuers it trusts, parsed into typed settings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Ctx, bounded, parse_boundary};
use crate::ConfigError;
use crate::identity::Boundary;
use crate::route::RouteTable;
use crate::tokens::{
    ClaimName, IssuerSettings, JwtAlg, KeySource, MAX_ISSUERS, MAX_SKEW_S, Subjects, TokenSettings,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    issuer: Option<Spanned<String>>,
    audience: Option<Spanned<String>>,
    default_ttl_s: Option<Spanned<u64>>,
    max_ttl_s: Option<Spanned<u64>>,
    max_chain_depth: Option<Spanned<u64>>,
    skew_s: Option<Spanned<u64>>,
    #[serde(default)]
    single_use: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    id: Spanned<String>,
    issuer: Spanned<String>,
    audience: Option<Spanned<String>>,
    algorithms: Spanned<Vec<Spanned<String>>>,
    skew_s: Option<Spanned<u64>>,
    subjects: Spanned<String>,
    claim: Option<Spanned<String>>,
    groups_claim: Option<Spanned<String>>,
    #[serde(default, rename = "group")]
    groups: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    disabled_humans: Vec<Spanned<String>>,
    jwks_file: Option<Spanned<String>>,
    jwks: Option<Spanned<String>>,
    jwks_uri: Option<Spanned<String>>,
    #[serde(default)]
    discovery: bool,
    #[serde(default)]
    require_nbf: bool,
    #[serde(default)]
    single_use_jti: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    name: Spanned<String>,
    #[serde(default)]
    boundary: Vec<Spanned<String>>,
}

/// An `https://` URL, or `http://` to a loopback host (tests and demos).
fn issuer_url(s: &str) -> bool {
    if s.len() > crate::tokens::MAX_URL_LEN
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    if s.starts_with("https://") && s.len() > "https://".len() {
        return true;
    }
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            s.strip_prefix(p).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with(':') || rest.starts_with('/')
            })
        })
}

/// An algorithm list: at least one, each an accepted asymmetric algorithm, none twice.
pub(super) fn algorithms(
    cx: &Ctx<'_>,
    raw: &Spanned<Vec<Spanned<String>>>,
    field: &str,
) -> Result<Vec<JwtAlg>, ConfigError> {
    let mut algorithms = Vec::new();
    for a in raw.get_ref() {
        let alg = JwtAlg::parse(a.get_ref()).map_err(|m| cx.err(a.span(), field, m))?;
        if algorithms.contains(&alg) {
            return Err(cx.err(a.span(), field, format!("`{alg}` is listed twice")));
        }
        algorithms.push(alg);
    }
    if algorithms.is_empty() {
        return Err(cx.err(
            raw.span(),
            field,
            "list at least one algorithm, such as `RS256`",
        ));
    }
    Ok(algorithms)
}

pub(super) fn url(cx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
    if issuer_url(s.get_ref()) {
        Ok(s.get_ref().clone())
    } else {
        Err(cx.err(
            s.span(),
            field,
            format!(
                "`{}` is not an `https://` URL (or `http://` to a loopback host)",
                s.get_ref()
            ),
        ))
    }
}

fn claim(
    cx: &Ctx<'_>,
    s: Option<Spanned<String>>,
    field: &str,
    default: &str,
) -> Result<ClaimName, ConfigError> {
    match s {
        None => ClaimName::parse(default).map_err(|m| cx.err(0..0, field, m)),
        Some(s) => ClaimName::parse(s.get_ref()).map_err(|m| cx.err(s.span(), field, m)),
    }
}

/// Parses `[tokens]` and every `[[issuer]]`.
pub(super) fn parse_tokens(
    cx: &Ctx<'_>,
    raw: Option<RawTokens>,
    issuers: Vec<Spanned<RawIssuer>>,
    trust_domains: Vec<Spanned<super::trust_domains::RawTrustDomain>>,
    routes: &RouteTable,
    public_url: &str,
) -> Result<TokenSettings, ConfigError> {
    let raw = raw.unwrap_or(RawTokens {
        issuer: None,
        audience: None,
        default_ttl_s: None,
        max_ttl_s: None,
        max_chain_depth: None,
        skew_s: None,
        single_use: false,
    });
    let d = TokenSettings::default();
    let issuer = raw
        .issuer
        .as_ref()
        .map(|s| url(cx, s, "tokens.issuer"))
        .transpose()?;
    let audience = match &raw.audience {
        Some(s) => url(cx, s, "tokens.audience")?,
        None => public_url.to_owned(),
    };
    let max_ttl_s = bounded(
        cx,
        raw.max_ttl_s,
        "tokens.max_ttl_s",
        d.max_ttl_s.into(),
        10..=86_400,
    )?;
    let default_span = raw.default_ttl_s.as_ref().map_or(0..0, |s| s.span());
    let default_ttl_s = bounded(
        cx,
        raw.default_ttl_s,
        "tokens.default_ttl_s",
        d.default_ttl_s.into(),
        10..=86_400,
    )?;
    if default_ttl_s > max_ttl_s {
        return Err(cx.err(
            default_span,
            "tokens.default_ttl_s",
            "must not exceed `tokens.max_ttl_s`",
        ));
    }
    let max_chain_depth = bounded(
        cx,
        raw.max_chain_depth,
        "tokens.max_chain_depth",
        d.max_chain_depth.into(),
        1..=crate::tokens::MAX_CHAIN_DEPTH as u64,
    )?;
    let skew_s = bounded(
        cx,
        raw.skew_s,
        "tokens.skew_s",
        d.skew_s.into(),
        0..=MAX_SKEW_S.into(),
    )?;
    if issuers.len() > MAX_ISSUERS {
        return Err(cx.err(0..0, "issuer", format!("more than {MAX_ISSUERS} issuers")));
    }
    let mut out = Vec::new();
    let mut ids = BTreeSet::new();
    let mut urls = BTreeSet::new();
    for (i, r) in issuers.into_iter().enumerate() {
        let span = r.span();
        let r = r.into_inner();
        let field = |f: &str| format!("issuer[{i}].{f}");
        let id = r.id.get_ref().clone();
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(cx.err(
                r.id.span(),
                field("id"),
                format!("`{id}` is not an id: letters, digits, `-` and `_`, at most 64"),
            ));
        }
        if !ids.insert(id.clone()) {
            return Err(cx.err(
                r.id.span(),
                field("id"),
                format!("issuer `{id}` is defined twice"),
            ));
        }
        let iss = url(cx, &r.issuer, &field("issuer"))?;
        if !urls.insert(iss.clone()) || issuer.as_deref() == Some(iss.as_str()) {
            return Err(cx.err(
                r.issuer.span(),
                field("issuer"),
                format!("issuer `{iss}` is configured twice"),
            ));
        }
        let audience = match &r.audience {
            Some(s) => url(cx, s, &field("audience"))?,
            None => audience.clone(),
        };
        let algorithms = algorithms(cx, &r.algorithms, &field("algorithms"))?;
        let skew_s = bounded(
            cx,
            r.skew_s,
            &field("skew_s"),
            skew_s,
            0..=MAX_SKEW_S.into(),
        )?;
        let subjects = match r.subjects.get_ref().as_str() {
            "identities" => {
                if !r.groups.is_empty() || !r.disabled_humans.is_empty() {
                    return Err(cx.err(
                        span,
                        field("group"),
                        "groups and disabled humans belong to an issuer of `humans`",
                    ));
                }
                Subjects::Identities {
                    claim: claim(cx, r.claim, &field("claim"), "sub")?,
                }
            }
            "humans" => {
                if r.groups.len() > crate::tokens::MAX_GROUPS {
                    return Err(cx.err(
                        span,
                        field("group"),
                        format!("more than {} groups", crate::tokens::MAX_GROUPS),
                    ));
                }
                let mut groups: BTreeMap<String, Boundary> = BTreeMap::new();
                for (j, g) in r.groups.into_iter().enumerate() {
                    let g = g.into_inner();
                    let gf = field(&format!("group[{j}]"));
                    let name = g.name.get_ref().clone();
                    if name.is_empty() || name.len() > crate::tokens::MAX_CLAIM_LEN {
                        return Err(cx.err(
                            g.name.span(),
                            format!("{gf}.name"),
                            "a group needs a name",
                        ));
                    }
                    let b = parse_boundary(cx, g.boundary, routes, &format!("{gf}.boundary"))?;
                    if groups.insert(name.clone(), b).is_some() {
                        return Err(cx.err(
                            g.name.span(),
                            format!("{gf}.name"),
                            format!("group `{name}` is defined twice"),
                        ));
                    }
                }
                let disabled = r
                    .disabled_humans
                    .iter()
                    .map(|s| s.get_ref().clone())
                    .collect();
                Subjects::Humans {
                    groups_claim: claim(cx, r.groups_claim, &field("groups_claim"), "groups")?,
                    groups,
                    disabled,
                }
            }
            other => {
                return Err(cx.err(
                    r.subjects.span(),
                    field("subjects"),
                    format!("`{other}` is not a kind of subject: use `identities` or `humans`"),
                ));
            }
        };
        let keys = match (&r.jwks_file, &r.jwks, &r.jwks_uri, r.discovery) {
            (Some(f), None, None, false) => KeySource::File(PathBuf::from(f.get_ref())),
            (None, Some(j), None, false) => {
                if serde_json::from_str::<serde_json::Value>(j.get_ref()).is_err() {
                    return Err(cx.err(j.span(), field("jwks"), "is not a JSON document"));
                }
                KeySource::Inline(j.get_ref().clone())
            }
            (None, None, Some(u), false) => KeySource::Uri(url(cx, u, &field("jwks_uri"))?),
            (None, None, None, true) => KeySource::Discovery,
            _ => {
                return Err(cx.err(
                    span,
                    field("jwks_uri"),
                    "give exactly one of `jwks_file`, `jwks`, `jwks_uri` or `discovery = true`",
                ));
            }
        };
        out.push(IssuerSettings {
            id,
            issuer: iss,
            audience,
            algorithms,
            skew_s: skew_s as u32,
            subjects,
            keys,
            require_nbf: r.require_nbf,
            single_use_jti: r.single_use_jti,
        });
    }
    let trust_domains =
        super::trust_domains::parse_trust_domains(cx, trust_domains, &audience, skew_s)?;
    Ok(TokenSettings {
        issuer,
        audience,
        default_ttl_s: default_ttl_s as u32,
        max_ttl_s: max_ttl_s as u32,
        max_chain_depth: max_chain_depth as u8,
        skew_s: skew_s as u32,
        single_use: raw.single_use,
        issuers: out,
        trust_domains,
    })
}
