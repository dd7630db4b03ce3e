//! remit-anomaly end to end: the simulator's detection table against the goals, the
//! memory bound at 100,000 identities, baselines surviving a restart, the detectors case
//! by case, and the risk score reaching Cedar.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "anomaly/detectors.rs"]
mod detectors;

use std::path::{Path, PathBuf};

use remit_anomaly::sim::{self, Scenario};
use remit_anomaly::{Baselines, Detectors, Settings};
use remit_engine::Engine;
use remit_engine::load::load_engine;

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart")
}

fn engine() -> Engine {
    load_engine(&quickstart().join("remit.toml")).expect("the quickstart loads")
}

/// Days simulated per scenario, and the quiet days before any incident (the default
/// learning period is three days and 200 requests).
const DAYS: u32 = 14;
const QUIET: u32 = 4;
/// Seeds of the detection table (each runs every incident variant).
const SEEDS: &[u64] = &[1, 2, 3];

#[test]
fn detection_table_meets_the_goals() {
    let engine = engine();
    let detectors = Detectors::new(Settings::default()).unwrap();
    let rows = sim::run_matrix(&engine, &detectors, SEEDS, DAYS, QUIET).unwrap();
    println!("{}", sim::render(&rows, 10));
    println!("{}", sim::render_evidence(&rows));
    let t = sim::Totals::of(&rows, 10);
    assert_eq!(
        t.incidents,
        (SEEDS.len() * sim::incident_variants().len()) as u64
    );
    assert!(t.benign >= 100_000, "only {} benign requests", t.benign);
    assert!(
        t.detected_within * 100 >= t.incidents * 95,
        "{} of {} incidents detected within 10 requests",
        t.detected_within,
        t.incidents
    );
    assert!(
        t.false_alerts * 10_000 <= t.benign,
        "{} false alerts in {} benign requests",
        t.false_alerts,
        t.benign
    );
}

/// Every identity saturates every bounded set (and rotates through more credentials than
/// it keeps): its baseline stays within `IdentityBaseline::MAX_HEAP_BYTES`, the whole
/// state within `Baselines::MAX_BYTES_PER_IDENTITY` per identity, and the identity
/// limit holds.
#[test]
fn memory_is_bounded_with_100_000_identities() {
    use remit_anomaly::baseline::{MAX_ACTIONS, MAX_CREDENTIALS};
    use remit_anomaly::{
        ClientFamily, IdentityBaseline, Learning, Network, Observation, UnixSeconds,
    };
    use remit_core::{
        ActionName, Class, CredentialId, IdentityId, Kind, Purpose, ResourceType, Verdict,
    };

    const IDENTITIES: usize = 100_000;
    // More distinct values than the largest set holds.
    const VALUES: usize = MAX_ACTIONS + 4;
    let detectors = Detectors::new(Settings {
        learning: Learning {
            requests: u32::MAX,
            duration_s: 0,
        },
        max_identities: IDENTITIES,
        ..Settings::default()
    })
    .unwrap();
    let actions: Vec<ActionName> = (0..VALUES)
        .map(|i| ActionName::parse(&format!("a{i}")).unwrap())
        .collect();
    let rtypes: Vec<ResourceType> = (0..VALUES)
        .map(|i| ResourceType::parse(&format!("R{i}")).unwrap())
        .collect();
    let purposes: Vec<Purpose> = (0..VALUES)
        .map(|i| Purpose::parse(&format!("p{i}")).unwrap())
        .collect();
    let tools: Vec<String> = (0..VALUES).map(|i| format!("tool{i}")).collect();
    let humans: Vec<String> = (0..VALUES).map(|i| format!("human{i}")).collect();
    let clients: Vec<ClientFamily> = (0..VALUES)
        .map(|i| ClientFamily::of(&format!("client{i}/1")))
        .collect();
    let creds: Vec<CredentialId> = (0..MAX_CREDENTIALS + 2)
        .map(|i| CredentialId::parse(&format!("key{i}")).unwrap())
        .collect();
    let mut state = Baselines::default();
    let mut worst = 0usize;
    for n in 0..=IDENTITIES {
        let id = IdentityId::parse(&format!("identity-{n:06}")).unwrap();
        for v in 0..VALUES {
            let obs = Observation {
                time: UnixSeconds(1_767_571_200 + v as u64),
                identity: &id,
                credential: Some(&creds[v % creds.len()]),
                kind: Kind::Agent,
                class: Class::Agent,
                schedule: None,
                action: &actions[v],
                sensitive: true,
                tool: Some(&tools[v]),
                resource_type: &rtypes[v],
                purpose: Some(&purposes[v]),
                network: Some(Network::of(std::net::IpAddr::from([
                    10,
                    (v / 256) as u8,
                    v as u8,
                    1,
                ]))),
                client: Some(clients[v].clone()),
                on_behalf_of: Some(&humans[v]),
                chain_depth: (v % 4) as u8,
            };
            detectors.observe(&mut state, &obs, Verdict::Deny);
        }
        if let Some(b) = state.identities.get(&id) {
            assert!(b.actions.is_full() && b.networks.is_full() && b.clients.is_full());
            assert_eq!(b.credentials.len(), MAX_CREDENTIALS);
            worst = worst.max(b.heap_bytes());
            assert!(
                b.heap_bytes() <= IdentityBaseline::MAX_HEAP_BYTES,
                "{}",
                b.heap_bytes()
            );
        }
    }
    // The 100,001st identity is past the limit: not tracked, counted.
    assert_eq!(state.identities.len(), IDENTITIES);
    assert_eq!(state.untracked, VALUES as u64);
    let total = state.heap_bytes();
    println!(
        "100,000 saturated identities: {total} heap bytes ({} per identity; bound {} per identity; baseline heap {worst} of at most {}; inline {} bytes)",
        total / IDENTITIES,
        Baselines::MAX_BYTES_PER_IDENTITY,
        IdentityBaseline::MAX_HEAP_BYTES,
        std::mem::size_of::<IdentityBaseline>()
    );
    assert!(total <= IDENTITIES * Baselines::MAX_BYTES_PER_IDENTITY);
}

