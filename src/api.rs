//! The HTTP side of the daemon: health and metrics now; the push API grows here.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// `/healthz` and, with a recorder, `/metrics` (Prometheus text).
pub fn router(metrics: Option<PrometheusHandle>) -> Router {
    let router = Router::new().route("/healthz", get(|| async { "ok\n" }));
    match metrics {
        Some(handle) => router.route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                        .into_response()
                }
            }),
        ),
        None => router,
    }
}
