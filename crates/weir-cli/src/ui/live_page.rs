//! The live page: what a running process's metrics say now, and each
//! stage's throughput over the last minutes as a small chart (inline SVG,
//! drawn on the server: no script, and its figures are in the table
//! beside it for a screen reader).

use std::collections::BTreeMap;
use std::time::SystemTime;

use maud::{Markup, html};

use super::live::{Sample, Series, WINDOW};
use crate::output::time;

/// The outcomes a stage counts, in the order the table shows them.
const OUTCOMES: [&str; 6] = ["received", "emitted", "skipped", "failed", "dead_lettered", "released"];

/// One stage as the last sample has it.
pub(super) struct StageNow {
    pub name: String,
    pub counts: BTreeMap<&'static str, f64>,
    pub retries: f64,
    pub in_flight: f64,
    /// Items emitted per second over the last [`SMOOTH`] reads.
    pub rate: Option<f64>,
}

/// The value of `name` with `label = value` (or with no labels when
/// `label` is empty) in `sample`.
fn value(sample: &Sample, name: &str, label: &str, value: &str) -> Option<f64> {
    sample.values.iter().find(|(s, _)| s.name == name && s.label(label) == value).map(|(_, v)| *v)
}

/// The distinct values of `label` among series named `name`, sorted.
fn label_values<'a>(sample: &'a Sample, name: &str, label: &str) -> Vec<&'a str> {
    let found: std::collections::BTreeSet<&str> =
        sample.values.keys().filter(|s| s.name == name).map(|s| s.label(label)).filter(|v| !v.is_empty()).collect();
    found.into_iter().collect()
}

fn emitted(sample: &Sample, stage: &str) -> Option<f64> {
    sample.values.iter().find(|(s, _)| is_stage_outcome(s, stage, "emitted")).map(|(_, v)| *v)
}

fn is_stage_outcome(series: &Series, stage: &str, outcome: &str) -> bool {
    series.name == "weir_stage_items_total" && series.label("stage") == stage && series.label("outcome") == outcome
}

/// Per second between two samples of a counter; `None` across a restart
/// of the process (the counter went down) or without time between them.
fn rate(before: (SystemTime, f64), after: (SystemTime, f64)) -> Option<f64> {
    let seconds = after.0.duration_since(before.0).ok()?.as_secs_f64();
    (seconds > 0.0 && after.1 >= before.1).then(|| (after.1 - before.1) / seconds)
}

pub(super) fn stages(samples: &[Sample]) -> Vec<StageNow> {
    let Some(last) = samples.last() else { return Vec::new() };
    label_values(last, "weir_stage_items_total", "stage")
        .into_iter()
        .map(|stage| {
            let counts = OUTCOMES
                .iter()
                .map(|outcome| {
                    let v =
                        last.values.iter().find(|(s, _)| is_stage_outcome(s, stage, outcome)).map_or(0.0, |(_, v)| *v);
                    (*outcome, v)
                })
                .collect();
            StageNow {
                name: stage.to_owned(),
                counts,
                retries: value(last, "weir_stage_retries_total", "stage", stage).unwrap_or(0.0),
                in_flight: value(last, "weir_stage_in_flight", "stage", stage).unwrap_or(0.0),
                rate: emitted_rate(samples, samples.len() - 1, stage),
            }
        })
        .collect()
}

/// How many reads a rate spans (10 s at a read every 2 s): a stage that
/// works in bursts (one that reads a file a block at a time) would
/// otherwise chart as spikes and zeros.
const SMOOTH: usize = 5;

/// `stage`'s items emitted per second up to read `i`, over as many of the
/// [`SMOOTH`] reads before it as the counter only grew through (a process
/// that restarted resets it); `None` without such a read.
fn emitted_rate(samples: &[Sample], i: usize, stage: &str) -> Option<f64> {
    let now = emitted(&samples[i], stage)?;
    let mut from = None;
    let mut later = now;
    for k in (i.saturating_sub(SMOOTH)..i).rev() {
        match emitted(&samples[k], stage) {
            Some(v) if v <= later => {
                from = Some((samples[k].at, v));
                later = v;
            }
            _ => break,
        }
    }
    rate(from?, (samples[i].at, now))
}

