//! The breaker's state as one 64-bit word, changed only by compare-and-swap,
//! so the closed, succeeding path is two loads and no write.
//!
//! ```text
//! bits 63..32  generation: bumped on every state change; results of calls
//!              admitted under an older generation are ignored
//! bits 31..16  probes in flight (half-open)
//! bits 15..2   consecutive failures (closed) or probe successes (half-open)
//! bits  1..0   state
//! ```

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls fail fast with [`CircuitOpen`](super::CircuitOpen) until the
    /// open duration has passed.
    Open,
    /// A bounded number of probe calls pass; enough successes close the
    /// breaker, a failure opens it again.
    HalfOpen,
    /// Held open by [`Breaker::force_open`](super::Breaker::force_open)
    /// until [`Breaker::reset`](super::Breaker::reset).
    ForcedOpen,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
        })
    }
}

/// The packed state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

const COUNT_MAX: u64 = (1 << 14) - 1;
const PROBES_MAX: u64 = (1 << 16) - 1;

impl Word {
    pub(crate) fn new(state: State, generation: u32) -> Self {
        Self(u64::from(generation) << 32 | state_bits(state))
    }

    pub(crate) fn state(self) -> State {
        match self.0 & 0b11 {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::ForcedOpen,
        }
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Consecutive failures when closed; probe successes when half-open.
    pub(crate) fn count(self) -> u32 {
        ((self.0 >> 2) & COUNT_MAX) as u32
    }

    pub(crate) fn probes(self) -> u32 {
        ((self.0 >> 16) & PROBES_MAX) as u32
    }

    pub(crate) fn with_count(self, count: u32) -> Self {
        let count = u64::from(count).min(COUNT_MAX);
        Self(self.0 & !(COUNT_MAX << 2) | count << 2)
    }

    pub(crate) fn with_probes(self, probes: u32) -> Self {
        let probes = u64::from(probes).min(PROBES_MAX);
        Self(self.0 & !(PROBES_MAX << 16) | probes << 16)
    }

    /// The next state, in a new generation, with counts cleared.
    pub(crate) fn next(self, state: State) -> Self {
        Self::new(state, self.generation().wrapping_add(1))
    }
}

fn state_bits(state: State) -> u64 {
    match state {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
        State::ForcedOpen => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn states_print_as_operators_read_them() {
        let names: Vec<String> =
            [State::Closed, State::Open, State::HalfOpen, State::ForcedOpen].iter().map(ToString::to_string).collect();
        assert_eq!(names, ["closed", "open", "half-open", "forced-open"]);
    }

    proptest! {
        #[test]
        fn fields_round_trip(generation: u32, count in 0u32..16_383, probes in 0u32..65_535, state in 0u8..4) {
            let state = [State::Closed, State::Open, State::HalfOpen, State::ForcedOpen][state as usize];
            let w = Word::new(state, generation).with_count(count).with_probes(probes);
            prop_assert_eq!((w.state(), w.generation(), w.count(), w.probes()), (state, generation, count, probes));
            let n = w.next(State::Closed);
            prop_assert_eq!((n.state(), n.generation(), n.count(), n.probes()), (State::Closed, generation.wrapping_add(1), 0, 0));
        }
    }
}
