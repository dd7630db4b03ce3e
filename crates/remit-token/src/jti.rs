//! Single-use token ids: a `jti` is claimed once; every later presentation is a replay.
//!
//! The ledger is bounded: entries leave when their token expires, and a full ledger refuses
//! new claims (a deny, fail closed) rather than forgetting old ones, which would let a
//! replay through. Several replicas share claims through the store (Redis) instead: both
//! are a [`ClaimStore`].

use std::collections::HashMap;
use std::sync::Mutex;

pub use remit_core::single_use::ClaimError as JtiError;
use remit_core::single_use::{ClaimFuture, ClaimStore, shown_jti};

/// Default number of live claims held.
pub const DEFAULT_JTI_CAPACITY: usize = 1_000_000;

/// Claimed token ids until their tokens expire.
#[derive(Debug)]
pub struct JtiLedger {
    claims: Mutex<HashMap<(String, String), i64>>,
    capacity: usize,
}

impl Default for JtiLedger {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_JTI_CAPACITY)
    }
}

impl JtiLedger {
    /// A ledger holding at most `capacity` live claims.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            claims: Mutex::default(),
            capacity,
        }
    }

    /// Claims `jti` of `issuer` for a token expiring at `exp`; exactly one claim of a given
    /// id succeeds while the token lives.
    pub fn claim(&self, issuer: &str, jti: &str, exp: i64, now: i64) -> Result<(), JtiError> {
        // A poisoned lock keeps its claims: recovering it never forgets a use.
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let key = (issuer.to_owned(), jti.to_owned());
        if let Some(&until) = claims.get(&key)
            && until >= now
        {
            return Err(JtiError::Replayed(shown_jti(jti)));
        }
        if claims.len() >= self.capacity {
            claims.retain(|_, until| *until >= now);
            if claims.len() >= self.capacity {
                return Err(JtiError::Full);
            }
        }
        claims.insert(key, exp);
        Ok(())
    }

    /// Live claims held.
    pub fn len(&self) -> usize {
        self.claims.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no claim is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ClaimStore for JtiLedger {
    fn claim<'a>(&'a self, issuer: &'a str, jti: &'a str, exp: i64, now: i64) -> ClaimFuture<'a> {
        let answer = JtiLedger::claim(self, issuer, jti, exp, now);
        Box::pin(std::future::ready(answer))
    }
}
