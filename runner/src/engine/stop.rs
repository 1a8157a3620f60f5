//! Stop strings: the text a generation must end at, which may arrive split over several
//! tokens and is never sent to the caller.
//!
//! Generated text goes through [`StopMatcher::push`]; text that could still be the start
//! of a stop string is held back until the next token decides it.

/// What pushing text released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// No stop string yet; this text is safe to send.
    Continue(String),
    /// A stop string was found; this text came before it and is the last to send.
    Stopped(String),
}

/// Finds stop strings in a stream of text.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds generated text; returns what can be sent now.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return StopOutcome::Continue(std::mem::take(&mut self.held));
        }
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            self.held.truncate(at);
            return StopOutcome::Stopped(std::mem::take(&mut self.held));
        }
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep_from);
        StopOutcome::Continue(std::mem::replace(&mut self.held, rest))
    }

    /// The text held back, released because the generation ended another way.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()));
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                StopOutcome::Continue(t) => out.push_str(&t),
                StopOutcome::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn a_stop_split_over_tokens_ends_the_text_before_it() {
        assert_eq!(
            run(
                &["</answer>"],
                &["The cat", " sat</", "ans", "wer> and more"]
            ),
            ("The cat sat".to_string(), true)
        );
    }

    #[test]
    fn a_false_start_is_released_once_it_cannot_match() {
        let mut m = StopMatcher::new(["STOP".to_string()]);
        assert_eq!(m.push("a ST"), StopOutcome::Continue("a ".into()));
        assert_eq!(m.push("ART"), StopOutcome::Continue("START".into()));
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        assert_eq!(
            run(&["world", "lo w"], &["hello world"]),
            ("hel".to_string(), true)
        );
    }

    #[test]
    fn held_text_is_flushed_when_generation_ends_otherwise() {
        assert_eq!(run(&["\n\n"], &["line\n"]), ("line\n".to_string(), false));
    }

    #[test]
    fn multibyte_text_is_held_on_character_boundaries() {
        assert_eq!(run(&["éè"], &["café", "è!"]), ("caf".to_string(), true));
        assert_eq!(run(&["ü"], &["naïve"]), ("naïve".to_string(), false));
    }

    #[test]
    fn without_stops_everything_passes_at_once() {
        let mut m = StopMatcher::new([String::new()]);
        assert_eq!(m.push("abc"), StopOutcome::Continue("abc".into()));
        assert_eq!(m.flush(), "");
    }
}
