//! The set of periods a person was active in: a bitset anchored at the earliest period seen.
//!
//! A scan keeps one per person (a million of them or more), so the common case must cost no
//! allocation: the first 64 periods live inline (more than a year of weeks, five years of
//! months), later ones in a boxed tail that only long-lived people get. Periods are absolute
//! indexes, because a late event can still move the person's first period earlier; offsets are
//! taken at the end.
//!
//! Bits at `cap` periods or more after the earliest are dropped: the earliest period only ever
//! moves earlier, so such a period is at least `cap` periods after the person's final first
//! period too, beyond any column a report shows. That bounds a set at `cap` bits whatever
//! timestamps a client sends.

/// Active periods of one person.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActiveSet {
    /// The earliest period; bit `i` is period `base + i`.
    base: i32,
    /// Bits 0..64. When the set is not empty, bit 0 is set (`base` is a member).
    low: u64,
    /// Bits 64.. in words of 64; `None` for nearly everyone.
    high: Option<Box<[u64]>>,
}

impl ActiveSet {
    pub fn is_empty(&self) -> bool {
        self.low == 0
    }

    /// The earliest period, when any.
    pub fn first(&self) -> Option<i32> {
        (!self.is_empty()).then_some(self.base)
    }

    /// Adds `period`, keeping only periods less than `cap` (≥ 1) after the earliest.
    pub fn insert(&mut self, period: i32, cap: u32) {
        debug_assert!(cap >= 1);
        if self.is_empty() {
            self.base = period;
            self.low = 1;
            return;
        }
        if period < self.base {
            self.rebase(period, cap);
        }
        let offset = (i64::from(period) - i64::from(self.base)) as u64;
        if offset >= u64::from(cap) {
            return;
        }
        if offset < 64 {
            self.low |= 1 << offset;
        } else {
            let word = (offset / 64) as usize;
            let high = self.high.get_or_insert_with(Default::default);
            if high.len() < word {
                let mut grown = std::mem::take(high).into_vec();
                grown.resize(word, 0);
                *high = grown.into_boxed_slice();
            }
            high[word - 1] |= 1 << (offset % 64);
        }
    }

    /// Adds every period of `other` (a merged person's), with the same cap.
    pub fn union(&mut self, other: &ActiveSet, cap: u32) {
        if let Some(first) = other.first() {
            // The earliest first, so the rest need no rebase.
            self.insert(first, cap);
        }
        for period in other.iter() {
            self.insert(period, cap);
        }
    }

