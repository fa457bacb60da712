//! The dashboard's pages, rendered by maud (which escapes every value it
//! inserts: items, errors and names are the application's data).

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use weir::durable::dlq::Envelope;
use weir::durable::queue::{JobRecord, PartitionCounts, QueueCounts};
use weir::durable::store::{QueueSummary, SagaEvent, SagaRecord, StepRecord};

use crate::output::{time, time_ms};

/// `s` as one URL path segment (ids and queue names may hold `/`, `?`,
/// spaces).
pub(super) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The frame of every page: title, navigation, the store's (redacted)
/// name.
fn layout(title: &str, target: &str, body: Markup) -> Markup {
    frame(title, target, None, body)
}

/// [`layout`], reloading itself every `reload` seconds if given.
fn frame(title: &str, target: &str, reload: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = reload { meta http-equiv="refresh" content=(seconds); }
                title { (title) " · weir ui" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    strong { "weir" }
                    nav aria-label="main" {
                        a href="/" { "Overview" }
                        a href="/sagas" { "Sagas" }
                        a href="/sagas?status=failed" { "Failed sagas" }
                        a href="/live" { "Live" }
                    }
                    span.target { (target) }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The live page (its body from [`super::live_page`]), reloading every
/// 5 s unless told not to.
pub(super) fn live(target: &str, body: Markup, reload: bool) -> Markup {
    frame("Live", target, reload.then_some(5), body)
}

pub(super) fn error_page(title: &str, message: &str) -> Markup {
    layout(title, "", html! { p { (message) } p { a href="/" { "Back to the overview" } } })
}

fn status_class(status: &str) -> String {
    format!("status-{status}")
}

pub(super) fn overview(target: &str, dlq: &[QueueSummary], queues: &[(String, QueueCounts)]) -> Markup {
    layout(
        "Overview",
        target,
        html! {
            h2 { "Sagas" }
            p {
                @for status in ["running", "compensating", "failed", "compensated", "completed"] {
                    a href={ "/sagas?status=" (status) } class=(status_class(status)) { (status) } " · "
                }
                a href="/sagas" { "all" }
            }
            h2 { "Dead-letter queues" }
            @if dlq.is_empty() {
                p.muted { "No dead letters." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Queue" } th { "Letters" } th { "Marked for replay" } th { "Oldest" } th { "Newest" } } }
                    tbody { @for q in dlq { tr {
                        td { a href={ "/dlq/" (path_segment(&q.name)) } { (q.name) } }
                        td { (q.letters) } td { (q.replay_requested) } td { (time(q.oldest)) } td { (time(q.newest)) }
                    } } }
                } }
            }
            h2 { "Work queues" }
            @if queues.is_empty() {
                p.muted { "No work queues." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Queue" } th { "Queued" } th { "Claimed (in flight)" } th { "Done" } th { "Failed" } th { "Dead" } } }
                    tbody { @for (name, c) in queues { tr {
                        td { a href={ "/queues/" (path_segment(name)) } { (name) } }
                        td { (c.queued) } td { (c.claimed) } td { (c.done) } td { (c.failed) }
                        td class=(if c.dead > 0 { "status-dead" } else { "" }) { (c.dead) }
                    } } }
                } }
            }
        },
    )
}

pub(super) fn sagas(target: &str, found: &[SagaRecord], status: &str, definition: &str, page: usize) -> Markup {
    let next = (found.len() == page).then(|| found.last().map(|s| s.id.clone())).flatten();
    layout(
        "Sagas",
        target,
        html! {
            form.filters method="get" action="/sagas" {
                label { "Status"
                    select name="status" {
                        option value="" selected[status.is_empty()] { "any" }
                        @for s in ["running", "compensating", "completed", "compensated", "failed"] {
                            option value=(s) selected[status == s] { (s) }
                        }
                    }
                }
                label { "Definition" input name="definition" value=(definition) placeholder="e.g. order"; }
                button type="submit" { "Filter" }
            }
            @if found.is_empty() {
                p.muted { "No saga matches." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Id" } th { "Definition" } th { "Status" } th { "Updated" } th { "Error" } } }
                    tbody { @for s in found { tr {
                        td { a href={ "/sagas/" (path_segment(&s.id)) } { code { (s.id) } } }
                        td { (s.definition) }
                        td class=(status_class(s.status.as_str())) { (s.status) }
                        td { (time_ms(s.updated_at)) }
                        td { (s.error.as_deref().unwrap_or("")) }
                    } } }
                } }
            }
            @if let Some(after) = next {
                p { a rel="next" href={ "/sagas?status=" (path_segment(status)) "&definition=" (path_segment(definition)) "&after=" (path_segment(&after)) } { "Next page →" } }
            }
        },
    )
}

fn step_detail(step: &StepRecord) -> Markup {
    html! {
        @if let Some(at) = step.wake_at { div { "wakes " (time_ms(at)) } }
        @if let Some(event) = &step.event { div { "waits for event " code { (event) } } }
        @if let Some(child) = &step.child { div { "child saga " a href={ "/sagas/" (path_segment(child)) } { code { (child) } } } }
        @if let Some(output) = &step.output { pre { (output) } }
        @if let Some(error) = &step.error { pre.status-failed { (error) } }
    }
}

