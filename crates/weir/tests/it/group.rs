//! Behaviour of `weir::group`: seed tasks 1, 2, 3, 7, 8, 13 and bonus 4, 5.

use crate::support::{alive_tasks, settle};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use weir::error::{Cancelled, DeadlineExceeded, Panicked, is};
use weir::group::{CancelCause, Group, OnCancel, OnPanic};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("negative number")]
struct Negative;

/// Sets its flag when dropped: tells whether a task's future was dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A task that never ends and sets `dropped` when its future is dropped,
/// polled or not.
fn pending_until_dropped<E>(dropped: &Arc<AtomicBool>) -> impl Future<Output = Result<(), E>> + Send + 'static {
    let flag = DropFlag(dropped.clone());
    async move {
        let _flag = flag;
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[tokio::test]
async fn wait_returns_ok_when_every_task_succeeds() {
    let group: Group<BoxError> = Group::new();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let ran = ran.clone();
        group
            .spawn(async move {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
    }
    group.wait().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_error_cancels_siblings_and_is_returned_unchanged() {
    let group: Group<BoxError> = Group::new();
    let sibling_saw_cancel = Arc::new(AtomicBool::new(false));
    let sibling_dropped = Arc::new(AtomicBool::new(false));
    let token = group.token();
    let saw = sibling_saw_cancel.clone();
    let flag = DropFlag(sibling_dropped.clone());
    group
        .spawn(async move {
            let _flag = flag;
            token.cancelled().await;
            saw.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await;
    group.spawn(async { Err(Box::new(Negative) as BoxError) }).await;
    let err = group.wait().await.unwrap_err();
    assert!(err.downcast_ref::<Negative>().is_some(), "the caller's error comes back: {err}");
    // With OnCancel::Abort the sibling is dropped at its await, whether or
    // not it saw the token first; either way it is no longer running.
    assert!(sibling_dropped.load(Ordering::SeqCst), "the sibling was stopped before wait returned");
}

#[tokio::test]
async fn cooperative_siblings_see_the_token_and_finish() {
    let group: Group<BoxError> = Group::builder().on_cancel(OnCancel::Cooperate).build().unwrap();
    let saw = Arc::new(AtomicBool::new(false));
    let token = group.token();
    let saw2 = saw.clone();
    group
        .spawn(async move {
            token.cancelled().await;
            saw2.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await;
    group.spawn(async { Err("boom".into()) }).await;
    assert_eq!(group.wait().await.unwrap_err().to_string(), "boom");
    assert!(saw.load(Ordering::SeqCst), "the sibling ran to its end after seeing the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_drops_running_tasks_that_ignore_the_token() {
    let group: Group<BoxError> = Group::new();
    let dropped = Arc::new(AtomicBool::new(false));
    group.spawn(pending_until_dropped(&dropped)).await;
    group.spawn(async { Err("boom".into()) }).await;
    assert!(group.wait().await.is_err());
    assert!(dropped.load(Ordering::SeqCst), "the stuck task was dropped before wait returned");
}

#[tokio::test]
async fn work_spawned_after_a_failure_never_starts() {
    let group: Group<BoxError> = Group::new();
    group.spawn(async { Err("first".into()) }).await;
    tokio::task::yield_now().await;
    while !group.is_stopped() {
        tokio::task::yield_now().await;
    }
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    group
        .spawn(async move {
            s.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await;
    assert_eq!(group.spawned(), 2);
    assert_eq!(group.wait().await.unwrap_err().to_string(), "first");
    assert!(!started.load(Ordering::SeqCst));
}

#[tokio::test]
async fn limit_bounds_concurrency_and_spawn_waits_for_a_slot() {
    let group: Group<BoxError> = Group::builder().limit(3).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    // Each task waits until three run at once: the limit must let three
    // run (or this hangs), and never a fourth.
    let three_at_once = Arc::new(tokio::sync::Barrier::new(3));
    for _ in 0..51 {
        let (running, peak, three_at_once) = (running.clone(), peak.clone(), three_at_once.clone());
        group
            .spawn(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                three_at_once.wait().await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
    }
    group.wait().await.unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn try_spawn_hands_the_task_back_when_full() {
    let group: Group<BoxError> = Group::builder().limit(1).build().unwrap();
    let (release, wait_release) = tokio::sync::oneshot::channel::<()>();
    group
        .try_spawn(async move {
            let _ = wait_release.await;
            Ok(())
        })
        .unwrap();
    let full = group.try_spawn(async { Ok(()) }).unwrap_err();
    assert!(full.to_string().contains("every slot"));
    assert!(format!("{full:?}").starts_with("GroupFull"), "{full:?}");
    release.send(()).unwrap();
    group.spawn(full.into_inner()).await;
    group.wait().await.unwrap();
}

/// The named variant hands the task back when full too, and a named task's
/// panic names it.
#[tokio::test]
async fn try_spawn_named_hands_back_when_full_and_names_the_task() {
    let group: Group<BoxError> = Group::builder().limit(1).on_cancel(OnCancel::Cooperate).build().unwrap();
    let (release, wait_release) = tokio::sync::oneshot::channel::<()>();
    group
        .try_spawn_named("reader", async move {
            let _ = wait_release.await;
            panic!("bad record")
        })
        .unwrap();
    assert!(group.try_spawn_named("writer", async { Ok(()) }).is_err(), "the one slot is taken");
    assert!(format!("{group:?}").contains("spawned: 1"), "{group:?}");
    release.send(()).unwrap();
    let err = group.wait().await.unwrap_err();
    let panic = err.downcast_ref::<Panicked>().expect("the panic is the error");
    assert_eq!(panic.task().unwrap().name(), Some("reader"));
}

/// The collecting group's own spawn, try_spawn, token and cancel: a
/// cancel stops the running task (through its token) and the unstarted
/// work is reported once, next to the errors.
#[tokio::test]
async fn collect_group_spawn_try_spawn_token_and_cancel() {
    let group = Group::<BoxError>::builder().limit(2).on_cancel(OnCancel::Cooperate).build_collect().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let (token, s) = (group.token(), started.clone());
    group
        .spawn(async move {
            s.fetch_add(1, Ordering::SeqCst);
            token.cancelled().await;
            Err("first".into())
        })
        .await;
    let (token, s) = (group.token(), started.clone());
    group
        .try_spawn(async move {
            s.fetch_add(1, Ordering::SeqCst);
            token.cancelled().await;
            Err("saw the cancel".into())
        })
        .unwrap();
    settle(|| started.load(Ordering::SeqCst) == 2).await;
    assert!(group.try_spawn(async { Ok(()) }).is_err(), "both slots are taken");
    assert!(!group.token().is_cancelled());
    group.cancel();
    assert!(group.token().is_cancelled());
    group.spawn(async { Ok(()) }).await; // after the cancel: never starts
    let errors = group.wait().await.unwrap_err();
    let mut texts: Vec<String> = errors.errors().map(ToString::to_string).collect();
    texts.sort();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[0].contains("cancel") || texts[0].contains("did not finish"), "{texts:?}");
    assert!(texts.contains(&"first".to_owned()) && texts.contains(&"saw the cancel".to_owned()), "{texts:?}");
}

/// A group is stopped as soon as its token is cancelled, by whoever.
#[tokio::test]
async fn a_cancelled_token_stops_the_group() {
    let group: Group<BoxError> = Group::new();
    assert!(!group.is_stopped());
    group.token().cancel();
    assert!(group.is_stopped());
    group.wait().await.unwrap();
}

#[test]
fn a_limit_of_zero_is_a_configuration_error() {
    let err = Group::<BoxError>::builder().limit(0).build().unwrap_err();
    assert_eq!(err.setting(), "group limit");
    assert!(err.to_string().contains("at least 1"), "{err}");
    assert!(Group::<BoxError>::builder().workers(0).build().is_err());
    // A builder clones with its settings, and shows them.
    let builder = Group::<BoxError>::builder().limit(3).on_cancel(OnCancel::Cooperate);
    let copy = format!("{:?}", builder.clone());
    assert!(copy.contains("limit: Some(3)") && copy.contains("Cooperate"), "{copy}");
}

#[tokio::test]
async fn collect_group_runs_everything_and_keeps_every_error_with_its_task() {
    let group = Group::<BoxError>::builder().limit(4).build_collect().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for n in 0..10u32 {
        let ran = ran.clone();
        group
            .spawn_named(format!("item {n}"), async move {
                ran.fetch_add(1, Ordering::SeqCst);
                if n % 3 == 0 { Err(format!("bad {n}").into()) } else { Ok(()) }
            })
            .await;
    }
    let errors = group.wait().await.unwrap_err();
    assert_eq!(ran.load(Ordering::SeqCst), 10);
    let mut failed: Vec<String> = errors.iter().map(|(origin, e)| format!("{origin}: {e}")).collect();
    failed.sort();
    assert_eq!(
        failed,
        ["task 0 (item 0): bad 0", "task 3 (item 3): bad 3", "task 6 (item 6): bad 6", "task 9 (item 9): bad 9"]
    );
}

#[tokio::test]
async fn a_panic_becomes_an_error_naming_the_task() {
    let group: Group<BoxError> = Group::new();
    group.spawn(async { Ok(()) }).await;
    group.spawn_named("parser", async { panic!("bad byte at 7") }).await;
    let err = group.wait().await.unwrap_err();
    let panic = err.downcast_ref::<Panicked>().expect("a Panicked");
    assert_eq!(panic.message(), "bad byte at 7");
    assert_eq!(panic.task().unwrap().name(), Some("parser"));
    assert_eq!(panic.task().unwrap().index(), 1);
    assert_eq!(err.to_string(), "task 1 (parser) panicked: bad byte at 7");
}

#[tokio::test]
async fn on_panic_resume_re_raises_the_original_payload_from_wait() {
    let waited = tokio::spawn(async {
        let group: Group<BoxError> = Group::builder().on_panic(OnPanic::Resume).build().unwrap();
        group.spawn(async { std::panic::panic_any(42u32) }).await;
        group.wait().await
    })
    .await;
    let payload = waited.unwrap_err().into_panic();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_group_aborts_its_tasks_and_leaks_nothing() {
    let before = alive_tasks();
    let dropped = Arc::new(AtomicBool::new(false));
    {
        let group: Group<BoxError> = Group::builder().limit(4).build().unwrap();
        let flag = DropFlag(dropped.clone());
        group
            .spawn(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok(())
            })
            .await;
    }
    settle(|| alive_tasks() == before && dropped.load(Ordering::SeqCst)).await;
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(alive_tasks(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_wait_no_task_of_the_group_is_alive() {
    let before = alive_tasks();
    let group: Group<BoxError> = Group::builder().timeout(Duration::from_secs(60)).build().unwrap();
    for _ in 0..100 {
        group
            .spawn(async {
                tokio::task::yield_now().await;
                Ok(())
            })
            .await;
    }
    group.wait().await.unwrap();
    // Every task future was dropped before `wait` returned; the runtime
    // releases the worker tasks' slots just after.
    settle(|| alive_tasks() == before).await;
    assert_eq!(alive_tasks(), before);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cancels_with_deadline_exceeded() {
    let group: Group<BoxError> = Group::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for _ in 0..3 {
        group
            .spawn(async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            })
            .await;
    }
    let err = group.wait().await.unwrap_err();
    assert!(is::<DeadlineExceeded>(&*err), "{err}");
    let cancelled = err.downcast_ref::<Cancelled>().unwrap();
    assert_eq!(cancelled.unfinished(), 3);
    assert!(cancelled.is_deadline());
}

#[tokio::test(start_paused = true)]
async fn work_that_finishes_before_the_deadline_succeeds() {
    let group: Group<BoxError> = Group::builder().timeout(Duration::from_secs(5)).build().unwrap();
    group
        .spawn(async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(())
        })
        .await;
    group.wait().await.unwrap();
}

#[tokio::test]
async fn cancelling_reports_unfinished_work_instead_of_success() {
    let group: Group<BoxError> = Group::new();
    group.spawn(std::future::pending()).await;
    group.cancel();
    let err = group.wait().await.unwrap_err();
    assert!(!is::<DeadlineExceeded>(&*err));
    assert_eq!(err.downcast_ref::<Cancelled>().unwrap().unfinished(), 1);
}

#[tokio::test]
async fn a_parent_cancels_a_nested_group_but_not_the_other_way() {
    let outer: Group<BoxError> = Group::new();
    let parent = outer.token();
    let inner: Group<BoxError> = Group::builder().parent(&parent).build().unwrap();
    inner.spawn(async { Err("inner failed".into()) }).await;
    assert!(inner.wait().await.is_err());
    assert!(!parent.is_cancelled(), "a child's failure does not cancel its parent");

    let inner: Group<BoxError> = Group::builder().parent(&parent).build().unwrap();
    inner.spawn(std::future::pending()).await;
    outer.cancel();
    let err = inner.wait().await.unwrap_err();
    assert!(err.downcast_ref::<Cancelled>().is_some(), "{err}");
    assert!(outer.wait().await.is_ok(), "the outer group had no tasks to stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_group_failure_propagates_through_the_outer_task() {
    let outer: Group<BoxError> = Group::new();
    let parent = outer.token();
    outer
        .spawn(async move {
            let inner: Group<BoxError> = Group::builder().parent(&parent).limit(4).build()?;
            for n in 0..8 {
                inner.spawn(async move { if n == 5 { Err(Box::new(Negative) as BoxError) } else { Ok(()) } }).await;
            }
            inner.wait().await
        })
        .await;
    let err = outer.wait().await.unwrap_err();
    assert!(is::<Negative>(&*err));
}

/// Bonus 5: with 10,000 tasks blocked, `wait` returns within 100 ms of the
/// cancel. The real figure is in the `group` bench.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_within_100ms_of_cancel_with_10000_blocked_tasks() {
    let before = alive_tasks();
    let group: Group<BoxError> = Group::new();
    for _ in 0..10_000 {
        group.spawn(std::future::pending()).await;
    }
    let token = group.token();
    let waiting = tokio::spawn(group.wait());
    tokio::task::yield_now().await;
    let cancelled_at = std::time::Instant::now();
    token.cancel();
    let result = waiting.await.unwrap();
    let took = cancelled_at.elapsed();
    assert!(took < Duration::from_millis(100), "wait took {took:?} after cancel");
    assert_eq!(result.unwrap_err().downcast_ref::<Cancelled>().unwrap().unfinished(), 10_000);
    settle(|| alive_tasks() == before).await; // the `waiting` task itself is released just after it ends
    assert_eq!(alive_tasks(), before);
}

#[tokio::test]
async fn map_returns_results_in_input_order() {
    let group: Group<BoxError> = Group::builder().limit(8).build().unwrap();
    let out = group
        .map(0..100u64, |n| async move {
            tokio::time::sleep(Duration::from_micros(100 - n)).await;
            Ok(n * 2)
        })
        .await
        .unwrap();
    assert_eq!(out, (0..100u64).map(|n| n * 2).collect::<Vec<_>>());
}

#[tokio::test]
async fn map_stops_at_the_first_error() {
    let group: Group<anyhow::Error> = Group::builder().limit(2).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let err = group
        .map(0..1000u32, move |n| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                if n == 3 {
                    anyhow::bail!("item {n} failed")
                }
                Ok(n)
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "item 3 failed");
    assert!(calls.load(Ordering::SeqCst) < 1000, "the rest never started");
}

/// A map call that fails at item 100; later items hold their slot until
/// the group stops, so exactly 7 of them are in flight (limit 8) when item
/// 100 fails.
async fn fail_at_100(n: u64) -> anyhow::Result<u64> {
    tokio::task::yield_now().await;
    match n {
        100 => anyhow::bail!("item {n} failed"),
        101.. => std::future::pending().await,
        _ => Ok(n),
    }
}

/// The map is lazy: an item is taken only when a slot is free, and the
/// closure is never called once the group stopped. Before, the whole
/// input was collected first (10,000 items taken) and the closure called
/// for every item even after the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_takes_at_most_limit_items_past_the_first_error() {
    let taken = Arc::new(AtomicUsize::new(0));
    let called = Arc::new(AtomicUsize::new(0));
    let group: Group<anyhow::Error> = Group::builder().limit(8).build().unwrap();
    let t = taken.clone();
    let items = (0..10_000u32).inspect(move |_| {
        t.fetch_add(1, Ordering::SeqCst);
    });
    let c = called.clone();
    let err = group
        .map(items, move |n| {
            c.fetch_add(1, Ordering::SeqCst);
            fail_at_100(u64::from(n))
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "item 100 failed");
    let (taken, called) = (taken.load(Ordering::SeqCst), called.load(Ordering::SeqCst));
    assert!(taken <= 108, "{taken} items taken: the 101 up to the error and at most 7 more in flight");
    assert!(taken >= 101, "{taken}");
    assert!(called <= taken, "{called} calls for {taken} items");
}

/// An endless stream: the map ends at the first error, having taken a
/// bounded number of items.
#[tokio::test]
async fn map_stream_over_an_endless_stream_ends_at_the_first_error() {
    use weir::group::Order;
    let taken = Arc::new(AtomicUsize::new(0));
    let t = taken.clone();
    let endless = futures_util::StreamExt::inspect(futures_util::stream::iter(0u64..), move |_| {
        t.fetch_add(1, Ordering::SeqCst);
    });
    let group: Group<anyhow::Error> = Group::builder().limit(8).build().unwrap();
    let err = group.map_stream(endless, Order::Input, fail_at_100).await.unwrap_err();
    assert_eq!(err.to_string(), "item 100 failed");
    assert!(taken.load(Ordering::SeqCst) <= 108, "{}", taken.load(Ordering::SeqCst));
}

/// In completion order, every result comes back once; a fast call's result
/// comes before a slow one's.
#[tokio::test(start_paused = true)]
async fn map_stream_in_completion_order() {
    use weir::group::Order;
    let group: Group<BoxError> = Group::builder().limit(4).build().unwrap();
    let out = group
        .map_stream(futures_util::stream::iter([40u64, 10, 30, 20]), Order::Completion, |ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(ms)
        })
        .await
        .unwrap();
    assert_eq!(out, [10, 20, 30, 40]);
}

/// A task learns why its group was cancelled: the first error, with the
/// task that failed (before, it could only see that the token was
/// cancelled).
#[tokio::test]
async fn a_task_reads_the_first_error_as_the_cause() {
    let group: Group<anyhow::Error> = Group::new();
    let cancellation = group.cancellation();
    let (tx, rx) = tokio::sync::oneshot::channel();
    group
        .spawn(async move {
            let _ = tx.send(cancellation.cancelled().await);
            Ok(())
        })
        .await;
    group.spawn_named("writer", async { Err(anyhow::anyhow!("disk full").context("saving order 7")) }).await;
    let err = group.wait().await.unwrap_err();
    assert_eq!(err.to_string(), "saving order 7");
    match rx.await.unwrap() {
        CancelCause::Failed { task, message } => {
            assert_eq!((task.index(), task.name()), (1, Some("writer")));
            assert_eq!(&*message, "saving order 7: disk full", "anyhow's whole chain");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_cause_tells_a_deadline_a_parent_and_a_reason_apart() {
    let group: Group<BoxError> = Group::builder().timeout(Duration::from_millis(50)).build().unwrap();
    let cancellation = group.cancellation();
    group.spawn(std::future::pending()).await;
    assert_eq!(cancellation.cause(), None, "running");
    let cause = cancellation.cancelled().await;
    assert_eq!(cause.to_string(), "deadline exceeded after 50ms");
    assert!(matches!(cause, CancelCause::Deadline(d) if d.after() == Some(Duration::from_millis(50))));
    assert!(group.wait().await.is_err());

    let parent = tokio_util::sync::CancellationToken::new();
    let group: Group<BoxError> = Group::builder().parent(&parent).build().unwrap();
    group.spawn(std::future::pending()).await;
    parent.cancel();
    assert_eq!(group.cancellation().cancelled().await, CancelCause::Parent);
    assert!(group.wait().await.is_err());

    let group: Group<BoxError> = Group::new();
    group.spawn(std::future::pending()).await;
    group.cancel_with("shutting down");
    group.cancel(); // the first cause stays
    let cause = group.cause().unwrap();
    assert_eq!(cause, CancelCause::Requested { reason: Some("shutting down".into()) });
    assert_eq!(cause.to_string(), "cancelled: shutting down");
    assert!(group.wait().await.is_err());
}

/// As Go's errgroup cancels its context when `Wait` returns, the group's
/// token is cancelled once `wait` returns, on success too, so helpers tied
/// to it stop. Before, it stayed live after a success.
#[tokio::test]
async fn wait_cancels_the_token_whatever_the_outcome() {
    let group: Group<BoxError> = Group::new();
    let (token, cancellation) = (group.token(), group.cancellation());
    let helper = tokio::spawn({
        let token = token.clone();
        async move { token.cancelled().await }
    });
    group.spawn(async { Ok(()) }).await;
    group.wait().await.unwrap();
    assert!(token.is_cancelled());
    assert_eq!(cancellation.cause(), Some(CancelCause::Finished));
    helper.await.unwrap();

    let group: Group<BoxError> = Group::new();
    let cancellation = group.cancellation();
    group.spawn(async { Err("boom".into()) }).await;
    assert!(group.wait().await.is_err());
    assert!(matches!(cancellation.cause(), Some(CancelCause::Failed { .. })), "the failure stays the cause");
}

/// A task still queued for a worker when the group stops is dropped at
/// once, with what its future holds. Before, it stayed queued until the
/// group itself was dropped: a pipeline whose sink waited for a queued
/// stage's sender to close hung forever.
#[tokio::test]
async fn tasks_queued_for_a_worker_are_dropped_when_the_group_stops() {
    let group: Group<BoxError> = Group::builder().workers(2).build().unwrap();
    group.spawn(async { Err("first".into()) }).await;
    // The next 63 go to the first worker with the failing one, the 65th to
    // the second worker, which has not run yet when the first one fails.
    for _ in 0..63 {
        group.spawn(async { Ok(()) }).await;
    }
    let dropped = Arc::new(AtomicBool::new(false));
    group.spawn(pending_until_dropped(&dropped)).await;
    let token = group.token();
    token.cancelled().await;
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert!(dropped.load(Ordering::SeqCst), "the queued task was dropped when the group stopped, before wait");
    assert_eq!(group.wait().await.unwrap_err().to_string(), "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_1000_groups_with_random_failures_and_panics() {
    let before = alive_tasks();
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut failed, mut panicked, mut ok) = (0, 0, 0);
    for _ in 0..1000 {
        let group: Group<BoxError> = Group::builder().limit(rng.usize(1..8)).build().unwrap();
        let fault = rng.u8(0..10);
        let at = rng.usize(0..20);
        for i in 0..20 {
            group
                .spawn(async move {
                    tokio::task::yield_now().await;
                    match (i == at, fault) {
                        (true, 0) => Err("injected".into()),
                        (true, 1) => panic!("injected panic"),
                        _ => Ok(()),
                    }
                })
                .await;
        }
        match group.wait().await {
            Ok(()) => ok += 1,
            Err(e) if e.downcast_ref::<Panicked>().is_some() => panicked += 1,
            Err(e) => {
                assert_eq!(e.to_string(), "injected");
                failed += 1;
            }
        }
    }
    let expected_ok = 1000 - failed - panicked;
    assert_eq!(ok, expected_ok);
    assert!(failed > 50 && panicked > 50, "faults were injected: {failed} errors, {panicked} panics");
    settle(|| alive_tasks() == before).await;
    assert_eq!(alive_tasks(), before, "no task outlives its group");
}

/// A task that computes without awaiting holds its worker's thread, but
/// not the tasks spawned after it: the idle worker takes them from its
/// queue. Before, both went to the same worker and the second never ran
/// while the first computed (here: the first gives up after 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_queued_behind_a_cpu_bound_sibling_runs_on_the_idle_thread() {
    let group: Group<BoxError> = Group::new();
    let sibling_ran = Arc::new(AtomicBool::new(false));
    let seen = sibling_ran.clone();
    group
        .spawn(async move {
            let give_up = std::time::Instant::now() + Duration::from_secs(10);
            while !seen.load(Ordering::SeqCst) {
                if std::time::Instant::now() > give_up {
                    return Err("no task spawned after this one ran while it computed".into());
                }
                std::hint::spin_loop();
            }
            Ok(())
        })
        .await;
    for _ in 0..10 {
        group
            .spawn(async {
                tokio::task::yield_now().await;
                Ok(())
            })
            .await;
    }
    group
        .spawn(async move {
            sibling_ran.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await;
    group.wait().await.unwrap();
}
