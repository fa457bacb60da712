//! Settlement: every item from a source with receipts is settled exactly
//! once, with the fate it met, and only after that fate is final.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use weir::durable::dlq::{DeadLetterQueue, MemoryDlq};
use weir::error::{BoxError, Permanent, Skip};
use weir::pipeline::{Fate, OnError, Pipeline, Receipt, Stage};

/// What the receipts saw: per item, every fate it was settled with.
#[derive(Default, Clone)]
struct Book(Arc<Mutex<HashMap<u32, Vec<Fate>>>>);

impl Book {
    fn receipt(&self, item: u32, redeliverable: bool) -> Ticket {
        Ticket { item, redeliverable, book: self.clone() }
    }

    fn fates(&self) -> HashMap<u32, Vec<Fate>> {
        self.0.lock().unwrap().clone()
    }

    /// Each item settled exactly once; its fate.
    fn once(&self) -> HashMap<u32, Fate> {
        self.fates()
            .into_iter()
            .map(|(item, fates)| {
                assert_eq!(fates.len(), 1, "item {item} settled {} times: {fates:?}", fates.len());
                (item, fates[0])
            })
            .collect()
    }
}

struct Ticket {
    item: u32,
    redeliverable: bool,
    book: Book,
}

impl Receipt for Ticket {
    fn may_redeliver(&self) -> bool {
        self.redeliverable
    }

    async fn settle(self, fate: Fate) -> Result<(), BoxError> {
        self.book.0.lock().unwrap().entry(self.item).or_default().push(fate);
        Ok(())
    }
}

/// 1 delivered, 2 filtered, 3 skipped (returned `Skip`), 4 dead-lettered
/// (permanent), 5 released (transient, redeliverable), 6 dead-lettered
/// (transient, no deliveries left).
async fn classify(n: u32) -> Result<u32, BoxError> {
    match n {
        3 => Err(Skip.into()),
        4 => Err(Permanent::new("bad order").into()),
        5 | 6 => Err("connection reset".into()),
        n => Ok(n),
    }
}

#[tokio::test]
async fn each_item_is_settled_once_with_the_fate_it_met() {
    let book = Book::default();
    let items: Vec<_> = (1..=6).map(|n| Ok::<_, BoxError>((n, book.receipt(n, n != 6)))).collect();
    let dlq = Arc::new(MemoryDlq::new());
    let report = Pipeline::builder()
        .from_receipts(futures_util::stream::iter(items))
        .stage(Stage::filter("not two", |n: &u32| *n != 2))
        .stage(Stage::try_map("classify", classify).dead_letter(dlq.clone()))
        .for_each(|_| async { Ok::<_, BoxError>(()) })
        .await
        .unwrap();
    let expected = HashMap::from([
        (1, Fate::Delivered),
        (2, Fate::Filtered),
        (3, Fate::Skipped),
        (4, Fate::DeadLettered),
        (5, Fate::Released),
        (6, Fate::DeadLettered),
    ]);
    assert_eq!(book.once(), expected);
    let stage = report.stage("classify").unwrap();
    assert_eq!((stage.released, stage.dead_lettered, stage.skipped), (1, 2, 1));
    assert!(report.is_balanced(), "{report}");
    let parked: Vec<u32> = dlq.list().await.unwrap().into_iter().map(|e| e.item).collect();
    assert_eq!(parked, [4, 6], "the released item is not dead-lettered");
}

#[tokio::test]
async fn collected_and_skipped_failures_are_settled_as_such() {
    let book = Book::default();
    let items: Vec<_> = (1..=2).map(|n| Ok::<_, BoxError>((n, book.receipt(n, false)))).collect();
    let error = Pipeline::builder()
        .from_receipts(futures_util::stream::iter(items))
        .stage(
            Stage::try_map("one", |n: u32| async move { if n == 1 { Err(Permanent::new("no")) } else { Ok(n) } })
                .on_error(OnError::Collect),
        )
        .stage(
            Stage::try_map("two", |n: u32| async move { if n == 2 { Err(Permanent::new("no")) } else { Ok(n) } })
                .on_error(OnError::Skip),
        )
        .for_each(|_| async { Ok::<_, BoxError>(()) })
        .await
        .unwrap_err();
    assert!(error.report().is_balanced());
    assert_eq!(book.once(), HashMap::from([(1, Fate::Collected), (2, Fate::Skipped)]));
}

