//! Property tests: aggregates keep every error; a pipeline's counts add up
//! for any mix of outcomes.

use proptest::prelude::*;
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
