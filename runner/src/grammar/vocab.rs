//! Our vocabulary as the grammar engine sees it: each token's bytes in a trie.
//!
//! Text tokens are the bytes they decode to (byte-fallback tokens one byte each).
//! Control, unknown and unused tokens get llguidance's special-token form (a 0xFF byte,
//! which no UTF-8 text contains, then their name), so no JSON grammar ever allows them;
//! the end-of-generation ones among them are the grammar's EOS set, allowed only where
//! the document may end.

use std::sync::Arc;

use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};

use super::GrammarError;
use crate::tokenizer::{TokenId, TokenKind, Tokenizer};

/// The trie of `tokenizer`'s vocabulary, with its end-of-generation tokens as EOS.
pub(super) fn token_env(tokenizer: &Tokenizer) -> Result<TokEnv, GrammarError> {
    let trie = trie(tokenizer)?;
    Ok(Arc::new(Env { trie }))
}

fn trie(tokenizer: &Tokenizer) -> Result<TokTrie, GrammarError> {
    let vocab = tokenizer.vocab();
    let n = u32::try_from(vocab.len())
        .map_err(|_| GrammarError::Vocabulary("the vocabulary is too large".into()))?;
    let words: Vec<Vec<u8>> = (0..n).map(|id| token_word(tokenizer, id)).collect();
    let eos: Vec<TokenId> = (0..n)
        .filter(|&id| vocab.is_end_of_generation(id))
        .collect();
    let Some(&first_eos) = eos.first() else {
        return Err(GrammarError::Vocabulary(
            "the model has no end-of-generation token, so no document could end".into(),
        ));
    };
    let mut info = TokRxInfo::new(n, first_eos);
    info.tok_bos = vocab.bos();
    // The trie's builder checks its input with assertions; ours is well formed, and a
    // surprise must be an error, never a crash of the runner.
    std::panic::catch_unwind(|| TokTrie::from(&info, &words).with_eos_tokens(&eos))
        .map_err(|_| GrammarError::Vocabulary("the token trie could not be built".into()))
}

/// The bytes the trie holds for token `id`.
fn token_word(tokenizer: &Tokenizer, id: TokenId) -> Vec<u8> {
    let vocab = tokenizer.vocab();
    match vocab.kind(id) {
        TokenKind::Normal | TokenKind::UserDefined | TokenKind::Byte => {
            tokenizer.token_bytes(id, false)
        }
        TokenKind::Control | TokenKind::Unknown | TokenKind::Undefined | TokenKind::Unused => {
            let mut word = vec![TokTrie::SPECIAL_TOKEN_MARKER];
            word.extend_from_slice(vocab.text(id).unwrap_or_default().as_bytes());
            word
        }
    }
}

/// The engine's view of the tokenizer. Forced tokens are off (we sample every token, so
/// the output is exactly what the model chose), hence the greedy tokenization below is
/// only a fallback the engine never relies on.
struct Env {
    trie: TokTrie,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<toktrie::TokenId> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}