#[tokio::test]
async fn an_item_is_settled_only_after_the_sink_returned() {
    let book = Book::default();
    let stored = Arc::new(Mutex::new(Vec::new()));
    let items: Vec<_> = (1..=100).map(|n| Ok::<_, BoxError>((n, book.receipt(n, false)))).collect();
    let seen = stored.clone();
    let check = book.clone();
    Pipeline::builder()
        .from_receipts(futures_util::stream::iter(items))
        .stage(Stage::map("same", |n: u32| async move { n }).workers(4))
        .for_each(move |n| {
            let (seen, check) = (seen.clone(), check.clone());
            async move {
                assert!(!check.fates().contains_key(&n), "item {n} settled before the sink took it");
                tokio::task::yield_now().await;
                seen.lock().unwrap().push(n);
                Ok::<_, BoxError>(())
            }
        })
        .await
        .unwrap();
    let fates = book.once();
    assert_eq!(fates.len(), 100);
    assert!(fates.values().all(|f| *f == Fate::Delivered));
    assert_eq!(stored.lock().unwrap().len(), 100);
}

#[tokio::test]
async fn a_failed_run_abandons_what_it_had_not_finished_and_settles_nothing_twice() {
    let book = Book::default();
    let items: Vec<_> = (1..=1000).map(|n| Ok::<_, BoxError>((n, book.receipt(n, false)))).collect();
    let error = Pipeline::builder()
        .from_receipts(futures_util::stream::iter(items))
        .stage(
            Stage::try_map("fails at 500", |n: u32| async move {
                if n == 500 { Err(Permanent::new("poison")) } else { Ok(n) }
            })
            .workers(2),
        )
        .for_each(|_| async { Ok::<_, BoxError>(()) })
        .await
        .unwrap_err();
    let fates = book.once(); // asserts once each
    assert_eq!(fates.get(&500), Some(&Fate::Abandoned), "the failed item goes back to its source");
    let delivered = fates.values().filter(|f| **f == Fate::Delivered).count() as u64;
    assert_eq!(delivered, error.report().sink_received);
    // Every item taken from the stream is settled: those that entered the
    // run, and those taken but not yet sent on when it stopped. Items the
    // stream still held are dropped with it, unsettled: for a broker, its
    // acknowledgement deadline redelivers them.
    let taken = *fates.keys().max().unwrap();
    assert_eq!(fates.len() as u32, taken, "no gap among the items taken");
    assert!(fates.len() as u64 >= error.report().source_emitted);
    assert!(fates.values().all(|f| matches!(f, Fate::Delivered | Fate::Abandoned)));
}

#[tokio::test]
async fn a_failing_sink_abandons_its_item() {
    let book = Book::default();
    let items: Vec<_> = (1..=3).map(|n| Ok::<_, BoxError>((n, book.receipt(n, false)))).collect();
    Pipeline::builder()
        .capacity(1)
        .from_receipts(futures_util::stream::iter(items))
        .for_each(|n| async move { if n == 2 { Err("disk full") } else { Ok(()) } })
        .await
        .unwrap_err();
    let fates = book.once();
    assert_eq!(fates.get(&1), Some(&Fate::Delivered));
    assert_eq!(fates.get(&2), Some(&Fate::Abandoned), "the sink did not store it");
}

