//! `remit alerts`: list behaviour alerts and acknowledge or resolve them, saying who and
//! why. Like `remit audit`, it works on the data directory of a running or stopped gateway
//! (`--data-dir`, or `data/` beside `--config`); inputs are read by the same parsed types
//! as the admin API's `GET /v1/alerts` and `POST /v1/alerts/{id}/ack|resolve`.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use remit_store::alerts::{
    Actor, AlertBook, AlertFilter, AlertId, AlertState, Note, PageSize, StoredAlert, Transition,
};

use crate::audit::Place;

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Print alerts, newest first, one line each (or JSON lines with --json).
    List {
        #[command(flatten)]
        place: Place,
        /// Only alerts in this state: open, acknowledged or resolved.
        #[arg(long)]
        state: Option<String>,
        /// Only alerts about this identity.
        #[arg(long)]
        identity: Option<String>,
        /// At most this many (1–500).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Only alerts older than this alert id (the last one of the previous page).
        #[arg(long)]
        before: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an open alert.
    Ack {
        /// The alert id (`al-...`).
        id: String,
        #[command(flatten)]
        place: Place,
        /// Who is acknowledging it.
        #[arg(long)]
        by: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Resolve an open or acknowledged alert.
    Resolve {
        /// The alert id (`al-...`).
        id: String,
        #[command(flatten)]
        place: Place,
        /// Who is resolving it.
        #[arg(long)]
        by: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

fn line(a: &StoredAlert) -> String {
    let who = match (&a.resolved, &a.acknowledged) {
        (Some(c), _) | (None, Some(c)) => format!(" [{} by {}: {}]", a.state, c.by, c.reason),
        (None, None) => String::new(),
    };
    format!(
        "{}  {}  {:<12}  {:<6}  {:<18}  {}  {}{}{}",
        a.id,
        a.time,
        a.state.as_str(),
        a.severity.as_str(),
        a.detector,
        a.identity,
        a.evidence,
        if a.quarantined { " (quarantined)" } else { "" },
        who
    )
}

/// Runs one `remit alerts` command. Malformed input is refused before the data directory
/// is opened.
pub async fn run(command: AlertsCommand) -> Result<ExitCode> {
    match command {
        AlertsCommand::List {
            place,
            state,
            identity,
            limit,
            before,
            json,
        } => {
            let identity = identity
                .map(|i| remit_core::IdentityId::parse(&i).map(|i| i.as_str().to_owned()))
                .transpose()
                .context("--identity")?;
            let filter = AlertFilter {
                state: state
                    .as_deref()
                    .map(str::parse::<AlertState>)
                    .transpose()
                    .context("--state")?,
                identity,
                before: before
                    .as_deref()
                    .map(AlertId::parse)
                    .transpose()
                    .context("--before")?,
                limit: PageSize::new(limit).context("--limit")?,
            };
            let book = open(&place).await?;
            for a in book.list(&filter).await? {
                if json {
                    println!("{}", serde_json::to_string(&a)?);
                } else {
                    println!("{}", line(&a));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Ack {
            id,
            place,
            by,
            reason,
        } => change(&id, &place, Transition::Acknowledge, &by, &reason).await,
        AlertsCommand::Resolve {
            id,
            place,
            by,
            reason,
        } => change(&id, &place, Transition::Resolve, &by, &reason).await,
    }
}

async fn open(place: &Place) -> Result<AlertBook> {
    let dir = place.data_dir()?;
    AlertBook::open(&dir)
        .await
        .with_context(|| format!("opening the alerts in `{}`", dir.display()))
}

async fn change(
    id: &str,
    place: &Place,
    to: Transition,
    by: &str,
    reason: &str,
) -> Result<ExitCode> {
    let id = AlertId::parse(id)?;
    let by = Actor::parse(by).context("--by")?;
    let reason = Note::parse(reason).context("--reason")?;
    let alert = open(place).await?.transition(&id, to, &by, &reason).await?;
    println!("{}", line(&alert));
    Ok(ExitCode::SUCCESS)
}
