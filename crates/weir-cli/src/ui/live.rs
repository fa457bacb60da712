//! The dashboard's live view of a running weir process: `weir ui --live
//! URL` reads the process's Prometheus page (`weir-demo run
//! --metrics-addr`, or `weir::observe::serve_prometheus` in any
//! application) every few seconds and keeps the last minutes of samples,
//! from which the live page draws each stage's throughput and shows the
//! counters, breakers, bulkheads and sagas as they are now.
//!
//! A separate process, by design: the dashboard never runs inside the
//! application it watches, so it can be started, stopped and restarted
//! beside a run without touching it, and a run that ends (or is killed)
//! shows as "unreachable since …" with its last figures kept.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How often the page is read.
pub const SCRAPE_EVERY: Duration = Duration::from_secs(2);
/// How much history is kept (and charted).
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

/// One time series: a metric name and its labels, sorted by label name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl Series {
    /// The value of label `name`, or `""`.
    pub fn label(&self, name: &str) -> &str {
        self.labels.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

/// Every series of one read of the page, and when it was read.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: SystemTime,
    pub values: BTreeMap<Series, f64>,
}

/// A line of the page that is not a sample line of the text format.
#[derive(Debug, thiserror::Error)]
#[error("line {line} is not a Prometheus sample (`name{{label=\"value\"}} number`): {text:?}")]
pub struct ParseError {
    line: usize,
    text: String,
}

/// Parses Prometheus' text exposition format into series and values:
/// comments and blank lines skipped, label values unescaped (`\\`, `\"`,
/// `\n`), a trailing timestamp ignored. Histograms and summaries come out
/// as their `_bucket`/`_sum`/`_count` series, as the format writes them.
///
/// Written here rather than taken from `prometheus-parse`: that crate
/// splits label values at every comma and `=` (a stage named `a,b` or a
/// value holding `=` comes out wrong) and pulls in `regex` and `chrono`
/// for a format whose sample lines are one grammar rule; this is the rule.
///
/// # Errors
/// [`ParseError`] naming the first line that is not a sample.
pub fn parse(text: &str) -> Result<BTreeMap<Series, f64>, ParseError> {
    let mut values = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || ParseError { line: index + 1, text: raw.chars().take(200).collect() };
        let (series, rest) = parse_series(line).ok_or_else(bad)?;
        let value = rest.split_whitespace().next().ok_or_else(bad)?;
        let value = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            number => number.parse().map_err(|_| bad())?,
        };
        values.insert(series, value);
    }
    Ok(values)
}

/// `name{a="1",b="2"} rest` → the series and `rest`.
fn parse_series(line: &str) -> Option<(Series, &str)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return None;
    }
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // A label name, `=`, a quoted value; then `,` or `}`.
            while chars.next_if(|(_, c)| *c == ',' || c.is_whitespace()).is_some() {}
            if let Some(&(i, '}')) = chars.peek() {
                rest = &inner[i + 1..];
                break;
            }
            let start = chars.peek()?.0;
            while chars.next_if(|(_, c)| *c != '=').is_some() {}
            let (eq, _) = chars.next()?;
            let key = inner[start..eq].trim().to_owned();
            if key.is_empty() || chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key, value));
        }
    }
    labels.sort();
    Some((Series { name: name.to_owned(), labels }, rest))
}

/// What the live view knows: the samples of the last [`WINDOW`], and the
/// last failure to read the page.
#[derive(Debug)]
pub struct Live {
    /// The page's address, as given (requests only).
    url: String,
    /// The address as pages show it: any user and password removed.
    pub shown: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    samples: VecDeque<Sample>,
    failure: Option<(SystemTime, String)>,
}

