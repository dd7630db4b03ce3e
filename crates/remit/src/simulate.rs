//! `remit simulate`: the behaviour-detection simulator (remit-anomaly's `sim`) over the
//! quickstart world, run through the real pipeline; prints the detection table.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use remit_anomaly::sim;
use remit_anomaly::{Detectors, Settings};

/// The identities the simulator's traffic is written for.
const QUICKSTART_IDENTITIES: &[&str] = &[
    "support-assistant",
    "codegen-workflow",
    "retrieval-agent",
    "inventory-sync",
];
/// Most seeds in one invocation (each runs every incident variant).
const MAX_SEEDS: u32 = 100;

/// Runs every incident variant for `seeds` seeds over `days` days; exit 0 when the goals
/// hold (≥ 95% detected within `within` requests, ≤ 1 false alert per 10,000 benign).
pub fn run(
    config: &Path,
    days: u32,
    seeds: u32,
    quiet_days: u32,
    within: u64,
    evidence: bool,
) -> Result<ExitCode> {
    if !(1..=MAX_SEEDS).contains(&seeds) {
        bail!("--seeds must be between 1 and {MAX_SEEDS}");
    }
    if !(2..=sim::MAX_DAYS).contains(&days) || quiet_days >= days {
        bail!(
            "--days must be between 2 and {} and more than --quiet-days",
            sim::MAX_DAYS
        );
    }
    let engine = remit_engine::load::load_engine(config)?;
    for id in QUICKSTART_IDENTITIES {
        let id = remit_core::IdentityId::parse(id)?;
        if engine.config().registry.get(&id).is_none() {
            bail!(
                "{}: the simulator's traffic is written for the quickstart identities and `{id}` is not registered; use examples/quickstart/remit.toml",
                config.display()
            );
        }
    }
    let detectors = Detectors::new(Settings::default())?;
    let seed_list: Vec<u64> = (1..=u64::from(seeds)).collect();
    let rows = sim::run_matrix(&engine, &detectors, &seed_list, days, quiet_days)?;
    print!("{}", sim::render(&rows, within));
    if evidence {
        println!();
        print!("{}", sim::render_evidence(&rows));
    }
    let t = sim::Totals::of(&rows, within);
    let met = t.detected_within * 100 >= t.incidents * 95 && t.false_alerts * 10_000 <= t.benign;
    Ok(if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
