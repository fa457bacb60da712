//! `weir dlq … --nats-url`: a JetStream dead-letter stream listed, shown,
//! replayed (republished where its letters came from) and purged. Needs
//! `WEIR_TEST_NATS_URL`; skipped without it.

use weir::broker::nats::{Delivery, JetStreamDlq};
use weir::durable::dlq::{DeadLetterQueue, Envelope};

use super::*;

#[tokio::test]
async fn nats_dead_letter_streams_are_listed_replayed_and_purged() {
    let Ok(url) = std::env::var("WEIR_TEST_NATS_URL") else {
        eprintln!("skipped: set WEIR_TEST_NATS_URL to run it against a NATS server with JetStream");
        return;
    };
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let name = format!("weir_cli_{:08x}", fastrand::u32(..));
    let source = format!("{name}_orders");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: source.clone(),
        subjects: vec![format!("{source}.in")],
        ..Default::default()
    })
    .await
    .unwrap();
    let dlq_name = format!("{name}_DLQ");
    let dlq = JetStreamDlq::create(js.clone(), &dlq_name, &format!("{dlq_name}.letters")).await.unwrap();
    // Three messages that failed: stored the way a pipeline stores them.
    for n in 1..=3u64 {
        let sent = js.publish(format!("{source}.in"), format!(r#"{{"n":{n}}}"#).into()).await.unwrap().await.unwrap();
        let stream = js.get_stream(&source).await.unwrap();
        let message = stream.get_raw_message(sent.sequence).await.unwrap();
        let delivery = Delivery::from_stored(message.subject.to_string(), message.payload, sent.sequence);
        let mut envelope = Envelope::new(delivery, "charge", 3);
        envelope.error_chain = vec![format!("card {n} declined")];
        envelope.tenant = Some(if n == 2 { "acme".into() } else { "globex".into() });
        dlq.push(envelope).await.unwrap();
    }
    let nats = ["--nats-url", url.as_str()];
    let listed = weir(&[&["dlq", "list", &dlq_name, "--json"][..], &nats].concat()).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let letters = listed["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0]["item"]["payload"]["n"], 1);
    assert_eq!(letters[1]["error_chain"][0], "card 2 declined");
    let acme = weir(&[&["dlq", "list", &dlq_name, "--tenant", "acme", "--json"][..], &nats].concat()).await;
    let acme: serde_json::Value = serde_json::from_slice(&acme.stdout).unwrap();
    assert_eq!(acme["letters"].as_array().unwrap().len(), 1);
    let id = letters[1]["id"].as_u64().unwrap().to_string();
    let shown = weir(&[&["dlq", "show", &dlq_name, &id][..], &nats].concat()).await;
    assert!(
        stdout(&shown).contains("card 2 declined") && stdout(&shown).contains("tenant: acme"),
        "{}",
        stdout(&shown)
    );

    // Replay one: republished to where it came from, and gone from the queue.
    let replayed = weir(&[&["dlq", "replay", &dlq_name, &id][..], &nats].concat()).await;
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    let mut stream = js.get_stream(&source).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    assert_eq!(last, 4, "one message republished");
    assert_eq!(&stream.get_raw_message(4).await.unwrap().payload[..], br#"{"n":2}"#);
    assert_eq!(dlq.count().await.unwrap(), 2);

    // Failure paths: no such letter, no stream named, purge without --yes.
    let missing = weir(&[&["dlq", "show", &dlq_name, "999"][..], &nats].concat()).await;
    assert_eq!(missing.status.code(), Some(6), "{}", stderr(&missing));
    let unnamed = weir(&[&["dlq", "list"][..], &nats].concat()).await;
    assert_eq!(unnamed.status.code(), Some(2), "{}", stderr(&unnamed));
    let unconfirmed = weir(&[&["dlq", "purge", &dlq_name, "--all"][..], &nats].concat()).await;
    assert_eq!(unconfirmed.status.code(), Some(2));
    let purged = weir(&[&["dlq", "purge", &dlq_name, "--all", "--yes"][..], &nats].concat()).await;
    assert!(purged.status.success(), "{}", stderr(&purged));
    assert_eq!(dlq.count().await.unwrap(), 0);

    let _ = js.delete_stream(&source).await;
    let _ = js.delete_stream(&dlq_name).await;
}
