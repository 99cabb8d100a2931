//! Pure: sorting in few bytes of binary.
//!
//! Each element type std's `sort` or `sort_unstable` is used with (and each `collect()` into
//! a `BTreeSet`, which sorts first) puts its own copy of driftsort or ipnsort into the binary,
//! 2 to 4 KiB each: 36 KiB for the lists and sets vfio-bind built. The heapsort here costs a
//! few hundred bytes per type and sorts in place in O(n log n), plenty for lists of at most a
//! few thousand entries. It is not stable: every list vfio-bind sorts holds distinct elements
//! (directory entries, PCI addresses, group numbers), so the order is the same as std's.

use std::collections::BTreeSet;

/// Sorts `items` so that no item is `less` than the one before it (heapsort: in place, not
/// stable).
pub fn sort_by<T>(items: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    let len = items.len();
    // The first len / 2 rounds build a max-heap; each of the next len rounds swaps the largest
    // to the end of the shrinking heap and sifts the new root down.
    for round in (0..len + len / 2).rev() {
        let (mut node, heap_len) = if round >= len {
            (round - len, len)
        } else {
            items.swap(0, round);
            (0, round)
        };
        loop {
            let mut child = 2 * node + 1;
            if child >= heap_len {
                break;
            }
            if child + 1 < heap_len && less(&items[child], &items[child + 1]) {
                child += 1;
            }
            if !less(&items[node], &items[child]) {
                break;
            }
            items.swap(node, child);
            node = child;
        }
    }
}

/// Sorts `items` in ascending order (see [`sort_by`]).
pub fn sort<T: Ord>(items: &mut [T]) {
    sort_by(items, |a, b| a < b);
}

/// The set of `items`, built one insertion at a time: `collect()` into a `BTreeSet` would
/// first sort them with std's stable sort, another 4 KiB per element type.
pub fn set_of<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    let mut set = BTreeSet::new();
    set.extend(items);
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sorts_the_short_lists_and_leaves_empty_ones_alone() {
        let mut empty: [u8; 0] = [];
        sort(&mut empty);
        let mut one = [7];
        sort(&mut one);
        assert_eq!(one, [7]);
        let mut two = [9, 3];
        sort(&mut two);
        assert_eq!(two, [3, 9]);
        let mut names = ["fb1", "card0", "fb0", "card10", "card2"].map(String::from);
        sort(&mut names);
        assert_eq!(names, ["card0", "card10", "card2", "fb0", "fb1"]);
    }

    #[test]
    fn sorts_by_the_order_given() {
        let mut pairs = [(3, 'c'), (1, 'a'), (2, 'b')];
        sort_by(&mut pairs, |a, b| a.0 > b.0);
        assert_eq!(pairs, [(3, 'c'), (2, 'b'), (1, 'a')]);
    }

    #[test]
    fn a_set_holds_each_item_once_in_order() {
        let set = set_of([5, 1, 5, 3]);
        assert_eq!(set.into_iter().collect::<Vec<_>>(), [1, 3, 5]);
    }

    proptest! {
        #[test]
        fn gives_the_order_std_gives(mut items in proptest::collection::vec(any::<u16>(), 0..300)) {
            let mut expected = items.clone();
            expected.sort();
            sort(&mut items);
            prop_assert_eq!(items, expected);
        }
    }
}
