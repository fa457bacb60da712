//! `weir sagas list | show | resume | cancel | send-event | delete | prune`.

use std::time::Duration;

use super::*;
use weir::durable::store::SagaStatus;

/// Four completed orders, one compensated, one failed (its compensation
/// failed), one refund: listed with every filter, page by page, as a
/// table and as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_are_listed_by_filter_and_page_and_shown_whole() {
    for target in targets("sagas_are_listed_by_filter_and_page_and_shown_whole").await {
        let undo_fails = Arc::new(AtomicBool::new(false));
        let engine = engine(&target.store, undo_fails.clone());
        for i in 1..=4 {
            engine.run_with_id(&format!("o{i}"), "order", &"ok").await.unwrap();
        }
        engine.run_with_id("o5", "order", &"fail").await.unwrap_err();
        undo_fails.store(true, Ordering::SeqCst);
        engine.run_with_id("o6", "order", &"fail").await.unwrap_err();
        engine.run_with_id("r1", "refund", &serde_json::json!({"tenant": "acme"})).await.unwrap();

        let ids = |v: &serde_json::Value| -> Vec<String> {
            v["sagas"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
        };
        let all = json(&target, &["sagas", "list"]).await;
        assert_eq!(ids(&all).len(), 7);
        assert_eq!(all["next_after"], serde_json::Value::Null, "not a full page");
        assert_eq!(ids(&json(&target, &["sagas", "list", "--status", "failed"]).await), ["o6"]);
        assert_eq!(ids(&json(&target, &["sagas", "list", "--status", "compensated"]).await), ["o5"]);
        assert_eq!(ids(&json(&target, &["sagas", "list", "--definition", "refund"]).await), ["r1"]);
        assert_eq!(ids(&json(&target, &["sagas", "list", "--tenant", "acme"]).await), ["r1"]);
        assert!(ids(&json(&target, &["sagas", "list", "--tenant", "other"]).await).is_empty());
        assert_eq!(ids(&json(&target, &["sagas", "list", "--since", "1h"]).await).len(), 7);
        assert!(ids(&json(&target, &["sagas", "list", "--until", "1h"]).await).is_empty());
        assert!(ids(&json(&target, &["sagas", "list", "--since", "2999-01-01T00:00:00Z"]).await).is_empty());

        // Pages of three, each after the last, give each saga once, in order.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut args = vec!["sagas", "list", "--limit", "3"];
            if let Some(after) = &after {
                args.extend(["--after", after.as_str()]);
            }
            let page = json(&target, &args).await;
            paged.extend(ids(&page));
            match page["next_after"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(paged, ids(&all));

        // For people: a table with a header, one row per saga, and how to go on.
        let table = ok(&target, &["sagas", "list", "--limit", "2"]).await;
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID") && lines[0].contains("STATUS"), "{table}");
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[3].contains(&format!("--after {}", ids(&all)[1])), "{table}");

        let failed = json(&target, &["sagas", "show", "o6"]).await;
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["input"], "fail");
        assert_eq!(failed["steps"][0]["status"], "compensation_failed");
        assert_eq!(failed["steps"][0]["output"], serde_json::json!({"bin": 4}));
        assert_eq!(failed["steps"][1]["error"], "no courier");
        let text = ok(&target, &["sagas", "show", "o6"]).await;
        assert!(text.contains("saga o6 (order): failed") && text.contains("warehouse down"), "{text}");
        let missing = fails(&target, &["sagas", "show", "nope"], 6).await;
        assert!(missing.contains("no saga nope") && missing.contains("weir sagas list"), "{missing}");
        fails(&target, &["sagas", "list", "--after", "nope"], 6).await;
    }
}

/// A failed saga resumed from the command is compensated by the
/// application's next resume; finished sagas and sagas a live worker holds
/// are refused with exit 7, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_saga_is_resumed_and_others_are_refused_with_the_reason() {
    for target in targets("a_failed_saga_is_resumed_and_others_are_refused_with_the_reason").await {
        let undo_fails = Arc::new(AtomicBool::new(true));
        let engine = engine(&target.store, undo_fails.clone());
        engine.run_with_id("o1", "order", &"fail").await.unwrap_err();
        engine.run_with_id("o2", "order", &"ok").await.unwrap();

        let refused = fails(&target, &["sagas", "resume", "o2"], 7).await;
        assert!(refused.contains("o2 is completed") && refused.contains("only a failed saga"), "{refused}");
        fails(&target, &["sagas", "resume", "nope"], 6).await;

        let said = ok(&target, &["sagas", "resume", "o1"]).await;
        assert!(said.contains("back to compensating"), "{said}");
        assert_eq!(target.store.saga("o1").await.unwrap().unwrap().status, SagaStatus::Compensating);
        undo_fails.store(false, Ordering::SeqCst);
        let report = engine.resume().await.unwrap();
        assert_eq!(report.compensated, 1, "{report:?}");
        assert_eq!(target.store.saga("o1").await.unwrap().unwrap().status, SagaStatus::Compensated);

        // A saga in flight on a live worker is that worker's.
        let gate = Arc::new(tokio::sync::Notify::new());
        let slow = SagaDefinition::builder("slow")
            .step(
                "wait",
                {
                    let gate = gate.clone();
                    move |_| {
                        let gate = gate.clone();
                        async move {
                            gate.notified().await;
                            Ok::<_, StepError>(())
                        }
                    }
                },
                |_| async { Ok(()) },
            )
            .build()
            .unwrap();
        let worker = SagaEngine::builder(target.store.clone()).definition(slow).build().unwrap();
        let running = tokio::spawn(async move { worker.run_with_id("s1", "slow", &()).await });
        while target.store.saga("s1").await.unwrap().is_none_or(|s| s.lease_until.is_none()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let held = fails(&target, &["sagas", "resume", "s1"], 7).await;
        assert!(held.contains("s1 is running on worker") && held.contains("lease runs until"), "{held}");
        gate.notify_one();
        running.await.unwrap().unwrap();
    }
}

