//! Behaviour of `weir::policy::retry` (seed task 5), on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir::policy::retry::{Jitter, RetryBudget, RetryPolicy};

#[derive(Debug, PartialEq)]
enum Failure {
    Transient,
    Permanent,
}

fn exact(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder().max_attempts(attempts).jitter(Jitter::None).build().unwrap()
}

/// Seed task 5's fake process: fails the first two times, then succeeds.
#[tokio::test(start_paused = true)]
async fn fails_twice_then_succeeds_with_exponential_waits() {
    let calls = AtomicU32::new(0);
    let started = Instant::now();
    let value = exact(3)
        .call(|| async { if calls.fetch_add(1, Ordering::SeqCst) < 2 { Err(Failure::Transient) } else { Ok("done") } })
        .await
        .unwrap();
    assert_eq!(value, "done");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(started.elapsed(), Duration::from_millis(100 + 200), "waited 100 ms, then 200 ms");
}

#[tokio::test(start_paused = true)]
async fn exhaustion_reports_the_attempts_and_the_last_error() {
    let calls = AtomicU32::new(0);
    let err = exact(3)
        .call(|| async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(format!("failure {n}"))
        })
        .await
        .unwrap_err();
    assert!(err.is_exhausted());
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.last().map(String::as_str), Some("failure 2"));
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let calls = AtomicU32::new(0);
    let err = exact(5)
        .call_if(
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Failure::Permanent)
            },
            |e| *e == Failure::Transient,
        )
        .await
        .unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn cancellation_ends_the_wait_between_attempts() {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let err = exact(10)
        .call_cancellable(Some(&token), || async { Err::<(), _>(Failure::Transient) }, |_| true)
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.attempts(), 1);
    assert_eq!(started.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_before_an_attempt_that_would_start_too_late() {
    let policy = RetryPolicy::builder()
        .max_attempts(100)
        .jitter(Jitter::None)
        .max_elapsed(Duration::from_millis(1000))
        .build()
        .unwrap();
    let err = policy.call(|| async { Err::<(), _>(Failure::Transient) }).await.unwrap_err();
    assert!(err.is_elapsed());
    // Waits 100 + 200 + 400 = 700 ms; the next 800 ms would pass the limit.
    assert_eq!(err.attempts(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_budget_caps_retries_at_a_share_of_calls() {
    let budget = Arc::new(RetryBudget::new(0.1, 0));
    let policy = RetryPolicy::builder().max_attempts(3).jitter(Jitter::None).budget(budget).build().unwrap();
    let attempts = AtomicU32::new(0);
    let mut budget_errors = 0;
    for _ in 0..100 {
        let result = policy
            .call(|| async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Failure::Transient)
            })
            .await;
        if result.unwrap_err().is_budget_exhausted() {
            budget_errors += 1;
        }
    }
    let retries = attempts.load(Ordering::SeqCst) - 100;
    assert!((9..=10).contains(&retries), "100 calls at 10% buy about 10 retries, got {retries}");
    assert!(budget_errors >= 90);
}

/// The limit on elapsed time is inclusive: an attempt that would start
/// exactly at the limit still runs.
#[tokio::test(start_paused = true)]
async fn an_attempt_starting_exactly_at_max_elapsed_still_runs() {
    let policy = RetryPolicy::builder()
        .max_attempts(100)
        .jitter(Jitter::None)
        .max_elapsed(Duration::from_millis(700))
        .build()
        .unwrap();
    let err = policy.call(|| async { Err::<(), _>(Failure::Transient) }).await.unwrap_err();
    // Attempts at 0, 100, 300 and 700 ms; the next would start at 1500 ms.
    assert_eq!(err.attempts(), 4);
    assert!(err.is_elapsed());
}

#[tokio::test(start_paused = true)]
async fn never_makes_one_attempt() {
    let policy = RetryPolicy::never();
    assert_eq!(policy.max_attempts(), 1);
    assert_eq!(RetryPolicy::builder().max_attempts(7).build().unwrap().max_attempts(), 7);
    let err = policy.call(|| async { Err::<(), _>(Failure::Transient) }).await.unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert!(err.is_exhausted());
}

#[test]
fn bad_settings_are_configuration_errors_naming_the_setting() {
    let zero = RetryPolicy::builder().max_attempts(0).build().unwrap_err();
    assert_eq!(zero.setting(), "retry max_attempts");
    let shrinking = RetryPolicy::builder().multiplier(0.5).build().unwrap_err();
    assert_eq!(shrinking.setting(), "retry multiplier");
    let inverted = RetryPolicy::builder()
        .initial_delay(Duration::from_secs(2))
        .max_delay(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert!(inverted.to_string().contains("raise max_delay"), "{inverted}");
    let flat = RetryPolicy::builder().initial_delay(Duration::from_secs(1)).max_delay(Duration::from_secs(1)).build();
    assert!(flat.is_ok(), "a maximum equal to the initial delay is a constant backoff");
    assert!(RetryPolicy::builder().multiplier(1.0).build().is_ok());
}

/// Each way of giving up answers exactly one `is_*`, says so in its
/// message with the attempt count, and keeps the last error as `source()`.
#[tokio::test(start_paused = true)]
async fn every_way_of_giving_up_is_told_apart() {
    let down = || async { Err::<(), _>(std::io::Error::other("down")) };
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let policies = (
        RetryPolicy::never(),
        RetryPolicy::builder().max_elapsed(Duration::from_millis(1)).jitter(Jitter::None).build().unwrap(),
        RetryPolicy::builder().budget(Arc::new(RetryBudget::new(0.0, 0))).build().unwrap(),
    );
    let errors = [
        policies.0.call(down).await.unwrap_err(),
        exact(3).call_if(down, |_| false).await.unwrap_err(),
        policies.1.call(down).await.unwrap_err(),
        policies.2.call(down).await.unwrap_err(),
        exact(3).call_cancellable(Some(&cancelled), down, |_| true).await.unwrap_err(),
    ];
    let messages = [
        "gave up after 1 attempt: down",
        "permanent failure on attempt 1: down",
        "retry time limit reached after 1 attempt: down",
        "retry budget spent after 1 attempt: down",
        "cancelled while retrying after 1 attempt: down",
    ];
    for (i, (err, message)) in errors.into_iter().zip(messages).enumerate() {
        let answers =
            [err.is_exhausted(), err.is_permanent(), err.is_elapsed(), err.is_budget_exhausted(), err.is_cancelled()];
        let expected: Vec<bool> = (0..5).map(|j| j == i).collect();
        assert_eq!(answers.to_vec(), expected, "{err}");
        assert_eq!(err.to_string(), message);
        assert!(format!("{err:?}").starts_with("RetryError"), "{err:?}");
        assert_eq!(std::error::Error::source(&err).map(ToString::to_string).as_deref(), Some("down"));
        assert_eq!(err.into_last().map(|e| e.to_string()).as_deref(), Some("down"));
    }
    let twice = exact(2).call(down).await.unwrap_err();
    assert_eq!(twice.to_string(), "gave up after 2 attempts: down");
}

/// A budget's reserve buys exactly that many retries, one at a time.
#[tokio::test(start_paused = true)]
async fn a_budget_reserve_buys_exactly_its_retries() {
    let budget = Arc::new(RetryBudget::new(0.0, 3));
    let policy = RetryPolicy::builder().max_attempts(10).jitter(Jitter::None).budget(budget).build().unwrap();
    let err = policy.call(|| async { Err::<(), _>(Failure::Transient) }).await.unwrap_err();
    assert!(err.is_budget_exhausted());
    assert_eq!(err.attempts(), 4, "the first call and 3 retries");
}