pub(super) fn saga(target: &str, saga: &SagaRecord, events: &[SagaEvent], csrf: &str) -> Markup {
    layout(
        &format!("Saga {}", saga.id),
        target,
        html! {
            p {
                "Definition " code { (saga.definition) } ", status "
                strong class=(status_class(saga.status.as_str())) { (saga.status) }
                ", started " (time_ms(saga.created_at)) ", updated " (time_ms(saga.updated_at)) "."
            }
            @if let Some(parent) = &saga.parent { p { "Child of " a href={ "/sagas/" (path_segment(parent)) } { code { (parent) } } } }
            @if let Some(error) = &saga.error { p { "Error: " } pre.status-failed { (error) } }
            @if let Some(reason) = &saga.cancel_requested { p { "Cancel requested: " (reason) } }
            @if let Some(at) = saga.deadline_at { p { "Deadline " (time_ms(at)) } }
            @if let Some(owner) = saga.lease_owner.as_ref().filter(|_| saga.status.is_active()) {
                p.muted { "Held by worker " code { (owner) } }
            }
            h2 { "Steps" }
            div.scroll { table {
                thead { tr { th { "#" } th { "Step" } th { "Status" } th { "Attempts" } th { "Undo attempts" } th { "Detail" } } }
                tbody { @for (i, step) in saga.steps.iter().enumerate() {
                    @let status = serde_json::to_value(step.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                    tr {
                        td { (i + 1) } td { (step.name) }
                        td class=(status_class(&status)) { (status) }
                        td { (step.attempts) } td { (step.compensation_attempts) }
                        td { (step_detail(step)) }
                    }
                } }
            } }
            h2 { "Input" }
            pre { (saga.input) }
            @if !events.is_empty() {
                h2 { "Events" }
                div.scroll { table {
                    thead { tr { th { "Name" } th { "Sent" } th { "Taken by" } th { "Payload" } } }
                    tbody { @for e in events { tr {
                        td { (e.name) } td { (time_ms(e.sent_at)) }
                        td { (e.consumed_by.as_deref().unwrap_or("not yet")) }
                        td { pre { (e.payload) } }
                    } } }
                } }
            }
            @if saga.status.is_active() {
                h2 { "Cancel" }
                form method="post" action={ "/sagas/" (path_segment(&saga.id)) "/cancel" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Reason" input name="reason" placeholder="why (kept with the saga)"; }
                    p.muted { "The running step is stopped and the completed steps are compensated, by whichever worker holds the saga." }
                    button type="submit" { "Cancel this saga" }
                }
            }
        },
    )
}

fn letter_rows(queue: &str, letters: &[Envelope<Value>], csrf: &str) -> Markup {
    html! {
        @for e in letters { tr id={ "letter-" (e.id) } {
            td { "#" (e.id) } td { (e.stage) } td { (e.tenant.as_deref().unwrap_or("")) } td { (e.attempts) }
            td { (time(e.last_failure)) }
            td { pre { (e.error_chain.join("\n← ")) } }
            td { pre { (e.item) } }
            td {
                @if e.replay_requested.is_some() {
                    span.muted { "marked" }
                } @else {
                    form.inline method="post" action={ "/dlq/" (path_segment(queue)) "/replay" } {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="id" value=(e.id);
                        button type="submit" aria-label={ "Replay letter " (e.id) } { "Replay" }
                    }
                }
            }
        } }
    }
}

pub(super) fn letters(
    target: &str,
    queue: &str,
    letters: &[Envelope<Value>],
    csrf: &str,
    replayed: Option<u64>,
    page: usize,
) -> Markup {
    let next = (letters.len() == page).then(|| letters.last().map(|e| e.id)).flatten();
    layout(
        &format!("Dead letters of {queue}"),
        target,
        html! {
            @if let Some(id) = replayed {
                p.notice role="status" { "Letter #" (id) " is marked for replay: the application that owns the queue replays it and removes it once it goes through." }
            }
            @if letters.is_empty() {
                p.muted { "No letters." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Id" } th { "Stage" } th { "Tenant" } th { "Attempts" } th { "Last failure" } th { "Error chain" } th { "Item" } th { "Replay" } } }
                    tbody { (letter_rows(queue, letters, csrf)) }
                } }
            }
            @if let Some(after) = next {
                p { a rel="next" href={ "/dlq/" (path_segment(queue)) "?after=" (after) } { "Next page →" } }
            }
        },
    )
}

pub(super) fn jobs(target: &str, queue: &str, partitions: &[PartitionCounts], jobs: &[JobRecord]) -> Markup {
    layout(
        &format!("Work queue {queue}"),
        target,
        html! {
            h2 { "Unfinished jobs by tenant" }
            @if partitions.is_empty() {
                p.muted { "None in flight or waiting." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Tenant" } th { "In flight" } th { "Waiting" } } }
                    tbody { @for p in partitions { tr {
                        td { @if let Some(key) = &p.partition_key { (key) } @else { span.muted { "(none)" } } }
                        td.status-claimed { (p.in_flight) }
                        td.status-queued { (p.waiting) }
                    } } }
                } }
            }
            h2 { "Jobs" }
            @if jobs.is_empty() {
                p.muted { "No jobs." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Id" } th { "Status" } th { "Tenant" } th { "Attempts" } th { "Held by" } th { "Last error" } th { "Payload" } } }
                    tbody { @for j in jobs { tr {
                        td { (j.id) }
                        td class=(status_class(j.status.as_str())) { (j.status) }
                        td { (j.partition_key.as_deref().unwrap_or("")) }
                        td { (j.attempts) }
                        td { (j.lease_owner.as_deref().unwrap_or("")) }
                        td { (j.last_error.as_deref().unwrap_or("")) }
                        td { pre { (j.payload) } }
                    } } }
                } }
            }
        },
    )
}
