//! `weir dlq list | show | replay | purge`, on queues of any item type.

use super::*;
use serde_json::json;
use weir::durable::dlq::{DeadLetterQueue, Envelope};
use weir::durable::store::LetterQuery;

/// What an application parks: lines (strings) with tenants and an error
/// chain, and batches (numbers).
async fn park(store: &Store) -> Vec<u64> {
    let lines = store.dead_letters::<String>("lines");
    let mut ids = Vec::new();
    for i in 0..4 {
        let mut letter = Envelope::new(format!("line {i}"), if i < 3 { "parse" } else { "charge" }, 2);
        letter.tenant = Some(format!("t{}", i % 2));
        letter.error_chain = vec![format!("line {i} is bad"), "expected a JSON object".into()];
        ids.push(lines.push(letter).await.unwrap());
    }
    store.dead_letters::<Vec<u32>>("batches").push(Envelope::new(vec![1, 2, 3], "flush", 3)).await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_letters_are_listed_filtered_and_shown_as_json() {
    for target in targets("queues_and_letters_are_listed_filtered_and_shown_as_json").await {
        let ids = park(&target.store).await;
        let queues = json(&target, &["dlq", "list"]).await;
        let counts: Vec<(String, u64)> = queues["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| (q["name"].as_str().unwrap().to_owned(), q["letters"].as_u64().unwrap()))
            .collect();
        assert_eq!(counts, [("batches".to_owned(), 1), ("lines".to_owned(), 4)]);
        assert!(ok(&target, &["dlq", "list"]).await.starts_with("QUEUE"));

        let items = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            v["letters"].as_array().unwrap().iter().map(|l| l["item"].clone()).collect()
        };
        let t1 = json(&target, &["dlq", "list", "lines", "--tenant", "t1"]).await;
        assert_eq!(items(&t1), [json!("line 1"), json!("line 3")]);
        let charge = json(&target, &["dlq", "list", "lines", "--stage", "charge"]).await;
        assert_eq!(items(&charge), [json!("line 3")]);
        let first = ids[0].to_string();
        let page = json(&target, &["dlq", "list", "lines", "--after", &first, "--limit", "2"]).await;
        assert_eq!(items(&page), [json!("line 1"), json!("line 2")]);
        assert_eq!(page["next_after"], json!(ids[2]));
        let batch = json(&target, &["dlq", "list", "batches"]).await;
        assert_eq!(items(&batch), [json!([1, 2, 3])]);

        let shown = json(&target, &["dlq", "show", "lines", &format!("#{}", ids[1])]).await;
        assert_eq!(shown["item"], "line 1");
        assert_eq!(shown["error_chain"], json!(["line 1 is bad", "expected a JSON object"]));
        assert_eq!((shown["tenant"].as_str(), shown["attempts"].as_u64()), (Some("t1"), Some(2)));
        let text = ok(&target, &["dlq", "show", "lines", &ids[1].to_string()]).await;
        assert!(
            text.contains("failed in stage `parse` after 2 attempt(s)") && text.contains("  expected a JSON object"),
            "{text}"
        );

        let missing = fails(&target, &["dlq", "show", "lines", "999"], 6).await;
        assert!(missing.contains("no letter #999 in lines"), "{missing}");
        let unknown = fails(&target, &["dlq", "list", "nope"], 6).await;
        assert!(unknown.contains("queues with letters: batches, lines"), "{unknown}");
    }
}

/// A replay marks letters; the application finds the marked ones. A
/// purge deletes; purging a whole queue needs --yes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_are_marked_for_the_application_to_replay_and_purged() {
    for target in targets("letters_are_marked_for_the_application_to_replay_and_purged").await {
        let ids = park(&target.store).await;
        let said = ok(&target, &["dlq", "replay", "lines", &ids[0].to_string(), &ids[2].to_string()]).await;
        assert!(said.contains("2 letter(s) of lines marked for replay"), "{said}");
        let lines = target.store.dead_letters::<String>("lines");
        let marked = lines.find(&LetterQuery::new().replay_requested(true)).await.unwrap();
        assert_eq!(marked.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[0], ids[2]]);
        let listed = json(&target, &["dlq", "list", "lines", "--marked"]).await;
        assert_eq!(listed["letters"].as_array().unwrap().len(), 2);
        assert_eq!(json(&target, &["dlq", "list"]).await["queues"][1]["replay_requested"], 2);
        // An id that is not there marks nothing, and says so.
        fails(&target, &["dlq", "replay", "lines", "999"], 6).await;
        assert_eq!(lines.find(&LetterQuery::new().replay_requested(true)).await.unwrap().len(), 2);
        assert!(ok(&target, &["dlq", "replay", "lines", "--all"]).await.contains("4 letter(s)"));

        ok(&target, &["dlq", "purge", "lines", &ids[3].to_string()]).await;
        assert_eq!(lines.count().await.unwrap(), 3);
        let unconfirmed = fails(&target, &["dlq", "purge", "lines", "--all"], 2).await;
        assert!(unconfirmed.contains("--yes"), "{unconfirmed}");
        assert_eq!(lines.count().await.unwrap(), 3);
        ok(&target, &["dlq", "purge", "lines", "--all", "--yes"]).await;
        assert_eq!(lines.count().await.unwrap(), 0);
        fails(&target, &["dlq", "list", "lines"], 6).await;
        assert_eq!(
            target.store.dead_letters::<Vec<u32>>("batches").count().await.unwrap(),
            1,
            "other queues untouched"
        );
    }
}
