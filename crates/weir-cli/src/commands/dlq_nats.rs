//! `weir dlq … --nats-url URL`: the same commands on a JetStream
//! dead-letter stream (weir's `JetStreamDlq`). A letter's id is its
//! sequence in the stream; its item is shown as the message it was
//! (subject, sequence, deliveries, payload as JSON when it is JSON).
//!
//! Unlike a store's queue, `replay` here replays: it republishes each
//! letter to the subject it came from (the application's workers run it
//! again from there) and removes it, one at a time, so a crash midway
//! replays only what was not removed yet (the republish carries a
//! deduplication id, so a letter replayed twice is stored once).

use serde_json::{Value, json};
use weir::broker::nats::{Delivery, JetStreamDlq, JetStreamSink};
use weir::durable::dlq::{DeadLetterQueue, Envelope};

use crate::args::DlqCommand;
use crate::failure::{Exit, Failure};
use crate::output;

pub async fn run(url: &str, command: DlqCommand) -> Result<(), Failure> {
    let client = async_nats::connect(url).await.map_err(|e| {
        Failure::new(Exit::Database, format!("cannot reach NATS at {}: {e}", weir::durable::store::redact_url(url)))
    })?;
    let context = async_nats::jetstream::new(client.clone());
    let open = |queue: String| {
        let context = context.clone();
        async move {
            JetStreamDlq::open(context, &queue)
                .await
                .map_err(|e| Failure::new(Exit::NotFound, format!("{e}; name the dead-letter stream as QUEUE")))
        }
    };
    let failed = |e: weir::error::BoxError| Failure::new(Exit::Failed, e);
    match command {
        DlqCommand::List { queue: None, .. } => Err(Failure::new(
            Exit::Usage,
            "with --nats-url, name the dead-letter stream: `weir dlq list STREAM --nats-url URL`",
        )),
        DlqCommand::List { queue: Some(queue), tenant, stage, marked, after, listing } => {
            let dlq = open(queue).await?;
            if marked {
                return Err(Failure::new(
                    Exit::Usage,
                    "a dead-letter stream has no marks: `weir dlq replay` republishes at once",
                ));
            }
            let letters: Vec<Envelope<Value>> = dlq
                .list()
                .await
                .map_err(failed)?
                .into_iter()
                .filter(|e| tenant.as_deref().is_none_or(|t| e.tenant.as_deref() == Some(t)))
                .filter(|e| stage.as_deref().is_none_or(|s| e.stage == s))
                .filter(|e| after.is_none_or(|a| e.id > a))
                .take(listing.limit as usize)
                .map(as_json)
                .collect();
            super::dlq::print_letters(dlq.name(), &letters, &listing);
            Ok(())
        }
        DlqCommand::Show { queue, id, json } => {
            let dlq = open(queue).await?;
            let letter = as_json(find(&dlq, id).await?);
            if json {
                output::json(&super::dlq::letter_json(&letter));
            } else {
                super::dlq::print_letter(dlq.name(), &letter);
            }
            Ok(())
        }
        DlqCommand::Replay { queue, ids, all } => {
            let dlq = open(queue).await?;
            let letters = chosen(&dlq, ids, all).await?;
            let sink = JetStreamSink::new(context.clone());
            for letter in &letters {
                sink.republish(letter.item.clone()).await.map_err(failed)?;
                dlq.remove(&[letter.id]).await.map_err(failed)?;
            }
            client.flush().await.map_err(|e| failed(e.into()))?;
            println!("{} letter(s) of {} republished to the subjects they came from", letters.len(), dlq.name());
            Ok(())
        }
        DlqCommand::Purge { queue, ids, all, yes } => {
            super::dlq::confirm_purge(&queue, all, yes)?;
            let dlq = open(queue).await?;
            let ids: Vec<u64> = chosen(&dlq, ids, all).await?.iter().map(|e| e.id).collect();
            dlq.remove(&ids).await.map_err(failed)?;
            println!("{} letter(s) of {} deleted", ids.len(), dlq.name());
            Ok(())
        }
    }
}

async fn find(dlq: &JetStreamDlq, id: u64) -> Result<Envelope<Delivery>, Failure> {
    let letters = dlq.list().await.map_err(|e| Failure::new(Exit::Failed, e))?;
    letters.into_iter().find(|e| e.id == id).ok_or_else(|| {
        Failure::new(
            Exit::NotFound,
            format!(
                "no letter #{id} in {}; `weir dlq list {} --nats-url …` shows the ones there are",
                dlq.name(),
                dlq.name()
            ),
        )
    })
}

/// The letters asked for, each checked to be there; or every letter.
async fn chosen(dlq: &JetStreamDlq, ids: Vec<u64>, all: bool) -> Result<Vec<Envelope<Delivery>>, Failure> {
    if all {
        return dlq.list().await.map_err(|e| Failure::new(Exit::Failed, e));
    }
    let mut letters = Vec::new();
    for id in ids {
        letters.push(find(dlq, id).await?);
    }
    Ok(letters)
}

/// A letter with its message shown as JSON.
fn as_json(letter: Envelope<Delivery>) -> Envelope<Value> {
    let Envelope {
        id, item, error_chain, stage, item_index, key, tenant, attempts, first_failure, last_failure, ..
    } = letter;
    let payload = serde_json::from_slice::<Value>(&item.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&item.payload).into_owned()));
    let item = json!({
        "subject": item.subject,
        "stream_sequence": item.stream_sequence,
        "delivered": item.delivered,
        "payload": payload,
    });
    let mut envelope = Envelope::new(item, &stage, attempts);
    envelope.id = id;
    envelope.error_chain = error_chain;
    envelope.item_index = item_index;
    envelope.key = key;
    envelope.tenant = tenant;
    envelope.first_failure = first_failure;
    envelope.last_failure = last_failure;
    envelope
}