#[tokio::test(start_paused = true)]
async fn an_aborted_run_abandons_the_items_inside_it() {
    let book = Book::default();
    let taken = Book::default();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let pipeline =
        Pipeline::builder().from_receipts(tokio_stream_of(rx)).stage(Stage::map("slow", |n: u32| async move {
            tokio::time::sleep(Duration::from_secs(if n > 3 { 3600 } else { 0 })).await;
            n
        }));
    let control = pipeline.control();
    for n in 1..=3 {
        tx.send(Ok::<_, BoxError>((n, book.receipt(n, false)))).await.unwrap();
    }
    let check = taken.clone();
    let run = tokio::spawn(pipeline.for_each(move |n| {
        let check = check.clone();
        async move {
            check.0.lock().unwrap().insert(n, vec![Fate::Delivered]);
            Ok::<_, BoxError>(())
        }
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in 4..=6 {
        tx.send(Ok::<_, BoxError>((n, book.receipt(n, false)))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    control.abort();
    assert!(run.await.unwrap().is_err());
    let fates = book.once();
    for n in 1..=3 {
        assert_eq!(fates.get(&n), Some(&Fate::Delivered), "item {n}");
    }
    for n in 4..=6 {
        assert_eq!(fates.get(&n), Some(&Fate::Abandoned), "item {n}");
    }
    drop(tx);
}

#[tokio::test]
async fn a_drain_settles_everything_taken_and_abandons_nothing() {
    let book = Book::default();
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    for n in 1..=200 {
        tx.send(Ok::<_, BoxError>((n, book.receipt(n, false)))).await.unwrap();
    }
    let pipeline = Pipeline::builder()
        .capacity(4)
        .from_receipts(tokio_stream_of(rx))
        .stage(Stage::map("double", |n: u32| async move { n * 2 }));
    let control = pipeline.control();
    let report = pipeline
        .for_each(move |n| {
            if n == 20 {
                control.drain();
            }
            async { Ok::<_, BoxError>(()) }
        })
        .await
        .unwrap();
    assert!(report.drained && report.is_balanced());
    let fates = book.once();
    assert_eq!(fates.len() as u64, report.source_emitted);
    assert!(fates.values().all(|f| *f == Fate::Delivered), "{fates:?}");
    assert!(report.source_emitted < 200, "the drain stopped intake");
    drop(tx);
}

#[tokio::test]
async fn into_stream_settles_an_item_when_it_yields_it() {
    let book = Book::default();
    let items: Vec<_> = (1..=5).map(|n| Ok::<_, BoxError>((n, book.receipt(n, false)))).collect();
    let mut stream = Pipeline::builder().from_receipts(futures_util::stream::iter(items)).into_stream().unwrap();
    let first = stream.next().await.unwrap();
    assert_eq!(book.once().get(&first), Some(&Fate::Delivered));
    while stream.next().await.is_some() {}
    stream.finish().await.unwrap();
    assert_eq!(book.once().len(), 5);
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_failing_source_fails_the_run_and_settles_what_it_gave() {
    let book = Book::default();
    let items: Vec<Result<(u32, Ticket), BoxError>> =
        vec![Ok((1, book.receipt(1, false))), Ok((2, book.receipt(2, false))), Err("broker gone for good".into())];
    let error = Pipeline::builder()
        .from_receipts(futures_util::stream::iter(items))
        .stage(Stage::map("same", |n: u32| async move { n }))
        .for_each(|_| async { Ok::<_, BoxError>(()) })
        .await
        .unwrap_err();
    assert_eq!(error.source_error().map(ToString::to_string).as_deref(), Some("broker gone for good"));
    assert!(error.to_string().contains("in the source"), "{error}");
    let fates = book.once();
    assert_eq!(fates.len(), 2);
    assert!(fates.values().all(|f| matches!(f, Fate::Delivered | Fate::Abandoned)), "{fates:?}");
}

/// A dead-letter sink that fails.
struct BrokenSink;

impl weir::pipeline::DeadLetterSink<u32> for BrokenSink {
    fn dead_letter(
        &self,
        _: weir::pipeline::DeadLetter<u32>,
    ) -> futures_util::future::BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Err("dead-letter stream did not answer".into()) })
    }
}

#[tokio::test]
async fn an_item_the_dead_letter_sink_cannot_take_goes_back_to_its_source() {
    let book = Book::default();
    let items: Vec<_> = (1..=3).map(|n| Ok::<_, BoxError>((n, book.receipt(n, false)))).collect();
    let report = Pipeline::builder()
        .from_receipts(futures_util::stream::iter(items))
        .stage(
            Stage::try_map("check", |n: u32| async move { if n == 2 { Err(Permanent::new("bad")) } else { Ok(n) } })
                .dead_letter(Arc::new(BrokenSink)),
        )
        .for_each(|_| async { Ok::<_, BoxError>(()) })
        .await
        .expect("the run goes on");
    assert_eq!(book.once().get(&2), Some(&Fate::Released));
    assert_eq!(report.stage("check").unwrap().released, 1);
    // Without receipts the item has nowhere to go: the run fails.
    let error = Pipeline::from_iter([2u32])
        .stage(
            Stage::try_map("check", |_: u32| async { Err::<u32, _>(Permanent::new("bad")) })
                .dead_letter(Arc::new(BrokenSink)),
        )
        .for_each(|_| async { Ok::<_, BoxError>(()) })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("dead-letter sink failed"), "{error}");
}