/// `cancel` stores the request (the application's next worker carries it
/// out), refuses an ended saga; `delete` takes ended sagas only, all or
/// none; `prune` deletes by status and age, keeping failed ones unless
/// named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_are_cancelled_deleted_and_pruned() {
    for target in targets("sagas_are_cancelled_deleted_and_pruned").await {
        let undo_fails = Arc::new(AtomicBool::new(false));
        let engine = engine(&target.store, undo_fails.clone());
        engine.run_with_id("done", "order", &"ok").await.unwrap();
        engine.run_with_id("rolled", "order", &"fail").await.unwrap_err();
        undo_fails.store(true, Ordering::SeqCst);
        engine.run_with_id("broken", "order", &"fail").await.unwrap_err();
        undo_fails.store(false, Ordering::SeqCst);
        engine.submit("waiting", "order", &"ok").await.unwrap();
        let far = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
        engine.run_with_deadline("timed", "order", &"ok", far).await.unwrap();
        let timed = json(&target, &["sagas", "show", "timed"]).await;
        assert_eq!(timed["deadline"], "2100-01-01T00:00:00Z");
        assert!(ok(&target, &["sagas", "show", "timed"]).await.contains("deadline: 2100-01-01T00:00:00Z"));

        let asked = ok(&target, &["sagas", "cancel", "waiting", "--reason", "duplicate order"]).await;
        assert!(asked.contains("cancel requested") && asked.contains("no worker holds it"), "{asked}");
        let shown = ok(&target, &["sagas", "show", "waiting"]).await;
        assert!(shown.contains("cancel requested: duplicate order"), "{shown}");
        let refused = fails(&target, &["sagas", "cancel", "done"], 7).await;
        assert!(refused.contains("completed") && refused.contains("only a running saga"), "{refused}");
        fails(&target, &["sagas", "cancel", "nope"], 6).await;

        let busy = fails(&target, &["sagas", "delete", "done", "waiting"], 7).await;
        assert!(busy.contains("saga waiting is running") && busy.contains("nothing was deleted"), "{busy}");
        assert!(target.store.saga("done").await.unwrap().is_some());

        // The application's next worker carries the cancel out.
        let report = engine.resume().await.unwrap();
        assert_eq!(report.compensated, 1, "{report:?}");
        let waiting = json(&target, &["sagas", "show", "waiting"]).await;
        assert_eq!(
            (waiting["status"].as_str(), waiting["cancel_requested"].as_str()),
            (Some("compensated"), Some("duplicate order"))
        );

        assert!(ok(&target, &["sagas", "delete", "done"]).await.contains("1 saga(s) deleted"));
        fails(&target, &["sagas", "delete", "done"], 6).await;
        let pruned = ok(&target, &["sagas", "prune", "--before", "2999-01-01T00:00:00Z"]).await;
        assert!(pruned.contains("3 saga(s) deleted (completed, compensated"), "{pruned}");
        assert!(target.store.saga("broken").await.unwrap().is_some(), "failed ones wait for a person");
        let failed = ok(&target, &["sagas", "prune", "--before", "2999-01-01T00:00:00Z", "--status", "failed"]).await;
        assert!(failed.contains("1 saga(s) deleted"), "{failed}");
    }
}

