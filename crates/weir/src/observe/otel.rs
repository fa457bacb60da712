//! weir's spans exported to OpenTelemetry (feature `otel`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_opentelemetry::OpenTelemetryLayer;

/// A [`tracing_subscriber`](https://docs.rs/tracing-subscriber) layer that
/// turns weir's spans (see [`observe`](super), "The spans") and the
/// application's own into OpenTelemetry spans of `provider`, under the
/// instrumentation scope `weir` with this crate's version. The exporter
/// (OTLP, stdout, in-memory) and the sampler are `provider`'s.
///
/// Spans keep their parents: a saga's steps sit under the saga, a child
/// saga under its parent's step, a group's tasks under the span they were
/// spawned in. `store.commit` spans are roots (one transaction serves many
/// sagas).
///
/// # Examples
/// ```
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let exporter = InMemorySpanExporter::default();
/// let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
/// let subscriber = tracing_subscriber::registry().with(weir::observe::otel_layer(&provider));
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info_span!("checkout").in_scope(|| {});
/// });
/// provider.force_flush().unwrap();
/// let spans = exporter.get_finished_spans().unwrap();
/// assert_eq!(spans[0].name, "checkout");
/// assert_eq!(spans[0].instrumentation_scope.name(), "weir");
/// ```
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let scope = opentelemetry::InstrumentationScope::builder("weir").with_version(env!("CARGO_PKG_VERSION")).build();
    tracing_opentelemetry::layer().with_tracer(provider.tracer_with_scope(scope))
}
