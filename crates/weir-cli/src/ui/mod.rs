//! `weir ui`: a local web dashboard over a weir database — sagas with
//! filters and each saga's step timeline, dead-letter queues with a
//! replay button, work queues with their counts; with `--live URL`, a
//! running process's throughput, stages, breakers and sagas from its
//! metrics page ([`live`]).
//!
//! Server-rendered HTML (axum + maud), one embedded stylesheet, no
//! JavaScript: every page reads without it, links and forms are the
//! keyboard's. Bound to 127.0.0.1 unless told otherwise. A change (replay,
//! cancel) is a POST carrying the CSRF token this server drew at start,
//! so a page elsewhere in the browser cannot make one. The database URL
//! is never rendered: pages name the store by [`Store::target`], which
//! hides its password.

mod live;
mod live_page;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use weir::durable::queue::WorkQueue;
use weir::durable::store::{LetterQuery, SagaQuery, SagaStatus, Store};

use crate::args::DbArgs;
use crate::failure::{Exit, Failure};

/// What every request shares.
struct Ui {
    store: Store,
    /// What `--live` has read, if it was given.
    live: Option<Arc<live::Live>>,
    /// Drawn at start; every form carries it, every POST must.
    csrf: String,
}

type Shared = State<Arc<Ui>>;

/// Serves the dashboard on `addr` until Ctrl-C; prints the address first
/// (`weir ui: http://…`) so a script can wait for it.
///
/// # Errors
/// The store cannot be opened ([`crate::store::open`]), or `addr` cannot
/// be bound ([`Exit::Usage`], naming it).
pub async fn run(db: &DbArgs, addr: SocketAddr, live_url: Option<&str>) -> Result<(), Failure> {
    let store = crate::store::open(db).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("cannot serve on {addr}: {e}; pass --addr with a free local address such as 127.0.0.1:9465"),
        )
    })?;
    let bound = listener.local_addr().map_err(|e| Failure::new(Exit::Usage, format!("cannot serve on {addr}: {e}")))?;
    println!("weir ui: http://{bound}/ over {}", store.target());
    let live = live_url.map(|url| Arc::new(live::Live::new(url)));
    let _scraper = live.clone().map(|live| AbortOnDrop(tokio::spawn(async move { live.scrape_forever().await })));
    let ui = Arc::new(Ui { store, live, csrf: csrf_token() });
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, router(ui))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Failure::new(Exit::Database, format!("the dashboard stopped: {e}")))
}

/// Stops the live view's reader with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/live", get(live_view))
        .route("/style.css", get(style))
        .route("/sagas", get(sagas))
        .route("/sagas/{id}", get(saga))
        .route("/sagas/{id}/cancel", post(cancel))
        .route("/dlq/{queue}", get(letters))
        .route("/dlq/{queue}/replay", post(replay))
        .route("/queues/{queue}", get(jobs))
        .with_state(ui)
}

/// 128 bits from the standard library's randomly keyed hasher (seeded by
/// the operating system per process), mixed with the time: enough for a
/// token that only has to be unguessable for the life of this server.
fn csrf_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let draw = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        hasher.finish()
    };
    format!("{:016x}{:016x}", draw(1), draw(2))
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("style.css"))
}

/// A store error as a page: the message names the store by its redacted
/// target only.
fn failed(error: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, pages::error_page("The database could not be read", &error.to_string()))
        .into_response()
}

async fn overview(State(ui): Shared) -> Response {
    let dlq = match ui.store.dead_letter_queues().await {
        Ok(queues) => queues,
        Err(e) => return failed(e),
    };
    let queues = match WorkQueue::queues(&ui.store).await {
        Ok(queues) => queues,
        Err(e) => return failed(e),
    };
    pages::overview(&ui.store.target(), &dlq, &queues).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct LiveOptions {
    /// `0` stops the page reloading itself.
    refresh: Option<u8>,
}

async fn live_view(State(ui): Shared, Query(options): Query<LiveOptions>) -> Response {
    let Some(live) = &ui.live else {
        let message = "this dashboard reads no running process: start it with --live and the address of one's \
                       metrics page, such as `weir ui --db FILE --live http://127.0.0.1:9464/metrics` beside \
                       `weir-demo --metrics-addr 127.0.0.1:9464 run …`";
        return (StatusCode::NOT_FOUND, pages::error_page("No live process", message)).into_response();
    };
    let (samples, failure) = live.snapshot();
    let refresh = options.refresh != Some(0);
    let body = live_page::body(&live.shown, &samples, failure.as_ref(), refresh);
    pages::live(&ui.store.target(), body, refresh).into_response()
}

/// The filters of the sagas page, as its form sends them.
#[derive(Debug, Default, Deserialize)]
struct SagaFilters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    definition: String,
    #[serde(default)]
    after: String,
}

