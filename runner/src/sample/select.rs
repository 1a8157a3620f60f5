//! Picking the best logits out of a whole vocabulary: the greedy token and the top k.
//!
//! Both run once per sequence per decode step on the engine's thread, while the kernel
//! pool waits, over 49,152 (SmolLM2) to 262,144 (Gemma 3) logits: a plain scan or a full
//! sort there cost more than a small model's whole forward pass (`sample-bench`).
//!
//! The order is the sampler's: highest logit first by `f32::total_cmp`, ties to the
//! lowest id.

use crate::tokenizer::TokenId;

/// Logits per stretch whose highest value bounds the top k from below.
const STRETCH: usize = 64;

/// The sampler's order of `(id, logit)` candidates.
fn order(a: &(TokenId, f32), b: &(TokenId, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Fills `c` with the top `k` logits (all of them when `k` is 0), sorted in the
/// sampler's order: the k a sort of the whole vocabulary would put first, since the
/// order is total.
///
/// The highest logit of each stretch of [`STRETCH`] is a real logit, so the k-th highest
/// of those maxima, `floor`, has at least k logits at or above it, and a logit below it
/// ranks below k others: only the logits at or above `floor` can be in the top k, and
/// selecting among those few is exact. `maxima` is working space.
pub(super) fn top_candidates(
    c: &mut Vec<(TokenId, f32)>,
    maxima: &mut Vec<f32>,
    k: usize,
    logits: &[f32],
) {
    c.clear();
    let all = |c: &mut Vec<(TokenId, f32)>| {
        c.extend(logits.iter().enumerate().map(|(i, &l)| (i as TokenId, l)));
    };
    if k == 0 || k >= logits.len() {
        all(c);
    } else {
        match floor(maxima, k, logits) {
            // Float comparison: a NaN, which `total_cmp` may rank first, sent us to `all`.
            Some(floor) => c.extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|&(_, &l)| l >= floor)
                    .map(|(i, &l)| (i as TokenId, l)),
            ),
            None => all(c),
        }
        if c.len() > k {
            c.select_nth_unstable_by(k - 1, order);
            c.truncate(k);
        }
    }
    c.sort_unstable_by(order);
}

/// The k-th highest of the stretches' maxima; `None` when there are fewer than k
/// stretches or a logit is NaN.
fn floor(maxima: &mut Vec<f32>, k: usize, logits: &[f32]) -> Option<f32> {
    maxima.clear();
    let mut nan = [false; 16];
    let stretches = logits.chunks_exact(STRETCH);
    let rest = stretches.remainder();
    for stretch in stretches {
        // Independent lanes over whole vectors, so that the compiler vectorizes.
        let mut lanes = [f32::NEG_INFINITY; 16];
        for part in stretch.chunks_exact(16) {
            for ((m, n), &x) in lanes.iter_mut().zip(&mut nan).zip(part) {
                *n |= x.is_nan();
                *m = if x > *m { x } else { *m };
            }
        }
        maxima.push(lanes.into_iter().fold(f32::NEG_INFINITY, f32::max));
    }
    if !rest.is_empty() {
        nan[0] |= rest.iter().any(|x| x.is_nan());
        maxima.push(rest.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    }
    if nan.contains(&true) || maxima.len() < k {
        return None;
    }
    let (_, &mut floor, _) = maxima.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    Some(floor)
}

/// The id of the highest logit, the lowest id among equals; a NaN never wins, except
/// in first place, where nothing beats it (llama.cpp's greedy sampler, which compares
/// each logit with the best so far). 0 for no logits.
pub(super) fn greedy(logits: &[f32]) -> TokenId {
    let Some(&first) = logits.first() else {
        return 0;
    };
    if first.is_nan() {
        return 0;
    }
    // The highest value first, over independent lanes the compiler vectorizes, then the
    // first place that holds it: a scan that keeps the best index would be a serial
    // chain of compares and branches, three times slower over a whole vocabulary.
    let mut lanes = [first; 16];
    let chunks = logits.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (best, &x) in lanes.iter_mut().zip(chunk) {
            if x > *best {
                *best = x;
            }
        }
    }
    let max = lanes
        .iter()
        .chain(rest)
        .fold(first, |m, &x| if x > m { x } else { m });
    first_equal(logits, max).unwrap_or(0) as TokenId
}

/// The first place of `value` in `logits`, sixteen at a time.
fn first_equal(logits: &[f32], value: f32) -> Option<usize> {
    let chunks = logits.chunks_exact(16);
    let tail = logits.len() - chunks.remainder().len();
    for (i, chunk) in chunks.enumerate() {
        if chunk.iter().fold(false, |any, &x| any | (x == value)) {
            return chunk.iter().position(|&x| x == value).map(|j| 16 * i + j);
        }
    }
    logits[tail..]
        .iter()
        .position(|&x| x == value)
        .map(|j| tail + j)
}
