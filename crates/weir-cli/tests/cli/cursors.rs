//! `weir cursors list | show | reset`.

use super::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_listed_shown_and_reset() {
    for target in targets("cursors_are_listed_shown_and_reset").await {
        target.store.save_cursor("orders.jsonl", &json!({"line": 7, "offset": 812})).await.unwrap();
        target.store.save_cursor("events", &json!({"seq": 42})).await.unwrap();

        let listed = json(&target, &["cursors", "list"]).await;
        let names: Vec<&str> =
            listed["cursors"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["events", "orders.jsonl"]);
        let table = ok(&target, &["cursors", "list"]).await;
        assert!(table.starts_with("NAME") && table.contains(r#"{"line":7,"offset":812}"#), "{table}");

        let shown = json(&target, &["cursors", "show", "orders.jsonl"]).await;
        assert_eq!(shown["position"], json!({"line": 7, "offset": 812}));
        assert!(ok(&target, &["cursors", "show", "events"]).await.contains("\"seq\": 42"));

        assert!(ok(&target, &["cursors", "reset", "orders.jsonl"]).await.contains("starts from the beginning"));
        assert_eq!(target.store.cursor("orders.jsonl").await.unwrap(), None);
        let again = fails(&target, &["cursors", "reset", "orders.jsonl"], 6).await;
        assert!(again.contains("no cursor named orders.jsonl") && again.contains("weir cursors list"), "{again}");
        fails(&target, &["cursors", "show", "orders.jsonl"], 6).await;
    }
}
