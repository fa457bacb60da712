//! A Prometheus endpoint for weir's metrics (feature `prometheus`).

use std::net::SocketAddr;

/// [`serve_prometheus`] could not start.
#[derive(Debug, thiserror::Error)]
#[error("could not serve metrics on {addr}: {reason}; pick a free local address such as 127.0.0.1:9464")]
pub struct PrometheusError {
    addr: SocketAddr,
    reason: String,
}

/// Installs a Prometheus recorder as the process's metrics recorder and
/// serves every metric (weir's, see [`observe`](super), and the
/// application's own) at `http://{addr}/metrics` in Prometheus' text
/// format, from a task on the current tokio runtime, for as long as the
/// process lives. One call, before pipelines and engines start.
///
/// # Errors
/// [`PrometheusError`] when a recorder is already installed or the
/// address cannot be bound (in use, not local).
///
/// # Examples
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), weir::observe::PrometheusError> {
/// weir::observe::serve_prometheus("127.0.0.1:9464".parse().unwrap())?;
/// // … run pipelines and sagas; `curl 127.0.0.1:9464/metrics` shows `weir_…`
/// # Ok(())
/// # }
/// ```
pub fn serve_prometheus(addr: SocketAddr) -> Result<(), PrometheusError> {
    // Bind first, so that a taken address is this call's error (the
    // exporter would otherwise fail later, inside its task).
    let probe = std::net::TcpListener::bind(addr).map_err(|e| PrometheusError { addr, reason: e.to_string() })?;
    drop(probe);
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| PrometheusError { addr, reason: e.to_string() })
}
