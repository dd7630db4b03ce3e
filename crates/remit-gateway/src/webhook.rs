//! Where alerts go once their decision is recorded, off the request path: the alert task
//! writes them to the data directory's `alerts` table and then hands each to the webhook
//! sender, which posts it (remit's JSON, or a Slack-compatible message) to
//! `alerts.webhook`.
//!
//! Every stage is bounded and none blocks a decision: doors `try_send` into the alert queue
//! ([`ALERT_QUEUE`]), the alert task `try_send`s into the webhook queue (`alerts.queue`),
//! and one delivery takes at most `alerts.timeout_ms`, follows no redirect, and is tried
//! once. What does not fit or fails is counted (`remit_alerts_dropped_total`,
//! `remit_alert_webhook_dropped_total`, `remit_alert_webhook_failures_total`) and logged.

use std::time::Duration;

use remit_core::approval::Approval;
use remit_core::config::{AlertSettings, WebhookFormat};
use remit_store::alerts::{AlertBook, NewAlert, Severity};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Batches of alerts waiting to be stored at most.
pub const ALERT_QUEUE: usize = 1024;
/// Deliveries in flight at once.
pub const MAX_IN_FLIGHT: usize = 4;

/// Why the webhook sender could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the alert webhook client: {0}")]
pub struct WebhookError(String);

/// The body posted for one alert.
pub fn payload(alert: &NewAlert, replica: &str, format: WebhookFormat) -> Value {
    let severity = Severity::of(alert.confidence);
    match format {
        WebhookFormat::Json => json!({
            "type": "remit.alert",
            "id": alert.id,
            "replica": replica,
            "identity": alert.identity,
            "credential": alert.credential,
            "detector": alert.detector,
            "confidence": alert.confidence,
            "severity": severity.as_str(),
            "evidence": alert.evidence,
            "decision_id": alert.decision_id,
            "time": alert.time,
            "quarantined": alert.quarantined,
        }),
        WebhookFormat::Slack => {
            let quarantined = if alert.quarantined {
                " The identity is quarantined."
            } else {
                ""
            };
            json!({
                "text": format!(
                    "remit alert {} [{}] `{}` on identity `{}`: {}{quarantined} (decision {})",
                    alert.id,
                    severity.as_str(),
                    alert.detector,
                    alert.identity,
                    alert.evidence,
                    alert.decision_id,
                ),
            })
        }
    }
}

/// Starts the alert task (and the webhook sender when `alerts.webhook` is set); returns
/// the queue the doors send alerts into. Must run inside a Tokio runtime.
pub fn spawn_alert_task(
    book: AlertBook,
    settings: &AlertSettings,
    replica: String,
) -> Result<mpsc::Sender<Vec<NewAlert>>, WebhookError> {
    let (tx, mut rx) = mpsc::channel::<Vec<NewAlert>>(ALERT_QUEUE);
    let format = settings.format;
    let hook = match &settings.webhook {
        None => None,
        Some(url) => Some(spawn_sender(
            url.as_str().to_owned(),
            settings.timeout_ms,
            settings.queue,
            ALERT_HOOK,
        )?),
    };
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            if let Err(e) = book.insert(&batch).await {
                metrics::counter!("remit_alert_store_failures_total").increment(1);
                tracing::error!(error = %e, alerts = batch.len(), "alerts not stored; they remain in their decision records");
            }
            let Some(hook) = &hook else { continue };
            for alert in batch {
                let body = payload(&alert, &replica, format);
                if hook.try_send((alert.id.to_string(), body)).is_err() {
                    metrics::counter!("remit_alert_webhook_dropped_total").increment(1);
                    tracing::warn!("the alert webhook queue is full; an alert was not sent");
                }
            }
        }
    });
    Ok(tx)
}

/// What one webhook posts, for its metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    /// Counter of deliveries the receiver accepted.
    pub sent: &'static str,
    /// Counter of deliveries refused or not delivered.
    pub failures: &'static str,
    /// What is posted, for logs: `alert`, `approval`.
    pub what: &'static str,
}

