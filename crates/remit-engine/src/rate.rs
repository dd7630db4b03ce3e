//! Rate caps: GCRA limiters (`governor`) for every `rate` obligation of an allow — the
//! identity's own `limits.rate` from the registry and each policy's `@rate`, which can only
//! tighten. Every identity has budgets of its own, so one identity flooding its caps never
//! spends another's; a check is a few atomic operations and never waits.
//!
//! An identity's `limits.per_purpose` and `limits.per_action` cap each purpose it declares
//! and each action (or MCP tool) it performs apart, so one flooded purpose or tool leaves
//! the others their budget.
//!
//! Memory is bounded: one limiter per identity with a rate; per identity with
//! `per_purpose` (or `per_action`) one keyed limiter whose keys are its purposes (or the
//! route table's actions); per `@rate` policy one keyed limiter whose keys are registered
//! identities (or `unclassified`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use remit_core::{ActionName, IdentityId, Obligation, Purpose, Rate, Registry};

/// The source of the identity's overall cap.
pub const IDENTITY: &str = "identity";
/// The source of the identity's cap per purpose.
pub const PER_PURPOSE: &str = "identity.purpose";
/// The source of the identity's cap per action.
pub const PER_ACTION: &str = "identity.action";

/// The key of unauthenticated traffic under a policy's cap.
const UNCLASSIFIED: &str = "unclassified";

/// A GCRA quota for `count` requests per `per_s` seconds, bursting up to `count`.
pub fn quota(rate: Rate) -> Quota {
    let count = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs(u64::from(rate.per_s.max(1))) / count.get();
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(count)
}

/// One keyed limiter per (`@rate` policy, rate), keyed by identity.
type PolicyLimiters = HashMap<(String, Rate), Arc<DefaultKeyedRateLimiter<String>>>;

/// A refused request: how long until the cap allows one again, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Until the next request may pass.
    pub retry_after: Duration,
    /// A sentence naming the cap.
    pub reason: String,
    /// The cap: where it came from and its quota.
    pub cap: remit_core::RateLimitState,
}

/// Every rate cap of the process.
#[derive(Debug)]
pub struct RateCaps {
    identities: HashMap<IdentityId, DefaultDirectRateLimiter>,
    per_purpose: HashMap<IdentityId, DefaultKeyedRateLimiter<String>>,
    per_action: HashMap<IdentityId, DefaultKeyedRateLimiter<String>>,
    policies: Mutex<PolicyLimiters>,
    clock: DefaultClock,
}

impl RateCaps {
    /// The caps of the registry's identities.
    pub fn new(registry: &Registry) -> Self {
        let identities = registry
            .iter()
            .filter_map(|i| Some((i.id.clone(), RateLimiter::direct(quota(i.limits.rate?)))))
            .collect();
        let keyed = |pick: fn(&remit_core::Identity) -> Option<Rate>| {
            registry
                .iter()
                .filter_map(|i| Some((i.id.clone(), RateLimiter::keyed(quota(pick(i)?)))))
                .collect()
        };
        Self {
            identities,
            per_purpose: keyed(|i| i.limits.per_purpose),
            per_action: keyed(|i| i.limits.per_action),
            policies: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Checks one request against its `rate` obligations in order, spending each cap it
    /// passes, and stops at the first that refuses it: the caps after it keep their budget.
    /// (GCRA cannot give back what the caps before it spent.)
    pub fn check(
        &self,
        identity: Option<&IdentityId>,
        purpose: Option<&Purpose>,
        action: &ActionName,
        obligations: &[Obligation],
    ) -> Option<Limited> {
        for o in obligations {
            let Obligation::Rate { rate, source } = o else {
                continue;
            };
            let keyed = |map: &HashMap<IdentityId, DefaultKeyedRateLimiter<String>>, key: &str| {
                identity
                    .and_then(|id| map.get(id))
                    .map(|l| l.check_key(&key.to_owned()))
            };
            let outcome = if source == IDENTITY {
                identity
                    .and_then(|id| self.identities.get(id))
                    .map(|l| l.check())
            } else if source == PER_PURPOSE {
                keyed(&self.per_purpose, purpose.map_or("", Purpose::as_str))
            } else if source == PER_ACTION {
                keyed(&self.per_action, action.as_str())
            } else {
                let key = identity.map_or(UNCLASSIFIED, IdentityId::as_str);
                Some(
                    self.policy_limiter(source, *rate)
                        .check_key(&key.to_owned()),
                )
            };
            if let Some(Err(not_until)) = outcome {
                let wait = not_until.wait_time_from(self.clock.now());
                {
                    let who = identity.map_or(UNCLASSIFIED, IdentityId::as_str);
                    return Some(Limited {
                        retry_after: wait,
                        cap: remit_core::RateLimitState {
                            source: source.clone(),
                            rate: *rate,
                        },
                        reason: if source == IDENTITY {
                            format!(
                                "identity `{who}` is over its rate of {} requests per {} s",
                                rate.count, rate.per_s
                            )
                        } else if source == PER_PURPOSE {
                            format!(
                                "identity `{who}` is over its rate of {} requests per {} s for purpose `{}`",
                                rate.count,
                                rate.per_s,
                                purpose.map_or("", Purpose::as_str)
                            )
                        } else if source == PER_ACTION {
                            format!(
                                "identity `{who}` is over its rate of {} requests per {} s for `{action}`",
                                rate.count, rate.per_s
                            )
                        } else {
                            format!(
                                "`{who}` is over the rate of {} requests per {} s that policy `{source}` sets",
                                rate.count, rate.per_s
                            )
                        },
                    });
                }
            }
        }
        None
    }

    fn policy_limiter(&self, policy: &str, rate: Rate) -> Arc<DefaultKeyedRateLimiter<String>> {
        // A poisoned lock only means another thread panicked while holding it; the map
        // itself is intact, so the cap keeps applying (fail closed, not open).
        let mut map = self
            .policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((policy.to_owned(), rate))
            .or_insert_with(|| Arc::new(RateLimiter::keyed(quota(rate))))
            .clone()
    }
}