    /// The periods, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        let base = i64::from(self.base);
        std::iter::once(self.low)
            .chain(self.high.iter().flat_map(|h| h.iter().copied()))
            .enumerate()
            .flat_map(move |(word, mut bits)| {
                std::iter::from_fn(move || {
                    if bits == 0 {
                        return None;
                    }
                    let bit = bits.trailing_zeros();
                    bits &= bits - 1;
                    Some((base + word as i64 * 64 + i64::from(bit)) as i32)
                })
            })
    }

    /// Moves the anchor down to `period` (< base), dropping what falls at `cap` or beyond.
    fn rebase(&mut self, period: i32, cap: u32) {
        let shift = (i64::from(self.base) - i64::from(period)) as u64;
        let words_kept = (u64::from(cap)).div_ceil(64) as usize;
        let old: Vec<u64> =
            std::iter::once(self.low).chain(self.high.iter().flat_map(|h| h.iter().copied())).collect();
        let mut new = vec![0u64; words_kept];
        let (word_shift, bit_shift) = ((shift / 64) as usize, (shift % 64) as u32);
        for (i, &word) in old.iter().enumerate() {
            let at = i + word_shift;
            if at < words_kept {
                new[at] |= word << bit_shift;
            }
            if bit_shift > 0 && at + 1 < words_kept {
                new[at + 1] |= word >> (64 - bit_shift);
            }
        }
        if !cap.is_multiple_of(64) {
            new[words_kept - 1] &= (1u64 << (cap % 64)) - 1;
        }
        while new.len() > 1 && new.last() == Some(&0) {
            new.pop();
        }
        self.base = period;
        self.low = new[0] | 1;
        self.high = (new.len() > 1).then(|| new[1..].to_vec().into_boxed_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(periods: &[i32], cap: u32) -> ActiveSet {
        let mut s = ActiveSet::default();
        for &p in periods {
            s.insert(p, cap);
        }
        s
    }

    fn members(s: &ActiveSet) -> Vec<i32> {
        s.iter().collect()
    }

    #[test]
    fn keeps_periods_in_order_whatever_the_arrival_order() {
        let s = set(&[2900, 2903, 2900, 2901], 520);
        assert_eq!(members(&s), [2900, 2901, 2903]);
        assert_eq!(s.first(), Some(2900));
        assert!(s.high.is_none(), "a short history stays inline");
        // A late event before the first moves the anchor and keeps the rest.
        let late = set(&[2900, 2903, 2890], 520);
        assert_eq!(members(&late), [2890, 2900, 2903]);
        assert_eq!(late.first(), Some(2890));
        assert!(ActiveSet::default().is_empty());
        assert_eq!(ActiveSet::default().iter().count(), 0);
    }

    #[test]
    fn long_histories_spill_past_64_periods_and_rebase_across_words() {
        let periods: Vec<i32> = (0..300).map(|i| 1000 + i * 3).collect();
        let s = set(&periods, 2000);
        assert_eq!(members(&s), periods);
        assert!(s.high.is_some());
        // With the default cap the tail stops at 520 periods.
        let capped = set(&periods, 520);
        assert_eq!(members(&capped), periods.iter().copied().filter(|p| *p < 1520).collect::<Vec<_>>());
        // Rebasing by amounts that are and are not multiples of 64.
        for shift in [1, 63, 64, 65, 128, 200] {
            let mut s = set(&periods, 2000);
            s.insert(1000 - shift, 2000);
            let mut expected = vec![1000 - shift];
            expected.extend(&periods);
            assert_eq!(members(&s), expected, "shift {shift}");
        }
    }

    #[test]
    fn drops_periods_at_cap_or_beyond_the_earliest() {
        let s = set(&[10, 11, 15, 20], 6);
        assert_eq!(members(&s), [10, 11, 15]);
        // A late event moves the earliest down: what is now too far is dropped too.
        let mut s = set(&[10, 11, 15], 6);
        s.insert(8, 6);
        assert_eq!(members(&s), [8, 10, 11]);
        // A huge jump costs nothing.
        let mut s = set(&[0], 520);
        s.insert(400_000, 520);
        assert_eq!(members(&s), [0]);
        assert!(s.high.is_none());
        let mut s = set(&[400_000], 520);
        s.insert(0, 520);
        assert_eq!(members(&s), [0]);
        assert!(s.high.is_none());
        // A cap on a word boundary and beyond it.
        let s = set(&[0, 63, 64, 127, 128], 128);
        assert_eq!(members(&s), [0, 63, 64, 127]);
        let mut s = set(&[1, 64, 65, 128], 128);
        s.insert(0, 128);
        assert_eq!(members(&s), [0, 1, 64, 65]);
    }

    #[test]
    fn union_is_the_set_union() {
        let mut a = set(&[100, 104, 180], 520);
        let b = set(&[90, 104, 105], 520);
        a.union(&b, 520);
        assert_eq!(members(&a), [90, 100, 104, 105, 180]);
        let mut empty = ActiveSet::default();
        empty.union(&a, 520);
        assert_eq!(members(&empty), members(&a));
        a.union(&ActiveSet::default(), 520);
        assert_eq!(members(&a), [90, 100, 104, 105, 180]);
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<ActiveSet>() <= 32, "{}", std::mem::size_of::<ActiveSet>());
    }
}
