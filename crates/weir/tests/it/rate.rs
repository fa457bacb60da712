//! Behaviour of `weir::policy::rate`: pacing, bursts, refusals, keys, on paused
//! time.

use std::time::Duration;

use tokio::time::Instant;
use weir::error::{BoxError, find};
use weir::policy::rate::{RateLimited, RateLimiter};
use weir::policy::retry::is_transient;

fn per_second(calls: u32, burst: u32) -> RateLimiter {
    RateLimiter::builder().rate(calls, Duration::from_secs(1)).burst(burst).name("api").build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn calls_are_paced_at_the_rate_after_the_burst() {
    let limiter = per_second(10, 3);
    let started = Instant::now();
    let mut admitted_at = Vec::new();
    for _ in 0..7 {
        limiter.acquire().await.unwrap();
        admitted_at.push(started.elapsed().as_millis());
    }
    assert_eq!(admitted_at, [0, 0, 0, 100, 200, 300, 400]);
    // After a quiet spell the burst is back, and no more than the burst.
    tokio::time::advance(Duration::from_secs(5)).await;
    for _ in 0..3 {
        limiter.try_acquire().unwrap();
    }
    let refused = limiter.try_acquire().unwrap_err();
    assert_eq!(refused.retry_after(), Duration::from_millis(100));
    assert_eq!(refused.limiter(), "api");
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_budget_across_tasks() {
    let limiter = per_second(5, 1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire().await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // 10 calls at 5/s, the first at once: the last at 1.8 s, never sooner.
    assert_eq!(started.elapsed(), Duration::from_millis(1800));
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_maximum_is_refused_at_once_and_takes_nothing() {
    let limiter =
        RateLimiter::builder().rate(1, Duration::from_secs(1)).max_wait(Duration::from_millis(500)).build().unwrap();
    limiter.acquire().await.unwrap();
    let started = Instant::now();
    let err = limiter.call(|| async { Ok::<_, BoxError>(()) }).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    let limited = find::<RateLimited>(&*err).expect("the refusal is a RateLimited");
    assert_eq!(limited.retry_after(), Duration::from_secs(1));
    assert!(is_transient(&*err), "a retry later can pass");
    // The refusal took no slot: the next is free at 1 s, as before.
    tokio::time::advance(Duration::from_millis(600)).await;
    let started = Instant::now();
    assert_eq!(limiter.call(|| async { Ok::<_, BoxError>(7) }).await.unwrap(), 7);
    assert_eq!(started.elapsed(), Duration::from_millis(400));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_never_lets_more_through_than_the_rate() {
    let limiter = per_second(1, 1);
    limiter.acquire().await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(100), limiter.acquire()).await;
    assert!(waiting.is_err(), "still waiting when dropped");
    // The dropped wait's slot (at 1 s) is spent: the next call gets 2 s.
    let started = Instant::now();
    limiter.acquire().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(1900));
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_budget_and_idle_keys_are_forgotten() {
    let limiter = RateLimiter::builder().rate(1, Duration::from_secs(1)).build_keyed::<String>().unwrap();
    limiter.try_acquire(&"a".to_string()).unwrap();
    let refused = limiter.try_acquire(&"a".to_string()).unwrap_err();
    assert_eq!(refused.limiter(), "a", "the refusal names the key");
    limiter.try_acquire(&"b".to_string()).unwrap();
    let started = Instant::now();
    limiter.acquire(&"a".to_string()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // One-off keys: swept once their budgets are full again.
    for i in 0..1000 {
        limiter.try_acquire(&format!("once-{i}")).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    assert!(limiter.keys() < 300, "{} keys kept", limiter.keys());
}

#[test]
fn settings_that_cannot_work_are_refused_at_build_time() {
    let unset = RateLimiter::builder().build().unwrap_err();
    assert!(unset.to_string().contains(".rate(calls, per)"), "{unset}");
    let zero = RateLimiter::builder().rate(0, Duration::from_secs(1)).build().unwrap_err();
    assert_eq!(zero.setting(), "rate limit");
    let instant = RateLimiter::builder().rate(5, Duration::ZERO).build().unwrap_err();
    assert!(instant.to_string().contains("positive period"), "{instant}");
    let no_burst = RateLimiter::builder().rate(5, Duration::from_secs(1)).burst(0).build().unwrap_err();
    assert_eq!(no_burst.setting(), "rate limit burst");
}
