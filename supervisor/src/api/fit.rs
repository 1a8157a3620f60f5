//! A conversation that does not fit the context: the oldest messages are dropped until
//! it does, as Ollama does, but never silently. The count of dropped messages and tokens
//! is logged and goes into the final answer; with `truncate: false` the request is
//! refused with both token counts instead.
//!
//! System messages and the last message are always kept. Counting means rendering and
//! tokenizing, so the number to drop is found by bisection: a few runner calls, not one
//! per message.

use serde::Serialize;

use super::ApiError;
use crate::template::Message;

/// What fitting dropped from a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// Messages left out, the oldest first.
    pub messages: usize,
    /// Tokens the prompt lost by it.
    pub tokens: usize,
}

/// What counts a prompt's tokens: the model's runner, or a stand-in in tests.
pub trait Counter {
    /// The tokens `text` is as a prompt.
    fn count(&self, text: &str) -> impl Future<Output = Result<usize, ApiError>> + Send;
}

/// The prompt for `messages` within `num_ctx` tokens, and what was dropped to get there.
///
/// `render` writes a prompt for a list of messages and `counter` tokenizes one. Without
/// `truncate`, a conversation that does not fit is a 400.
pub async fn fit(
    messages: &[Message],
    num_ctx: usize,
    truncate: bool,
    render: impl Fn(&[Message]) -> Result<String, ApiError>,
    counter: &impl Counter,
) -> Result<(String, Option<Dropped>), ApiError> {
    let count = async |text: &str| counter.count(text).await;
    let whole = render(messages)?;
    let tokens = count(&whole).await?;
    if tokens <= num_ctx {
        return Ok((whole, None));
    }
    if !truncate {
        return Err(ApiError::bad_request(format!(
            "the conversation is {tokens} tokens but the context holds {num_ctx}: shorten it, \
             load the model with a larger num_ctx, or leave truncate on to drop the oldest \
             messages"
        )));
    }
    // Messages that may go, oldest first: not a system message, not the last one.
    let last = messages.len().saturating_sub(1);
    let droppable: Vec<usize> = (0..last)
        .filter(|&i| messages[i].role != "system")
        .collect();
    let without = |n: usize| -> Vec<Message> {
        let gone = &droppable[..n];
        let kept = messages.iter().enumerate();
        kept.filter(|(i, _)| !gone.contains(i))
            .map(|(_, m)| m.clone())
            .collect()
    };
    // The fewest drops that fit: fits(n) holds for every n above the answer.
    let (mut lo, mut hi) = (1, droppable.len());
    let mut best = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let prompt = render(&without(mid))?;
        let n = count(&prompt).await?;
        if n <= num_ctx {
            best = Some((mid, prompt, n));
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    let Some((dropped, prompt, left)) = best else {
        let kept = render(&without(droppable.len()))?;
        let n = count(&kept).await?;
        return Err(ApiError::bad_request(format!(
            "the last message and the system messages alone are {n} tokens but the \
             context holds {num_ctx}: shorten them or load the model with a larger num_ctx"
        )));
    };
    let dropped = Dropped {
        messages: dropped,
        tokens: tokens - left,
    };
    tracing::warn!(
        messages = dropped.messages,
        tokens = dropped.tokens,
        num_ctx,
        "the conversation did not fit the context: the oldest messages were dropped"
    );
    Ok((prompt, Some(dropped)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// One token per character, counting its calls.
    #[derive(Default)]
    struct Chars(AtomicUsize);

    impl Counter for Chars {
        async fn count(&self, text: &str) -> Result<usize, ApiError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(text.chars().count())
        }
    }

    fn chat(roles: &[&str]) -> Vec<Message> {
        roles
            .iter()
            .enumerate()
            .map(|(i, r)| Message::new(*r, format!("m{i}")))
            .collect()
    }

    /// Each message is its content between bars: "|m0||m1|", one token a character.
    fn render(messages: &[Message]) -> Result<String, ApiError> {
        Ok(messages
            .iter()
            .map(|m| format!("|{}|", m.content))
            .collect())
    }

    async fn run(
        messages: &[Message],
        num_ctx: usize,
        truncate: bool,
    ) -> (Result<(String, Option<Dropped>), ApiError>, usize) {
        let counter = Chars::default();
        let result = fit(messages, num_ctx, truncate, render, &counter).await;
        (result, counter.0.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn a_conversation_that_fits_is_rendered_once() {
        let (result, calls) = run(&chat(&["system", "user"]), 100, true).await;
        assert_eq!(result.unwrap(), ("|m0||m1|".to_owned(), None));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn the_oldest_non_system_messages_go_first_and_the_count_is_reported() {
        let messages = chat(&["system", "user", "assistant", "user", "assistant", "user"]);
        // Each message is 4 characters; 3 fit.
        let (result, _) = run(&messages, 12, true).await;
        let (prompt, dropped) = result.unwrap();
        assert_eq!(prompt, "|m0||m4||m5|");
        assert_eq!(
            dropped,
            Some(Dropped {
                messages: 3,
                tokens: 12
            })
        );
    }

    #[tokio::test]
    async fn bisection_keeps_the_runner_calls_few() {
        let roles: Vec<&str> = std::iter::repeat_n("user", 1000).collect();
        let messages = chat(&roles);
        let (result, calls) = run(&messages, 100, true).await;
        let (_, dropped) = result.unwrap();
        assert!(dropped.unwrap().messages > 900);
        assert!(calls <= 12, "{calls} calls");
    }

    #[tokio::test]
    async fn truncate_false_refuses_with_both_counts() {
        let (result, _) = run(&chat(&["user", "assistant", "user"]), 8, false).await;
        let error = result.unwrap_err();
        assert!(
            error.message().contains("12 tokens") && error.message().contains("holds 8"),
            "{}",
            error.message()
        );
    }

    #[tokio::test]
    async fn a_last_message_too_long_alone_is_refused() {
        let mut messages = chat(&["system", "user"]);
        messages[1].content = "x".repeat(50);
        let (result, _) = run(&messages, 20, true).await;
        let error = result.unwrap_err();
        assert!(
            error.message().contains("last message"),
            "{}",
            error.message()
        );
    }
}
