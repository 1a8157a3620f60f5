//! Which slot a new request takes: the idle one whose cached tokens share the longest
//! prefix with its prompt, so only the rest is evaluated.

use crate::tokenizer::TokenId;

/// An idle slot as the choice sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate<'a> {
    /// The slot (and sequence) index.
    pub id: usize,
    /// Tokens whose keys and values the slot holds, from position 0.
    pub cached: &'a [TokenId],
    /// When the slot was last released (a counter; smaller is older).
    pub last_used: u64,
}

/// Where a request goes and what it reuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Choice {
    /// The slot it takes.
    pub slot: usize,
    /// Leading prompt tokens it reuses instead of evaluating.
    pub reuse: usize,
    /// The slot to share the reused tokens from, when it is not `slot` itself.
    pub copy_from: Option<usize>,
}

/// Picks a slot among `idle` for `prompt` (never empty). At least the prompt's last
/// token is always evaluated, since its logits are needed. With `multi_user`, a slot
/// whose cache would be cut short is left intact and its prefix shared into the least
/// recently used other slot, so a system prompt that several users share survives.
pub(super) fn choose(
    idle: &[Candidate<'_>],
    prompt: &[TokenId],
    multi_user: bool,
) -> Option<Choice> {
    let common = |c: &Candidate<'_>| {
        c.cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
    };
    let best = idle
        .iter()
        .max_by_key(|c| (common(c), std::cmp::Reverse(c.last_used)))?;
    let reuse = common(best).min(prompt.len().saturating_sub(1));
    if multi_user && reuse > 0 && best.cached.len() > reuse {
        let other = idle
            .iter()
            .filter(|c| c.id != best.id)
            .min_by_key(|c| (!c.cached.is_empty(), c.last_used));
        if let Some(other) = other {
            return Some(Choice {
                slot: other.id,
                reuse,
                copy_from: Some(best.id),
            });
        }
    }
    Some(Choice {
        slot: best.id,
        reuse,
        copy_from: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: usize, cached: &[TokenId], last_used: u64) -> Candidate<'_> {
        Candidate {
            id,
            cached,
            last_used,
        }
    }

    #[test]
    fn the_longest_shared_prefix_wins() {
        let (a, b) = ([1, 2, 9], [1, 2, 3, 4]);
        let idle = [cand(0, &a, 5), cand(1, &b, 1)];
        let choice = choose(&idle, &[1, 2, 3, 4, 5], false).unwrap();
        assert_eq!((choice.slot, choice.reuse, choice.copy_from), (1, 4, None));
    }

    #[test]
    fn the_last_prompt_token_is_always_evaluated() {
        let a = [1, 2, 3];
        let choice = choose(&[cand(0, &a, 0)], &[1, 2, 3], false).unwrap();
        assert_eq!(choice.reuse, 2);
    }

    #[test]
    fn without_a_shared_prefix_the_least_recently_used_slot_is_taken() {
        let (a, b) = ([7], [8]);
        let idle = [cand(0, &a, 9), cand(1, &b, 3)];
        assert_eq!(choose(&idle, &[1, 2], false).unwrap().slot, 1);
        assert_eq!(choose(&[], &[1, 2], false), None);
    }

    #[test]
    fn multi_user_keeps_a_longer_cache_and_shares_its_prefix_elsewhere() {
        let (system, other) = ([1, 2, 3, 10, 11], [5]);
        let idle = [cand(0, &system, 1), cand(1, &other, 0)];
        let prompt = [1, 2, 3, 20];
        let choice = choose(&idle, &prompt, true).unwrap();
        assert_eq!(
            choice,
            Choice {
                slot: 1,
                reuse: 3,
                copy_from: Some(0)
            }
        );
        // Single-user mode overwrites the tail of the best slot instead.
        assert_eq!(choose(&idle, &prompt, false).unwrap().slot, 0);
        // A slot whose whole cache is the prefix is simply extended.
        let exact = [1, 2, 3];
        let idle = [cand(0, &exact, 1), cand(1, &other, 0)];
        assert_eq!(choose(&idle, &prompt, true).unwrap().copy_from, None);
    }
}
