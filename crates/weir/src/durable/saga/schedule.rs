//! Sagas started on a cron schedule.
//!
//! Each tick of a schedule is one saga, whose id is the schedule's name
//! and the tick's time (`nightly@2026-12-03T02:00:00Z`). Firing is
//! **exactly once per tick across any number of workers** by that id: a
//! saga is stored insert-if-absent, so two workers firing one tick, or one
//! firing it again after a crash, store one saga. A worker fires a
//! schedule's due ticks, then moves the schedule's durable `last_fired`
//! with a compare-and-set; only the worker that moved it drives the new
//! sagas (the others' stores were no-ops), and a saga stored by a worker
//! that died before driving it is taken over like any unclaimed saga.
//!
//! Ticks missed while every worker was down (older than the schedule's
//! [grace](SagaSchedule::grace) when a worker looks) follow its
//! [`Missed`] policy: skipped, or the latest N caught up.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::Value;
use tokio::task::JoinSet;

use super::engine::{Driving, Inner};
use crate::durable::store::{SagaWrite, StoreError};
use crate::error::ConfigError;

/// What to do with the ticks a schedule missed while no worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Fire none of them; the schedule goes on from its next tick.
    Skip,
    /// Fire the latest `n` of them (oldest first), then go on.
    CatchUp(u32),
}

/// A saga definition started on a cron schedule. Register it with
/// [`SagaEngineBuilder::schedule`](super::SagaEngineBuilder::schedule);
/// every engine that registers it fires it, and each tick starts one saga.
///
/// # Defaults
/// Input `{"schedule": NAME, "tick": "RFC 3339 time"}`; missed ticks
/// skipped ([`Missed::Skip`]); a tick counts as missed once it is more
/// than 60 s past when a worker looks.
///
/// # Examples
/// ```
/// use weir::durable::saga::{Missed, SagaSchedule};
///
/// let nightly = SagaSchedule::new("nightly-report", "0 2 * * *", "report")
///     .unwrap()
///     .missed(Missed::CatchUp(1)); // after an outage, run the last one missed
/// assert_eq!(nightly.name(), "nightly-report");
/// let bad = SagaSchedule::new("oops", "0 25 * * *", "report").unwrap_err();
/// assert!(bad.to_string().contains("0 25 * * *"));
/// ```
#[derive(Debug, Clone)]
pub struct SagaSchedule {
    pub(super) name: Arc<str>,
    pattern: String,
    cron: croner::Cron,
    pub(super) definition: String,
    input: Option<Value>,
    missed: Missed,
    grace: Duration,
}

impl SagaSchedule {
    /// A schedule named `name` that starts a saga of `definition` at each
    /// time `cron` matches, in UTC: five fields (minute hour day-of-month
    /// month day-of-week) or six with seconds first; `L`, `#` and `W` as
    /// in cron's extensions.
    ///
    /// # Errors
    /// [`ConfigError`] naming the pattern and what is wrong with it, or an
    /// empty name, or a name with `@` (it separates the name from the tick
    /// in the sagas' ids).
    pub fn new(name: &str, cron: &str, definition: &str) -> Result<Self, ConfigError> {
        if name.is_empty() || name.contains('@') {
            return Err(ConfigError::new(
                "saga schedule name",
                format!("{name:?}"),
                "use a non-empty name without `@`",
            ));
        }
        let parsed = croner::parser::CronParser::new().parse(cron).map_err(|e| {
            ConfigError::new(
                "saga schedule cron pattern",
                format!("{cron:?} of `{name}` ({e})"),
                "use five fields (minute hour day-of-month month day-of-week), or six with seconds first",
            )
        })?;
        Ok(Self {
            name: Arc::from(name),
            pattern: cron.to_owned(),
            cron: parsed,
            definition: definition.to_owned(),
            input: None,
            missed: Missed::Skip,
            grace: Duration::from_secs(60),
        })
    }

