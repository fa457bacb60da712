//! `weir queues list | show | requeue`.

use super::*;
use serde_json::json;
use weir::durable::queue::{NewJob, WorkQueue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_listed_shown_and_their_dead_jobs_requeued() {
    for target in targets("queues_are_listed_shown_and_their_dead_jobs_requeued").await {
        let mail = WorkQueue::new(target.store.clone(), "mail");
        for n in 0..4 {
            mail.enqueue(NewJob::new(json!({ "n": n })).partition_key(format!("t{}", n % 2))).await.unwrap();
        }
        WorkQueue::new(target.store.clone(), "sagas").enqueue(NewJob::new(json!("x"))).await.unwrap();
        let claimed = mail.claim("worker-1", 3).await.unwrap();
        mail.complete(&claimed[0]).await.unwrap();
        mail.mark_dead(&claimed[1], "payload has no address").await.unwrap();
        let (done, dead, held) = (claimed[0].id, claimed[1].id, claimed[2].id);

        let listed = json(&target, &["queues", "list"]).await;
        assert_eq!(listed["queues"][0]["queue"], "mail");
        assert_eq!(
            listed["queues"][0]["counts"],
            json!({ "queued": 1, "claimed": 1, "done": 1, "skipped": 0, "failed": 0, "dead": 1 })
        );
        let table = ok(&target, &["queues", "list"]).await;
        assert!(table.starts_with("QUEUE") && table.contains("sagas"), "{table}");

        let jobs = json(&target, &["queues", "list", "mail", "--status", "dead"]).await;
        assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
        assert_eq!(jobs["jobs"][0]["last_error"], "payload has no address");
        let page = json(&target, &["queues", "list", "mail", "--limit", "2"]).await;
        assert_eq!(page["next_after"], json!(claimed[1].id));
        let tenant = json(&target, &["queues", "list", "mail", "--key", "t1"]).await;
        assert_eq!(tenant["jobs"].as_array().unwrap().len(), 2);
        let table = ok(&target, &["queues", "list", "mail"]).await;
        assert!(table.contains("payload has no address") && table.contains("{\"n\":1}"), "{table}");

        let shown = ok(&target, &["queues", "show", "mail", &held.to_string()]).await;
        assert!(shown.contains("claimed") && shown.contains("worker-1 until"), "{shown}");
        assert_eq!(json(&target, &["queues", "show", "mail", &dead.to_string()]).await["status"], "dead");

        let refused = fails(&target, &["queues", "requeue", "mail", &done.to_string(), &dead.to_string()], 7).await;
        assert!(refused.contains(&format!("job {done} is done")), "{refused}");
        assert_eq!(mail.job(dead).await.unwrap().unwrap().status.as_str(), "queued", "the dead one went back");

        fails(&target, &["queues", "list", "nope"], 6).await;
        let missing = fails(&target, &["queues", "show", "mail", "999"], 6).await;
        assert!(missing.contains("no job 999") && missing.contains("weir queues list mail"), "{missing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_requeue_all_puts_back_every_job_that_ended_badly() {
    for target in targets("queues_requeue_all_puts_back_every_job_that_ended_badly").await {
        let mail = WorkQueue::new(target.store.clone(), "mail");
        for n in 0..5 {
            mail.enqueue(NewJob::new(json!(n))).await.unwrap();
        }
        let claimed = mail.claim("w", 5).await.unwrap();
        mail.complete(&claimed[0]).await.unwrap();
        mail.mark_dead(&claimed[1], "bad").await.unwrap();
        mail.fail(&claimed[2], "gave up").await.unwrap();
        mail.mark_dead(&claimed[3], "bad").await.unwrap();
        let only_dead = ok(&target, &["queues", "requeue", "mail", "--all", "--status", "dead"]).await;
        assert!(only_dead.contains("2 job(s) of mail queued again"), "{only_dead}");
        let rest = ok(&target, &["queues", "requeue", "mail", "--all"]).await;
        assert!(rest.contains("1 job(s) of mail queued again"), "{rest}");
        let counts = mail.counts().await.unwrap();
        assert_eq!((counts.queued, counts.claimed, counts.done, counts.failed, counts.dead), (3, 1, 1, 0, 0));
    }
}
