//! The identity registry: registered non-human principals and what they may ever do.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;
use time::OffsetDateTime;

use crate::names::{ActionName, CredentialId, IdentityId, Owner, Purpose, SpiffeId};
use crate::vocab::{Kind, Rate, Status};

/// An API key as the registry stores it: a public id and the SHA-256 of the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyCredential {
    /// The credential's public id, written to records.
    pub id: CredentialId,
    /// SHA-256 of the key. The key itself is never stored.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for ApiKeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCredential")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Most `client_key` credentials one identity may hold.
pub const MAX_CLIENT_KEYS: usize = 32;
/// Largest client public key (one JWK), written inline or in a file.
pub const MAX_CLIENT_JWK_BYTES: usize = 8 * 1024;

/// Members of a JWK that belong to a private or symmetric key: a client's key in
/// `remit.toml` is its public half only.
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A client's public signing key as a JWK (RFC 7517), checked for shape: an asymmetric
/// signing key (`OKP` Ed25519, `EC` P-256/P-384, `RSA`), public members only, a `kid`
/// of `[A-Za-z0-9._-]`, `use` (if any) `sig`, `alg` (if any) an asymmetric algorithm of
/// the key's type. The cryptographic parse happens where keys are used (remit-token).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientJwk {
    kid: String,
    text: String,
    material: String,
}

impl std::fmt::Debug for ClientJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientJwk")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ClientJwk {
    /// Parses and checks one JWK document.
    pub fn parse(text: &str) -> Result<Self, String> {
        use crate::tokens::JwtAlg;
        if text.len() > MAX_CLIENT_JWK_BYTES {
            return Err(format!("is larger than {MAX_CLIENT_JWK_BYTES} bytes"));
        }
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|_| "is not a JSON document".to_owned())?;
        let obj = v
            .as_object()
            .ok_or_else(|| "is not a JWK (a JSON object)".to_owned())?;
        if obj.contains_key("keys") {
            return Err("is a key set; give the one public key (a JWK) of this credential".into());
        }
        if let Some(m) = PRIVATE_JWK_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(format!(
                "holds `{m}`, part of a private or symmetric key: give only the public key"
            ));
        }
        for remote in ["x5u", "jku", "x5c"] {
            if obj.contains_key(remote) {
                return Err(format!("carries `{remote}`, which remit never follows"));
            }
        }
        let s = |name: &str| obj.get(name).and_then(serde_json::Value::as_str);
        let kid = s("kid").ok_or_else(|| {
            "has no `kid`: the key id the client names in its assertions' header".to_owned()
        })?;
        if kid.is_empty()
            || kid.len() > 128
            || kid == "."
            || kid == ".."
            || !kid
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return Err("has a `kid` that is not 1 to 128 of `A-Za-z0-9._-`".into());
        }
        if obj.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return Err("is not a signing key (`use` is not `sig`)".into());
        }
        let (algs, parts): (&[JwtAlg], &[&str]) = match (s("kty"), s("crv")) {
            (Some("OKP"), Some("Ed25519")) => (&[JwtAlg::EdDsa], &["crv", "x"]),
            (Some("EC"), Some("P-256")) => (&[JwtAlg::Es256], &["crv", "x", "y"]),
            (Some("EC"), Some("P-384")) => (&[JwtAlg::Es384], &["crv", "x", "y"]),
            (Some("RSA"), _) => (JwtAlg::RSA, &["n", "e"]),
            (Some("oct"), _) => {
                return Err(
                    "is a symmetric key; client assertions are signed with a private key".into(),
                );
            }
            _ => {
                return Err(
                    "is not an Ed25519 (`OKP`), P-256 or P-384 (`EC`) or `RSA` signing key".into(),
                );
            }
        };
        if let Some(a) = obj.get("alg") {
            let alg = a
                .as_str()
                .ok_or_else(|| "has an `alg` that is not a string".to_owned())
                .and_then(JwtAlg::parse)?;
            if !algs.contains(&alg) {
                return Err(format!(
                    "has `alg` `{alg}`, which its key type cannot sign with"
                ));
            }
        }
        let mut material = String::from(s("kty").unwrap_or_default());
        for p in parts {
            let part = s(p)
                .filter(|x| !x.is_empty())
                .ok_or_else(|| format!("has no `{p}`"))?;
            material.push(' ');
            material.push_str(part);
        }
        Ok(Self {
            kid: kid.to_owned(),
            text: text.to_owned(),
            material,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK's JSON text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The public key itself (type and public parameters), to find one key registered
    /// twice under different ids.
    pub fn material(&self) -> &str {
        &self.material
    }
}

/// Where a client key credential's public key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeySource {
    /// Written in `remit.toml` (`jwk`), already checked.
    Jwk(ClientJwk),
    /// In a file (`jwk_file`), relative to the configuration's directory; read and checked
    /// at start-up.
    File {
        /// The path as written.
        path: std::path::PathBuf,
        /// Where the credential names the file (file, line, field), for errors found when
        /// it is read; its message is empty.
        at: Box<crate::ConfigError>,
    },
}

