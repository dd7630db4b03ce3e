//! Rate caps: GCRA limiters (`governor`) for every `rate` obligation of an allow — the
//! identity's own `limits.rate` from the registry and each policy's `@rate`, which can only
//! tighten. Every identity has budgets of its own, so one identity flooding its caps never
//! spends another's; a check is a few atomic operations and never waits.
//!
//! An identity's `limits.per_purpose` and `limits.per_action` cap each purpose it declares
//! and each action (or MCP tool) it performs apart, so one flooded purpose or tool leaves
//! the others their budget.
//!
//! `[budgets]` gives each class one budget shared by all its identities (source `class`),
//! checked after the identity's own caps: a batch job (`automation`) flooding its class's
//! budget is refused there and never spends the budget of assistants or agents.
//!
//! An identity's limiters sit at its slot in the registry, found when it authenticated, so a
//! check costs no lookup by id.
//!
//! Memory is bounded: one limiter per identity with a rate; per identity with
//! `per_purpose` (or `per_action`) one keyed limiter whose keys are its purposes (or the
//! route table's actions); per `@rate` policy one keyed limiter whose keys are registered
//! identities (or `unclassified`); one limiter per class with a budget.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use remit_core::identity::ClassBudgets;
use remit_core::{ActionName, Class, IdentityId, Obligation, Purpose, Rate, Registry};

/// The source of the identity's overall cap.
pub const IDENTITY: &str = "identity";
/// The source of the identity's cap per purpose.
pub const PER_PURPOSE: &str = "identity.purpose";
/// The source of the identity's cap per action.
pub const PER_ACTION: &str = "identity.action";
/// The source of the class budget shared by every identity of the request's class.
pub const CLASS: &str = "class";

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

/// One identity's own limiters, at its slot in the registry.
#[derive(Debug, Default)]
struct IdentityCaps {
    overall: Option<DefaultDirectRateLimiter>,
    per_purpose: Option<DefaultKeyedRateLimiter<String>>,
    per_action: Option<DefaultKeyedRateLimiter<String>>,
}

/// Who a request is for the caps: the identity's slot in the registry (found when it
/// authenticated, so a check does no lookup by id), its id (for policy caps and reasons),
/// and its class (for the class budget).
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The identity's position in the registry.
    pub slot: Option<usize>,
    /// The identity.
    pub identity: Option<&'a IdentityId>,
    /// The request's class.
    pub class: Class,
}

/// Every rate cap of the process.
#[derive(Debug)]
pub struct RateCaps {
    identities: Vec<IdentityCaps>,
    classes: Vec<(Class, DefaultDirectRateLimiter)>,
    policies: Mutex<PolicyLimiters>,
    clock: DefaultClock,
}

impl RateCaps {
    /// The caps of the registry's identities and the class budgets.
    pub fn new(registry: &Registry, budgets: &ClassBudgets) -> Self {
        let identities = registry
            .iter()
            .map(|i| IdentityCaps {
                overall: i.limits.rate.map(|r| RateLimiter::direct(quota(r))),
                per_purpose: i.limits.per_purpose.map(|r| RateLimiter::keyed(quota(r))),
                per_action: i.limits.per_action.map(|r| RateLimiter::keyed(quota(r))),
            })
            .collect();
        Self {
            identities,
            classes: budgets
                .iter()
                .map(|(c, r)| (c, RateLimiter::direct(quota(r))))
                .collect(),
            policies: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Checks one request against its `rate` obligations in order, spending each cap it
    /// passes, and stops at the first that refuses it: the caps after it keep their budget.
    /// (GCRA cannot give back what the caps before it spent.)
    pub fn check(
        &self,
        who: Who<'_>,
        purpose: Option<&Purpose>,
        action: &ActionName,
        obligations: &[Obligation],
    ) -> Option<Limited> {
        let own = who.slot.and_then(|i| self.identities.get(i));
        for o in obligations {
            let Obligation::Rate { rate, source } = o else {
                continue;
            };
            let outcome = match source.as_str() {
                IDENTITY => own.and_then(|c| c.overall.as_ref()).map(|l| l.check()),
                PER_PURPOSE => own
                    .and_then(|c| c.per_purpose.as_ref())
                    .map(|l| l.check_key(&purpose.map_or("", Purpose::as_str).to_owned())),
                PER_ACTION => own
                    .and_then(|c| c.per_action.as_ref())
                    .map(|l| l.check_key(&action.as_str().to_owned())),
                CLASS => self
                    .classes
                    .iter()
                    .find(|(c, _)| *c == who.class)
                    .map(|(_, l)| l.check()),
                policy => {
                    let key = who.identity.map_or(UNCLASSIFIED, IdentityId::as_str);
                    Some(
                        self.policy_limiter(policy, *rate)
                            .check_key(&key.to_owned()),
                    )
                }
            };
            if let Some(Err(not_until)) = outcome {
                return Some(Limited {
                    retry_after: not_until.wait_time_from(self.clock.now()),
                    cap: remit_core::RateLimitState {
                        source: source.clone(),
                        rate: *rate,
                    },
                    reason: reason(who, purpose, action, source, *rate),
                });
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

/// The sentence naming the cap that refused a request.
fn reason(
    who: Who<'_>,
    purpose: Option<&Purpose>,
    action: &ActionName,
    source: &str,
    rate: Rate,
) -> String {
    let name = who.identity.map_or(UNCLASSIFIED, IdentityId::as_str);
    let (count, per) = (rate.count, rate.per_s);
    match source {
        IDENTITY => format!("identity `{name}` is over its rate of {count} requests per {per} s"),
        PER_PURPOSE => format!(
            "identity `{name}` is over its rate of {count} requests per {per} s for purpose `{}`",
            purpose.map_or("", Purpose::as_str)
        ),
        PER_ACTION => {
            format!(
                "identity `{name}` is over its rate of {count} requests per {per} s for `{action}`"
            )
        }
        CLASS => format!(
            "class `{}` is over its shared budget of {count} requests per {per} s (`{name}` is one of its identities)",
            who.class
        ),
        policy => {
            format!(
                "`{name}` is over the rate of {count} requests per {per} s that policy `{policy}` sets"
            )
        }
    }
}
