//! Seed task 10: 100 items of ~100 ms each under a 5 s deadline: with 10
//! workers the run completes (~1 s); with 1 worker it hits the deadline
//! and the error answers `is::<DeadlineExceeded>`. Runs on tokio's paused
//! clock, so it takes milliseconds of real time.

use std::time::Duration;

use weir::error::{DeadlineExceeded, is};
use weir::pipeline::{Pipeline, PipelineError, Report, Stage};

async fn run(workers: usize) -> Result<Report, PipelineError> {
    Pipeline::builder()
        .timeout(Duration::from_secs(5))
        .from_iter(0..100u32)
        .stage(
            Stage::map("work", |n: u32| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                n
            })
            .workers(workers),
        )
        .for_each(|_| async { Ok::<(), std::convert::Infallible>(()) })
        .await
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let report = run(10).await.expect("10 workers finish in time");
    println!("10 workers: {} items in {:?} (virtual time)", report.sink_received, report.elapsed);
    let err = run(1).await.unwrap_err();
    println!("1 worker: {err} ({} items done)", err.report().sink_received);
    assert!(is::<DeadlineExceeded>(&err));
    assert!(report.elapsed < Duration::from_secs(5));
}
