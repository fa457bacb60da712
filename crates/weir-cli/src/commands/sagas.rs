//! `weir sagas list | show | resume | cancel | send-event | schedules | delete | prune`.

use serde_json::json;
use weir::durable::store::{SagaEvent, SagaQuery, SagaRecord, SagaStatus, StepStatus, Store};

use crate::args::{DbArgs, SagasCommand};
use crate::failure::{Exit, Failure};
use crate::output;

pub async fn run(db: &DbArgs, command: SagasCommand) -> Result<(), Failure> {
    let store = crate::store::open(db).await?;
    match command {
        SagasCommand::List { status, definition, tenant, since, until, after, listing } => {
            let mut query = SagaQuery::new().limit(listing.limit as usize);
            if let Some(status) = status {
                query = query.status(status.into());
            }
            if let Some(definition) = definition {
                query = query.definition(definition);
            }
            if let Some(tenant) = tenant {
                query = query.tenant(tenant);
            }
            if let Some(since) = since {
                query = query.updated_since(since);
            }
            if let Some(until) = until {
                query = query.updated_before(until);
            }
            if let Some(after) = after {
                query = query.after(after);
            }
            let sagas = store.find_sagas(&query).await?;
            let last = sagas.last().map(|s| s.id.clone());
            if listing.json {
                let full = sagas.len() as u64 == listing.limit;
                let next = if full { last } else { None };
                output::json(&json!({ "sagas": sagas.iter().map(saga_json).collect::<Vec<_>>(), "next_after": next }));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = sagas
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.definition.clone(),
                        s.status.to_string(),
                        output::time_ms(s.updated_at),
                        s.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["ID", "DEFINITION", "STATUS", "UPDATED", "ERROR"], &rows);
            super::next_page(sagas.len(), listing.limit, &last.unwrap_or_default());
        }
        SagasCommand::Show { id, json } => {
            let saga = find(&store, &id).await?;
            let events = store.saga_events(&id).await?;
            if json {
                let mut shown = saga_json(&saga);
                shown["events"] = events.iter().map(event_json).collect();
                output::json(&shown);
            } else {
                print_saga(&saga);
                print_events(&events);
            }
        }
        SagasCommand::Schedules { json } => {
            let schedules = store.saga_schedules().await?;
            if json {
                let rows: Vec<serde_json::Value> = schedules
                    .iter()
                    .map(|s| json!({"name": s.name, "fired_up_to": output::time_ms(s.last_fired), "updated_at": output::time_ms(s.updated_at)}))
                    .collect();
                output::json(&json!({ "schedules": rows }));
            } else {
                let rows: Vec<Vec<String>> =
                    schedules.iter().map(|s| vec![s.name.clone(), output::time_ms(s.last_fired)]).collect();
                output::table(&["SCHEDULE", "FIRED UP TO"], &rows);
            }
        }
        SagasCommand::SendEvent { id, name, payload } => {
            let event = store.send_event(&id, &name, &payload).await.map_err(|e| match e {
                weir::durable::store::StoreError::NotFound { .. } => not_found(&store, &id),
                other => other.into(),
            })?;
            println!(
                "event #{event} `{name}` stored for saga {id}; the step waiting for it takes it (a parked saga is woken within a second by a worker of its application)"
            );
        }
        SagasCommand::Resume { id } => resume(&store, &id).await?,
        SagasCommand::Cancel { id, reason } => cancel(&store, &id, &reason).await?,
        SagasCommand::Delete { ids } => {
            // All or none: every one must be there and ended.
            for id in &ids {
                let saga = find(&store, id).await?;
                if saga.status.is_active() {
                    return Err(Failure::new(
                        Exit::BadState,
                        format!(
                            "saga {id} is {}: cancel it (`weir sagas cancel {id}`) or wait until it ends; nothing was deleted",
                            saga.status
                        ),
                    ));
                }
            }
            for id in &ids {
                store.delete_saga(id).await?;
            }
            println!("{} saga(s) deleted", ids.len());
        }
        SagasCommand::Prune { before, status } => {
            let statuses: Vec<SagaStatus> = status.into_iter().map(Into::into).collect();
            let deleted = store.prune_sagas(&statuses, before).await?;
            let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
            println!("{deleted} saga(s) deleted ({} before {})", names.join(", "), output::time(before));
        }
    }
    Ok(())
}

async fn find(store: &Store, id: &str) -> Result<SagaRecord, Failure> {
    store.saga(id).await?.ok_or_else(|| not_found(store, id))
}

fn not_found(store: &Store, id: &str) -> Failure {
    Failure::new(
        Exit::NotFound,
        format!("no saga {id} in {}; `weir sagas list` shows the ones there are", store.target()),
    )
}

/// Failed: back to compensating. Anything else says why not, and what
/// will happen to it.
async fn resume(store: &Store, id: &str) -> Result<(), Failure> {
    let saga = find(store, id).await?;
    let now = now_ms();
    match saga.status {
        SagaStatus::Failed => {
            if !store.retry_compensations(&saga).await? {
                return Err(Failure::new(
                    Exit::BadState,
                    format!("saga {id} changed while resuming it; look again with `weir sagas show {id}`"),
                ));
            }
            println!(
                "saga {id}: back to compensating; the next worker of its application that resumes sagas compensates the failed step(s) again"
            );
            Ok(())
        }
        SagaStatus::Completed | SagaStatus::Compensated => Err(Failure::new(
            Exit::BadState,
            format!("saga {id} is {} and has nothing left to run; only a failed saga can be resumed", saga.status),
        )),
        SagaStatus::Running | SagaStatus::Compensating => match (&saga.lease_owner, saga.lease_until) {
            (Some(owner), Some(until)) if until > now => Err(Failure::new(
                Exit::BadState,
                format!(
                    "saga {id} is {} on worker {owner}, whose lease runs until {}; if that worker is gone, any worker of its application takes the saga over then",
                    saga.status,
                    output::time_ms(until)
                ),
            )),
            _ => {
                println!(
                    "saga {id} is {} and held by no live worker: the next worker of its application that resumes sagas takes it; nothing to change",
                    saga.status
                );
                Ok(())
            }
        },
    }
}