/// The alert webhook.
pub const ALERT_HOOK: Hook = Hook {
    sent: "remit_alert_webhook_sent_total",
    failures: "remit_alert_webhook_failures_total",
    what: "alert",
};

/// The approval webhook.
pub const APPROVAL_HOOK: Hook = Hook {
    sent: "remit_approval_webhook_sent_total",
    failures: "remit_approval_webhook_failures_total",
    what: "approval",
};

/// A webhook sender: a bounded queue of rendered bodies (with an id for the logs) and a
/// task that posts each once, at most [`MAX_IN_FLIGHT`] at a time, with `timeout_ms` and
/// no redirects. Must run inside a Tokio runtime.
pub fn spawn_sender(
    url: String,
    timeout_ms: u64,
    queue: usize,
    hook: Hook,
) -> Result<mpsc::Sender<(String, Value)>, WebhookError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(timeout_ms))
        .connect_timeout(Duration::from_millis(timeout_ms))
        .build()
        .map_err(|e| WebhookError(e.to_string()))?;
    let (tx, mut rx) = mpsc::channel::<(String, Value)>(queue.max(1));
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    tokio::spawn(async move {
        while let Some((id, body)) = rx.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        metrics::counter!(hook.sent).increment(1);
                    }
                    Ok(r) => {
                        metrics::counter!(hook.failures).increment(1);
                        tracing::warn!(id = %id, what = hook.what, status = r.status().as_u16(), "the webhook refused a delivery");
                    }
                    Err(e) => {
                        metrics::counter!(hook.failures).increment(1);
                        tracing::warn!(id = %id, what = hook.what, error = %e, "the webhook could not be reached");
                    }
                }
            });
        }
    });
    Ok(tx)
}

/// The body announcing a new approval: remit's JSON, or a Slack-compatible message that
/// says what is asked, by whom, for whom, and where to decide.
pub fn approval_payload(a: &Approval, decide: &str, replica: &str, format: WebhookFormat) -> Value {
    let b = &a.binding;
    match format {
        WebhookFormat::Json => json!({
            "type": "remit.approval",
            "id": a.id,
            "replica": replica,
            "identity": b.identity,
            "on_behalf_of": b.on_behalf_of,
            "purpose": b.purpose,
            "action": b.action,
            "resource": b.resource,
            "method": b.method,
            "path": b.path,
            "approvers": a.approvers,
            "expires_at": a.expires_at,
            "decide": decide,
        }),
        WebhookFormat::Slack => json!({
            "text": format!(
                "remit approval {}: `{}`{} asks to `{}` on `{}::{}` ({} {}) for purpose `{}`. Approvers: {}. Decide at {} or `remit approval grant|deny {}`.",
                a.id,
                b.identity,
                b.on_behalf_of.as_deref().map(|h| format!(" acting for `{h}`")).unwrap_or_default(),
                b.action,
                b.resource.rtype,
                b.resource.id,
                b.method,
                b.path,
                b.purpose.as_ref().map_or("(none)", |p| p.as_str()),
                a.approvers.iter().map(|r| r.groups.join("/")).collect::<Vec<_>>().join(" and "),
                decide,
                a.id,
            ),
        }),
    }
}

/// Announces every approval the engine opens to `approvals.webhook`, when set.
pub fn announce_approvals(engine: &remit_engine::Engine) -> Result<(), WebhookError> {
    let settings = &engine.config().approvals;
    let Some(url) = &settings.webhook else {
        return Ok(());
    };
    let tx = spawn_sender(url.as_str().to_owned(), 5_000, 1024, APPROVAL_HOOK)?;
    let format = settings.format;
    let replica = engine.config().gateway.replica_id.clone();
    engine.on_approval_opened(Box::new(move |a: &Approval, decide: &str| {
        let body = approval_payload(a, decide, &replica, format);
        if tx.try_send((a.id.to_string(), body)).is_err() {
            metrics::counter!("remit_approval_webhook_dropped_total").increment(1);
            tracing::warn!(approval = %a.id, "the approval webhook queue is full; an approval was not announced");
        }
    }));
    Ok(())
}
