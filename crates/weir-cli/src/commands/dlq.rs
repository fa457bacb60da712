//! `weir dlq list | show | replay | purge`, on any queue: items are read
//! as JSON, whatever the application's type.
//!
//! A replay only marks letters: replaying means running the application's
//! code on the item (parse, call, saga), which this command does not have.
//! The application that owns the queue finds the marked letters
//! (`LetterQuery::replay_requested(true)`), replays them and removes those
//! that go through; a letter that fails again is parked again, unmarked,
//! with its new reason. Marking is durable, so a request survives the
//! application being down.

use serde_json::{Value, json};
use weir::durable::dlq::Envelope;
use weir::durable::store::{LetterQuery, Store, StoreDlq};

use crate::args::{DbArgs, DlqCommand, Listing};
use crate::failure::{Exit, Failure};
use crate::output;

pub async fn run(db: &DbArgs, command: DlqCommand) -> Result<(), Failure> {
    let store = crate::store::open(db).await?;
    match command {
        DlqCommand::List { queue: None, listing, .. } => list_queues(&store, listing.json).await,
        DlqCommand::List { queue: Some(queue), tenant, stage, marked, after, listing } => {
            let queue = existing(&store, &queue).await?;
            let mut query = LetterQuery::new().limit(listing.limit as usize);
            if let Some(tenant) = tenant {
                query = query.tenant(tenant);
            }
            if let Some(stage) = stage {
                query = query.stage(stage);
            }
            if marked {
                query = query.replay_requested(true);
            }
            if let Some(after) = after {
                query = query.after(after);
            }
            let letters = queue.find(&query).await?;
            print_letters(queue.name(), &letters, &listing);
            Ok(())
        }
        DlqCommand::Show { queue, id, json } => {
            let queue = existing(&store, &queue).await?;
            let letter = letter(&queue, id).await?;
            if json {
                output::json(&letter_json(&letter));
            } else {
                print_letter(queue.name(), &letter);
            }
            Ok(())
        }
        DlqCommand::Replay { queue, ids, all } => {
            let queue = existing(&store, &queue).await?;
            let ids = chosen(&queue, ids, all).await?;
            let marked = queue.request_replay(&ids).await?;
            println!(
                "{marked} letter(s) of {} marked for replay; the application that owns the queue replays them and removes those that go through",
                queue.name()
            );
            Ok(())
        }
        DlqCommand::Purge { queue, ids, all, yes } => {
            confirm_purge(&queue, all, yes)?;
            let queue = existing(&store, &queue).await?;
            let ids = chosen(&queue, ids, all).await?;
            queue.remove(&ids).await?;
            println!("{} letter(s) of {} deleted", ids.len(), queue.name());
            Ok(())
        }
    }
}

/// `purge --all` deletes every letter for good: only with `--yes`.
pub(super) fn confirm_purge(queue: &str, all: bool, yes: bool) -> Result<(), Failure> {
    if all && !yes {
        return Err(Failure::new(
            Exit::Usage,
            format!("purging every letter of {queue} deletes them for good: add --yes to confirm"),
        ));
    }
    Ok(())
}

/// A page of letters, as a table or JSON, with how to ask for the next.
pub(super) fn print_letters(queue: &str, letters: &[Envelope<Value>], listing: &Listing) {
    let last = letters.last().map(|e| e.id);
    if listing.json {
        let next = if letters.len() as u64 == listing.limit { last } else { None };
        output::json(
            &json!({ "queue": queue, "letters": letters.iter().map(letter_json).collect::<Vec<_>>(), "next_after": next }),
        );
        return;
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|e| {
            vec![
                format!("#{}", e.id),
                e.stage.clone(),
                e.tenant.clone().unwrap_or_default(),
                e.attempts.to_string(),
                output::time(e.last_failure),
                if e.replay_requested.is_some() { "yes".into() } else { String::new() },
                e.error_chain.last().cloned().unwrap_or_default(),
                e.item.to_string(),
            ]
        })
        .collect();
    output::table(&["ID", "STAGE", "TENANT", "ATTEMPTS", "LAST FAILURE", "MARKED", "REASON", "ITEM"], &rows);
    super::next_page(letters.len(), listing.limit, &last.map(|id| id.to_string()).unwrap_or_default());
}

