//! `weir ui`: the dashboard served by the real binary over a database a
//! run filled, read and driven over HTTP as a browser without JavaScript
//! would (links, GET forms, POST forms).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::*;
use weir::durable::dlq::{DeadLetterQueue, Envelope};
use weir::durable::queue::{NewJob, WorkQueue};
use weir::durable::store::LetterQuery;

/// A running `weir ui`; killed when dropped.
pub(super) struct Server {
    child: Child,
    pub(super) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `weir ui --addr 127.0.0.1:0` with `db_args`; waits for the line
/// that gives its address.
pub(super) fn serve(db_args: &[String]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["ui", "--addr", "127.0.0.1:0"])
        .args(db_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    Server { child, base }
}

/// A page: its status and body (redirects are not followed).
fn get(server: &Server, path: &str) -> (u16, String) {
    answer(agent().get(&format!("{}{path}", server.base)).call())
}

fn post(server: &Server, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    answer(agent().post(&format!("{}{path}", server.base)).send_form(form))
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    (response.status(), response.into_string().unwrap())
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a token") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// A password the PostgreSQL server ignores (trust auth) but the
/// dashboard must never show.
const PASSWORD: &str = "ui-s3cret-pw";

fn with_password(args: &[String]) -> Vec<String> {
    args.iter().map(|a| a.replacen("postgres://postgres@", &format!("postgres://postgres:{PASSWORD}@"), 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_filters_shows_and_replays_behind_a_csrf_token() {
    for target in targets("the_dashboard_lists_filters_shows_and_replays_behind_a_csrf_token").await {
        let engine = engine(&target.store, Arc::new(AtomicBool::new(false)));
        engine.run_with_id("o-ok", "order", &"fine").await.unwrap();
        assert!(engine.run_with_id("o-bad", "order", &"fail").await.unwrap_err().is_compensated());
        let lines = target.store.dead_letters::<String>("lines");
        let mut letter = Envelope::new("<script>alert(1)</script>".to_owned(), "parse", 2);
        letter.error_chain = vec!["line 7 is bad".into(), "expected a JSON object".into()];
        let id = lines.push(letter).await.unwrap();
        let mail = WorkQueue::new(target.store.clone(), "mail");
        for tenant in ["acme", "acme", "acme", "globex"] {
            mail.enqueue(NewJob::new(serde_json::json!("hi")).partition_key(tenant)).await.unwrap();
        }
        let held = mail.claim("worker-1", 2).await.unwrap();
        assert!(held.iter().all(|job| job.partition_key.as_deref() == Some("acme")), "the oldest first");
        let args = with_password(&target.args);

        let server = tokio::task::spawn_blocking(move || serve(&args)).await.unwrap();
        let checks = tokio::task::spawn_blocking(move || {
            let (status, home) = get(&server, "/");
            assert_eq!(status, 200, "{home}");
            assert!(home.contains("href=\"/dlq/lines\""), "{home}");
            let (status, css) = get(&server, "/style.css");
            assert!(status == 200 && css.contains("prefers-color-scheme"));

            // The status filter.
            let (_, compensated) = get(&server, "/sagas?status=compensated&definition=");
            assert!(compensated.contains("o-bad") && !compensated.contains("o-ok"), "{compensated}");
            let (_, every) = get(&server, "/sagas");
            assert!(every.contains("o-bad") && every.contains("o-ok"));
            let (status, bad) = get(&server, "/sagas?status=bogus");
            assert!(status == 400 && bad.contains("`bogus` is not a status"), "{status} {bad}");

            // A saga's steps.
            let (_, saga) = get(&server, "/sagas/o-bad");
            assert!(
                saga.contains("reserve") && saga.contains("status-compensated") && saga.contains("no courier"),
                "{saga}"
            );
            assert_eq!(get(&server, "/sagas/nope").0, 404);

            // Letters, escaped; a replay without the token is refused, with it done.
            let (_, letters) = get(&server, "/dlq/lines");
            assert!(letters.contains("&lt;script&gt;") && !letters.contains("<script>"), "{letters}");
            let id = id.to_string();
            let (status, _) = post(&server, "/dlq/lines/replay", &[("csrf", "forged"), ("id", &id)]);
            assert_eq!(status, 403);
            let (status, _) = post(&server, "/sagas/o-ok/cancel", &[("csrf", "forged")]);
            assert_eq!(status, 403);
            let (status, _) = post(&server, "/dlq/lines/replay", &[("csrf", &csrf_of(&letters)), ("id", &id)]);
            assert_eq!(status, 303);
            let (_, after) = get(&server, &format!("/dlq/lines?replayed={id}"));
            assert!(after.contains("is marked for replay"), "{after}");

            // A work queue's unfinished jobs by tenant: in flight, waiting.
            let (_, queue) = get(&server, "/queues/mail");
            let row = |tenant: &str, running: u32, waiting: u32| {
                format!(
                    "<td>{tenant}</td><td class=\"status-claimed\">{running}</td><td class=\"status-queued\">{waiting}</td>"
                )
            };
            assert!(queue.contains(&row("acme", 2, 1)) && queue.contains(&row("globex", 0, 1)), "{queue}");
            assert!(queue.find("acme") < queue.find("globex"), "the busiest tenant first");

            // No page shows the database's password.
            for page in [home, compensated, saga, letters, after, queue] {
                assert!(!page.contains(PASSWORD));
            }
        });
        checks.await.unwrap();
        let marked = lines.find(&LetterQuery::new().replay_requested(true)).await.unwrap();
        assert_eq!(marked.iter().map(|e| e.id).collect::<Vec<_>>(), [id], "only the letter replayed with the token");
    }
}

#[tokio::test]
async fn a_taken_address_is_a_usage_error_naming_it() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let target = targets("a_taken_address_is_a_usage_error_naming_it").await.remove(0);
    let stderr = fails(&target, &["ui", "--addr", &addr], 2).await;
    assert!(stderr.contains(&addr) && stderr.contains("--addr"), "{stderr}");
}

/// A process's metrics page, as `--metrics-addr` serves it: every read
/// finds the `parse` stage 200 items further, and an open breaker. Plain
/// HTTP/1.1 over a socket, one request per connection (what reqwest sends
/// is all it needs to answer). Dropping the returned task ends it, as a
/// run that ends takes its page with it.
pub(super) async fn metrics_page() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        for read in 1u64.. {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut request = [0u8; 2048];
            let _ = socket.read(&mut request).await;
            let body = format!(
                "# TYPE weir_stage_items_total counter\n\
                 weir_stage_items_total{{stage=\"parse\",outcome=\"received\"}} {}\n\
                 weir_stage_items_total{{stage=\"parse\",outcome=\"emitted\"}} {}\n\
                 weir_stage_in_flight{{stage=\"parse\"}} 3\n\
                 weir_breaker_state{{breaker=\"payments\"}} 2\n\
                 weir_saga_started_total{{definition=\"order\"}} {read}\n\
                 weir_saga_ended_total{{definition=\"order\",status=\"compensated\"}} 1\n",
                read * 210,
                read * 200
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (format!("http://{addr}/metrics"), serving)
}

/// Reads `/live` until `ready` holds for it (the reader takes a sample
/// every 2 s), or fails after 30 s showing the last page.
async fn live_page_until(server: &Server, ready: impl Fn(&str) -> bool) -> String {
    let mut page = String::new();
    for _ in 0..300 {
        let (status, body) = get(server, "/live?refresh=0");
        assert_eq!(status, 200, "{body}");
        page = body;
        if ready(&page) {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the live page never got there: {page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_page_charts_a_running_process_and_says_when_it_is_gone() {
    let target = targets("the_live_page_charts_a_running_process_and_says_when_it_is_gone").await.remove(0);
    let (url, serving) = metrics_page().await;
    let with_secret = url.replacen("http://", &format!("http://metrics:{PASSWORD}@"), 1);
    let mut args = target.args.clone();
    args.extend(["--live".into(), with_secret]);
    let server = serve(&args);

    // Three reads: a chart of two rates, the stage's figures, the breaker.
    let charted = |p: &str| {
        let points = p.split("points=\"").nth(1).unwrap_or("").split('"').next().unwrap_or("");
        points.split_whitespace().count() >= 2
    };
    let page = live_page_until(&server, charted).await;
    let rate: f64 = page
        .split("<td>parse</td><td>")
        .nth(1)
        .and_then(|row| row.split('<').next())
        .and_then(|cell| cell.parse().ok())
        .unwrap_or_else(|| panic!("no rate for the parse stage: {page}"));
    assert!((80.0..=120.0).contains(&rate), "200 items every 2 s is about 100/s, not {rate}");
    assert!(page.contains("breaker-open") && page.contains("payments"));
    assert!(page.contains("status-compensated"));
    assert!(!page.contains(PASSWORD), "the page showed the URL's password");
    assert!(page.contains(&url), "the page names what it reads: {page}");
    let (_, reloading) = get(&server, "/live");
    assert!(reloading.contains("http-equiv=\"refresh\""), "the live page reloads itself");

    // The process ends: the page says so and keeps the last figures.
    serving.abort();
    let page = live_page_until(&server, |p| p.contains("Unreachable since")).await;
    assert!(page.contains("<td>parse</td>") && page.contains("last ones read"), "{page}");
    assert!(!page.contains(PASSWORD));
}

#[tokio::test]
async fn without_live_the_page_says_how_to_start_it_and_a_bad_url_is_a_usage_error() {
    let target = targets("without_live_the_page_says_how_to_start_it").await.remove(0);
    let server = serve(&target.args);
    let (status, page) = get(&server, "/live");
    assert_eq!(status, 404);
    assert!(page.contains("--live") && page.contains("--metrics-addr"), "{page}");

    let stderr = fails(&target, &["ui", "--addr", "127.0.0.1:0", "--live", "https://example.com/metrics"], 2).await;
    assert!(stderr.contains("--live") && stderr.contains("http://"), "{stderr}");
}
