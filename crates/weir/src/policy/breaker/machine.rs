//! The lock-free state machine: admission, outcomes and transitions on
//! the packed state word (see `state.rs`).

use super::*;

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker").field("name", &self.settings.name).finish_non_exhaustive()
    }
}

impl Inner {
    #[inline]
    pub(super) fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    pub(super) fn swap(&self, from: Word, to: Word) -> bool {
        self.word.compare_exchange(from.0, to.0, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    pub(super) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// `(generation, is_probe)` of an admitted call.
    #[inline]
    pub(super) fn try_acquire(&self) -> Result<(u32, bool), CircuitOpen> {
        loop {
            let word = self.load();
            match word.state() {
                State::Closed => return Ok((word.generation(), false)),
                State::Open => {
                    let (now, until) = (self.now(), self.open_until.load(Ordering::Acquire));
                    if now < until {
                        return Err(self.reject(Some(Duration::from_nanos(until - now))));
                    }
                    if self.swap(word, word.next(State::HalfOpen)) {
                        self.changed(State::Open, State::HalfOpen);
                    }
                }
                State::HalfOpen if word.probes() < self.settings.probes => {
                    if self.swap(word, word.with_probes(word.probes() + 1)) {
                        return Ok((word.generation(), true));
                    }
                }
                State::HalfOpen | State::ForcedOpen => return Err(self.reject(None)),
            }
        }
    }

    pub(super) fn reject(&self, retry_after: Option<Duration>) -> CircuitOpen {
        self.rejections.add(1);
        tracing::debug!(breaker = %self.settings.name, "call rejected: circuit open");
        CircuitOpen::new(self.settings.name.clone(), retry_after)
    }

    #[inline]
    pub(super) fn on_success(&self, generation: u32, probe: bool) {
        self.successes.add(1);
        let rate_trip = self.record_in_window(generation, false);
        loop {
            let word = self.load();
            if word.generation() != generation {
                return;
            }
            let next = match word.state() {
                State::Closed if rate_trip => return self.open(word),
                State::Closed if word.count() == 0 => return,
                State::Closed => word.with_count(0),
                State::HalfOpen if probe && word.count() + 1 >= self.settings.successes_to_close => {
                    word.next(State::Closed)
                }
                State::HalfOpen if probe => {
                    word.with_count(word.count() + 1).with_probes(word.probes().saturating_sub(1))
                }
                _ => return,
            };
            if self.swap(word, next) {
                if next.state() == State::Closed && word.state() == State::HalfOpen {
                    self.reopenings.store(0, Ordering::Relaxed);
                    self.clear_window();
                    self.changed(State::HalfOpen, State::Closed);
                }
                return;
            }
        }
    }

    pub(super) fn on_failure(&self, generation: u32, probe: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let rate_trip = self.record_in_window(generation, true);
        loop {
            let word = self.load();
            if word.generation() != generation {
                return;
            }
            match word.state() {
                State::Closed => {
                    let failures = word.count() + 1;
                    let consecutive_trip = self.settings.consecutive_failures.is_some_and(|n| failures >= n);
                    if consecutive_trip || rate_trip {
                        return self.open(word);
                    }
                    if self.swap(word, word.with_count(failures)) {
                        return;
                    }
                }
                State::HalfOpen if probe => return self.open(word),
                _ => return,
            }
        }
    }

    /// Records a closed-state outcome in the rate window; whether the rate
    /// threshold is now reached.
    #[inline]
    pub(super) fn record_in_window(&self, generation: u32, failed: bool) -> bool {
        let (Some(window), Some(rate)) = (&self.window, self.settings.rate) else { return false };
        let word = self.load();
        if word.state() != State::Closed || word.generation() != generation {
            return false;
        }
        let (calls, failures) = window.lock().unwrap_or_else(|p| p.into_inner()).record(failed, self.now());
        calls >= rate.min_calls.max(1) && f64::from(failures) >= rate.rate * f64::from(calls)
    }

    pub(super) fn clear_window(&self) {
        if let Some(window) = &self.window {
            window.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Opens from `word` (closed or half-open), unless another change won.
    pub(super) fn open(&self, word: Word) {
        let reopenings = self.reopenings.load(Ordering::Relaxed);
        let duration = match self.settings.open_growth {
            Some((factor, max)) => self.settings.open_for.mul_f64(factor.powi(reopenings.min(64) as i32)).min(max),
            None => self.settings.open_for,
        };
        // Published by the swap below: a caller that sees Open reads this.
        self.open_until.store(self.now() + duration.as_nanos() as u64, Ordering::Release);
        if self.swap(word, word.next(State::Open)) {
            self.reopenings.fetch_add(1, Ordering::Relaxed);
            self.openings.fetch_add(1, Ordering::Relaxed);
            self.clear_window();
            self.changed(word.state(), State::Open);
        } else {
            // Someone else changed the state first; decide again from it.
            let now = self.load();
            if now.generation() == word.generation() {
                match now.state() {
                    State::Closed | State::HalfOpen => self.open(now),
                    _ => {}
                }
            }
        }
    }

    pub(super) fn release_probe(&self, generation: u32) {
        loop {
            let word = self.load();
            if word.generation() != generation || word.state() != State::HalfOpen {
                return;
            }
            if self.swap(word, word.with_probes(word.probes().saturating_sub(1))) {
                return;
            }
        }
    }

    pub(super) fn transition_to(&self, state: State) {
        loop {
            let word = self.load();
            if self.swap(word, word.next(state)) {
                if word.state() != state {
                    self.changed(word.state(), state);
                }
                return;
            }
        }
    }

    pub(super) fn changed(&self, from: State, to: State) {
        tracing::info!(breaker = %self.settings.name, %from, %to, "breaker state change");
        let name = || self.settings.name.to_string();
        let code = match to {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
            State::ForcedOpen => 3.0,
        };
        crate::observe::gauge("weir_breaker_state", || vec![("breaker", name())]).set(code);
        let to_label = || vec![("breaker", name()), ("to", to.to_string())];
        crate::observe::counter("weir_breaker_transitions_total", to_label).increment(1);
        let change = StateChange { breaker: self.settings.name.clone(), from, to };
        for listener in &self.settings.listeners {
            listener(&change);
        }
    }
}