/// A run interrupted by a restart (state serialised, dropped and read back) raises the
/// same alerts and ends in the same state as an uninterrupted run.
#[test]
fn baselines_survive_a_restart() {
    let engine = engine();
    let detectors = Detectors::new(Settings::default()).unwrap();
    let scenario = Scenario {
        seed: 77,
        days: 6,
        quiet_days: 4,
        incident: Some(sim::Incident {
            kind: sim::IncidentKind::LeakedKey,
            target: "support-assistant",
        }),
    };
    let requests = sim::generate(&scenario);
    let mut straight = Baselines::default();
    let whole = sim::run_with(&engine, &detectors, &mut straight, &requests).unwrap();
    assert!(whole.detection.is_some(), "the incident is detected");

    let half = requests.len() * 4 / 5;
    let mut before = Baselines::default();
    let first = sim::run_with(&engine, &detectors, &mut before, &requests[..half]).unwrap();
    let bytes = before.to_json().unwrap();
    drop(before);
    let mut after = Baselines::from_json(&bytes).unwrap();
    let second = sim::run_with(&engine, &detectors, &mut after, &requests[half..]).unwrap();
    let ids = |r: &sim::RunReport| -> Vec<String> {
        r.false_alerts
            .iter()
            .chain(r.incident_alerts.iter().map(|(_, a)| a))
            .map(|a| format!("{} {}", a.id.as_str(), a.evidence))
            .collect()
    };
    let mut resumed = ids(&first);
    resumed.extend(ids(&second));
    let mut uninterrupted = ids(&whole);
    resumed.sort();
    uninterrupted.sort();
    assert!(!uninterrupted.is_empty());
    assert_eq!(resumed, uninterrupted);
    assert_eq!(
        after, straight,
        "the resumed state equals the uninterrupted one"
    );

    // Without the restored state, the second part is only learning again: no detection.
    let mut amnesiac = Baselines::default();
    let forgot = sim::run_with(&engine, &detectors, &mut amnesiac, &requests[half..]).unwrap();
    assert!(forgot.incident_alerts.is_empty());
}

