//! `weir ui` in a real browser: Debian's headless chromium driven through
//! chromedriver (WebDriver, `fantoccini`). Skipped, saying so, where
//! `chromedriver` is not installed (`.ci/run` installs it:
//! `apt-get install chromium chromium-driver`).
//!
//! Screenshots go to a temporary directory, or to `docs/img/` with
//! `WEIR_UI_SCREENSHOTS=docs` (how the README's were made).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::Mutex;

use fantoccini::{Client, ClientBuilder, Locator};
use weir::durable::dlq::{DeadLetterQueue, Envelope};
use weir::durable::store::LetterQuery;
use weir::error::BoxError;
use weir::pipeline::{Pipeline, Stage, StageFn};

use super::*;

/// A running chromedriver; killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].into_iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Starts chromedriver on a free port and a headless chromium session.
async fn browser() -> Option<(Driver, Client)> {
    let Some(binary) = chromedriver() else {
        eprintln!("browser tests skipped: no chromedriver (apt-get install chromium chromium-driver)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(binary).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let driver = Driver(child.expect("chromedriver starts"));
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,800"]
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    for _ in 0..100 {
        let mut builder = ClientBuilder::new(connector.clone());
        builder.capabilities(capabilities.clone());
        match builder.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(client) => return Some((driver, client)),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver did not answer on port {port}");
}

fn screenshots() -> PathBuf {
    match std::env::var("WEIR_UI_SCREENSHOTS").as_deref() {
        Ok("docs") => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/img"),
        _ => std::env::temp_dir().join(format!("weir-ui-{}", std::process::id())),
    }
}

async fn shot(client: &Client, name: &str) {
    let dir = screenshots();
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(dir.join(name), png).unwrap();
}

/// The page's text once it holds `expected` (a click or a submit starts a
/// navigation the driver does not wait for); after 10 s, whatever it is.
async fn text_once(client: &Client, expected: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(body) = client.find(Locator::Css("body")).await
            && let Ok(text) = body.text().await
        {
            if text.contains(expected) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

/// The application's charge stage: fails the orders divisible by 5 while
/// the payment provider is `down`; records what it charged.
fn charge(down: Arc<AtomicBool>, charged: Arc<Mutex<Vec<u32>>>) -> Stage<u32, impl StageFn<u32, Output = u32>> {
    Stage::try_map("charge", move |n: u32| {
        let (down, charged) = (down.load(Ordering::SeqCst), Arc::clone(&charged));
        async move {
            if down && n.is_multiple_of(5) {
                return Err(BoxError::from(format!("payment provider down for order {n}")));
            }
            charged.lock().unwrap().push(n);
            Ok(n)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_pages_load_filters_work_and_a_replay_moves_a_letter_back_through_the_pipeline() {
    let Some((_driver, client)) = browser().await else { return };
    let target = targets("in_a_browser").await.remove(0); // SQLite: the browser reads pages, not stores
    let engine = engine(&target.store, Arc::new(AtomicBool::new(false)));
    for n in 0..6 {
        engine.run_with_id(&format!("order-{n}"), "order", &"fine").await.unwrap();
    }
    assert!(engine.run_with_id("order-bad", "order", &"fail").await.unwrap_err().is_compensated());
    let lines = target.store.dead_letters::<String>("lines");
    for n in 0..3 {
        let mut letter = Envelope::new(format!("{{\"order\": {n}, \"total\": \"12,50\"}}"), "parse", 3);
        letter.tenant = Some(format!("tenant-{n}"));
        letter.error_chain = vec![format!("line {n} is not an order"), "total: expected a number".into()];
        lines.push(letter).await.unwrap();
    }
    // A pipeline run while the payment provider is down for orders 5 and
    // 10: both are dead-lettered into the store, the rest charged.
    let (down, charged) = (Arc::new(AtomicBool::new(true)), Arc::new(Mutex::new(Vec::new())));
    let orders = Arc::new(target.store.dead_letters::<u32>("orders"));
    let (_, report) = Pipeline::from_iter(1..=12u32)
        .stage(charge(Arc::clone(&down), Arc::clone(&charged)).dead_letter(orders.clone()))
        .collect()
        .await
        .unwrap();
    assert_eq!(report.stage("charge").unwrap().dead_lettered, 2);
    let server = tokio::task::spawn_blocking({
        let args = target.args.clone();
        move || super::ui::serve(&args)
    })
    .await
    .unwrap();
    let base = server.base.clone();

    // The overview, then the sagas page filtered with its form.
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(text_once(&client, "Dead-letter queues").await.contains("Dead-letter queues"));
    shot(&client, "ui-overview.png").await;
    client.goto(&format!("{base}/sagas")).await.unwrap();
    let status = client.find(Locator::Css("select[name=status]")).await.unwrap();
    status.select_by_value("compensated").await.unwrap();
    client.form(Locator::Css("form.filters")).await.unwrap().submit().await.unwrap();
    let page = text_once(&client, "order-bad").await;
    assert!(page.contains("order-bad") && !page.contains("order-1"), "{page}");
    let url = client.current_url().await.unwrap();
    assert!(url.query().unwrap_or_default().contains("status=compensated"), "{url}");

    // Into the saga by its link: its steps.
    client.find(Locator::LinkText("order-bad")).await.unwrap().click().await.unwrap();
    let page = text_once(&client, "Steps").await;
    assert!(page.contains("reserve") && page.contains("compensated") && page.contains("no courier"), "{page}");
    shot(&client, "ui-saga.png").await;

    // The keyboard reaches the navigation first.
    client.find(Locator::Css("body")).await.unwrap().send_keys("\u{E004}").await.unwrap(); // Tab
    let focused = client.active_element().await.unwrap();
    assert_eq!(focused.tag_name().await.unwrap(), "a", "Tab focuses the first link");

    // A replay from the dead-letter page.
    client.goto(&format!("{base}/dlq/lines")).await.unwrap();
    assert!(text_once(&client, "Dead letters of lines").await.contains("line 2 is not an order"));
    shot(&client, "ui-dead-letters.png").await;
    client.find(Locator::Css("#letter-2 button")).await.unwrap().click().await.unwrap();
    let page = text_once(&client, "is marked for replay").await;
    assert!(page.contains("Letter #2 is marked for replay"), "{page}");
    let marked = lines.find(&LetterQuery::new().replay_requested(true)).await.unwrap();
    assert_eq!(marked.iter().map(|e| e.id).collect::<Vec<_>>(), [2]);

    // Order 10's letter marked in the browser; once the provider is back,
    // the application replays what was marked through the same stage: 10
    // is charged and its letter gone, 5 (not marked) still waits.
    let ten = orders.list().await.unwrap().into_iter().find(|e| e.item == 10).unwrap().id;
    client.goto(&format!("{base}/dlq/orders")).await.unwrap();
    assert!(text_once(&client, "Dead letters of orders").await.contains("payment provider down for order 10"));
    client.find(Locator::Css(&format!("#letter-{ten} button"))).await.unwrap().click().await.unwrap();
    let page = text_once(&client, "is marked for replay").await;
    assert!(page.contains(&format!("Letter #{ten} is marked for replay")), "{page}");
    down.store(false, Ordering::SeqCst);
    let replayed = orders
        .replay_requested(|n| {
            let stage = charge(Arc::clone(&down), Arc::clone(&charged));
            async move { Pipeline::from_iter([n]).stage(stage).collect().await.map(drop).map_err(BoxError::from) }
        })
        .await
        .unwrap();
    assert_eq!((replayed.replayed, replayed.failed), (1, 0));
    assert_eq!(charged.lock().unwrap().iter().filter(|&&n| n == 10).count(), 1, "order 10 charged once, on replay");
    client.goto(&format!("{base}/dlq/orders")).await.unwrap();
    let page = text_once(&client, "Dead letters of orders").await;
    assert!(page.contains("payment provider down for order 5"), "{page}");
    assert!(!page.contains("order 10"), "the replayed letter is gone: {page}");

    // A narrow window: the page does not overflow sideways (tables scroll
    // inside their own box).
    client.set_window_size(400, 800).await.unwrap();
    client.goto(&format!("{base}/sagas")).await.unwrap();
    text_once(&client, "order-bad").await;
    let overflow = client
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert_eq!(overflow.as_i64(), Some(0), "no sideways scroll at 400 px");
    shot(&client, "ui-narrow.png").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_the_live_page_draws_the_throughput_chart() {
    let Some((_driver, client)) = browser().await else { return };
    let target = targets("in_a_browser_live").await.remove(0);
    let (url, serving) = super::ui::metrics_page().await;
    let server = tokio::task::spawn_blocking({
        let mut args = target.args.clone();
        args.extend(["--live".into(), url]);
        move || super::ui::serve(&args)
    })
    .await
    .unwrap();

    // The chart has a line once three reads are in (a read every 2 s).
    let mut points = 0;
    for _ in 0..30 {
        client.goto(&format!("{}/live?refresh=0", server.base)).await.unwrap();
        text_once(&client, "Throughput").await;
        let drawn = client
            .execute("const l = document.querySelector('polyline'); return l ? l.points.numberOfItems : 0", vec![])
            .await
            .unwrap();
        points = drawn.as_i64().unwrap_or(0);
        if points >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(points >= 2, "the chart drew {points} point(s)");
    let page = text_once(&client, "payments").await;
    assert!(page.contains("parse") && page.contains("open"), "{page}");
    shot(&client, "ui-live-test.png").await;
    serving.abort();
    client.close().await.unwrap();
}
