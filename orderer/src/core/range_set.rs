//! A set of slots kept as disjoint half-open ranges, for skips that can span millions
//! of slots after a long partition.

use std::collections::BTreeMap;

use super::types::Slot;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeSet {
    /// start -> end (exclusive); ranges are disjoint and never adjacent.
    ranges: BTreeMap<Slot, Slot>,
}

impl RangeSet {
    pub fn insert(&mut self, from: Slot, to: Slot) {
        if from >= to {
            return;
        }
        let mut start = from;
        let mut end = to;
        // Merge with a range that starts before `from` and reaches it.
        if let Some((&s, &e)) = self.ranges.range(..=from).next_back() {
            if e >= from {
                start = s;
                end = end.max(e);
            }
        }
        // Swallow every range that starts inside [start, end].
        let swallowed: Vec<Slot> = self.ranges.range(start..=end).map(|(&s, _)| s).collect();
        for s in swallowed {
            let e = self.ranges.remove(&s).expect("key just listed");
            end = end.max(e);
        }
        self.ranges.insert(start, end);
    }

    /// The end of the range holding `slot`, if any.
    pub fn range_end_containing(&self, slot: Slot) -> Option<Slot> {
        let (_, &e) = self.ranges.range(..=slot).next_back()?;
        (e > slot).then_some(e)
    }

    pub fn contains(&self, slot: Slot) -> bool {
        self.range_end_containing(slot).is_some()
    }

    /// Forgets every slot below `slot`.
    pub fn remove_below(&mut self, slot: Slot) {
        let below: Vec<(Slot, Slot)> = self.ranges.range(..slot).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in below {
            self.ranges.remove(&s);
            if e > slot {
                self.ranges.insert(slot, e);
            }
        }
    }

    /// The ranges overlapping `[from, to)`, clipped to it.
    pub fn clipped(&self, from: Slot, to: Slot) -> Vec<(Slot, Slot)> {
        let mut out = Vec::new();
        if let Some((_, &e)) = self.ranges.range(..from).next_back() {
            if e > from {
                out.push((from, e.min(to)));
            }
        }
        for (&s, &e) in self.ranges.range(from..to) {
            out.push((s, e.min(to)));
        }
        out
    }

    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let mut set = RangeSet::default();
        set.insert(10, 20);
        set.insert(30, 40);
        set.insert(20, 30);
        assert_eq!(set.range_count(), 1);
        assert_eq!(set.range_end_containing(10), Some(40));
        assert_eq!(set.range_end_containing(39), Some(40));
        assert!(!set.contains(40));
        assert!(!set.contains(9));
        set.insert(5, 12);
        assert_eq!(set.range_end_containing(5), Some(40));
        set.insert(50, 50);
        assert_eq!(set.range_count(), 1);
    }

    #[test]
    fn removes_below_and_clips() {
        let mut set = RangeSet::default();
        set.insert(0, 10);
        set.insert(20, 30);
        set.remove_below(5);
        assert!(!set.contains(4));
        assert!(set.contains(5));
        assert_eq!(set.clipped(8, 25), vec![(8, 10), (20, 25)]);
        set.remove_below(100);
        assert_eq!(set.range_count(), 0);
    }
}
