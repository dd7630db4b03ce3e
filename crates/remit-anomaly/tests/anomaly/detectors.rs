//! The detectors case by case: an identity learns a usual pattern, then one request (or a
//! short sequence) departs from it in one way, and exactly the expected detector speaks,
//! with an alert when its confidence reaches the threshold.

use std::net::IpAddr;

use remit_anomaly::{
    Baselines, ClientFamily, Detector, Detectors, Learning, Network, Observation, Settings,
    UnixSeconds,
};
use remit_core::identity::Schedule;
use remit_core::{ActionName, CredentialId, IdentityId, Kind, ResourceType, Verdict};

/// Monday 2026-01-05 00:00 UTC.
const T0: u64 = 1_767_571_200;

/// One request, owned, that the tests edit field by field.
#[derive(Debug, Clone)]
struct Req {
    t: u64,
    identity: IdentityId,
    credential: CredentialId,
    kind: Kind,
    schedule: Option<Schedule>,
    action: ActionName,
    resource_type: ResourceType,
    sensitive: bool,
    tool: Option<String>,
    ip: IpAddr,
    user_agent: String,
    human: Option<String>,
    depth: u8,
    verdict: Verdict,
}

impl Req {
    fn obs(&self) -> Observation<'_> {
        Observation {
            time: UnixSeconds(self.t),
            identity: &self.identity,
            credential: Some(&self.credential),
            kind: self.kind,
            class: self.kind.class(),
            schedule: self.schedule,
            action: &self.action,
            sensitive: self.sensitive,
            tool: self.tool.as_deref(),
            resource_type: &self.resource_type,
            purpose: None,
            network: Some(Network::of(self.ip)),
            client: Some(ClientFamily::of(&self.user_agent)),
            on_behalf_of: self.human.as_deref(),
            chain_depth: self.depth,
        }
    }
}

