//! Property tests: aggregates keep every error; a pipeline's counts add up
//! for any mix of outcomes.

use proptest::prelude::*;
use weir::durable::store::redact_url;
use weir::error::{Errors, Origin, Skip};
use weir::pipeline::{OnError, Pipeline, Stage};

/// What the stage does with one item.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Pass,
    Drop,
    Skip,
    Fail,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![6 => Just(Fate::Pass), 1 => Just(Fate::Drop), 1 => Just(Fate::Skip), 1 => Just(Fate::Fail)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn an_aggregate_keeps_every_error_in_order(messages in proptest::collection::vec(".{0,12}", 0..40)) {
        let mut all = Errors::new();
        for m in &messages {
            all.push(Origin::Unattributed, m.clone());
        }
        prop_assert_eq!(all.len(), messages.len());
        prop_assert!(all.errors().eq(messages.iter()));
        let shown = all.to_string();
        prop_assert_eq!(shown.lines().count(), messages.len() + 1);
    }

    #[test]
    fn pipeline_counts_add_up_for_any_mix_of_outcomes(
        fates in proptest::collection::vec(fate(), 0..300),
        workers in 1usize..4,
        capacity in 1usize..40,
        ordered: bool,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let expected_out: Vec<usize> = fates.iter().enumerate().filter(|(_, f)| matches!(f, Fate::Pass)).map(|(i, _)| i).collect();
        let count = |want: fn(&Fate) -> bool| fates.iter().filter(|f| want(f)).count() as u64;
        let (passed, dropped, skipped, failed) = (
            count(|f| matches!(f, Fate::Pass)),
            count(|f| matches!(f, Fate::Drop)),
            count(|f| matches!(f, Fate::Skip)),
            count(|f| matches!(f, Fate::Fail)),
        );
        let items: Vec<(usize, Fate)> = fates.iter().copied().enumerate().collect();
        let mut stage = Stage::try_map("fate", |(i, fate): (usize, Fate)| async move {
            tokio::task::yield_now().await;
            match fate {
                Fate::Pass => Ok(Some(i)),
                Fate::Drop => Ok(None),
                Fate::Skip => Err(Box::new(Skip) as weir::error::BoxError),
                Fate::Fail => Err(format!("item {i} failed").into()),
            }
        })
        .workers(workers)
        .on_error(OnError::Collect);
        if ordered {
            stage = stage.ordered();
        }
        let result = rt.block_on(
            Pipeline::builder()
                .capacity(capacity)
                .from_iter(items)
                .stage(stage)
                .stage(Stage::filter("some", |o: &Option<usize>| o.is_some()))
                .map("unwrap", |o: Option<usize>| async move { o.unwrap_or_default() })
                .collect(),
        );
        let (mut out, report) = match result {
            Ok((out, report)) => (out, report),
            Err(err) => {
                prop_assert_eq!(err.collected().map(|c| c.len() as u64), Some(failed));
                (Vec::new(), err.report().clone())
            }
        };
        prop_assert!(report.is_balanced(), "{}", report);
        let stage = report.stage("fate").unwrap();
        prop_assert_eq!((stage.received, stage.emitted, stage.skipped, stage.failed), (fates.len() as u64, passed + dropped, skipped, failed));
        prop_assert_eq!(report.stage("some").unwrap().filtered, dropped);
        if failed == 0 {
            if !ordered && workers > 1 {
                out.sort_unstable();
            }
            prop_assert_eq!(out, expected_out);
        }
    }
}

mod breaker_model {
    use std::time::Duration;

    use proptest::prelude::*;
    use weir::policy::breaker::{Breaker, State};

    /// What a caller does next.
    #[derive(Debug, Clone, Copy)]
    pub enum Op {
        Succeed,
        Fail,
        Wait(u64),
    }

    pub fn op() -> impl Strategy<Value = Op> {
        prop_oneof![3 => Just(Op::Succeed), 3 => Just(Op::Fail), 1 => (1u64..40).prop_map(Op::Wait)]
    }