/// Records the request; says who carries it out.
async fn cancel(store: &Store, id: &str, reason: &str) -> Result<(), Failure> {
    let saga = store.request_cancel(id, reason).await?;
    let Some(saga) = saga else { return Err(not_found(store, id)) };
    match (saga.status, &saga.lease_owner, saga.lease_until) {
        (SagaStatus::Running, Some(owner), Some(until)) if until > now_ms() => println!(
            "saga {id}: cancel requested; worker {owner} stops it at its next heartbeat (within a third of its lease) and compensates its completed steps"
        ),
        (SagaStatus::Running, _, _) => println!(
            "saga {id}: cancel requested; no worker holds it now: the next worker of its application that claims it (a take-over, or a resume) compensates its completed steps"
        ),
        (status, _, _) => {
            return Err(Failure::new(
                Exit::BadState,
                format!(
                    "saga {id} is {status}: only a running saga can be cancelled (a compensating one is rolling back already)"
                ),
            ));
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn saga_json(s: &SagaRecord) -> serde_json::Value {
    json!({
        "id": s.id,
        "definition": s.definition,
        "status": s.status,
        "input": s.input,
        "error": s.error,
        "cancel_requested": s.cancel_requested,
        "deadline": s.deadline_at.map(output::time_ms),
        "parent": s.parent,
        "steps": s.steps,
        "lease_owner": s.lease_owner,
        "lease_until": s.lease_until.map(output::time_ms),
        "created_at": output::time_ms(s.created_at),
        "updated_at": output::time_ms(s.updated_at),
    })
}

fn print_saga(s: &SagaRecord) {
    println!("saga {} ({}): {}", s.id, s.definition, s.status);
    println!("created {}, updated {}", output::time_ms(s.created_at), output::time_ms(s.updated_at));
    if let (Some(owner), Some(until)) = (&s.lease_owner, s.lease_until) {
        println!("lease: {owner} until {}", output::time_ms(until));
    }
    println!("input: {}", s.input);
    if let Some(parent) = &s.parent {
        println!("parent: {parent} (this saga is a child saga of a step of it)");
    }
    let children: Vec<String> =
        s.steps.iter().filter_map(|step| Some(format!("{} (step `{}`)", step.child.as_ref()?, step.name))).collect();
    if !children.is_empty() {
        println!("children: {}", children.join(", "));
    }
    if let Some(error) = &s.error {
        println!("error: {error}");
    }
    if let Some(reason) = &s.cancel_requested {
        println!("cancel requested: {reason}");
    }
    if let Some(deadline) = s.deadline_at {
        println!("deadline: {}", output::time_ms(deadline));
    }
    if let Some(waiting) = parked(s) {
        println!("{waiting}");
    }
    let rows: Vec<Vec<String>> = s
        .steps
        .iter()
        .map(|step| {
            vec![
                step.name.clone(),
                serde_json::to_value(step.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                step.attempts.to_string(),
                step.compensation_attempts.to_string(),
                step.output.as_ref().map(ToString::to_string).unwrap_or_default(),
                step.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["STEP", "STATUS", "ATTEMPTS", "UNDO ATTEMPTS", "OUTPUT", "ERROR"], &rows);
}

/// What a parked saga waits for, if it is parked: it sleeps or waits for
/// an event, holding no worker.
fn parked(s: &SagaRecord) -> Option<String> {
    if s.status != SagaStatus::Running || s.lease_owner.is_some() {
        return None;
    }
    let step = s.steps.iter().find(|step| step.status == StepStatus::Pending)?;
    let until = output::time_ms(step.wake_at?);
    let due = s.lease_until.map(output::time_ms).unwrap_or_default();
    Some(match &step.event {
        _ if let Some(child) = &step.child => format!(
            "waiting in step `{}` for child saga {child} to end (its end wakes this saga; it looks again at {until}); no worker holds it meanwhile",
            step.name
        ),
        Some(event) => format!(
            "waiting in step `{}` for event `{event}` until {until} (due {due}); no worker holds it meanwhile",
            step.name
        ),
        None => format!("sleeping in step `{}` until {until}; no worker holds it meanwhile", step.name),
    })
}

fn event_json(e: &SagaEvent) -> serde_json::Value {
    json!({
        "id": e.id,
        "name": e.name,
        "payload": e.payload,
        "sent_at": output::time_ms(e.sent_at),
        "consumed_by": e.consumed_by,
        "consumed_at": e.consumed_at.map(output::time_ms),
    })
}

fn print_events(events: &[SagaEvent]) {
    if events.is_empty() {
        return;
    }
    println!("events:");
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                format!("#{}", e.id),
                e.name.clone(),
                output::time_ms(e.sent_at),
                e.consumed_by.clone().unwrap_or_else(|| "(not taken yet)".to_owned()),
                e.payload.to_string(),
            ]
        })
        .collect();
    output::table(&["EVENT", "NAME", "SENT", "TAKEN BY", "PAYLOAD"], &rows);
}
