//! Rate caps: GCRA limiters (`governor`) for every `rate` obligation of an allow — the
//! identity's own `limits.rate` from the registry and each policy's `@rate`, which can only
//! tighten. Every identity has budgets of its own, so one identity flooding its caps never
//! spends another's; a check is a few atomic operations and never waits.
//!
//! Memory is bounded: one limiter per identity with a rate, and per `@rate` policy one
//! keyed limiter whose keys are registered identities (or `unclassified`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use remit_core::{IdentityId, Obligation, Rate, Registry};

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
        Self {
            identities,
            policies: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Checks (and on success spends) one request against every `rate` obligation.
    pub fn check(
        &self,
        identity: Option<&IdentityId>,
        obligations: &[Obligation],
    ) -> Option<Limited> {
        let mut worst: Option<Limited> = None;
        for o in obligations {
            let Obligation::Rate { rate, source } = o else {
                continue;
            };
            let outcome = if source == "identity" {
                identity
                    .and_then(|id| self.identities.get(id))
                    .map(|l| l.check())
            } else {
                let key = identity.map_or(UNCLASSIFIED, IdentityId::as_str);
                Some(
                    self.policy_limiter(source, *rate)
                        .check_key(&key.to_owned()),
                )
            };
            if let Some(Err(not_until)) = outcome {
                let wait = not_until.wait_time_from(self.clock.now());
                if worst.as_ref().is_none_or(|w| wait > w.retry_after) {
                    let who = identity.map_or(UNCLASSIFIED, IdentityId::as_str);
                    worst = Some(Limited {
                        retry_after: wait,
                        cap: remit_core::RateLimitState {
                            source: source.clone(),
                            rate: *rate,
                        },
                        reason: if source == "identity" {
                            format!(
                                "identity `{who}` is over its rate of {} requests per {} s",
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
        worst
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
