//! `ScopedGroup`: tasks that borrow from the caller, with the group's
//! contract (limit, first error, panics, deadline, accounting).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use weir::error::{Cancelled, DeadlineExceeded, Panicked, find, is};
use weir::group::{CancelCause, Group};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sets its flag when dropped.
struct DropFlag<'a>(&'a AtomicBool);
impl Drop for DropFlag<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A task that never ends and sets `dropped` when its future is dropped,
/// polled or not (the flag is moved in, not made at the first poll).
fn pending_until_dropped(dropped: &AtomicBool) -> impl Future<Output = Result<(), BoxError>> + Send + '_ {
    let flag = DropFlag(dropped);
    async move {
        let _flag = flag;
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Tasks borrow a local slice, a local `&str` and a local `Mutex`, with no
/// `Arc` or clone; a `&mut` part of a buffer each.
#[tokio::test]
async fn tasks_borrow_locals_and_fill_parts_of_a_buffer() {
    let words = ["alpha", "beta", "gamma", "delta"];
    let prefix = String::from("w:");
    let seen = Mutex::new(Vec::new());
    let mut lengths = vec![0usize; words.len()];
    let mut group = Group::<BoxError>::builder().limit(2).build_scoped().unwrap();
    for (word, slot) in words.iter().zip(lengths.iter_mut()) {
        let (prefix, seen) = (&prefix, &seen);
        group
            .spawn(async move {
                tokio::task::yield_now().await;
                seen.lock().unwrap().push(format!("{prefix}{word}"));
                *slot = word.len();
                Ok(())
            })
            .await;
    }
    group.wait().await.unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(seen, ["w:alpha", "w:beta", "w:delta", "w:gamma"]);
    assert_eq!(lengths, [5, 4, 5, 5]);
}

#[tokio::test]
async fn the_limit_bounds_tasks_in_flight() {
    let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut group = Group::<BoxError>::builder().limit(3).build_scoped().unwrap();
    for _ in 0..20 {
        let (running, most) = (&running, &most);
        group
            .spawn(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
    }
    group.wait().await.unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 3, "3 at once, never more");
}

/// The first error cancels the rest: running tasks are dropped, a task
/// spawned afterwards never runs, siblings read the cause.
#[tokio::test]
async fn the_first_error_drops_the_running_tasks_and_names_the_cause() {
    let dropped = AtomicBool::new(false);
    let late_ran = AtomicBool::new(false);
    let mut group = Group::<anyhow::Error>::builder().build_scoped().unwrap();
    let cancellation = group.cancellation();
    {
        let dropped = &dropped;
        group
            .spawn(async move {
                let _flag = DropFlag(dropped);
                std::future::pending::<()>().await;
                Ok(())
            })
            .await;
    }
    group.spawn_named("parser", async { anyhow::bail!("bad line 7") }).await;
    let err = {
        let late_ran = &late_ran;
        // Queued behind the failing task: when that one fails, the group
        // stops and drops this one unpolled.
        group
            .spawn(async move {
                late_ran.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
        group.wait().await.unwrap_err()
    };
    assert_eq!(err.to_string(), "bad line 7");
    assert!(dropped.load(Ordering::SeqCst), "the pending task was dropped");
    assert!(!late_ran.load(Ordering::SeqCst), "nothing starts after the first error");
    assert!(matches!(cancellation.cause(), Some(CancelCause::Failed { task, .. }) if task.name() == Some("parser")));
}

#[tokio::test]
async fn a_panic_becomes_an_error_naming_its_task() {
    // Declared before the group, as anything its tasks borrow.
    let local = String::from("borrowed");
    let local = &local;
    let mut group = Group::<BoxError>::builder().build_scoped().unwrap();
    group
        .spawn_named("fragile", async move {
            if local.len() > 3 {
                panic!("index out of range in {local}");
            }
            Ok(())
        })
        .await;
    let err = group.wait().await.unwrap_err();
    let panic = find::<Panicked>(&*err).expect("a Panicked error");
    assert_eq!(panic.message(), "index out of range in borrowed");
    assert!(err.to_string().contains("fragile"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_the_tasks_and_wait_reports_them_cancelled() {
    let dropped = AtomicBool::new(false);
    let mut group = Group::<BoxError>::builder().timeout(Duration::from_millis(100)).build_scoped().unwrap();
    {
        let dropped = &dropped;
        group
            .spawn(async move {
                let _flag = DropFlag(dropped);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await;
    }
    let err = group.wait().await.unwrap_err();
    assert!(is::<DeadlineExceeded>(&*err), "{err}");
    assert_eq!(find::<Cancelled>(&*err).unwrap().unfinished(), 1);
    assert!(dropped.load(Ordering::SeqCst));
}

/// A scoped group dropped without `wait` drops its tasks; nothing runs on.
#[tokio::test]
async fn dropping_the_group_drops_its_tasks() {
    let dropped = AtomicBool::new(false);
    let mut group = Group::<BoxError>::builder().build_scoped().unwrap();
    let token = group.token();
    group.spawn(pending_until_dropped(&dropped)).await;
    drop(group);
    assert!(dropped.load(Ordering::SeqCst));
    assert!(token.is_cancelled());
}

/// A parent's cancel reaches the scoped group's tasks while it waits; the
/// unfinished work is reported as `Cancelled` with the parent as cause.
#[tokio::test]
async fn a_parent_cancel_stops_the_tasks() {
    let parent = tokio_util::sync::CancellationToken::new();
    let stopping = parent.clone();
    let mut group = Group::<BoxError>::builder().parent(&parent).build_scoped().unwrap();
    let cancellation = group.cancellation();
    group.spawn(std::future::pending()).await;
    group
        .spawn(async move {
            stopping.cancel();
            Ok(())
        })
        .await;
    let err = group.wait().await.unwrap_err();
    assert_eq!(find::<Cancelled>(&*err).unwrap().unfinished(), 1);
    assert_eq!(cancellation.cause(), Some(CancelCause::Parent));
}
