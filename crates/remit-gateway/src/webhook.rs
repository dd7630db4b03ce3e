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
    let hook = match &settings.webhook {
        None => None,
        Some(url) => Some(spawn_sender(url.as_str().to_owned(), settings, replica)?),
    };
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            if let Err(e) = book.insert(&batch).await {
                metrics::counter!("remit_alert_store_failures_total").increment(1);
                tracing::error!(error = %e, alerts = batch.len(), "alerts not stored; they remain in their decision records");
            }
            let Some(hook) = &hook else { continue };
            for alert in batch {
                if hook.try_send(alert).is_err() {
                    metrics::counter!("remit_alert_webhook_dropped_total").increment(1);
                    tracing::warn!("the alert webhook queue is full; an alert was not sent");
                }
            }
        }
    });
    Ok(tx)
}

/// The webhook sender: a bounded queue and a task that posts each alert once.
fn spawn_sender(
    url: String,
    settings: &AlertSettings,
    replica: String,
) -> Result<mpsc::Sender<NewAlert>, WebhookError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(settings.timeout_ms))
        .connect_timeout(Duration::from_millis(settings.timeout_ms))
        .build()
        .map_err(|e| WebhookError(e.to_string()))?;
    let (tx, mut rx) = mpsc::channel::<NewAlert>(settings.queue);
    let format = settings.format;
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    tokio::spawn(async move {
        while let Some(alert) = rx.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let (client, url, replica) = (client.clone(), url.clone(), replica.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let body = payload(&alert, &replica, format);
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        metrics::counter!("remit_alert_webhook_sent_total").increment(1);
                    }
                    Ok(r) => {
                        metrics::counter!("remit_alert_webhook_failures_total").increment(1);
                        tracing::warn!(alert = %alert.id, status = r.status().as_u16(), "the alert webhook refused an alert");
                    }
                    Err(e) => {
                        metrics::counter!("remit_alert_webhook_failures_total").increment(1);
                        tracing::warn!(alert = %alert.id, error = %e, "the alert webhook could not be reached");
                    }
                }
            });
        }
    });
    Ok(tx)
}