/// Each stage's rate at each read.
fn throughput(samples: &[Sample], stages: &[StageNow]) -> Vec<(String, Vec<(SystemTime, f64)>)> {
    stages
        .iter()
        .map(|stage| {
            let points = (1..samples.len())
                .filter_map(|i| Some((samples[i].at, emitted_rate(samples, i, &stage.name)?)))
                .collect();
            (stage.name.clone(), points)
        })
        .collect()
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;

/// A chart of `lines` over the last [`WINDOW`] up to `now`, one polyline
/// each, scaled to the highest point.
fn chart(lines: &[(String, Vec<(SystemTime, f64)>)], now: SystemTime) -> Markup {
    let top = lines.iter().flat_map(|(_, points)| points.iter().map(|(_, v)| *v)).fold(0.0_f64, f64::max).max(1.0);
    let window = WINDOW.as_secs_f64();
    let x = |at: SystemTime| {
        let ago = now.duration_since(at).unwrap_or_default().as_secs_f64().min(window);
        WIDTH * (1.0 - ago / window)
    };
    let y = |v: f64| HEIGHT - 4.0 - (HEIGHT - 8.0) * v / top;
    let summary = lines
        .iter()
        .map(|(name, points)| format!("{name}: {}/s now", points.last().map_or(0, |(_, v)| v.round() as u64)))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label={ "Items emitted per second by each stage (10-second average) over the last 5 minutes. " (summary) } {
                line.axis x1="0" y1=(HEIGHT - 4.0) x2=(WIDTH) y2=(HEIGHT - 4.0) {}
                @for (i, (_, points)) in lines.iter().enumerate() {
                    polyline class={ "series s" (i % 6) } fill="none"
                        points=(points.iter().map(|(at, v)| format!("{:.1},{:.1}", x(*at), y(*v))).collect::<Vec<_>>().join(" ")) {}
                }
            }
            figcaption {
                span.muted { "5 min ago" } " — items/s (10 s average), top " (format!("{top:.0}")) " — " span.muted { "now" }
                ul.legend { @for (i, (name, _)) in lines.iter().enumerate() { li { span class={ "key s" (i % 6) } {} (name) } } }
            }
        }
    }
}