/// A client's public key for `private_key_jwt` client authentication (RFC 7523 §2.2): the
/// identity signs its client assertions with the private half, which remit never holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeyCredential {
    /// The credential's public id, written to records.
    pub id: CredentialId,
    /// The public key.
    pub key: ClientKeySource,
}

/// A workload's SPIFFE ID (`type = "spiffe"`): a peer that a front door verified as this
/// SPIFFE ID (Envoy's mTLS, reported in ext_authz `source.principal`, or remit's own mTLS
/// listener reading the client certificate's X.509-SVID) is this identity. No two
/// credentials, on one identity or on two, hold the same SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeCredential {
    /// The credential's public id, written to records.
    pub id: CredentialId,
    /// The SPIFFE ID, compared exactly.
    pub spiffe_id: SpiffeId,
}

/// The most an identity may ever do: a ceiling no policy can lift.
///
/// Entries are exact action names or prefixes ending in `*` (`tickets.*`). The reserved
/// `unmapped` action is never inside a boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boundary {
    exact: BTreeSet<ActionName>,
    prefixes: Vec<String>,
}

impl Boundary {
    /// Builds a boundary from parsed entries.
    pub fn new(exact: BTreeSet<ActionName>, prefixes: Vec<String>) -> Self {
        Self { exact, prefixes }
    }

    /// Whether `action` lies inside the boundary.
    pub fn allows(&self, action: &ActionName) -> bool {
        !action.is_unmapped()
            && (self.exact.contains(action)
                || self
                    .prefixes
                    .iter()
                    .any(|p| action.as_str().starts_with(p.as_str())))
    }

    /// The exact entries.
    pub fn exact(&self) -> impl Iterator<Item = &ActionName> {
        self.exact.iter()
    }

    /// The prefix entries, without their `*`.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.prefixes.iter().map(String::as_str)
    }
}

/// When a scheduled job is expected to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Once every `seconds`.
    Every {
        /// The period in seconds.
        seconds: u32,
    },
}

impl Schedule {
    /// Parses `hourly`, `daily`, or `every N(s|m|h)`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let seconds = match s.trim() {
            "hourly" => 3600,
            "daily" => 86_400,
            other => {
                let spec = other
                    .strip_prefix("every ")
                    .ok_or_else(|| {
                        format!("`{other}` is not a schedule: use `hourly`, `daily` or `every 15m`")
                    })?
                    .trim();
                let (n, mult) = match spec.char_indices().last() {
                    Some((i, 's')) => (&spec[..i], 1),
                    Some((i, 'm')) => (&spec[..i], 60),
                    Some((i, 'h')) => (&spec[..i], 3600),
                    _ => return Err(format!("`{spec}` needs a unit: s, m or h")),
                };
                let n: u32 = n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a whole number"))?;
                n.checked_mul(mult)
                    .filter(|s| (60..=7 * 86_400).contains(s))
                    .ok_or_else(|| {
                        "a schedule's period must be between 1 minute and 7 days".to_owned()
                    })?
            }
        };
        Ok(Self::Every { seconds })
    }
}

/// Per-identity limits from the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// The identity's overall rate cap.
    pub rate: Option<Rate>,
    /// A cap for each purpose it declares, apart: one purpose's flood leaves the others
    /// their budget.
    pub per_purpose: Option<Rate>,
    /// A cap for each action (or MCP tool) it performs, apart.
    pub per_action: Option<Rate>,
    /// The longest lifetime of a token remit issues to it, in seconds.
    pub token_ttl_s: Option<u32>,
}

/// One class's budget: a rate shared by every identity of the class, and how many of its
/// requests may be at the upstreams at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassBudget {
    /// Allowed requests per period, all the class's identities together.
    pub rate: Option<Rate>,
    /// Requests of the class forwarded and not yet answered, at most.
    pub in_flight: Option<u32>,
}

/// Budgets per class (`[budgets]`): every identity of a class shares its class's budget,
/// and no class spends another's, so a flood by batch jobs (`automation`) leaves
/// interactive assistants theirs — both the rate and the room at the upstreams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassBudgets(Vec<(crate::vocab::Class, ClassBudget)>);

impl ClassBudgets {
    /// Budgets for the classes listed (each at most once; the parser checks).
    pub fn new(budgets: Vec<(crate::vocab::Class, ClassBudget)>) -> Self {
        Self(budgets)
    }

