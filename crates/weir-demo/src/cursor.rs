//! Where a run stands in its input, saved so that a restart re-reads and
//! re-handles as little as possible.
//!
//! Lines finish out of order (2,048 sagas in flight, one tenant's payments
//! retrying). The cursor keeps the first line not yet handled (its byte
//! offset and number) **and** the lines after it that are handled, as
//! ranges of line numbers. A restart reads from the offset and skips every
//! line in those ranges, so one slow line no longer makes a restart redo
//! the thousands finished after it. The ranges stay few: handled lines
//! form runs broken only by lines still in flight.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The saved position in one input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Byte offset of the first line not handled.
    pub offset: u64,
    /// Number of the last line before it (0 at the start).
    pub line: u64,
    /// Lines after `line` already handled: inclusive ranges of numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handled: Vec<(u64, u64)>,
}

impl Cursor {
    /// Whether line `number` was handled by an earlier run.
    pub fn is_handled(&self, number: u64) -> bool {
        number <= self.line || self.handled.iter().any(|&(from, to)| (from..=to).contains(&number))
    }

    /// How many lines are handled: all up to `line`, and those in ranges.
    pub fn handled_lines(&self) -> u64 {
        self.line + self.handled.iter().map(|&(from, to)| to - from + 1).sum::<u64>()
    }
}

/// Lines handled out of order; the cursor moves over the contiguous ones.
#[derive(Debug, Default)]
pub struct Watermark {
    cursor: Cursor,
    /// Handled lines after the cursor: number → byte offset after it.
    done: BTreeMap<u64, u64>,
}

impl Watermark {
    /// Starts from a saved cursor (its ranges are handled lines the reader
    /// will skip and report here as it passes them).
    pub fn new(cursor: &Cursor) -> Self {
        Self { cursor: Cursor { handled: Vec::new(), ..cursor.clone() }, done: BTreeMap::new() }
    }

    /// Line `number`, ending at byte `end`, is handled.
    pub fn finish(&mut self, number: u64, end: u64) {
        if number <= self.cursor.line {
            return;
        }
        self.done.insert(number, end);
        while let Some(end) = self.done.remove(&(self.cursor.line + 1)) {
            self.cursor = Cursor { offset: end, line: self.cursor.line + 1, handled: Vec::new() };
        }
    }

    /// The cursor to save: the contiguous part and the ranges after it.
    pub fn cursor(&self) -> Cursor {
        let mut handled: Vec<(u64, u64)> = Vec::new();
        for &number in self.done.keys() {
            match handled.last_mut() {
                Some((_, to)) if *to + 1 == number => *to = number,
                _ => handled.push((number, number)),
            }
        }
        Cursor { handled, ..self.cursor.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_finished_out_of_order_are_kept_as_ranges() {
        let mut mark = Watermark::default();
        for (number, end) in [(2, 20), (3, 30), (5, 50), (6, 60), (7, 70)] {
            mark.finish(number, end);
        }
        let saved = mark.cursor();
        assert_eq!(saved, Cursor { offset: 0, line: 0, handled: vec![(2, 3), (5, 7)] });
        assert!(!saved.is_handled(1) && saved.is_handled(3) && !saved.is_handled(4) && saved.is_handled(7));
        assert_eq!(saved.handled_lines(), 5);
        mark.finish(1, 10);
        assert_eq!(mark.cursor(), Cursor { offset: 30, line: 3, handled: vec![(5, 7)] });
        mark.finish(4, 40);
        assert_eq!(mark.cursor(), Cursor { offset: 70, line: 7, handled: vec![] });
    }

    /// A restart from a saved cursor: the reader skips handled lines and
    /// reports them, so the watermark passes them as before.
    #[test]
    fn a_restart_skips_handled_lines_and_the_watermark_passes_them() {
        let saved = Cursor { offset: 10, line: 1, handled: vec![(3, 4)] };
        let mut mark = Watermark::new(&saved);
        for (number, end) in [(3, 30), (4, 40)] {
            assert!(saved.is_handled(number));
            mark.finish(number, end);
        }
        assert_eq!(mark.cursor().line, 1, "line 2 is not handled yet");
        mark.finish(2, 20);
        assert_eq!(mark.cursor(), Cursor { offset: 40, line: 4, handled: vec![] });
        let old: Cursor = serde_json::from_str(r#"{"offset": 5, "line": 2}"#).unwrap();
        assert_eq!(old, Cursor { offset: 5, line: 2, handled: vec![] }, "cursors saved before ranges still load");
    }
}
