//! The `[anomaly]` and `[alerts]` tables of `remit.toml`: how the behaviour detectors learn
//! and alert, and what happens to an alert (the webhook, automatic quarantine), parsed into
//! typed settings. The detectors' own types live in remit-anomaly; these are the values the
//! file may set, each with its range.

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Ctx, bounded};
use crate::ConfigError;

/// Longest webhook URL accepted.
pub const MAX_WEBHOOK_URL: usize = 2048;

/// The behaviour detectors' settings from `[anomaly]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalySettings {
    /// Requests an identity makes before it is watched.
    pub learning_requests: u32,
    /// Seconds after an identity's first request before it is watched.
    pub learning_duration_s: u64,
    /// Signals at or above this confidence (percent) become alerts.
    pub alert_threshold: u8,
    /// After an alert, the same detector does not alert again for the identity this long.
    pub cooldown_s: u64,
    /// Most identities with a baseline; more are not tracked.
    pub max_identities: usize,
    /// How often `serve` saves the baselines to the data directory (and at a graceful stop).
    pub save_interval_s: u64,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            learning_requests: 200,
            learning_duration_s: 3 * 86_400,
            alert_threshold: 50,
            cooldown_s: 3600,
            max_identities: 1_000_000,
            save_interval_s: 60,
        }
    }
}

/// How the webhook's body is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The alert as a JSON object (remit's own shape).
    #[default]
    Json,
    /// A Slack-compatible incoming-webhook message (`{"text": ...}`).
    Slack,
}

/// A webhook target: an `http` or `https` URL with a host, no credentials in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Reads a URL: `http://` or `https://`, a host, no user information, no whitespace or
    /// control characters, at most [`MAX_WEBHOOK_URL`] bytes.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.len() > MAX_WEBHOOK_URL {
            return Err("is longer than 2048 bytes");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters");
        }
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .ok_or("must be an `http://` or `https://` URL")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty() {
            return Err("must name a host");
        }
        if authority.contains('@') {
            return Err(
                "must not carry credentials (put a token in the path or use a header-less receiver)",
            );
        }
        Ok(Self(s.to_owned()))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What happens to alerts, from `[alerts]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// Where alerts are posted, if anywhere.
    pub webhook: Option<WebhookUrl>,
    /// The webhook body's shape.
    pub format: WebhookFormat,
    /// How long one webhook delivery may take.
    pub timeout_ms: u64,
    /// Alerts waiting for the webhook at most; beyond this an alert is not sent (counted).
    pub queue: usize,
    /// Quarantine the identity on a high-confidence leaked-credential signal.
    pub quarantine: bool,
    /// The confidence (percent) a leaked-credential signal needs to quarantine.
    pub quarantine_confidence: u8,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            webhook: None,
            format: WebhookFormat::Json,
            timeout_ms: 5000,
            queue: 1024,
            quarantine: false,
            quarantine_confidence: 90,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnomaly {
    learning_requests: Option<Spanned<u64>>,
    learning_duration_s: Option<Spanned<u64>>,
    alert_threshold: Option<Spanned<u64>>,
    cooldown_s: Option<Spanned<u64>>,
    max_identities: Option<Spanned<u64>>,
    save_interval_s: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    webhook: Option<Spanned<String>>,
    format: Option<WebhookFormat>,
    timeout_ms: Option<Spanned<u64>>,
    queue: Option<Spanned<u64>>,
    #[serde(default)]
    quarantine: bool,
    quarantine_confidence: Option<Spanned<u64>>,
}

pub(super) fn parse_anomaly(
    cx: &Ctx<'_>,
    raw: Option<RawAnomaly>,
) -> Result<AnomalySettings, ConfigError> {
    let d = AnomalySettings::default();
    let Some(raw) = raw else { return Ok(d) };
    // Each range fits its target type, so the conversions below cannot fail.
    let n = |v, field, default: u64, range| bounded(cx, v, field, default, range);
    Ok(AnomalySettings {
        learning_requests: n(
            raw.learning_requests,
            "anomaly.learning_requests",
            u64::from(d.learning_requests),
            0..=1_000_000,
        )? as u32,
        learning_duration_s: n(
            raw.learning_duration_s,
            "anomaly.learning_duration_s",
            d.learning_duration_s,
            0..=90 * 86_400,
        )?,
        alert_threshold: n(
            raw.alert_threshold,
            "anomaly.alert_threshold",
            u64::from(d.alert_threshold),
            1..=100,
        )? as u8,
        cooldown_s: n(
            raw.cooldown_s,
            "anomaly.cooldown_s",
            d.cooldown_s,
            0..=30 * 86_400,
        )?,
        max_identities: n(
            raw.max_identities,
            "anomaly.max_identities",
            d.max_identities as u64,
            1..=10_000_000,
        )? as usize,
        save_interval_s: n(
            raw.save_interval_s,
            "anomaly.save_interval_s",
            d.save_interval_s,
            1..=86_400,
        )?,
    })
}

pub(super) fn parse_alerts(
    cx: &Ctx<'_>,
    raw: Option<RawAlerts>,
) -> Result<AlertSettings, ConfigError> {
    let d = AlertSettings::default();
    let Some(raw) = raw else { return Ok(d) };
    let webhook = match raw.webhook {
        None => None,
        Some(w) => Some(
            WebhookUrl::parse(w.get_ref())
                .map_err(|why| cx.err(w.span(), "alerts.webhook", why))?,
        ),
    };
    Ok(AlertSettings {
        webhook,
        format: raw.format.unwrap_or(d.format),
        timeout_ms: bounded(
            cx,
            raw.timeout_ms,
            "alerts.timeout_ms",
            d.timeout_ms,
            100..=60_000,
        )?,
        queue: bounded(cx, raw.queue, "alerts.queue", d.queue as u64, 1..=100_000)? as usize,
        quarantine: raw.quarantine,
        quarantine_confidence: bounded(
            cx,
            raw.quarantine_confidence,
            "alerts.quarantine_confidence",
            u64::from(d.quarantine_confidence),
            50..=100,
        )? as u8,
    })
}
