//! remit-anomaly end to end: the simulator's detection table against the goals, the
//! memory bound at 100,000 identities, baselines surviving a restart, the detectors case
//! by case, and the risk score reaching Cedar.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