    /// The input of every saga it starts, instead of the default
    /// `{"schedule": …, "tick": …}` (a step reads the tick from its saga
    /// id then: `name@tick`).
    pub fn input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    /// What to do with ticks missed while no worker ran.
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// How late a tick may be fired as usual (a worker busy, a restart);
    /// a tick later than this is missed (default 60 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its cron pattern, as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The id of the saga its tick at `tick` starts.
    pub fn saga_id(&self, tick: SystemTime) -> String {
        let tick: DateTime<Utc> = tick.into();
        format!("{}@{}", self.name, tick.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    /// The ticks to fire when the schedule has fired up to `last` and it
    /// is `now`: those since `last` at most `grace` old, and, with
    /// [`Missed::CatchUp`], the latest older ones; oldest first.
    pub(super) fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let grace = chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX);
        let on_time_after = (now - grace).max(last);
        let mut fire: Vec<DateTime<Utc>> = Vec::new();
        if let Missed::CatchUp(n) = self.missed
            && n > 0
            && on_time_after > last
        {
            // The latest `n` ticks in (last, now - grace]: walked forward
            // (at most a million ticks: an outage of 11 days of a
            // per-second schedule), keeping the last `n`.
            let mut latest = std::collections::VecDeque::with_capacity(n as usize);
            for tick in self.ticks_after(last).take(1_000_000).take_while(|t| *t <= on_time_after) {
                if latest.len() == n as usize {
                    latest.pop_front();
                }
                latest.push_back(tick);
            }
            fire.extend(latest);
        }
        let on_time = self.ticks_after(on_time_after).take_while(|t| *t <= now);
        fire.extend(on_time.take(10_000)); // a pattern firing every second, an hour's grace: still bounded
        fire
    }

    /// The ticks after `start`, in order. (croner 3.0.1's own iterator
    /// skips every other tick of a per-second pattern: `[1, 3]` for
    /// `* * * * * *` from a whole second; its `find_next_occurrence` does
    /// not.)
    fn ticks_after(&self, start: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(start), |t| self.next_after(*t))
    }

    /// The first tick after `now`.
    fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&now, false).ok()
    }

    fn input_for(&self, tick: DateTime<Utc>) -> Value {
        self.input.clone().unwrap_or_else(
            || serde_json::json!({"schedule": &*self.name, "tick": tick.to_rfc3339_opts(SecondsFormat::Secs, true)}),
        )
    }
}

/// The longest the scheduler sleeps before looking again (it also sees
/// schedules moved by other workers then).
const SCHEDULE_POLL: Duration = Duration::from_secs(30);

impl Inner {
    /// The scheduler: fires each schedule's due ticks, then sleeps until
    /// the next tick of any (at most [`SCHEDULE_POLL`]).
    pub(super) async fn run_schedules(self: &Arc<Self>, drives: &Mutex<JoinSet<()>>) {
        loop {
            // Whole seconds, as ticks are: croner starts an iteration from
            // the next whole second, so `last_fired` with milliseconds
            // (10:00:00.217) would skip the tick at 10:00:01.
            let now = Utc::now().trunc_subsecs(0);
            let mut wake = now + chrono::Duration::from_std(SCHEDULE_POLL).expect("small");
            for schedule in &self.schedules {
                if let Err(error) = self.fire(schedule, now, drives).await {
                    tracing::warn!(schedule = %schedule.name, %error, "could not fire a schedule's ticks; trying again");
                    wake = wake.min(now + chrono::Duration::seconds(1));
                }
                if let Some(next) = schedule.next_after(now) {
                    wake = wake.min(next);
                }
            }
            let left = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(left.max(Duration::from_millis(5))).await;
        }
    }

