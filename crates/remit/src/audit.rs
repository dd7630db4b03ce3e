//! `remit audit`: verify the log, prove one record, follow, search and export it. Every
//! command reads the data directory of a running or stopped gateway and never writes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use remit_audit::{InclusionProof, PublicKey};
use remit_store::audit::{AuditReader, Search, StoredEntry, VerifyError};

/// Where the state lives: the same flags as `serve`.
#[derive(Debug, Args)]
pub struct Place {
    /// The configuration file (its `data/` sibling is the default data directory).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Place {
    pub(crate) fn data_dir(&self) -> Result<PathBuf> {
        match (&self.data_dir, &self.config) {
            (Some(d), _) => Ok(d.clone()),
            (None, Some(c)) => Ok(crate::default_data_dir(c)),
            (None, None) => {
                bail!("say where the data directory is: --data-dir DIR or --config FILE")
            }
        }
    }

    async fn reader(&self) -> Result<AuditReader> {
        Ok(AuditReader::open(&self.data_dir()?).await?)
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every replica's chain, tree and checkpoint signatures. Exit code: 0 intact,
    /// 1 tampered (naming the first bad record), 2 could not check.
    Verify {
        #[command(flatten)]
        place: Place,
        /// A trusted public key file (repeat for rotated keys). Default: the data
        /// directory's `audit-key.pub`, which an attacker of this machine could replace;
        /// keep a copy elsewhere and pass it here.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
        /// Only this replica.
        #[arg(long)]
        replica: Option<String>,
        /// Check an inclusion proof (from `remit audit prove`) instead of the log.
        #[arg(long)]
        proof: Option<PathBuf>,
    },
    /// Print an inclusion proof (JSON) that decision ID is in a signed checkpoint's tree.
    Prove {
        /// The decision id.
        id: String,
        #[command(flatten)]
        place: Place,
    },
    /// Print the last records, and with --follow every new one as it is written.
    Tail {
        #[command(flatten)]
        place: Place,
        /// How many records to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u32,
        /// Keep printing new records.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print the decision records (or, with `--kind`, the token endpoint's or approvals'
    /// records) that match every filter given, oldest first.
    Search {
        #[command(flatten)]
        place: Place,
        /// The record kind: decision (the default), token, approval.
        #[arg(long)]
        kind: Option<String>,
        /// The acting identity.
        #[arg(long)]
        identity: Option<String>,
        /// The human a delegated request acted for.
        #[arg(long)]
        human: Option<String>,
        /// The declared purpose.
        #[arg(long)]
        purpose: Option<String>,
        /// The verdict: allow, deny, approval_required, rate_limited.
        #[arg(long)]
        verdict: Option<String>,
        /// From this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Records at most.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Write every entry, replica by replica in chain order.
    Export {
        #[command(flatten)]
        place: Place,
        /// `jsonl`: the entries exactly as hashed (what `tools/verify_audit.py` checks);
        /// `ocsf`: OCSF Web Resource Access Activity events (class 6004).
        #[arg(long, value_enum)]
        format: Format,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One canonical entry per line.
    Jsonl,
    /// One OCSF event per line.
    Ocsf,
}

fn parse_time(field: &str, value: Option<String>) -> Result<Option<String>> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    match value {
        None => Ok(None),
        Some(v) => {
            let t = time::OffsetDateTime::parse(&v, rfc3339)
                .with_context(|| format!("--{field} `{v}` is not an RFC 3339 time"))?;
            Ok(Some(t.to_offset(time::UtcOffset::UTC).format(rfc3339)?))
        }
    }
}

pub async fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            place,
            public_keys,
            replica,
            proof,
        } => verify(&place, public_keys, replica, proof).await,
        AuditCommand::Prove { id, place } => {
            let proof = place.reader().await?.prove(&id).await?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Tail {
            place,
            lines,
            follow,
        } => tail(&place, lines, follow).await,
        AuditCommand::Search {
            place,
            kind,
            identity,
            human,
            purpose,
            verdict,
            since,
            until,
            limit,
        } => {
            if let Some(v) = &verdict
                && !["allow", "deny", "approval_required", "rate_limited"].contains(&v.as_str())
            {
                bail!("--verdict `{v}` is not one of allow, deny, approval_required, rate_limited");
            }
            if let Some(k) = &kind
                && !["decision", "token", "approval"].contains(&k.as_str())
            {
                bail!("--kind `{k}` is not one of decision, token, approval");
            }
            let search = Search {
                kind,
                identity,
                human,
                purpose,
                verdict,
                since: parse_time("since", since)?,
                until: parse_time("until", until)?,
                limit,
            };
            let mut out = std::io::stdout().lock();
            for e in place.reader().await?.search(&search).await? {
                print_record(&mut out, &e)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { place, format } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            place
                .reader()
                .await?
                .export(&mut |e| match format {
                    Format::Jsonl => writeln!(out, "{}", e.entry),
                    Format::Ocsf => match crate::ocsf::event(&e) {
                        Some(ev) => writeln!(out, "{ev}"),
                        None => Ok(()),
                    },
                })
                .await?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn keys(place: &Place, paths: Vec<PathBuf>) -> Result<Vec<PublicKey>> {
    let paths = if paths.is_empty() {
        let p = place.data_dir()?.join(remit_store::keys::PUBLIC_KEY_FILE);
        eprintln!(
            "note: trusting {}; pass --public-key with a copy kept off this machine",
            p.display()
        );
        vec![p]
    } else {
        paths
    };
    Ok(remit_store::keys::read_public_keys(&paths)?)
}

async fn verify(
    place: &Place,
    public_keys: Vec<PathBuf>,
    replica: Option<String>,
    proof: Option<PathBuf>,
) -> Result<ExitCode> {
    if let Some(path) = proof {
        return verify_proof(place, public_keys, &path);
    }
    let reader = place.reader().await?;
    let keys = keys(place, public_keys)?;
    let replicas = match replica {
        Some(r) => vec![r],
        None => reader.replicas().await?,
    };
    if replicas.is_empty() {
        println!("ok: the log is empty");
        return Ok(ExitCode::SUCCESS);
    }
    for replica in replicas {
        let total = reader.entry_count(&replica).await?;
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} records ({per_sec}, {eta} left)",
            )?
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("verifying {replica}"));
        let result = reader
            .verify(&replica, &keys, &mut |n| bar.set_position(n))
            .await;
        bar.finish_and_clear();
        match result {
            Ok(s) => {
                println!(
                    "ok: replica `{}`: {} records, {} signed checkpoints, root {}{}",
                    s.replica,
                    s.entries,
                    s.checkpoints,
                    s.root,
                    if s.unanchored > 0 {
                        format!(
                            " ({} newest records chained but not yet under a checkpoint)",
                            s.unanchored
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Err(VerifyError::Store(e)) => return Err(e.into()),
            Err(e) => {
                println!("TAMPERED: replica `{replica}`: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_proof(place: &Place, public_keys: Vec<PathBuf>, path: &Path) -> Result<ExitCode> {
    let keys = keys(place, public_keys)?;
    let text = read_bounded(path, 64 * 1024 * 1024)?;
    let proof: InclusionProof = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an inclusion proof", path.display()))?;
    match proof.verify(&keys) {
        Ok(leaf) => {
            println!(
                "ok: record {} of replica `{}` (leaf {leaf}) is in the signed tree of {} records",
                proof.seq,
                proof.checkpoint.checkpoint.replica,
                proof.checkpoint.checkpoint.tree_size
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Reads a file, refusing one larger than `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Prints an entry's record (one JSON line).
fn print_record(out: &mut impl std::io::Write, e: &StoredEntry) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(&e.entry)?;
    writeln!(out, "{}", v.get("record").unwrap_or(&v))?;
    Ok(())
}

async fn tail(place: &Place, lines: u32, follow: bool) -> Result<ExitCode> {
    let reader = place.reader().await?;
    let last = reader.last_cursor().await?;
    let mut cursor = (last - i64::from(lines)).max(0);
    let mut out = std::io::stdout();
    loop {
        let batch = reader.after(cursor, 1000).await?;
        for e in &batch {
            print_record(&mut out.lock(), e)?;
            cursor = e.cursor;
        }
        out.flush()?;
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        if batch.len() < 1000 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
