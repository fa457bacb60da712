//! The in-memory backend: the same semantics as the databases (fencing,
//! leases, claims), for tests and for runs that need no durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::ClaimScope;
use super::inspect::{self, CursorRecord, LetterQuery, QueueSummary, SagaQuery};
use super::record::{SagaRecord, SagaStatus, SagaWrite, now_ms};
use super::{DeadLetterRow, SagaEvent, WriteResult};

#[derive(Debug, Default)]
pub(crate) struct Memory {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    sagas: BTreeMap<String, SagaRecord>,
    /// Position and when it was saved.
    cursors: HashMap<String, (String, i64)>,
    dead_letters: Vec<DeadLetterRow>,
    next_dead_letter: i64,
    /// Events sent to sagas, oldest first.
    events: Vec<SagaEvent>,
    /// Per schedule: fired up to, written at.
    schedules: BTreeMap<String, (i64, i64)>,
    /// Per saga that ever parked: what it waited for when it last did.
    waiting_for: HashMap<String, &'static str>,
}

impl Memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn apply(&self, write: &SagaWrite) -> WriteResult {
        let mut state = self.lock();
        match write {
            SagaWrite::Insert(record) => {
                if state.sagas.contains_key(&record.id) {
                    return WriteResult::Exists;
                }
                state.sagas.insert(record.id.clone(), (**record).clone());
                WriteResult::Applied
            }
            SagaWrite::Update { id, fence, status, steps_json, error } => {
                let Some(saga) = state.sagas.get_mut(id).filter(|s| s.fence == *fence) else {
                    return WriteResult::LeaseLost;
                };
                saga.status = *status;
                saga.steps = serde_json::from_str(steps_json).expect("the engine writes valid steps");
                saga.error.clone_from(error);
                saga.updated_at = now_ms();
                if !status.is_active() {
                    saga.lease_until = None;
                }
                WriteResult::Applied
            }
            SagaWrite::Cursor { name, position, at } => {
                state.cursors.insert(name.clone(), (position.clone(), *at));
                WriteResult::Applied
            }
        }
    }

    pub(crate) fn claim(
        &self,
        owner: &str,
        lease_until: i64,
        now: i64,
        limit: usize,
        scope: &ClaimScope<'_>,
    ) -> Vec<SagaRecord> {
        let mut state = self.lock();
        let takeable = |s: &&mut SagaRecord| {
            let expired = s.status.is_active() && s.lease_until.is_none_or(|until| until < now);
            let own = scope.own.is_some_and(|driving| claimable(s, owner, now) && !driving.contains(&s.id));
            let known = scope.definitions.is_none_or(|names| names.contains(&s.definition));
            let parked = s.lease_owner.is_none() && s.lease_until.is_some();
            (expired || own)
                && known
                && (parked || !scope.parked_only)
                && !scope.own.is_some_and(|driving| driving.contains(&s.id))
        };
        let mut claimable: Vec<&mut SagaRecord> = state.sagas.values_mut().filter(takeable).collect();
        if scope.parked_only {
            claimable.sort_by_key(|s| s.lease_until);
        } else {
            claimable.sort_by_key(|s| s.created_at);
        }
        claimable
            .into_iter()
            .take(limit)
            .map(|s| {
                s.lease_owner = Some(owner.to_owned());
                s.lease_until = Some(lease_until);
                s.fence += 1;
                s.clone()
            })
            .collect()
    }

    pub(crate) fn claim_one(&self, id: &str, owner: &str, lease_until: i64, now: i64) -> Option<SagaRecord> {
        let mut state = self.lock();
        let saga = state.sagas.get_mut(id).filter(|s| claimable(s, owner, now))?;
        saga.lease_owner = Some(owner.to_owned());
        saga.lease_until = Some(lease_until);
        saga.fence += 1;
        Some(saga.clone())
    }

    pub(crate) fn heartbeat(&self, owner: &str, sagas: &[String], lease_until: i64) -> u64 {
        let mut state = self.lock();
        let mut n = 0;
        let renewed = |s: &&mut SagaRecord| {
            s.status.is_active() && s.lease_owner.as_deref() == Some(owner) && sagas.contains(&s.id)
        };
        for s in state.sagas.values_mut().filter(renewed) {
            s.lease_until = Some(lease_until);
            n += 1;
        }
        n
    }

    pub(crate) fn request_cancel(&self, id: &str, reason: &str, now: i64) {
        let mut state = self.lock();
        if let Some(saga) = state.sagas.get_mut(id).filter(|s| s.status == SagaStatus::Running) {
            saga.cancel_requested.get_or_insert_with(|| reason.to_owned());
            saga.updated_at = now;
            if saga.lease_owner.is_none() && saga.lease_until.is_some() {
                saga.lease_until = Some(now - 1); // parked: due at once
            }
        }
    }

    pub(crate) fn reopen(&self, id: &str, reason: &str, now: i64) -> bool {
        let mut state = self.lock();
        let Some(saga) = state.sagas.get_mut(id).filter(|s| s.status == SagaStatus::Completed) else {
            return false;
        };
        saga.status = SagaStatus::Compensating;
        saga.cancel_requested.get_or_insert_with(|| reason.to_owned());
        saga.error = Some(format!("cancelled: {reason}"));
        saga.lease_owner = None;
        saga.lease_until = None;
        saga.updated_at = now;
        true
    }

    pub(crate) fn park(
        &self,
        id: &str,
        fence: i64,
        steps: &str,
        until: i64,
        wake_if: Option<&super::waits::WakeIf>,
        now: i64,
    ) -> bool {
        use super::waits::WakeIf;
        let mut state = self.lock();
        let waiting = match wake_if {
            Some(WakeIf::Event(name)) => {
                state.events.iter().any(|e| e.saga_id == id && e.name == *name && e.consumed_by.is_none())
            }
            Some(WakeIf::ChildEnded(child)) => state.sagas.get(child).is_some_and(|c| !c.status.is_active()),
            None => false,
        };
        let Some(saga) = state.sagas.get_mut(id).filter(|s| s.fence == fence && s.status == SagaStatus::Running) else {
            return false;
        };
        saga.steps = serde_json::from_str(steps).expect("the engine writes valid steps");
        saga.lease_owner = None;
        saga.lease_until = Some(if waiting { (now - 1).min(until) } else { until });
        saga.updated_at = now;
        state.waiting_for.insert(id.to_owned(), WakeIf::waiting_for(wake_if));
        true
    }

    pub(crate) fn wake(&self, id: &str, now: i64) {
        let mut state = self.lock();
        let parked = |s: &&mut SagaRecord| s.status == SagaStatus::Running && s.lease_owner.is_none();
        if let Some(saga) = state.sagas.get_mut(id).filter(parked)
            && saga.lease_until.is_some_and(|until| until > now - 1)
        {
            saga.lease_until = Some(now - 1);
        }
    }

    pub(crate) fn next_wake(&self, definitions: &[String]) -> Option<i64> {
        let state = self.lock();
        let parked = |s: &&SagaRecord| {
            s.status == SagaStatus::Running && s.lease_owner.is_none() && definitions.contains(&s.definition)
        };
        state.sagas.values().filter(parked).filter_map(|s| s.lease_until).min()
    }

    pub(crate) fn count_parked(&self, definitions: &[String]) -> Vec<super::waits::ParkedCount> {
        let state = self.lock();
        let mut counts = BTreeMap::<(String, &str), i64>::new();
        for saga in state.sagas.values() {
            let parked = saga.status == SagaStatus::Running && saga.lease_owner.is_none() && saga.lease_until.is_some();
            if parked && definitions.contains(&saga.definition) {
                let waiting_for = state.waiting_for.get(&saga.id).copied().unwrap_or("unknown");
                *counts.entry((saga.definition.clone(), waiting_for)).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|((definition, waiting_for), count)| super::waits::ParkedCount {
                definition,
                waiting_for: waiting_for.to_owned(),
                count,
            })
            .collect()
    }

    pub(crate) fn send_event(
        &self,
        id: &str,
        name: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> Result<i64, Option<SagaStatus>> {
        let mut state = self.lock();
        let saga = state.sagas.get_mut(id).ok_or(None)?;
        if saga.status != SagaStatus::Running {
            return Err(Some(saga.status));
        }
        if saga.lease_owner.is_none() && saga.lease_until.is_some_and(|until| until > now - 1) {
            saga.lease_until = Some(now - 1); // due: claims take sagas whose time has passed
        }
        let event = state.events.last().map_or(1, |e| e.id + 1);
        state.events.push(SagaEvent {
            id: event,
            saga_id: id.to_owned(),
            name: name.to_owned(),
            payload: payload.clone(),
            sent_at: now,
            consumed_by: None,
            consumed_at: None,
        });
        Ok(event)
    }

    pub(crate) fn take_event(&self, id: &str, fence: i64, step: &str, name: &str, now: i64) -> Option<String> {
        let mut state = self.lock();
        let mine = |e: &SagaEvent| e.saga_id == id;
        if let Some(taken) = state.events.iter().find(|e| mine(e) && e.consumed_by.as_deref() == Some(step)) {
            return Some(taken.payload.to_string());
        }
        if state.sagas.get(id).is_none_or(|s| s.fence != fence) {
            return None;
        }
        let event = state.events.iter_mut().find(|e| mine(e) && e.name == name && e.consumed_by.is_none())?;
        event.consumed_by = Some(step.to_owned());
        event.consumed_at = Some(now);
        Some(event.payload.to_string())
    }

    pub(crate) fn schedule_fired_up_to(&self, name: &str, start: i64) -> i64 {
        self.lock().schedules.entry(name.to_owned()).or_insert((start, start)).0
    }

    pub(crate) fn advance_schedule(&self, name: &str, from: i64, to: i64, now: i64) -> bool {
        let mut state = self.lock();
        match state.schedules.get_mut(name) {
            Some(entry) if entry.0 == from => {
                *entry = (to, now);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn saga_schedules(&self) -> Vec<super::ScheduleRecord> {
        let state = self.lock();
        let record = |(name, &(last_fired, updated_at)): (&String, &(i64, i64))| super::ScheduleRecord {
            name: name.clone(),
            last_fired,
            updated_at,
        };
        state.schedules.iter().map(record).collect()
    }

    pub(crate) fn saga_events(&self, id: &str) -> Vec<SagaEvent> {
        self.lock().events.iter().filter(|e| e.saga_id == id).cloned().collect()
    }

    pub(crate) fn cancel_requests(&self, owner: &str, now: i64) -> Vec<(String, Option<String>, Option<i64>)> {
        let state = self.lock();
        let held = |s: &&SagaRecord| s.status == SagaStatus::Running && s.lease_owner.as_deref() == Some(owner);
        let due = |s: &&SagaRecord| s.cancel_requested.is_some() || s.deadline_at.is_some_and(|at| at <= now);
        state
            .sagas
            .values()
            .filter(held)
            .filter(due)
            .map(|s| (s.id.clone(), s.cancel_requested.clone(), s.deadline_at))
            .collect()
    }

    pub(crate) fn delete_ended(&self, id: Option<&str>, statuses: &[SagaStatus], before: i64) -> u64 {
        let mut state = self.lock();
        let before_len = state.sagas.len();
        // A child whose parent is still active is kept: the parent may yet
        // compensate it.
        let active: std::collections::HashSet<String> =
            state.sagas.values().filter(|s| s.status.is_active()).map(|s| s.id.clone()).collect();
        state.sagas.retain(|_, s| {
            let doomed = statuses.contains(&s.status) && s.updated_at < before && id.is_none_or(|id| s.id == id);
            let kept_for_parent = s.parent.as_ref().is_some_and(|p| active.contains(p));
            !doomed || kept_for_parent
        });
        let State { sagas, events, waiting_for, .. } = &mut *state;
        events.retain(|e| sagas.contains_key(&e.saga_id));
        waiting_for.retain(|saga, _| sagas.contains_key(saga));
        (before_len - sagas.len()) as u64
    }

    pub(crate) fn get(&self, id: &str) -> Option<SagaRecord> {
        self.lock().sagas.get(id).cloned()
    }

    pub(crate) fn find_sagas(&self, query: &SagaQuery, after: Option<(i64, &str)>) -> Vec<SagaRecord> {
        let state = self.lock();
        let past = |s: &SagaRecord| after.is_none_or(|after| (s.created_at, s.id.as_str()) > after);
        let mut found: Vec<SagaRecord> =
            state.sagas.values().filter(|s| query.matches(s) && past(s)).cloned().collect();
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        found.truncate(query.limit);
        found
    }

    pub(crate) fn retry_compensations(&self, id: &str, fence: i64, steps: &str, now: i64) -> bool {
        let mut state = self.lock();
        let Some(saga) = state.sagas.get_mut(id).filter(|s| s.status == SagaStatus::Failed && s.fence == fence) else {
            return false;
        };
        saga.status = SagaStatus::Compensating;
        saga.steps = serde_json::from_str(steps).expect("weir writes valid steps");
        saga.fence += 1;
        saga.lease_owner = None;
        saga.lease_until = None;
        saga.updated_at = now;
        true
    }

    pub(crate) fn cursors(&self) -> Vec<CursorRecord> {
        let state = self.lock();
        let mut all: Vec<CursorRecord> = state
            .cursors
            .iter()
            .map(|(name, (position, at))| CursorRecord {
                name: name.clone(),
                position: serde_json::from_str(position).expect("cursors are saved as JSON"),
                updated_at: inspect::time(*at),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub(crate) fn delete_cursor(&self, name: &str) -> bool {
        self.lock().cursors.remove(name).is_some()
    }

    pub(crate) fn load_cursor(&self, name: &str) -> Option<String> {
        self.lock().cursors.get(name).map(|(position, _)| position.clone())
    }

    pub(crate) fn save_cursor(&self, name: &str, position: &str) {
        self.lock().cursors.insert(name.to_owned(), (position.to_owned(), now_ms()));
    }

    pub(crate) fn push_dead_letter(&self, row: &DeadLetterRow) -> i64 {
        let mut state = self.lock();
        let same_key = |r: &&mut DeadLetterRow| r.queue == row.queue && r.key.is_some() && r.key == row.key;
        if let Some(stored) = state.dead_letters.iter_mut().find(same_key) {
            let (id, first_failure) = (stored.id, stored.first_failure);
            *stored = DeadLetterRow { id, first_failure, ..row.clone() };
            return id;
        }
        state.next_dead_letter += 1;
        let id = state.next_dead_letter;
        state.dead_letters.push(DeadLetterRow { id, ..row.clone() });
        id
    }

    pub(crate) fn letters(&self, queue: &str, query: &LetterQuery) -> Vec<DeadLetterRow> {
        let state = self.lock();
        let found = state.dead_letters.iter().filter(|r| r.queue == queue && query.matches(r));
        found.take(query.limit).cloned().collect()
    }

    pub(crate) fn queues(&self) -> Vec<QueueSummary> {
        let mut queues: BTreeMap<&str, QueueSummary> = BTreeMap::new();
        let state = self.lock();
        for r in &state.dead_letters {
            let q = queues.entry(&r.queue).or_insert_with(|| QueueSummary {
                name: r.queue.clone(),
                letters: 0,
                replay_requested: 0,
                oldest: inspect::time(r.first_failure),
                newest: inspect::time(r.last_failure),
            });
            q.letters += 1;
            q.replay_requested += u64::from(r.replay_requested_at.is_some());
            q.oldest = q.oldest.min(inspect::time(r.first_failure));
            q.newest = q.newest.max(inspect::time(r.last_failure));
        }
        queues.into_values().collect()
    }

    pub(crate) fn request_replay(&self, queue: &str, ids: &[i64], at: i64) -> u64 {
        let mut state = self.lock();
        let mut n = 0;
        for r in state.dead_letters.iter_mut().filter(|r| r.queue == queue && ids.contains(&r.id)) {
            r.replay_requested_at = Some(at);
            n += 1;
        }
        n
    }

    pub(crate) fn delete_dead_letters(&self, queue: &str, ids: &[i64]) {
        self.lock().dead_letters.retain(|r| r.queue != queue || !ids.contains(&r.id));
    }
}

fn claimable(saga: &SagaRecord, owner: &str, now: i64) -> bool {
    saga.status.is_active()
        && (saga.lease_until.is_none_or(|until| until < now) || saga.lease_owner.as_deref() == Some(owner))
}