fn name<T>(r: Result<T, remit_core::names::NameError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// An hourly job: runs about five minutes past the hour, three reads ten seconds apart.
fn job(k: u64) -> Req {
    Req {
        t: T0 + (k / 3) * 3600 + 300 + (k % 3) * 10,
        identity: name(IdentityId::parse("inventory-sync")),
        credential: name(CredentialId::parse("inventory-sync-key")),
        kind: Kind::ScheduledJob,
        schedule: Some(Schedule::Every { seconds: 3600 }),
        action: name(ActionName::parse("inventory.read")),
        resource_type: name(ResourceType::parse("Sku")),
        sensitive: false,
        tool: None,
        ip: IpAddr::from([10, 0, 0, 5]),
        user_agent: "inventory-sync/2.3".into(),
        human: None,
        depth: 0,
        verdict: Verdict::Allow,
    }
}

/// An assistant that always acts for one of two people, every ten minutes in the day.
fn assistant(k: u64) -> Req {
    Req {
        t: T0 + 8 * 3600 + k * 600,
        identity: name(IdentityId::parse("support-assistant")),
        credential: name(CredentialId::parse("support-key")),
        kind: Kind::Assistant,
        schedule: None,
        action: name(ActionName::parse("tickets.read")),
        resource_type: name(ResourceType::parse("Ticket")),
        sensitive: true,
        tool: None,
        ip: IpAddr::from([10, 30, 0, 10]),
        user_agent: "support-console/4.1".into(),
        human: Some(if k.is_multiple_of(2) { "alice" } else { "bob" }.into()),
        depth: 1,
        verdict: Verdict::Allow,
    }
}

const TRAIN: u64 = 120;

fn settings() -> Settings {
    Settings {
        learning: Learning {
            requests: 30,
            duration_s: 0,
        },
        ..Settings::default()
    }
}

type Edit = fn(Req) -> Vec<Req>;

/// A case: the identity's usual request generator, how the last requests depart from it,
/// the detectors expected to signal on the last one, and whether an alert follows.
struct Case {
    name: &'static str,
    usual: fn(u64) -> Req,
    edit: Edit,
    expect: &'static [Detector],
    alert: bool,
}

/// The usual request right after training.
fn next(usual: fn(u64) -> Req) -> Req {
    usual(TRAIN)
}

const CASES: &[Case] = &[
    Case {
        name: "usual job request",
        usual: job,
        edit: |r| vec![r],
        expect: &[],
        alert: false,
    },
    Case {
        name: "usual assistant request",
        usual: assistant,
        edit: |r| vec![r],
        expect: &[],
        alert: false,
    },
    Case {
        name: "job asks for a new action",
        usual: job,
        edit: |mut r| {
            r.action = name(ActionName::parse("inventory.delete"));
            vec![r]
        },
        expect: &[Detector::ScopeExpansion],
        alert: true,
    },
    Case {
        name: "assistant asks for a new non-sensitive action: risk only",
        usual: assistant,
        edit: |mut r| {
            r.action = name(ActionName::parse("tickets.history.read"));
            r.sensitive = false;
            vec![r]
        },
        expect: &[Detector::ScopeExpansion],
        alert: false,
    },
    Case {
        name: "job calls from a new network",
        usual: job,
        edit: |mut r| {
            r.ip = IpAddr::from([203, 0, 113, 9]);
            vec![r]
        },
        expect: &[Detector::NewOrigin],
        alert: true,
    },
    Case {
        name: "job calls with new client software",
        usual: job,
        edit: |mut r| {
            r.user_agent = "curl/8.5.0".into();
            vec![r]
        },
        expect: &[Detector::NewOrigin],
        alert: true,
    },
    Case {
        name: "same /24, another host: not new",
        usual: job,
        edit: |mut r| {
            r.ip = IpAddr::from([10, 0, 0, 77]);
            vec![r]
        },
        expect: &[],
        alert: false,
    },
    Case {
        name: "credential used from a new network within seconds of its usual one",
        usual: job,
        edit: |mut r| {
            r.t -= 3600 - 25; // 5 s after the last training request
            r.ip = IpAddr::from([198, 51, 100, 4]);
            vec![r]
        },
        expect: &[Detector::NewOrigin, Detector::ConcurrentOrigins],
        alert: true,
    },
    Case {
        name: "job runs thirty minutes off its phase",
        usual: job,
        edit: |mut r| {
            r.t += 30 * 60;
            vec![r]
        },
        expect: &[Detector::OffSchedule],
        alert: true,
    },
    Case {
        name: "job keeps running long after its run began",
        usual: job,
        edit: |r| {
            let mut later = r.clone();
            later.t += 500; // within the run gap, far past the usual 20 s run
            vec![r, later]
        },
        expect: &[Detector::OffSchedule],
        alert: true,
    },
    Case {
        name: "forty requests in one minute",
        usual: job,
        edit: |r| {
            (0..40)
                .map(|i| {
                    let mut x = r.clone();
                    x.t += i / 2;
                    x
                })
                .collect()
        },
        expect: &[Detector::RateSpike],
        alert: true,
    },
    Case {
        name: "first use after thirty days",
        usual: job,
        edit: |mut r| {
            r.t += 30 * 86_400;
            vec![r]
        },
        expect: &[Detector::Dormancy],
        alert: true,
    },
    Case {
        name: "denials of new capabilities pile up",
        usual: job,
        edit: |r| {
            ["tickets.read", "repos.deploy", "inventory.delete"]
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let mut x = r.clone();
                    x.t += 20 * i as u64;
                    x.action = name(ActionName::parse(a));
                    x.verdict = Verdict::Deny;
                    x
                })
                .collect()
        },
        expect: &[Detector::ScopeExpansion, Detector::Probing],
        alert: true,
    },
    Case {
        name: "assistant acts without its human",
        usual: assistant,
        edit: |mut r| {
            r.human = None;
            r.depth = 0;
            vec![r]
        },
        expect: &[Detector::Delegation],
        alert: true,
    },
    Case {
        name: "assistant acts for a new human: risk only",
        usual: assistant,
        edit: |mut r| {
            r.human = Some("mallory".into());
            vec![r]
        },
        expect: &[Detector::Delegation],
        alert: false,
    },
    Case {
        name: "deeper delegation chain",
        usual: assistant,
        edit: |mut r| {
            r.depth = 3;
            vec![r]
        },
        expect: &[Detector::DeepDelegation],
        alert: true,
    },
];