    /// Stores the sagas of `schedule`'s due ticks, moves its `last_fired`
    /// to `now`, and (if this worker moved it) drives them.
    async fn fire(
        self: &Arc<Self>,
        schedule: &SagaSchedule,
        now: DateTime<Utc>,
        drives: &Mutex<JoinSet<()>>,
    ) -> Result<(), StoreError> {
        let now_ms = now.timestamp_millis();
        let last_ms = self.store.schedule_fired_up_to(&schedule.name, now_ms).await?;
        let last = DateTime::<Utc>::from_timestamp_millis(last_ms).unwrap_or(now).trunc_subsecs(0);
        if last >= now {
            return Ok(());
        }
        let ticks = schedule.due(last, now);
        let mut started = Vec::with_capacity(ticks.len());
        for tick in ticks {
            let id = schedule.saga_id(tick.into());
            let Some((key, def)) = self.resolve(&schedule.definition) else { continue };
            let record = super::engine::new_record(&id, key, def, schedule.input_for(tick));
            // Insert-if-absent: the tick's saga exists once whoever stores it.
            self.store.write(SagaWrite::Insert(Box::new(record))).await?;
            started.push(id);
        }
        if !self.store.advance_schedule(&schedule.name, last_ms, now_ms).await? {
            return Ok(()); // another worker fired these ticks; it drives them
        }
        for id in started {
            tracing::info!(schedule = %schedule.name, saga = %id, "schedule fired");
            let claimed = {
                let _claiming = self.claiming.lock().await;
                self.store.claim_one(&id, &self.worker, self.lease).await?
            };
            if let Some(record) = claimed
                && let Some(driving) = Driving::start(self, &id)
            {
                self.spawn_drive(drives, record, driving);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn ticks(schedule: &SagaSchedule, last: &str, now: &str) -> Vec<String> {
        let due = schedule.due(at(last), at(now));
        due.iter().map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)).collect()
    }

    #[test]
    fn due_ticks_are_the_ones_since_the_last_fired_within_grace_and_the_latest_missed_by_policy() {
        let hourly = SagaSchedule::new("h", "0 * * * *", "d").unwrap();
        // Ticks every second, looked at a fraction past each: none skipped.
        let secondly = SagaSchedule::new("s", "* * * * * *", "d").unwrap();
        let last = at("2026-12-03T10:00:00Z");
        let now = at("2026-12-03T10:00:03Z");
        let due: Vec<i64> = secondly.due(last, now).iter().map(|t| t.timestamp() - last.timestamp()).collect();
        assert_eq!(due, [1, 2, 3]);
        // On time: the one tick since the last look.
        assert_eq!(ticks(&hourly, "2026-12-03T09:30:00Z", "2026-12-03T10:00:20Z"), ["2026-12-03T10:00:00Z"]);
        assert!(ticks(&hourly, "2026-12-03T10:00:00Z", "2026-12-03T10:59:59Z").is_empty(), "the tick at `last` fired");
        // Down from 07:30 to 10:30: 08, 09, 10 missed; skipped by default.
        assert!(ticks(&hourly, "2026-12-03T07:30:00Z", "2026-12-03T10:30:00Z").is_empty());
        let caught_up = hourly.clone().missed(Missed::CatchUp(2));
        assert_eq!(
            ticks(&caught_up, "2026-12-03T07:30:00Z", "2026-12-03T10:30:00Z"),
            ["2026-12-03T09:00:00Z", "2026-12-03T10:00:00Z"]
        );
        // Fewer missed than the catch-up allows: all of them, none from before `last`.
        let many = hourly.clone().missed(Missed::CatchUp(10));
        assert_eq!(
            ticks(&many, "2026-12-03T08:30:00Z", "2026-12-03T10:30:00Z"),
            ["2026-12-03T09:00:00Z", "2026-12-03T10:00:00Z"]
        );
        // Missed and on time together: the latest missed, then the on-time one.
        let secondly = SagaSchedule::new("s", "*/10 * * * * *", "d").unwrap().missed(Missed::CatchUp(1));
        assert_eq!(
            ticks(&secondly, "2026-12-03T10:00:00Z", "2026-12-03T10:01:30Z"),
            [
                "2026-12-03T10:00:30Z",
                "2026-12-03T10:00:40Z",
                "2026-12-03T10:00:50Z",
                "2026-12-03T10:01:00Z",
                "2026-12-03T10:01:10Z",
                "2026-12-03T10:01:20Z",
                "2026-12-03T10:01:30Z"
            ]
        );
    }

    #[test]
    fn a_ticks_saga_id_is_the_schedule_and_the_time() {
        let nightly = SagaSchedule::new("nightly", "0 2 * * *", "report").unwrap();
        let tick = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_263_200);
        assert_eq!(nightly.saga_id(tick), "nightly@2026-12-03T02:00:00Z");
        assert!(SagaSchedule::new("a@b", "* * * * *", "d").is_err());
        let bad = SagaSchedule::new("x", "61 * * * *", "d").unwrap_err().to_string();
        assert!(bad.contains("\"61 * * * *\" of `x`") && bad.contains("five fields"), "{bad}");
    }
}