/// `send-event` stores an event for a saga that waits for it (shown by
/// `show`: what it waits for, until when, and the events with who took
/// them); the application's worker takes it. Bad JSON, a missing saga
/// and an ended one are refused with their exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_waiting_for_an_event_are_shown_and_sent_one() {
    use weir::durable::saga::{OnTimeout, SagaDefinition, SagaEngine, StepError};
    for target in targets("sagas_waiting_for_an_event_are_shown_and_sent_one").await {
        let refund = SagaDefinition::builder("refund")
            .wait_event("approval", "approved", Duration::from_secs(3600), OnTimeout::Compensate)
            .step_without_compensation("pay", |_| async { Ok::<_, StepError>(()) })
            .build()
            .unwrap();
        let engine = SagaEngine::builder(target.store.clone()).definition(refund).build().unwrap();
        assert!(engine.run_with_id("r-1", "refund", &()).await.unwrap_err().is_suspended());

        let shown = ok(&target, &["sagas", "show", "r-1"]).await;
        assert!(shown.contains("waiting in step `approval` for event `approved` until"), "{shown}");
        let bad = fails(&target, &["sagas", "send-event", "r-1", "approved", "--payload", "ana"], 2).await;
        assert!(bad.contains("not JSON") && bad.contains("quote a string"), "{bad}");
        let sent = ok(&target, &["sagas", "send-event", "r-1", "approved", "--payload", r#"{"by":"ana"}"#]).await;
        assert!(sent.contains("event #1 `approved` stored for saga r-1"), "{sent}");

        // The application's worker (its waker polls the store) takes it.
        for _ in 0..500 {
            if target.store.saga("r-1").await.unwrap().unwrap().status == SagaStatus::Completed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let done = json(&target, &["sagas", "show", "r-1"]).await;
        assert_eq!(done["status"], "completed");
        assert_eq!(done["events"][0]["consumed_by"], "approval");
        assert_eq!(done["events"][0]["payload"]["by"], "ana");
        assert!(ok(&target, &["sagas", "show", "r-1"]).await.contains("TAKEN BY"));

        // Schedules: fired up to a time, listed by name.
        let every = weir::durable::saga::SagaSchedule::new("hourly", "0 * * * *", "refund").unwrap();
        let refund = SagaDefinition::builder("refund")
            .step_without_compensation("pay", |_| async { Ok::<_, StepError>(()) })
            .build()
            .unwrap();
        let scheduled = SagaEngine::builder(target.store.clone()).definition(refund).schedule(every).build().unwrap();
        scheduled.resume().await.unwrap();
        let mut listed = serde_json::Value::Null;
        for _ in 0..200 {
            listed = json(&target, &["sagas", "schedules"]).await;
            if listed["schedules"][0]["name"] == "hourly" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(listed["schedules"][0]["name"], "hourly", "{listed}");
        assert!(ok(&target, &["sagas", "schedules"]).await.contains("FIRED UP TO"));

        let ended = fails(&target, &["sagas", "send-event", "r-1", "approved"], 7).await;
        assert!(ended.contains("is completed, so no step of it will take the event"), "{ended}");
        let missing = fails(&target, &["sagas", "send-event", "nobody", "approved"], 6).await;
        assert!(missing.contains("no saga nobody"), "{missing}");
    }
}

/// A parent waiting for its child saga, and the child, as `sagas show`
/// prints them: what the parent waits for, its children, the child's
/// parent; cancelling the parent rolls the child back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_with_a_child_show_it_and_a_cancel_rolls_it_back() {
    use weir::durable::saga::{OnTimeout, SagaDefinition, SagaEngine, StepError};
    for target in targets("sagas_with_a_child_show_it_and_a_cancel_rolls_it_back").await {
        let approval = SagaDefinition::builder("approval")
            .step("hold", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
            .wait_event("signed", "signed", Duration::from_secs(3600), OnTimeout::Compensate)
            .build()
            .unwrap();
        let contract = SagaDefinition::builder("contract").child("approve", "approval", |_| Ok(())).build().unwrap();
        let engine =
            SagaEngine::builder(target.store.clone()).definition(approval).definition(contract).build().unwrap();
        assert!(engine.run_with_id("k-1", "contract", &()).await.unwrap_err().is_suspended());

        let parent = ok(&target, &["sagas", "show", "k-1"]).await;
        assert!(parent.contains("waiting in step `approve` for child saga k-1/approve to end"), "{parent}");
        assert!(parent.contains("children: k-1/approve (step `approve`)"), "{parent}");
        let child = ok(&target, &["sagas", "show", "k-1/approve"]).await;
        assert!(child.contains("parent: k-1"), "{child}");
        assert_eq!(json(&target, &["sagas", "show", "k-1/approve"]).await["parent"], "k-1");

        // The operator cancels the parent; a worker of the application
        // (here: this engine's waker) rolls both back.
        ok(&target, &["sagas", "cancel", "k-1", "--reason", "withdrawn"]).await;
        for _ in 0..500 {
            if target.store.saga("k-1").await.unwrap().unwrap().status == SagaStatus::Compensated {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(json(&target, &["sagas", "show", "k-1"]).await["status"], "compensated");
        assert_eq!(json(&target, &["sagas", "show", "k-1/approve"]).await["status"], "compensated");
    }
}
