//! Model checks of the breaker's lock-free state machine: loom runs every
//! interleaving of the threads below. Run with
//! `RUSTFLAGS="--cfg weir_loom" cargo test -p weir --release --test loom_breaker`.
#![cfg(weir_loom)]

use std::time::Duration;

use loom::thread;
use weir::policy::breaker::{Breaker, State};

fn opens_after(failures: u32) -> Breaker {
    Breaker::builder().consecutive_failures(failures).open_for(Duration::ZERO).half_open_probes(1).build().unwrap()
}

/// Two callers race for the one probe slot of a half-open breaker: at most
/// one gets it.
#[test]
fn half_open_admits_at_most_the_permitted_probes() {
    loom::model(|| {
        let breaker = opens_after(1);
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), State::Open);
        let (a, b) = (breaker.clone(), breaker.clone());
        let ta = thread::spawn(move || a.try_acquire_owned().ok());
        let tb = thread::spawn(move || b.try_acquire_owned().ok());
        let (pa, pb) = (ta.join().unwrap(), tb.join().unwrap());
        assert!(pa.is_some() as u8 + pb.is_some() as u8 <= 1, "two probes admitted");
        assert!(pa.is_some() || pb.is_some(), "the open duration passed: one probe is admitted");
        for permit in [pa, pb].into_iter().flatten() {
            permit.success();
        }
        assert_eq!(breaker.state(), State::Closed);
    });
}

/// A failure that reaches the threshold races a success: the breaker ends
/// open exactly when it counted an opening, and no count is lost.
#[test]
fn a_racing_success_and_failure_leave_a_consistent_state() {
    loom::model(|| {
        let breaker = opens_after(2);
        breaker.try_acquire().unwrap().failure();
        let (ok, fail) = (breaker.try_acquire_owned().unwrap(), breaker.try_acquire_owned().unwrap());
        let ts = thread::spawn(move || ok.success());
        let tf = thread::spawn(move || fail.failure());
        ts.join().unwrap();
        tf.join().unwrap();
        let m = breaker.metrics();
        assert_eq!((m.successes, m.failures), (1, 2));
        assert_eq!(m.state == State::Open, m.openings == 1, "{m:?}");
        assert!(m.openings <= 1);
    });
}

/// A probe succeeds while a call admitted before the breaker opened fails
/// late: the stale failure must not reopen the breaker.
#[test]
fn a_stale_failure_never_reopens_after_a_probe_closes_it() {
    loom::model(|| {
        let breaker = opens_after(1);
        let stale = breaker.try_acquire_owned().unwrap();
        breaker.try_acquire().unwrap().failure(); // opens; `stale` is now of an old generation
        let probe = breaker.try_acquire_owned().unwrap(); // half-open probe
        let tp = thread::spawn(move || probe.success());
        let ts = thread::spawn(move || stale.failure());
        tp.join().unwrap();
        ts.join().unwrap();
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.metrics().openings, 1);
    });
}
