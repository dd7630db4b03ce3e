//! `GET /metrics` on the admin listener: the process's counters in the Prometheus text
//! format. The binary installs the recorder once at start-up; libraries only count
//! (`metrics` facade), so tests and embedders without a recorder pay nothing.

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("installing the metrics recorder: {0}")]
pub struct MetricsError(String);

/// Installs the process-wide Prometheus recorder (once; later calls do nothing).
pub fn install() -> Result<(), MetricsError> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| MetricsError(e.to_string()))?;
    let _ = HANDLE.set(handle);
    describe();
    Ok(())
}

fn describe() {
    metrics::describe_counter!(
        "remit_decisions_total",
        "decisions answered, by verdict (after recording)"
    );
    metrics::describe_counter!(
        "remit_audit_write_failures_total",
        "decisions denied because their record could not be made durable"
    );
    metrics::describe_counter!("remit_audit_checkpoints_total", "signed audit checkpoints");
    metrics::describe_histogram!(
        "remit_audit_batch_records",
        "records per group-commit transaction"
    );
    metrics::describe_counter!(
        "remit_tls_reloads_total",
        "times the proxy listener's changed TLS files were loaded for new connections"
    );
    metrics::describe_counter!(
        "remit_tls_reload_failures_total",
        "reloads of the proxy listener's TLS files that failed (the files loaded before stay)"
    );
    metrics::describe_counter!(
        "remit_tls_handshake_failures_total",
        "TLS handshakes on the proxy listener that failed, by reason (error, timeout)"
    );
}

/// The handler.
pub async fn render() -> Response {
    match HANDLE.get() {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process",
        )
            .into_response(),
    }
}