    /// The specification: consecutive failures open it; open rejects until
    /// the duration passed; then one probe decides.
    #[derive(Debug, Default)]
    pub struct Model {
        pub state: Option<u64>, // None = closed; Some(opened_at_secs) = open
        pub failures: u32,
        pub now: u64,
        pub half_open: bool,
    }

    impl Model {
        /// Whether the call is admitted, and the state afterwards.
        pub fn call(&mut self, fail: bool, threshold: u32, open_for: u64) -> bool {
            if let Some(opened) = self.state {
                if self.now < opened + open_for {
                    return false;
                }
                self.half_open = true;
            }
            if self.half_open {
                self.half_open = false;
                if fail {
                    self.state = Some(self.now);
                } else {
                    self.state = None;
                    self.failures = 0;
                }
                return true;
            }
            if fail {
                self.failures += 1;
                if self.failures >= threshold {
                    self.state = Some(self.now);
                    self.failures = 0;
                }
            } else {
                self.failures = 0;
            }
            true
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The breaker admits and rejects exactly as the model says, and its
        /// state matches, for any sequence of successes, failures and waits.
        #[test]
        fn the_breaker_follows_its_model(ops in proptest::collection::vec(op(), 1..120), threshold in 1u32..6, open_for in 1u64..30) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            rt.block_on(async {
                let breaker = Breaker::builder().consecutive_failures(threshold).open_for(Duration::from_secs(open_for)).build().unwrap();
                let mut model = Model::default();
                for op in ops {
                    match op {
                        Op::Wait(secs) => {
                            tokio::time::advance(Duration::from_secs(secs)).await;
                            model.now += secs;
                        }
                        Op::Succeed | Op::Fail => {
                            let fail = matches!(op, Op::Fail);
                            let expected = model.call(fail, threshold, open_for);
                            let admitted = match breaker.try_acquire() {
                                Ok(permit) => {
                                    if fail { permit.failure() } else { permit.success() }
                                    true
                                }
                                Err(_) => false,
                            };
                            prop_assert_eq!(admitted, expected, "model {:?}", model);
                            let open = matches!(breaker.state(), State::Open);
                            prop_assert_eq!(open, model.state.is_some(), "model {:?}, breaker {:?}", model, breaker.state());
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
}

mod batcher_model {
    use std::time::Duration;

    use futures_util::StreamExt;
    use proptest::prelude::*;
    use weir::pipeline::batch::Batcher;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        /// Batches are never empty, never larger than the limit, keep the
        /// order, and lose nothing, whatever the gaps between items.
        #[test]
        fn batches_keep_everything_in_order(gaps in proptest::collection::vec(0u64..1500, 0..300), max in 1usize..50) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            let batches: Vec<Vec<usize>> = rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel(8);
                let gaps2 = gaps.clone();
                tokio::spawn(async move {
                    for (i, gap) in gaps2.into_iter().enumerate() {
                        tokio::time::sleep(Duration::from_millis(gap)).await;
                        tx.send(i).await.unwrap();
                    }
                });
                let input = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
                Batcher::builder().max_items(max).max_wait(Duration::from_secs(1)).build().unwrap().batches(input).collect().await
            });
            prop_assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= max));
            prop_assert_eq!(batches.concat(), (0..gaps.len()).collect::<Vec<_>>());
        }
    }
}

// The `redact_url` fuzz target's property (fuzz/fuzz_targets/redact_url.rs).
proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_password_in_a_database_url_is_always_redacted(
        anything in any::<String>(),
        password in "[^@/?#&]{1,24}",
        host in "[a-z0-9.:/]{0,30}",
    ) {
        let _ = redact_url(&anything); // never panics
        let redacted = redact_url(&format!("postgres://user:{password}@{host}"));
        prop_assert_eq!(redacted, format!("postgres://user:***@{host}"));
        let redacted = redact_url(&format!("postgres://db.internal/app?sslmode=disable&password={password}"));
        prop_assert_eq!(redacted, "postgres://db.internal/app?sslmode=disable&password=***");
    }
}
