//! Behaviour of `weir::policy::timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir::error::{BoxError, TimedOut};
use weir::policy::timeout::Timeout;

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_dropped_and_reported_as_timed_out() {
    let timeout = Timeout::new(Duration::from_millis(100)).unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let started = tokio::time::Instant::now();
    let err = timeout
        .call(|| async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), BoxError>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), Duration::from_millis(100));
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert!(dropped.load(Ordering::SeqCst), "the inner work was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_fast_call_passes_through_with_its_own_result() {
    let timeout = Timeout::new(Duration::from_secs(1)).unwrap();
    assert_eq!(timeout.call(|| async { Ok::<_, BoxError>(5) }).await.unwrap(), 5);
    let err = timeout.call(|| async { Err::<(), BoxError>("own error".into()) }).await.unwrap_err();
    assert_eq!(err.to_string(), "own error");
}

#[test]
fn a_zero_timeout_is_a_configuration_error() {
    assert_eq!(Timeout::new(Duration::ZERO).unwrap_err().setting(), "timeout");
}

/// The timer is made only when a call first waits (`Bounded`), but the
/// deadline counts from when the call was made: a call whose first wait
/// comes 900 ms in has 100 ms left, not a second.
#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_the_call_not_from_its_first_wait() {
    let timeout = Timeout::new(Duration::from_secs(1)).unwrap();
    let started = tokio::time::Instant::now();
    let err = timeout
        .call(|| async {
            // Moves the paused clock before the call has waited at all.
            tokio::time::advance(Duration::from_millis(900)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<(), BoxError>(())
        })
        .await
        .unwrap_err();
    assert!(err.is::<TimedOut>(), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

/// A call that uses up its task's cooperative budget on every poll (a
/// busy stream, say) still times out: the timer is polled outside the
/// budget, as `tokio::time::timeout` does. Without that the timer could
/// never fire and this call would end `Ok` after its 100,000 rounds.
#[tokio::test(start_paused = true)]
async fn a_call_that_exhausts_the_task_budget_still_times_out() {
    let timeout = Timeout::new(Duration::from_secs(1)).unwrap();
    let result = timeout
        .call(|| async {
            for round in 0..100_000 {
                if round == 10 {
                    tokio::time::advance(Duration::from_secs(2)).await;
                }
                tokio::task::coop::consume_budget().await;
            }
            Ok::<(), BoxError>(())
        })
        .await;
    assert!(result.as_ref().is_err_and(|e| e.is::<TimedOut>()), "{result:?}");
}