/// Rows per page of sagas, letters and jobs.
const PAGE: usize = 50;

async fn sagas(State(ui): Shared, Query(filters): Query<SagaFilters>) -> Response {
    let mut query = SagaQuery::new().limit(PAGE);
    if !filters.status.is_empty() {
        let Some(status) = SagaStatus::parse(&filters.status) else {
            let message = format!(
                "`{}` is not a status; pick running, compensating, completed, compensated or failed",
                filters.status
            );
            return (StatusCode::BAD_REQUEST, pages::error_page("Unknown status", &message)).into_response();
        };
        query = query.status(status);
    }
    if !filters.definition.is_empty() {
        query = query.definition(filters.definition.clone());
    }
    if !filters.after.is_empty() {
        query = query.after(filters.after.clone());
    }
    match ui.store.find_sagas(&query).await {
        Ok(found) => {
            pages::sagas(&ui.store.target(), &found, &filters.status, &filters.definition, PAGE).into_response()
        }
        Err(e) => failed(e),
    }
}

async fn saga(State(ui): Shared, Path(id): Path<String>) -> Response {
    let saga = match ui.store.saga(&id).await {
        Ok(Some(saga)) => saga,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                pages::error_page("No such saga", &format!("no saga `{id}` in this database")),
            )
                .into_response();
        }
        Err(e) => return failed(e),
    };
    let events = match ui.store.saga_events(&id).await {
        Ok(events) => events,
        Err(e) => return failed(e),
    };
    pages::saga(&ui.store.target(), &saga, &events, &ui.csrf).into_response()
}

/// A form that changes something: its CSRF token and its fields.
#[derive(Debug, Deserialize)]
struct Change {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
}

fn forbidden() -> Response {
    let message =
        "this form did not come from this dashboard (its token is missing or stale): reload the page and try again";
    (StatusCode::FORBIDDEN, pages::error_page("Refused", message)).into_response()
}

async fn cancel(State(ui): Shared, Path(id): Path<String>, Form(change): Form<Change>) -> Response {
    if change.csrf != ui.csrf {
        return forbidden();
    }
    let reason = change.reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "cancelled from weir ui".to_owned());
    match ui.store.request_cancel(&id, &reason).await {
        Ok(_) => Redirect::to(&format!("/sagas/{}?cancel=requested", pages::path_segment(&id))).into_response(),
        Err(e) => failed(e),
    }
}

async fn letters(State(ui): Shared, Path(queue): Path<String>, Query(page): Query<LetterPage>) -> Response {
    let dlq = ui.store.dead_letters::<serde_json::Value>(&queue);
    let mut query = LetterQuery::new().limit(PAGE);
    if let Some(after) = page.after {
        query = query.after(after);
    }
    match dlq.find(&query).await {
        Ok(found) => pages::letters(&ui.store.target(), &queue, &found, &ui.csrf, page.replayed, PAGE).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct LetterPage {
    after: Option<u64>,
    replayed: Option<u64>,
}

/// Marks a letter for replay: the application that owns the queue
/// replays it (as `weir dlq replay` does).
async fn replay(State(ui): Shared, Path(queue): Path<String>, Form(change): Form<Change>) -> Response {
    if change.csrf != ui.csrf {
        return forbidden();
    }
    let Some(id) = change.id else {
        return (StatusCode::BAD_REQUEST, pages::error_page("Nothing to replay", "the form named no letter"))
            .into_response();
    };
    match ui.store.dead_letters::<serde_json::Value>(&queue).request_replay(&[id]).await {
        Ok(_) => Redirect::to(&format!("/dlq/{}?replayed={id}", pages::path_segment(&queue))).into_response(),
        Err(e) => failed(e),
    }
}

async fn jobs(State(ui): Shared, Path(queue): Path<String>) -> Response {
    let work = WorkQueue::new(ui.store.clone(), queue.as_str());
    let partitions = match work.partitions(PAGE).await {
        Ok(partitions) => partitions,
        Err(e) => return failed(e),
    };
    match work.jobs(&weir::durable::queue::JobQuery::new().limit(PAGE)).await {
        Ok(found) => pages::jobs(&ui.store.target(), &queue, &partitions, &found).into_response(),
        Err(e) => failed(e),
    }
}