impl Live {
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), shown: redact(url), state: Mutex::default() }
    }

    /// Reads the page every [`SCRAPE_EVERY`], forever (the server aborts
    /// the task when it stops).
    pub async fn scrape_forever(&self) {
        let client = reqwest::Client::builder().timeout(SCRAPE_EVERY).build().unwrap_or_default();
        let mut tick = tokio::time::interval(SCRAPE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let read = self.read(&client).await;
            self.record(SystemTime::now(), read);
        }
    }

    async fn read(&self, client: &reqwest::Client) -> Result<BTreeMap<Series, f64>, String> {
        // reqwest's errors repeat the URL: say what failed without it.
        let response = client.get(&self.url).send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the page answered {status}"));
        }
        let text = response.text().await.map_err(|e| describe(&e))?;
        parse(&text).map_err(|e| e.to_string())
    }

    /// Keeps a read's outcome: a sample (dropping those older than the
    /// window), or the failure.
    pub fn record(&self, at: SystemTime, read: Result<BTreeMap<Series, f64>, String>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(values) => {
                state.failure = None;
                state.samples.push_back(Sample { at, values });
                while state.samples.front().is_some_and(|s| at.duration_since(s.at).unwrap_or_default() > WINDOW) {
                    state.samples.pop_front();
                }
            }
            Err(message) => {
                let since = state.failure.as_ref().map_or(at, |(since, _)| *since);
                state.failure = Some((since, message));
            }
        }
    }

    /// The samples kept, oldest first, and the current failure (since
    /// when, what).
    pub fn snapshot(&self) -> (Vec<Sample>, Option<(SystemTime, String)>) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.samples.iter().cloned().collect(), state.failure.clone())
    }
}

/// What went wrong with a read, in words, without the URL.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "nothing answers there (has the process ended?)"
    } else if error.is_body() || error.is_decode() {
        "the page could not be read"
    } else {
        "the request failed"
    };
    let mut cause = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(e) = cause {
        detail = e.to_string();
        cause = e.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}

/// `url` without its user information (`http://user:secret@host/…` →
/// `http://host/…`).
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_gauges_escapes_and_skips_comments() {
        let page = "# HELP weir_stage_items_total items\n# TYPE weir_stage_items_total counter\n\
            weir_stage_items_total{stage=\"a,b=c\",outcome=\"emitted\"} 12\n\
            weir_saga_in_flight 3 1700000000000\n\
            weir_breaker_state{breaker=\"pay \\\"eu\\\"\"} 2\n\n";
        let values = parse(page).unwrap();
        assert_eq!(values.len(), 3);
        let stage = values.keys().find(|s| s.name == "weir_stage_items_total").unwrap();
        assert_eq!((stage.label("stage"), stage.label("outcome")), ("a,b=c", "emitted"));
        assert_eq!(values[stage], 12.0);
        let breaker = values.keys().find(|s| s.name == "weir_breaker_state").unwrap();
        assert_eq!(breaker.label("breaker"), "pay \"eu\"");
        assert_eq!(values.iter().find(|(s, _)| s.name == "weir_saga_in_flight").map(|(_, v)| *v), Some(3.0));
    }

    #[test]
    fn a_line_that_is_not_a_sample_is_named() {
        let err = parse("weir_ok 1\nthis is not prometheus\n").unwrap_err();
        assert!(err.to_string().starts_with("line 2 is not a Prometheus sample"), "{err}");
        assert!(parse("weir_x{stage=\"unterminated} 1").is_err());
        assert!(parse("weir_x{stage=\"a\"} one").is_err());
    }

    #[test]
    fn the_window_keeps_five_minutes_and_a_failure_keeps_its_start() {
        let live = Live::new("http://user:secret@127.0.0.1:9464/metrics");
        assert_eq!(live.shown, "http://127.0.0.1:9464/metrics");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..200u64 {
            live.record(t0 + Duration::from_secs(2 * i), Ok(BTreeMap::new()));
        }
        let (samples, failure) = live.snapshot();
        assert_eq!(samples.len(), 151, "5 minutes of 2-second samples, both ends kept");
        assert!(failure.is_none());
        let later = t0 + Duration::from_secs(500);
        live.record(later, Err("nothing answers there".into()));
        live.record(later + Duration::from_secs(2), Err("nothing answers there".into()));
        let (samples, failure) = live.snapshot();
        assert_eq!(samples.len(), 151, "the last figures are kept");
        assert_eq!(failure.map(|(since, _)| since), Some(later));
    }
}