    /// The shared rate of `class`, if it has one.
    pub fn get(&self, class: crate::vocab::Class) -> Option<Rate> {
        self.budget(class).and_then(|b| b.rate)
    }

    /// The budget of `class`, if it has one.
    pub fn budget(&self, class: crate::vocab::Class) -> Option<ClassBudget> {
        self.0.iter().find(|(c, _)| *c == class).map(|(_, b)| *b)
    }

    /// Every class with a budget.
    pub fn iter(&self) -> impl Iterator<Item = (crate::vocab::Class, ClassBudget)> + '_ {
        self.0.iter().copied()
    }
}

/// A registered non-human principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The identity's id.
    pub id: IdentityId,
    /// What it is.
    pub kind: Kind,
    /// The accountable human or team.
    pub owner: Owner,
    /// The purposes it may declare.
    pub purposes: BTreeSet<Purpose>,
    /// The most it may ever do.
    pub boundary: Boundary,
    /// Its API keys (hashed).
    pub credentials: Vec<ApiKeyCredential>,
    /// Its public keys for `private_key_jwt` client authentication at the token endpoint.
    pub client_keys: Vec<ClientKeyCredential>,
    /// The SPIFFE IDs that authenticate it when a front door verified the peer.
    pub spiffe_ids: Vec<SpiffeCredential>,
    /// Its limits.
    pub limits: Limits,
    /// When a scheduled job is expected to run.
    pub schedule: Option<Schedule>,
    /// Networks it may call from; empty means any.
    pub origins: Vec<IpNet>,
    /// When it stops being valid.
    pub expires: Option<OffsetDateTime>,
    /// Active, suspended or quarantined.
    pub status: Status,
    /// Never performs a write method or a destructive tool, whatever policy says.
    pub read_only: bool,
    /// Purposes under which it is read-only.
    pub read_only_purposes: BTreeSet<Purpose>,
}

impl Identity {
    /// Whether a request under `purpose` is limited to reads.
    pub fn is_read_only(&self, purpose: Option<&Purpose>) -> bool {
        self.read_only || purpose.is_some_and(|p| self.read_only_purposes.contains(p))
    }
}

impl Identity {
    /// Why this identity may not act at `now`, if it may not.
    pub fn inactive_reason(&self, now: OffsetDateTime) -> Option<String> {
        match self.status {
            Status::Suspended => return Some(format!("identity `{}` is suspended", self.id)),
            Status::Quarantined => return Some(format!("identity `{}` is quarantined", self.id)),
            Status::Active => {}
        }
        match self.expires {
            Some(t) if t <= now => Some(format!("identity `{}` expired", self.id)),
            _ => None,
        }
    }
}

/// All registered identities, indexed by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    identities: Vec<Identity>,
    index: HashMap<IdentityId, usize>,
}

impl Registry {
    /// Builds a registry; the caller has already rejected duplicate ids.
    pub fn new(identities: Vec<Identity>) -> Self {
        let index = identities
            .iter()
            .enumerate()
            .map(|(i, id)| (id.id.clone(), i))
            .collect();
        Self { identities, index }
    }

    /// Looks an identity up by id.
    pub fn get(&self, id: &IdentityId) -> Option<&Identity> {
        self.index.get(id).map(|&i| &self.identities[i])
    }

    /// The position of `identity` in the registry, when it is one of the registry's own
    /// (what [`Registry::get`] or authentication returned). Computed from the addresses,
    /// so finding an identity's per-identity state (its rate limiters) costs no second
    /// lookup by id.
    pub fn slot_of(&self, identity: &Identity) -> Option<usize> {
        let base = self.identities.as_ptr() as usize;
        let at = std::ptr::from_ref(identity) as usize;
        let i = at.checked_sub(base)? / std::mem::size_of::<Identity>().max(1);
        self.identities
            .get(i)
            .filter(|found| std::ptr::eq(*found, identity))
            .map(|_| i)
    }

    /// Every identity, in configuration order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Identity> {
        self.identities.iter()
    }

    /// How many identities are registered.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether no identity is registered.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            Schedule::parse("hourly"),
            Ok(Schedule::Every { seconds: 3600 })
        );
        assert_eq!(
            Schedule::parse("every 15m"),
            Ok(Schedule::Every { seconds: 900 })
        );
        for bad in [
            "weekly-ish",
            "every",
            "every 5",
            "every 1s",
            "every 9999999999h",
            "every 30d",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn boundary_never_contains_unmapped() {
        let b = Boundary::new(BTreeSet::new(), vec![String::new()]);
        assert!(!b.allows(&ActionName::unmapped()));
        assert!(b.allows(&ActionName::parse("tickets.read").unwrap()));
    }
}
