//! The queue of every user's next transition: a calendar queue.
//!
//! A single binary heap over a million users spends most of the simulation in cache misses (each
//! pop walks 20 levels of a 16 MB array). Almost every transition is due within a day or so, so
//! entries go into one-minute buckets over a window of about a day and a half; only the current
//! bucket is a heap (a few thousand entries, cache-resident), later buckets are plain vectors
//! until their minute comes, and the rare far-future entries wait in an overflow heap. Pops come
//! out in exactly the order of one big heap: by (time, user index).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

type Entry = (i64, u32);

/// Width of a bucket.
const BUCKET_MS: i64 = 60_000;
/// Buckets in the window (about 34 hours).
const BUCKETS: usize = 2048;

pub(crate) struct TimeQueue {
    /// Start of the current bucket (a multiple of `BUCKET_MS`).
    base: i64,
    /// The current bucket's entries.
    current: BinaryHeap<Reverse<Entry>>,
    /// `later[i]` holds entries of `[base + (i + 1) × BUCKET_MS, base + (i + 2) × BUCKET_MS)`.
    later: VecDeque<Vec<Reverse<Entry>>>,
    /// Entries in `later`.
    in_later: usize,
    /// Entries past the window, and any pushed before `base` (found by comparing minima).
    overflow: BinaryHeap<Reverse<Entry>>,
}

impl TimeQueue {
    pub(crate) fn new(start: i64, entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut queue = Self {
            base: start.div_euclid(BUCKET_MS) * BUCKET_MS,
            current: BinaryHeap::new(),
            later: (0..BUCKETS - 1).map(|_| Vec::new()).collect(),
            in_later: 0,
            overflow: BinaryHeap::new(),
        };
        for (t, user) in entries {
            queue.push(t, user);
        }
        queue
    }

    fn window_end(&self) -> i64 {
        self.base + BUCKETS as i64 * BUCKET_MS
    }

    pub(crate) fn push(&mut self, t: i64, user: u32) {
        if t < self.base + BUCKET_MS {
            if t >= self.base {
                self.current.push(Reverse((t, user)));
            } else {
                self.overflow.push(Reverse((t, user)));
            }
        } else if t < self.window_end() {
            let i = ((t - self.base) / BUCKET_MS) as usize - 1;
            self.later[i].push(Reverse((t, user)));
            self.in_later += 1;
        } else {
            self.overflow.push(Reverse((t, user)));
        }
    }

    /// The earliest entry, without removing it.
    pub(crate) fn peek(&mut self) -> Option<Entry> {
        while self.current.is_empty() && (self.in_later > 0 || !self.overflow.is_empty()) {
            if self.in_later == 0 {
                // Nothing in the window: jump to the overflow's earliest minute.
                let Reverse((t, _)) = *self.overflow.peek().expect("not empty");
                if t < self.window_end() {
                    return Some((t, self.overflow.peek().expect("not empty").0.1));
                }
                self.base = t.div_euclid(BUCKET_MS) * BUCKET_MS - BUCKET_MS;
            }
            self.rotate();
        }
        let current = self.current.peek().map(|r| r.0);
        let overflow = self.overflow.peek().map(|r| r.0);
        match (current, overflow) {
            (Some(c), Some(o)) => Some(c.min(o)),
            (c, o) => c.or(o),
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Entry> {
        let first = self.peek()?;
        if self.current.peek().is_some_and(|r| r.0 == first) {
            self.current.pop();
        } else {
            self.overflow.pop();
        }
        Some(first)
    }

    /// Moves the window one bucket on: the next bucket becomes the current heap, and overflow
    /// entries now inside the window move into their buckets.
    fn rotate(&mut self) {
        let next = self.later.pop_front().expect("window has buckets");
        self.in_later -= next.len();
        self.current = BinaryHeap::from(next);
        // A fresh bucket rather than the spent one: reused vectors would each keep the capacity
        // of the busiest minute they ever held, over 2048 buckets.
        self.later.push_back(Vec::new());
        self.base += BUCKET_MS;
        let end = self.window_end();
        while let Some(&Reverse((t, user))) = self.overflow.peek() {
            if t >= end || t < self.base {
                break;
            }
            self.overflow.pop();
            self.push(t, user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Stream};

    #[test]
    fn pops_in_the_order_of_one_heap() {
        let mut rng = Rng::new(1, Stream::User, 0, 0);
        let start = 1_000_000_000;
        let initial: Vec<Entry> =
            (0..2000).map(|u| (start + (rng.f64() * 5.0 * 86_400_000.0) as i64, u)).collect();
        let mut reference: BinaryHeap<Reverse<Entry>> = initial.iter().map(|&e| Reverse(e)).collect();
        let mut queue = TimeQueue::new(start, initial);
        let mut now = start;
        for step in 0..20_000 {
            let expected = reference.pop().map(|r| r.0);
            assert_eq!(queue.pop(), expected, "step {step}");
            let Some((t, user)) = expected else { break };
            now = now.max(t);
            // Re-schedule like users do: seconds, hours, days or months ahead, sometimes at the
            // same instant, sometimes (an intervention) right now.
            let ahead = match rng.below(5) {
                0 => 10_000 + (rng.exp() * 90_000.0) as i64,
                1 => (rng.exp() * 86_400_000.0) as i64,
                2 => (rng.exp() * 40.0 * 86_400_000.0) as i64,
                3 => 0,
                _ => 1 + rng.below(1000) as i64,
            };
            reference.push(Reverse((now + ahead, user)));
            queue.push(now + ahead, user);
            if rng.chance(0.05) {
                // A stale duplicate, as an intervention leaves behind.
                reference.push(Reverse((now + 5, user)));
                queue.push(now + 5, user);
            }
        }
        assert_eq!(queue.peek(), reference.peek().map(|r| r.0));
    }
}
