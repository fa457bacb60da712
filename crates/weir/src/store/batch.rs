//! Splitting a group commit's writes into multi-row statements, and telling
//! each writer how its write went.

use std::collections::HashSet;

use super::WriteResult;
use super::record::{SagaRecord, SagaStatus, SagaWrite};

/// One update of a batch, borrowed.
pub(crate) struct Update<'a> {
    pub(crate) id: &'a str,
    pub(crate) fence: i64,
    pub(crate) status: SagaStatus,
    pub(crate) steps_json: &'a str,
    pub(crate) error: Option<&'a str>,
}

pub(crate) fn split(writes: &[SagaWrite]) -> (Vec<&SagaRecord>, Vec<Update<'_>>) {
    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    for write in writes {
        match write {
            SagaWrite::Insert(record) => inserts.push(&**record),
            SagaWrite::Update { id, fence, status, steps_json, error } => {
                updates.push(Update { id, fence: *fence, status: *status, steps_json, error: error.as_deref() })
            }
        }
    }
    // The same lock order in every process: two committers writing
    // overlapping sagas (several workers on one PostgreSQL) cannot deadlock.
    inserts.sort_by(|a, b| a.id.cmp(&b.id));
    updates.sort_by(|a, b| a.id.cmp(b.id));
    (inserts, updates)
}

/// Each write's result, given the ids the statements reported as written.
/// A batch holds at most one write per saga: a saga's next write waits for
/// the previous one's commit.
pub(crate) fn results(writes: &[SagaWrite], written: &HashSet<String>) -> Vec<WriteResult> {
    writes
        .iter()
        .map(|write| match write {
            SagaWrite::Insert(r) if written.contains(&r.id) => WriteResult::Applied,
            SagaWrite::Insert(_) => WriteResult::Exists,
            SagaWrite::Update { id, .. } if written.contains(id) => WriteResult::Applied,
            SagaWrite::Update { .. } => WriteResult::LeaseLost,
        })
        .collect()
}
