//! Single-use claims: a key (a token's issuer and `jti`) admitted once while its token
//! lives. [`ClaimStore`] is the seam between the pipeline and where claims are kept: in this
//! process (`remit-token`'s `JtiLedger`) or shared by every replica (`remit-store`'s
//! `RedisClaims`). Every refusal is a deny; an unreachable store fails closed.

use std::future::Future;
use std::pin::Pin;

/// Why a claim was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The key was claimed before and its token still lives.
    #[error("token id `{0}` was already used, and the token is single-use")]
    Replayed(String),
    /// The store holds as many live claims as it may.
    #[error("the single-use token ledger is full, so the token is refused")]
    Full,
    /// The shared store could not be asked in time.
    #[error("the single-use claim store is unavailable ({0}), so the token is refused")]
    Unavailable(String),
}

/// A claim's answer, resolved once the store has decided it.
pub type ClaimFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ClaimError>> + Send + 'a>>;

/// Where single-use claims are kept.
pub trait ClaimStore: Send + Sync + std::fmt::Debug {
    /// Claims `jti` of `issuer` for a token expiring at `exp` (Unix seconds), at `now`.
    /// Exactly one claim of a given issuer and id succeeds while the token lives, however
    /// many replicas ask at once.
    fn claim<'a>(&'a self, issuer: &'a str, jti: &'a str, exp: i64, now: i64) -> ClaimFuture<'a>;
}

/// The most characters of a refused `jti` an error repeats.
pub const SHOWN_JTI_CHARS: usize = 64;

/// A refused id as errors show it: at most [`SHOWN_JTI_CHARS`] characters.
pub fn shown_jti(jti: &str) -> String {
    jti.chars().take(SHOWN_JTI_CHARS).collect()
}