fn breaker_state(code: f64) -> &'static str {
    match code as i64 {
        0 => "closed",
        1 => "half-open",
        2 => "open",
        3 => "forced open",
        _ => "unknown",
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// The page's body.
pub(super) fn body(shown: &str, samples: &[Sample], failure: Option<&(SystemTime, String)>, refresh: bool) -> Markup {
    let now = SystemTime::now();
    let stages = stages(samples);
    let last = samples.last();
    html! {
        p {
            "Reading " code { (shown) } " every 2 s. "
            @if refresh { "This page reloads every 5 s; " a href="/live?refresh=0" { "stop reloading" } "." }
            @else { a href="/live" { "Reload every 5 s" } "." }
        }
        @if let Some((since, message)) = failure {
            p.notice.bad role="status" {
                "Unreachable since " (time(*since)) ": " (message) "."
                @if last.is_some() { " The figures below are the last ones read." }
            }
        }
        @match last {
            None => p.muted { "Nothing read yet." },
            Some(last) => {
                p.muted { "Last read " (time(last.at)) "." }
                h2 { "Throughput" }
                (chart(&throughput(samples, &stages), now))
                h2 { "Stages" }
                div.scroll { table {
                    thead { tr {
                        th { "Stage" } th { "Items/s" }
                        @for outcome in OUTCOMES { th { (outcome.replace('_', " ")) } }
                        th { "Retries" } th { "In flight" }
                    } }
                    tbody { @for stage in &stages { tr {
                        td { (stage.name) }
                        td { (stage.rate.map_or("–".to_owned(), |r| format!("{r:.0}"))) }
                        @for outcome in OUTCOMES { td { (number(stage.counts[outcome])) } }
                        td { (number(stage.retries)) } td { (number(stage.in_flight)) }
                    } } }
                } }
                (policies(last))
                (sagas(last))
                (queues(last))
            }
        }
    }
}

fn policies(last: &Sample) -> Markup {
    let breakers: Vec<(&str, f64)> = last
        .values
        .iter()
        .filter(|(s, _)| s.name == "weir_breaker_state")
        .map(|(s, v)| (s.label("breaker"), *v))
        .collect();
    let bulkheads: Vec<(&str, f64, f64)> = label_values(last, "weir_bulkhead_in_use", "bulkhead")
        .into_iter()
        .map(|name| {
            let in_use = value(last, "weir_bulkhead_in_use", "bulkhead", name).unwrap_or(0.0);
            (name, in_use, value(last, "weir_bulkhead_rejected_total", "bulkhead", name).unwrap_or(0.0))
        })
        .collect();
    let limiters: Vec<(&str, [f64; 3])> = label_values(last, "weir_rate_limit_in_use", "limiter")
        .into_iter()
        .map(|name| {
            let of = |metric| value(last, metric, "limiter", name).unwrap_or(0.0);
            let figures =
                [of("weir_rate_limit_in_use"), of("weir_rate_limit_waiting"), of("weir_rate_limit_refused_total")];
            (name, figures)
        })
        .collect();
    html! {
        h2 { "Breakers" }
        @if breakers.is_empty() { p.muted { "No breaker has changed state yet (a breaker reports on its first change)." } }
        @else { div.scroll { table {
            thead { tr { th { "Breaker" } th { "State" } } }
            tbody { @for (name, code) in &breakers { tr {
                td { (name) }
                td class={ "breaker-" (breaker_state(*code).replace(' ', "-")) } { (breaker_state(*code)) }
            } } }
        } } }
        @if !bulkheads.is_empty() {
            h2 { "Bulkheads" }
            div.scroll { table {
                thead { tr { th { "Bulkhead" } th { "In use" } th { "Rejected" } } }
                tbody { @for (name, in_use, rejected) in &bulkheads { tr {
                    td { (name) } td { (number(*in_use)) } td { (number(*rejected)) }
                } } }
            } }
        }
        @if !limiters.is_empty() {
            h2 { "Rate limiters" }
            div.scroll { table {
                thead { tr { th { "Limiter" } th { "Burst in use" } th { "Calls waiting" } th { "Refused" } } }
                tbody { @for (name, [in_use, waiting, refused]) in &limiters { tr {
                    td { (name) } td { (number(*in_use)) } td { (number(*waiting)) } td { (number(*refused)) }
                } } }
            } }
        }
    }
}

fn sagas(last: &Sample) -> Markup {
    let definitions = label_values(last, "weir_saga_started_total", "definition");
    if definitions.is_empty() {
        return html! {};
    }
    // `weir_saga_parked{definition, waiting_for}`: sagas parked by a weir
    // older than schema 10 have no kind (`unknown`), shown only when any is.
    let parked = |definition: &str, waiting_for: &str| {
        last.values
            .iter()
            .find(|(s, _)| {
                s.name == "weir_saga_parked"
                    && s.label("definition") == definition
                    && s.label("waiting_for") == waiting_for
            })
            .map_or(0.0, |(_, v)| *v)
    };
    let unknown_kind = definitions.iter().any(|d| parked(d, "unknown") > 0.0);
    let ended = |definition: &str, status: &str| {
        last.values
            .iter()
            .find(|(s, _)| {
                s.name == "weir_saga_ended_total" && s.label("definition") == definition && s.label("status") == status
            })
            .map_or(0.0, |(_, v)| *v)
    };
    html! {
        h2 { "Sagas" }
        p { "In flight in this process: " (number(value(last, "weir_saga_in_flight", "", "").unwrap_or(0.0))) }
        div.scroll { table {
            thead { tr {
                th { "Definition" } th { "Started" }
                th { "Asleep" } th { "Awaiting an event" } th { "Awaiting a child" }
                @if unknown_kind { th { "Parked (by an older weir)" } }
                th { "Completed" } th { "Compensated" } th { "Failed" }
            } }
            tbody { @for definition in &definitions { tr {
                td { (definition) }
                td { (number(value(last, "weir_saga_started_total", "definition", definition).unwrap_or(0.0))) }
                td { (number(parked(definition, "timer"))) }
                td { (number(parked(definition, "event"))) }
                td { (number(parked(definition, "child"))) }
                @if unknown_kind { td { (number(parked(definition, "unknown"))) } }
                td.status-completed { (number(ended(definition, "completed"))) }
                td.status-compensated { (number(ended(definition, "compensated"))) }
                td.status-failed { (number(ended(definition, "failed"))) }
            } } }
        } }
    }
}

/// The depth of each work queue by status (`weir_queue_jobs`, read by a
/// claiming worker every 5 s).
fn queues(last: &Sample) -> Markup {
    let names = label_values(last, "weir_queue_jobs", "queue");
    if names.is_empty() {
        return html! {};
    }
    const STATUSES: [&str; 6] = ["queued", "claimed", "done", "skipped", "failed", "dead"];
    let jobs = |queue: &str, status: &str| {
        last.values
            .iter()
            .find(|(s, _)| s.name == "weir_queue_jobs" && s.label("queue") == queue && s.label("status") == status)
            .map_or(0.0, |(_, v)| *v)
    };
    html! {
        h2 { "Work queues" }
        div.scroll { table {
            thead { tr { th { "Queue" } @for status in STATUSES { th { (status) } } } }
            tbody { @for queue in &names { tr {
                td { a href={ "/queues/" (super::pages::path_segment(queue)) } { (queue) } }
                @for status in STATUSES { td class={ "status-" (status) } { (number(jobs(queue, status))) } }
            } } }
        } }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ui::live::parse;

    fn sample(at: u64, page: &str) -> Sample {
        Sample { at: SystemTime::UNIX_EPOCH + Duration::from_secs(at), values: parse(page).unwrap() }
    }

    #[test]
    fn rates_come_from_consecutive_samples_and_a_restart_is_no_rate() {
        let samples = [
            sample(100, "weir_stage_items_total{stage=\"parse\",outcome=\"emitted\"} 100"),
            sample(102, "weir_stage_items_total{stage=\"parse\",outcome=\"emitted\"} 500"),
            sample(104, "weir_stage_items_total{stage=\"parse\",outcome=\"emitted\"} 20"), // restarted
            sample(106, "weir_stage_items_total{stage=\"parse\",outcome=\"emitted\"} 220"),
        ];
        let now = stages(&samples);
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].rate, Some(100.0));
        let lines = throughput(&samples, &now);
        let rates: Vec<f64> = lines[0].1.iter().map(|(_, v)| *v).collect();
        assert_eq!(rates, [200.0, 100.0], "the interval across the restart is left out");

        // A stage that works in bursts: averaged over up to 5 reads.
        let bursts: Vec<Sample> = [0, 0, 1000, 1000, 1000, 1000, 2000]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                sample(
                    100 + 2 * i as u64,
                    &format!("weir_stage_items_total{{stage=\"parse\",outcome=\"emitted\"}} {v}"),
                )
            })
            .collect();
        let rates: Vec<f64> = throughput(&bursts, &stages(&bursts))[0].1.iter().map(|(_, v)| *v).collect();
        assert_eq!(rates, [0.0, 250.0, 1000.0 / 6.0, 125.0, 100.0, 200.0]);
    }

    #[test]
    fn the_page_shows_stages_breakers_and_sagas_escaped() {
        let page = "weir_stage_items_total{stage=\"<parse>\",outcome=\"received\"} 7\n\
            weir_stage_items_total{stage=\"<parse>\",outcome=\"emitted\"} 5\n\
            weir_breaker_state{breaker=\"payments\"} 2\n\
            weir_saga_started_total{definition=\"order\"} 9\n\
            weir_saga_ended_total{definition=\"order\",status=\"compensated\"} 2\n\
            weir_rate_limit_in_use{limiter=\"payments\"} 2.5\n\
            weir_rate_limit_waiting{limiter=\"payments\"} 3\n\
            weir_saga_parked{definition=\"order\",waiting_for=\"timer\"} 0\n\
            weir_saga_parked{definition=\"order\",waiting_for=\"event\"} 17\n\
            weir_queue_jobs{queue=\"emails\",status=\"queued\"} 41\n";
        let html = body("http://127.0.0.1:9464/metrics", &[sample(100, page)], None, true).into_string();
        assert!(html.contains("&lt;parse&gt;") && !html.contains("<parse>"));
        assert!(html.contains("breaker-open"));
        assert!(html.contains("<td class=\"status-compensated\">2</td>"), "{html}");
        // Parked by kind: 0 asleep, 17 awaiting an event, 0 awaiting a child.
        assert!(
            html.contains("<th>Awaiting an event</th>") && html.contains("<td>0</td><td>17</td><td>0</td>"),
            "{html}"
        );
        assert!(!html.contains("older weir"), "no column for a kind no saga has");
        assert!(html.contains("<td>payments</td><td>2.5</td><td>3</td><td>0</td>"), "{html}");
        assert!(
            html.contains("href=\"/queues/emails\"") && html.contains("<td class=\"status-queued\">41</td>"),
            "{html}"
        );
    }
}
