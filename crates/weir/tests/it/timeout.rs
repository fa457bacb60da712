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
