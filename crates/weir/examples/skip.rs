//! Seed task 6: empty strings are skipped with the `Skip` sentinel; they
//! are counted, never treated as failures.

use weir::error::Skip;
use weir::pipeline::{Pipeline, Stage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let words = ["alpha", "", "beta", "", "gamma"].map(String::from);
    let (out, report) = Pipeline::from_iter(words)
        .stage(Stage::try_map("non-empty", |w: String| async move { if w.is_empty() { Err(Skip) } else { Ok(w) } }))
        .map("shout", |w: String| async move { w.to_uppercase() })
        .collect()
        .await?;
    println!("kept: {out:?}");
    println!("{report}");
    assert_eq!(out, ["ALPHA", "BETA", "GAMMA"]);
    let stage = report.stage("non-empty").expect("the stage is in the report");
    assert_eq!((stage.skipped, stage.failed), (2, 0));
    assert!(report.is_balanced());
    Ok(())
}