#[test]
fn each_detector_speaks_for_its_case_and_only_then() {
    let detectors = Detectors::new(settings()).expect("valid settings");
    let mut failures = Vec::new();
    for case in CASES {
        let mut state = Baselines::default();
        for k in 0..TRAIN {
            let r = (case.usual)(k);
            let (a, alerts) = detectors.observe(&mut state, &r.obs(), r.verdict);
            assert!(
                alerts.is_empty(),
                "{}: alert while learning the usual: {a:?}",
                case.name
            );
        }
        let steps = (case.edit)(next(case.usual));
        let mut last = None;
        let mut alerted = false;
        for r in &steps {
            let (a, alerts) = detectors.observe(&mut state, &r.obs(), r.verdict);
            alerted |= alerts.iter().any(|al| case.expect.contains(&al.detector));
            last = Some(a);
        }
        let a = last.expect("a step");
        let mut got: Vec<Detector> = a.signals.iter().map(|s| s.detector).collect();
        got.sort_by_key(|d| d.index());
        let mut want = case.expect.to_vec();
        want.sort_by_key(|d| d.index());
        if got != want {
            failures.push(format!(
                "{}: signals {got:?}, expected {want:?}: {:?}",
                case.name, a.signals
            ));
        }
        if alerted != case.alert {
            failures.push(format!(
                "{}: alerted {alerted}, expected {}",
                case.name, case.alert
            ));
        }
        for s in &a.signals {
            // One sentence naming the evidence, naming the identity.
            if !s
                .evidence
                .contains(state.identities.keys().next().map_or("", |k| k.as_str()))
                && !s.evidence.contains("credential")
            {
                failures.push(format!(
                    "{}: evidence does not name who: {}",
                    case.name, s.evidence
                ));
            }
        }
        if !case.expect.is_empty() && a.risk.get() == 0 {
            failures.push(format!("{}: signals but risk 0", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn nothing_is_signalled_while_learning() {
    let detectors = Detectors::new(Settings {
        learning: Learning {
            requests: 1000,
            duration_s: 0,
        },
        ..Settings::default()
    })
    .expect("valid");
    let mut state = Baselines::default();
    for k in 0..200 {
        let mut r = job(k);
        if k % 7 == 0 {
            r.ip = IpAddr::from([203, 0, 113, (k % 200) as u8]);
            r.action = name(ActionName::parse("inventory.delete"));
        }
        let (a, alerts) = detectors.observe(&mut state, &r.obs(), r.verdict);
        assert!(a.signals.is_empty() && alerts.is_empty() && !a.watching);
    }
}

#[test]
fn an_alert_is_raised_once_per_cooldown_and_risk_decays() {
    let detectors = Detectors::new(settings()).expect("valid");
    let mut state = Baselines::default();
    for k in 0..TRAIN {
        let r = job(k);
        detectors.observe(&mut state, &r.obs(), r.verdict);
    }
    let mut r = next(job);
    r.ip = IpAddr::from([203, 0, 113, 9]);
    let mut alerts = 0;
    let mut first_risk = 0;
    for i in 0..5 {
        let mut x = r.clone();
        x.t += i * 60;
        // A different new network each time, so the detector keeps signalling.
        x.ip = IpAddr::from([203, 0, 113 + i as u8, 9]);
        let (a, al) = detectors.observe(&mut state, &x.obs(), Verdict::Allow);
        if i == 0 {
            first_risk = a.risk.get();
        }
        alerts += al
            .iter()
            .filter(|a| a.detector == Detector::NewOrigin)
            .count();
    }
    assert_eq!(alerts, 1, "one new_origin alert per cooldown");
    assert!(first_risk >= 75, "risk {first_risk}");
    // Two hours later, from the usual network: the remembered risk has decayed.
    let mut calm = next(job);
    calm.t += 2 * 3600;
    let a = detectors.assess(&state, &calm.obs());
    assert!(a.risk.get() < 5, "risk {} two hours later", a.risk.get());
}