/// A copy of the quickstart with one extra policy file, loaded.
fn with_policy(text: &str) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let q = quickstart();
    std::fs::copy(q.join("remit.toml"), dir.path().join("remit.toml")).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(
        q.join("policies/quickstart.cedar"),
        dir.path().join("policies/quickstart.cedar"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policies/risk.cedar"), text).unwrap();
    let engine = load_engine(&dir.path().join("remit.toml")).unwrap();
    (dir, engine)
}

/// The risk score reaches `context.risk`: a policy denies the support assistant's key used
/// from a new network by new client software, and allows the same request from its usual
/// place; the alerts ride on the decision record.
#[test]
fn risk_reaches_cedar_and_alerts_ride_on_the_record() {
    use remit_anomaly::{Edge, Observation, Scorer, UnixSeconds, record_decided};
    use remit_core::{RequestFacts, Verdict};
    use time::OffsetDateTime;

    let (_dir, engine) = with_policy(
        "@id(\"risk.high\")\n@reason(\"behaviour risk is high\")\nforbid (principal, action, resource) when { context.risk >= 90 };\n",
    );
    let detectors = Detectors::new(Settings::default()).unwrap();
    // Five quiet days of the quickstart's traffic, learned.
    let scenario = Scenario {
        seed: 5,
        days: 5,
        quiet_days: 5,
        incident: None,
    };
    let mut state = Baselines::default();
    let report = sim::run_with(&engine, &detectors, &mut state, &sim::generate(&scenario)).unwrap();
    assert!(report.false_alerts.is_empty());

    let at = sim::START + 5 * 86_400 + 10 * 3600;
    let now = OffsetDateTime::from_unix_timestamp(at as i64).unwrap();
    let decide = |ip: &str, ua: &'static str, human: Option<&'static str>| {
        let facts = RequestFacts::parse(
            "GET",
            "/tickets/4242",
            [
                (
                    "authorization",
                    b"Bearer rk_demo_support_assistant".as_slice(),
                ),
                ("remit-purpose", b"case-summary".as_slice()),
                ("user-agent", ua.as_bytes()),
            ],
            None,
            Some(ip),
        )
        .unwrap();
        let edge = Edge {
            source_ip: Some(ip.parse().unwrap()),
            user_agent: Some(ua),
            on_behalf_of: human,
            chain_depth: u8::from(human.is_some()),
        };
        let scorer = Scorer::new(&detectors, &state, edge, UnixSeconds(at));
        let decided = engine
            .decide_with_risk(&facts, "d-1".into(), now, &scorer)
            .unwrap();
        let bare = engine.decide(&facts, "d-0".into(), now).unwrap();
        (
            decided,
            bare,
            scorer.into_assessment().unwrap(),
            facts,
            edge,
        )
    };

    let (usual, _, a, _, _) = decide(
        "10.30.0.11",
        "support-console/4.1 (assistant)",
        Some("alice@example.com"),
    );
    assert_eq!(
        usual.decision.verdict,
        Verdict::Allow,
        "{:?} risk {:?}",
        usual.decision.reasons,
        a.risk
    );

    let (leaked, bare, a, facts, edge) = decide("203.0.113.50", "curl/8.5.0", None);
    assert!(a.risk.get() >= 90, "risk {:?}: {:?}", a.risk, a.signals);
    assert_eq!(
        bare.decision.verdict,
        Verdict::Allow,
        "without the score the same request is allowed"
    );
    assert_eq!(leaked.decision.verdict, Verdict::Deny);
    assert_eq!(leaked.decision.policies, ["risk.high"]);

    let identity = engine
        .config()
        .registry
        .get(leaked.decision.identity.as_ref().unwrap())
        .unwrap();
    let obs = Observation::from_decision(&leaked.decision, identity, None, edge, now).unwrap();
    let (_, alerts) = record_decided(
        &detectors,
        &mut state,
        &obs,
        Some(a),
        leaked.decision.verdict,
    );
    let detectors_named: Vec<&str> = alerts.iter().map(|a| a.detector.as_str()).collect();
    assert!(
        detectors_named.contains(&"new_origin"),
        "{detectors_named:?}"
    );
    assert!(
        detectors_named.contains(&"delegation"),
        "{detectors_named:?}"
    );

    let mut record = engine.record(&leaked, &facts, now, 7);
    let plain = serde_json::to_value(&record).unwrap();
    assert!(plain.get("alerts").is_none(), "no alerts, no field");
    record.alerts = alerts.iter().map(remit_anomaly::Alert::note).collect();
    let json = serde_json::to_value(&record).unwrap();
    let first = &json["alerts"][0];
    assert!(first["id"].as_str().unwrap().starts_with("al-"));
    assert!(
        first["evidence"]
            .as_str()
            .unwrap()
            .contains("support-assistant")
    );
    assert!(first["confidence"].as_u64().unwrap() >= 50);
}

/// Baselines saved in the embedded store (one row per identity) and read back after the
/// store is reopened give the same state and the same alerts afterwards.
#[test]
fn baselines_survive_a_restart_through_the_embedded_store() {
    let engine = engine();
    let detectors = Detectors::new(Settings::default()).unwrap();
    let scenario = Scenario {
        seed: 78,
        days: 6,
        quiet_days: 4,
        incident: Some(sim::Incident {
            kind: sim::IncidentKind::OffSchedule,
            target: "inventory-sync",
        }),
    };
    let requests = sim::generate(&scenario);
    let half = requests.len() * 4 / 5;
    let mut state = Baselines::default();
    sim::run_with(&engine, &detectors, &mut state, &requests[..half]).unwrap();
    let rows = state.to_rows().unwrap();
    assert_eq!(rows.len(), 5, "four identities and the counters");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let loaded = rt.block_on(async {
        let store = remit_store::SqliteStore::open(dir.path()).await.unwrap();
        store
            .save_baselines(rows.iter().map(|(i, s)| (i.as_str(), s.as_str())))
            .await
            .unwrap();
        store.shutdown().await.unwrap();
        drop(store);
        let store = remit_store::SqliteStore::open(dir.path()).await.unwrap();
        let rows = store.load_baselines().await.unwrap();
        store.shutdown().await.unwrap();
        rows
    });
    let mut restored = Baselines::from_rows(loaded, detectors.settings().max_identities).unwrap();
    assert_eq!(restored, state);
    let after = sim::run_with(&engine, &detectors, &mut restored, &requests[half..]).unwrap();
    let mut straight = state.clone();
    let expected = sim::run_with(&engine, &detectors, &mut straight, &requests[half..]).unwrap();
    assert!(expected.detection.is_some() || expected.incident_requests == 0);
    assert_eq!(after.incident_alerts.len(), expected.incident_alerts.len());
    assert_eq!(restored, straight);

    // A row over a set's bound, or naming no identity, is refused.
    let mut bad = state.to_rows().unwrap();
    bad.push(("Not An Id".into(), "{}".into()));
    assert!(Baselines::from_rows(bad, 100).is_err());
    assert!(matches!(
        Baselines::from_rows(state.to_rows().unwrap(), 2),
        Err(remit_anomaly::StateError::TooMany(2))
    ));
}
