//! Selecting the largest logits for sampling: the k best indices, and the best one.
//!
//! The order is total and deterministic: a higher value ranks first, equal values rank
//! by lower index, and NaN ranks below every number (NaNs among themselves by index).
//! llama.cpp's samplers leave ties to `std::partial_sort`; its greedy sampler keeps the
//! first maximum, as [`argmax`] does.

use std::cmp::Ordering;

/// Whether entry `a` ranks strictly before entry `b` (see the module docs).
#[inline]
fn ranks_before(values: &[f32], a: usize, b: usize) -> bool {
    let (x, y) = (values[a], values[b]);
    match (x.is_nan(), y.is_nan()) {
        (false, false) => x > y || (x == y && a < b),
        (false, true) => true,
        (true, false) => false,
        (true, true) => a < b,
    }
}

/// Index of the largest value, the lowest such index on ties; NaN counts as lower than
/// any number. `None` for an empty slice.
pub fn argmax(values: &[f32]) -> Option<usize> {
    // Start from the first number; a strictly greater later value wins, so ties keep the
    // lower index and NaN (never greater) is skipped. All NaN: the first.
    let start = values.iter().position(|v| !v.is_nan()).unwrap_or(0);
    let mut best = start;
    let mut best_value = *values.get(start)?;
    for (i, &v) in values.iter().enumerate().skip(start + 1) {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    Some(best)
}

/// Writes into `out` the indices of the `min(k, values.len())` largest values, best
/// first, in the module's order (ties by lower index).
///
/// `out` is cleared first and used as the working heap, so it allocates only if its
/// capacity is below the answer's length. The cost is O(n log k): one pass keeps the k
/// best seen so far in a heap whose root is the worst of them.
pub fn top_k_indices(values: &[f32], k: usize, out: &mut Vec<usize>) {
    out.clear();
    let k = k.min(values.len());
    if k == 0 {
        return;
    }
    // A heap ordered so that the root is the entry that ranks last.
    let worse = |a: usize, b: usize| ranks_before(values, b, a);
    out.extend(0..k);
    for start in (0..k / 2).rev() {
        sift_down(out, start, &worse);
    }
    // Later indices lose ties, so only a strictly greater value (or any number, while
    // the worst kept entry is NaN) displaces the root.
    let mut root_value = values[out[0]];
    for (i, &v) in values.iter().enumerate().skip(k) {
        if v > root_value || (root_value.is_nan() && !v.is_nan()) {
            out[0] = i;
            sift_down(out, 0, &worse);
            root_value = values[out[0]];
        }
    }
    out.sort_unstable_by(|&a, &b| {
        if a == b {
            Ordering::Equal
        } else if ranks_before(values, a, b) {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    });
}

/// Restores the heap property below `root`, where `worse(a, b)` means `a` belongs
/// nearer the root than `b`.
fn sift_down(heap: &mut [usize], mut root: usize, worse: &impl Fn(usize, usize) -> bool) {
    loop {
        let left = 2 * root + 1;
        if left >= heap.len() {
            return;
        }
        let right = left + 1;
        let child = if right < heap.len() && worse(heap[right], heap[left]) {
            right
        } else {
            left
        };
        if worse(heap[child], heap[root]) {
            heap.swap(child, root);
            root = child;
        } else {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The answer by sorting every index.
    fn sorted_reference(values: &[f32], k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..values.len()).collect();
        idx.sort_by(|&a, &b| {
            let (x, y) = (values[a], values[b]);
            let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
            // NaN last, then descending value, then ascending index.
            x.is_nan()
                .cmp(&y.is_nan())
                .then(key(y).partial_cmp(&key(x)).unwrap_or(Ordering::Equal))
                .then(a.cmp(&b))
        });
        idx.truncate(k);
        idx
    }

    #[test]
    fn picks_largest_best_first() {
        let logits = [0.1f32, 5.0, -3.0, 2.5, 5.5, 0.0];
        let mut out = Vec::new();
        top_k_indices(&logits, 3, &mut out);
        assert_eq!(out, [4, 1, 3]);
        top_k_indices(&logits, 100, &mut out);
        assert_eq!(out, [4, 1, 3, 0, 5, 2]);
        top_k_indices(&logits, 0, &mut out);
        assert!(out.is_empty());
        top_k_indices(&[], 4, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let logits = [1.0f32, 3.0, 3.0, 1.0, 3.0];
        let mut out = Vec::new();
        top_k_indices(&logits, 2, &mut out);
        assert_eq!(out, [1, 2]);
        top_k_indices(&logits, 4, &mut out);
        assert_eq!(out, [1, 2, 4, 0]);
        assert_eq!(argmax(&logits), Some(1));
    }

    #[test]
    fn nan_ranks_last() {
        let logits = [f32::NAN, -1e30, f32::NEG_INFINITY, f32::NAN];
        let mut out = Vec::new();
        top_k_indices(&logits, 4, &mut out);
        assert_eq!(out, [1, 2, 0, 3]);
        assert_eq!(argmax(&logits), Some(1));
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), Some(0));
        assert_eq!(argmax(&[]), None);
    }

    proptest! {
        #[test]
        fn matches_a_full_sort(
            // Few distinct values so ties are common; some NaN.
            raw in prop::collection::vec(0u8..12, 0..300),
            k in 0usize..40,
        ) {
            let values: Vec<f32> =
                raw.iter().map(|&r| if r == 11 { f32::NAN } else { f32::from(r) - 5.0 }).collect();
            let mut out = Vec::new();
            top_k_indices(&values, k, &mut out);
            prop_assert_eq!(&out, &sorted_reference(&values, k));
            prop_assert_eq!(argmax(&values), sorted_reference(&values, 1).first().copied());
        }

        #[test]
        fn matches_a_full_sort_on_continuous_values(
            values in prop::collection::vec(-1e4f32..1e4, 1..2000),
            k in 1usize..100,
        ) {
            let mut out = Vec::new();
            top_k_indices(&values, k, &mut out);
            prop_assert_eq!(&out, &sorted_reference(&values, k));
        }
    }
}
