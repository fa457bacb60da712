//! The pages of the guide in `docs/guide/src`, one doc-only item each, so
//! that `cargo test --doc` compiles and runs every Rust block in the book:
//! the guide cannot drift from the API. Compiled only for doc tests.

macro_rules! pages {
    ($($item:ident => $path:literal),* $(,)?) => {
        $(
            #[doc = include_str!(concat!("../../../docs/guide/src/", $path))]
            pub struct $item;
        )*
    };
}

pages! {
    Introduction => "introduction.md",
    GettingStarted => "getting-started.md",
    Task01 => "tasks/01-sum.md",
    Task02 => "tasks/02-negative.md",
    Task03 => "tasks/03-fetch-all.md",
    Task04 => "tasks/04-drain.md",
    Task05 => "tasks/05-retry.md",
    Task06 => "tasks/06-skip.md",
    Task07 => "tasks/07-fan-out.md",
    Task08 => "tasks/08-aggregate.md",
    Task09 => "tasks/09-stage-error.md",
    Task10 => "tasks/10-deadline.md",
    Task11 => "tasks/11-saga.md",
    Task12 => "tasks/12-durable-saga.md",
    Task13 => "tasks/13-panic.md",
    Task14 => "tasks/14-bulkhead.md",
    Task15 => "tasks/15-breaker.md",
    Task16 => "tasks/16-dead-letters.md",
    Task17 => "tasks/17-cursor.md",
    Task18 => "tasks/18-hedge.md",
    Task19 => "tasks/19-batch.md",
    Task20 => "tasks/20-integration.md",
    Bonus1 => "tasks/b1-typed-errors.md",
    Bonus2 => "tasks/b2-find-the-leak.md",
    Bonus3 => "tasks/b3-fault-campaign.md",
    Bonus4 => "tasks/b4-tiny-errgroup.md",
    Bonus5 => "tasks/b5-drain-timing.md",
    Mistakes => "mistakes.md",
    Discussion => "discussion.md",
    Rubric => "rubric.md",
    FromGo => "from-go.md",
}