async fn list_queues(store: &Store, json: bool) -> Result<(), Failure> {
    let queues = store.dead_letter_queues().await?;
    if json {
        let queues: Vec<Value> = queues
            .iter()
            .map(|q| {
                json!({
                    "name": q.name,
                    "letters": q.letters,
                    "replay_requested": q.replay_requested,
                    "oldest": output::time(q.oldest),
                    "newest": output::time(q.newest),
                })
            })
            .collect();
        output::json(&json!({ "queues": queues }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.letters.to_string(),
                q.replay_requested.to_string(),
                output::time(q.oldest),
                output::time(q.newest),
            ]
        })
        .collect();
    output::table(&["QUEUE", "LETTERS", "MARKED", "OLDEST", "NEWEST"], &rows);
    Ok(())
}

/// A queue that holds letters; an empty or unknown name is "not found"
/// (a queue exists only while it holds letters).
async fn existing(store: &Store, name: &str) -> Result<StoreDlq<Value>, Failure> {
    let queues = store.dead_letter_queues().await?;
    if !queues.iter().any(|q| q.name == name) {
        let known: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
        let known = if known.is_empty() {
            "none holds letters".to_owned()
        } else {
            format!("queues with letters: {}", known.join(", "))
        };
        return Err(Failure::new(
            Exit::NotFound,
            format!("no dead letters in a queue named {name} in {} ({known})", store.target()),
        ));
    }
    Ok(store.dead_letters(name))
}

async fn letter(queue: &StoreDlq<Value>, id: u64) -> Result<Envelope<Value>, Failure> {
    let page = queue.find(&LetterQuery::new().after(id.saturating_sub(1)).limit(1)).await?;
    page.into_iter().find(|e| e.id == id).ok_or_else(|| {
        Failure::new(
            Exit::NotFound,
            format!("no letter #{id} in {}; `weir dlq list {}` shows the ones there are", queue.name(), queue.name()),
        )
    })
}

/// The ids asked for, each checked to be in the queue; or every id.
async fn chosen(queue: &StoreDlq<Value>, ids: Vec<u64>, all: bool) -> Result<Vec<u64>, Failure> {
    if all {
        return Ok(queue.list().await?.iter().map(|e| e.id).collect());
    }
    for &id in &ids {
        letter(queue, id).await?;
    }
    Ok(ids)
}

pub(super) fn letter_json(e: &Envelope<Value>) -> Value {
    json!({
        "id": e.id,
        "item": e.item,
        "error_chain": e.error_chain,
        "stage": e.stage,
        "item_index": e.item_index,
        "key": e.key,
        "tenant": e.tenant,
        "attempts": e.attempts,
        "first_failure": output::time(e.first_failure),
        "last_failure": output::time(e.last_failure),
        "replay_requested": e.replay_requested.map(output::time),
    })
}

pub(super) fn print_letter(queue: &str, e: &Envelope<Value>) {
    println!("letter #{} of {queue}: failed in stage `{}` after {} attempt(s)", e.id, e.stage, e.attempts);
    println!("first failure {}, last {}", output::time(e.first_failure), output::time(e.last_failure));
    if let Some(tenant) = &e.tenant {
        println!("tenant: {tenant}");
    }
    if let Some(key) = &e.key {
        println!("key: {key}");
    }
    if let Some(at) = e.replay_requested {
        println!("marked for replay at {}", output::time(at));
    }
    println!("item: {}", e.item);
    println!("error chain:");
    for (depth, cause) in e.error_chain.iter().enumerate() {
        println!("  {}{cause}", "  ".repeat(depth));
    }
}
