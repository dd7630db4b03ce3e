//! The `[[trust_domain]]` entries of `remit.toml`: SPIFFE trust domains whose JWT-SVIDs
//! remit accepts, each with the source of its bundle (a file or a bundle endpoint), the
//! algorithms its JWT authorities sign with, the audience and the clock skew.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::tokens::{algorithms, url};
use super::{Ctx, MAX_PATH_LEN, bounded};
use crate::ConfigError;
use crate::names::{SpiffeId, TrustDomain};
use crate::tokens::{BundleSource, MAX_SKEW_S, MAX_TRUST_DOMAINS, TrustDomainSettings};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrustDomain {
    name: Spanned<String>,
    audience: Option<Spanned<String>>,
    algorithms: Spanned<Vec<Spanned<String>>>,
    skew_s: Option<Spanned<u64>>,
    bundle_file: Option<Spanned<String>>,
    bundle_url: Option<Spanned<String>>,
}

/// Parses every `[[trust_domain]]`. `audience` and `skew_s` are `[tokens]`' (the defaults).
pub(super) fn parse_trust_domains(
    cx: &Ctx<'_>,
    raw: Vec<Spanned<RawTrustDomain>>,
    audience: &str,
    skew_s: u64,
) -> Result<Vec<TrustDomainSettings>, ConfigError> {
    if raw.len() > MAX_TRUST_DOMAINS {
        return Err(cx.err(
            raw[MAX_TRUST_DOMAINS].span(),
            "trust_domain",
            format!("more than {MAX_TRUST_DOMAINS} trust domains"),
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut names = BTreeSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let span = r.span();
        let r = r.into_inner();
        let field = |f: &str| format!("trust_domain[{i}].{f}");
        let name = TrustDomain::parse(r.name.get_ref())
            .map_err(|e| cx.err(r.name.span(), field("name"), e.to_string()))?;
        if !names.insert(name.clone()) {
            return Err(cx.err(
                r.name.span(),
                field("name"),
                format!("trust domain `{name}` is configured twice"),
            ));
        }
        // This resource as its JWT-SVIDs name it: a URL, or a SPIFFE ID (the SPIFFE
        // standard's own examples of an audience are both).
        let audience = match &r.audience {
            None => audience.to_owned(),
            Some(a) if SpiffeId::parse(a.get_ref()).is_ok() => a.get_ref().clone(),
            Some(a) => url(cx, a, &field("audience")).map_err(|mut e| {
                e.message = format!("{}, or a SPIFFE ID", e.message);
                e
            })?,
        };
        let algorithms = algorithms(cx, &r.algorithms, &field("algorithms"))?;
        let skew_s = bounded(
            cx,
            r.skew_s,
            &field("skew_s"),
            skew_s,
            0..=MAX_SKEW_S.into(),
        )?;
        let bundle = match (&r.bundle_file, &r.bundle_url) {
            (Some(f), None) => {
                let p = f.get_ref();
                if p.is_empty() || p.len() > MAX_PATH_LEN || p.chars().any(char::is_control) {
                    return Err(cx.err(
                        f.span(),
                        field("bundle_file"),
                        format!("is not a file path of at most {MAX_PATH_LEN} bytes"),
                    ));
                }
                BundleSource::File(PathBuf::from(p))
            }
            (None, Some(u)) => BundleSource::Url(url(cx, u, &field("bundle_url"))?),
            _ => {
                return Err(cx.err(
                    span,
                    field("bundle_url"),
                    "give exactly one of `bundle_file` (a SPIFFE bundle) or `bundle_url` (its bundle endpoint)",
                ));
            }
        };
        out.push(TrustDomainSettings {
            name,
            audience,
            algorithms,
            skew_s: skew_s as u32,
            bundle,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::tokens::{BundleSource, JwtAlg};

    const BASE: &str = r#"
[gateway]
public_url = "https://api.test"

[[route]]
method = "GET"
path = "/a"
action = "a.read"
resource = "A::x"
"#;

    fn parse(extra: &str) -> Result<Config, crate::ConfigError> {
        Config::parse(&format!("{BASE}{extra}"), "remit.toml")
    }

    fn td(body: &str) -> String {
        format!("[[trust_domain]]\n{body}\n")
    }

    #[test]
    fn a_trust_domain_parses_with_its_defaults() {
        let c = parse(&td(
            "name = \"example.org\"\nalgorithms = [\"ES256\", \"RS256\"]\nbundle_url = \"https://spire.example.org/bundle\"",
        ))
        .unwrap();
        let t = &c.tokens.trust_domains[0];
        assert_eq!(t.name.as_str(), "example.org");
        assert_eq!(t.audience, "https://api.test", "the resource by default");
        assert_eq!(t.algorithms, vec![JwtAlg::Es256, JwtAlg::Rs256]);
        assert_eq!(t.skew_s, 60);
        assert_eq!(
            t.bundle,
            BundleSource::Url("https://spire.example.org/bundle".into())
        );
        assert_eq!(t.key_set_id(), "spiffe://example.org");
        let c = parse(&td(
            "name = \"b.test\"\nalgorithms = [\"EdDSA\"]\nbundle_file = \"b.json\"\naudience = \"spiffe://b.test/remit\"\nskew_s = 5",
        ))
        .unwrap();
        let t = &c.tokens.trust_domains[0];
        assert_eq!(t.bundle, BundleSource::File("b.json".into()));
        assert_eq!(
            (t.audience.as_str(), t.skew_s),
            ("spiffe://b.test/remit", 5)
        );
    }

    #[test]
    fn malformed_trust_domains_name_the_line_and_field() {
        let ok_tail = "algorithms = [\"ES256\"]\nbundle_file = \"b.json\"";
        for (body, field, says) in [
            (
                format!("name = \"Example.org\"\n{ok_tail}"),
                "trust_domain[0].name",
                "not a valid trust domain",
            ),
            (
                format!("name = \"spiffe://example.org\"\n{ok_tail}"),
                "trust_domain[0].name",
                "not a valid trust domain",
            ),
            (
                format!("name = \"example.org/ns\"\n{ok_tail}"),
                "trust_domain[0].name",
                "not a valid trust domain",
            ),
            (
                format!("name = \"{}\"\n{ok_tail}", "a".repeat(256)),
                "trust_domain[0].name",
                "not a valid trust domain",
            ),
            (
                "name = \"e.org\"\nalgorithms = [\"HS256\"]\nbundle_file = \"b.json\"".into(),
                "trust_domain[0].algorithms",
                "not an accepted algorithm",
            ),
            (
                "name = \"e.org\"\nalgorithms = [\"none\"]\nbundle_file = \"b.json\"".into(),
                "trust_domain[0].algorithms",
                "not an accepted algorithm",
            ),
            (
                "name = \"e.org\"\nalgorithms = []\nbundle_file = \"b.json\"".into(),
                "trust_domain[0].algorithms",
                "at least one",
            ),
            (
                "name = \"e.org\"\nalgorithms = [\"ES256\", \"ES256\"]\nbundle_file = \"b.json\""
                    .into(),
                "trust_domain[0].algorithms",
                "listed twice",
            ),
            (
                "name = \"e.org\"\nalgorithms = [\"ES256\"]".into(),
                "trust_domain[0].bundle_url",
                "exactly one",
            ),
            (
                format!("name = \"e.org\"\n{ok_tail}\nbundle_url = \"https://e.org/b\""),
                "trust_domain[0].bundle_url",
                "exactly one",
            ),
            (
                "name = \"e.org\"\nalgorithms = [\"ES256\"]\nbundle_url = \"http://e.org/b\""
                    .into(),
                "trust_domain[0].bundle_url",
                "is not an `https://` URL",
            ),
            (
                "name = \"e.org\"\nalgorithms = [\"ES256\"]\nbundle_url = \"file:///etc/passwd\""
                    .into(),
                "trust_domain[0].bundle_url",
                "is not an `https://` URL",
            ),
            (
                "name = \"e.org\"\nalgorithms = [\"ES256\"]\nbundle_file = \"\"".into(),
                "trust_domain[0].bundle_file",
                "not a file path",
            ),
            (
                "name = \"e.org\"\nalgorithms = [\"ES256\"]\nbundle_file = \"a\\u0000b\"".into(),
                "trust_domain[0].bundle_file",
                "not a file path",
            ),
            (
                format!("name = \"e.org\"\n{ok_tail}\nskew_s = 301"),
                "trust_domain[0].skew_s",
                "between 0 and 300",
            ),
            (
                format!("name = \"e.org\"\n{ok_tail}\naudience = \"api\""),
                "trust_domain[0].audience",
                "or a SPIFFE ID",
            ),
        ] {
            let e = parse(&td(&body)).expect_err(&body);
            assert_eq!(e.field, field, "{body}: {e}");
            assert!(e.message.contains(says), "{body}: {e}");
            assert!(e.line > BASE.lines().count(), "{body}: {e}");
        }
        // Type confusion and unknown keys are refused by the reader, naming the line.
        for body in [
            format!("name = 1\n{ok_tail}"),
            "name = \"e.org\"\nalgorithms = \"ES256\"\nbundle_file = \"b.json\"".into(),
            format!("name = \"e.org\"\n{ok_tail}\njwks_uri = \"https://e.org/j\""),
            format!("name = \"e.org\"\n{ok_tail}\nskew_s = -1"),
        ] {
            let e = parse(&td(&body)).expect_err(&body);
            assert!(e.to_string().starts_with("remit.toml:"), "{body}: {e}");
        }
    }

    #[test]
    fn duplicated_and_too_many_trust_domains_are_refused() {
        let one = |name: &str| {
            td(&format!(
                "name = \"{name}\"\nalgorithms = [\"ES256\"]\nbundle_file = \"b.json\""
            ))
        };
        let e = parse(&format!("{}{}", one("e.org"), one("e.org"))).unwrap_err();
        assert_eq!(e.field, "trust_domain[1].name");
        assert!(e.message.contains("configured twice"), "{e}");
        let many: String = (0..=crate::tokens::MAX_TRUST_DOMAINS)
            .map(|i| one(&format!("t{i}.org")))
            .collect();
        let e = parse(&many).unwrap_err();
        assert!(e.message.contains("more than 64 trust domains"), "{e}");
        let fine: String = (0..crate::tokens::MAX_TRUST_DOMAINS)
            .map(|i| one(&format!("t{i}.org")))
            .collect();
        assert_eq!(parse(&fine).unwrap().tokens.trust_domains.len(), 64);
    }
}
