//! `remit approval`: list, show, grant and deny approvals at a running remit's admin
//! listener. Granting and denying send the approver's own token (a person's, from an issuer
//! of humans); remit checks the approver group and separation of duties, and records the
//! step. Exit codes: 0 done, 1 refused by remit, 2 bad input or remit unreachable.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use remit_core::approval::{ApprovalId, ApprovalState, MAX_LIST, MAX_REASON_BYTES};
use serde_json::Value;

/// The admin listener of the quickstart.
const DEFAULT_URL: &str = "http://127.0.0.1:8441";

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalCommand {
    /// List approvals, newest first: id, status, requester, for whom, action, resource.
    List {
        /// remit's admin listener.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// Only approvals in this stored state: pending, granted, denied, used.
        #[arg(long)]
        state: Option<String>,
        /// Only this requesting identity.
        #[arg(long)]
        identity: Option<String>,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print one approval as JSON.
    Show {
        /// The approval's id (`apr_...`).
        id: String,
        /// remit's admin listener.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
    },
    /// Grant an approval: the bound request may then be made once.
    Grant {
        /// The approval's id (`apr_...`).
        id: String,
        /// Why (recorded with the grant).
        #[arg(long)]
        reason: String,
        /// Your own token, from an issuer of humans (`-` for standard input).
        #[arg(long)]
        token: String,
        /// remit's admin listener.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
    },
    /// Deny an approval.
    Deny {
        /// The approval's id (`apr_...`).
        id: String,
        /// Why (recorded with the denial).
        #[arg(long)]
        reason: String,
        /// Your own token, from an issuer of humans (`-` for standard input).
        #[arg(long)]
        token: String,
        /// remit's admin listener.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
    },
}

fn base(url: &str) -> Result<String> {
    let u = url.trim_end_matches('/');
    match remit_core::config::WebhookUrl::parse(u) {
        Ok(_) => Ok(u.to_owned()),
        Err(why) => bail!("--url {why}: give remit's admin listener, e.g. {DEFAULT_URL}"),
    }
}

fn parse_id(id: &str) -> Result<ApprovalId> {
    Ok(ApprovalId::parse(id.trim())?)
}

/// Sends the request; prints what remit answered. 0 on success, 1 when remit refused.
fn send(req: reqwest::RequestBuilder, shown: impl FnOnce(&Value) -> String) -> Result<ExitCode> {
    let rt = crate::runtime()?;
    let (status, text) = rt.block_on(async {
        let r = req
            .send()
            .await
            .context("reaching remit's admin listener")?;
        let status = r.status();
        anyhow::Ok((status, r.text().await?))
    })?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        println!("{}", shown(&body));
        Ok(ExitCode::SUCCESS)
    } else {
        let detail = body
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("(no detail)");
        eprintln!("refused ({}): {detail}", status.as_u16());
        Ok(ExitCode::from(1))
    }
}

fn row(a: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let b = |k: &str| {
        a.get("binding")
            .and_then(|b| b.get(k))
            .map_or("-".to_owned(), s)
    };
    let resource = a
        .pointer("/binding/resource")
        .map(|r| format!("{}::{}", s(&r["type"]), s(&r["id"])))
        .unwrap_or_default();
    format!(
        "{:<37} {:<8} {:<20} {:<12} {:<20} {}",
        s(&a["id"]),
        s(&a["status"]),
        b("identity"),
        b("on_behalf_of"),
        b("action"),
        resource
    )
}

pub(crate) fn run(cmd: ApprovalCommand) -> Result<ExitCode> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    match cmd {
        ApprovalCommand::List {
            url,
            state,
            identity,
            limit,
        } => {
            if let Some(s) = &state
                && ApprovalState::parse(s).is_none()
            {
                bail!(
                    "--state `{}` is not one of pending, granted, denied, used",
                    s.escape_default()
                );
            }
            if !(1..=MAX_LIST).contains(&limit) {
                bail!("--limit is 1 to {MAX_LIST}");
            }
            let mut query = vec![("limit", limit.to_string())];
            query.extend(state.map(|s| ("state", s)));
            query.extend(identity.map(|i| ("identity", i)));
            let query: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", crate::token::form_escape(v)))
                .collect();
            let req = client.get(format!("{}/v1/approvals?{}", base(&url)?, query.join("&")));
            send(req, |v| {
                let mut out = format!(
                    "{:<37} {:<8} {:<20} {:<12} {:<20} resource",
                    "id", "status", "identity", "for", "action"
                );
                for a in v["approvals"].as_array().into_iter().flatten() {
                    out.push('\n');
                    out.push_str(&row(a));
                }
                out
            })
        }
        ApprovalCommand::Show { id, url } => {
            let id = parse_id(&id)?;
            let req = client.get(format!("{}/v1/approvals/{id}", base(&url)?));
            send(req, |v| serde_json::to_string_pretty(v).unwrap_or_default())
        }
        ApprovalCommand::Grant {
            id,
            reason,
            token,
            url,
        } => answer(&client, "grant", &id, &reason, &token, &url),
        ApprovalCommand::Deny {
            id,
            reason,
            token,
            url,
        } => answer(&client, "deny", &id, &reason, &token, &url),
    }
}

fn answer(
    client: &reqwest::Client,
    verb: &str,
    id: &str,
    reason: &str,
    token: &str,
    url: &str,
) -> Result<ExitCode> {
    let id = parse_id(id)?;
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_BYTES {
        bail!("--reason is 1 to {MAX_REASON_BYTES} bytes");
    }
    let token = crate::token::read_token(token)?;
    if token.is_empty() {
        bail!(
            "--token is empty: give your own token (`remit token demo-login NAME` in the quickstart)"
        );
    }
    let req = client
        .post(format!("{}/v1/approvals/{id}/{verb}", base(url)?))
        .bearer_auth(token)
        .json(&serde_json::json!({ "reason": reason }));
    send(req, |v| {
        format!(
            "{} {} by {} (record {})",
            v["id"].as_str().unwrap_or("?"),
            v["status"].as_str().unwrap_or("?"),
            v["decided_by"].as_str().unwrap_or("?"),
            v["decision_id"].as_str().unwrap_or("?"),
        )
    })
}
