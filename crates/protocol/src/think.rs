//! Splits `<think>…</think>` reasoning out of model text.
//!
//! Some OpenAI-compatible hosts put a reasoning model's chain of thought
//! inline at the start of `content`. The splitter moves it into the
//! reasoning channel so it never leaks into plain content unless the client
//! asked for it. It works on whole strings and on streams whose tags are
//! split across chunks.

use crate::ir::{ContentPart, Message, Role};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace seen yet; an opening tag may still come.
    Start,
    InThink,
    /// Past the reasoning block (or there was none): plain content.
    Content,
}

/// Stateful splitter for one message's content.
#[derive(Debug, Clone)]
pub struct ThinkSplitter {
    state: State,
    /// Text held back because it may be the beginning of a tag.
    pending: String,
    /// Trim leading whitespace of the content that follows `</think>`.
    trim_after_close: bool,
}

impl Default for ThinkSplitter {
    fn default() -> Self {
        ThinkSplitter::new()
    }
}

/// Text produced by one [`ThinkSplitter::push`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub content: String,
    pub reasoning: String,
}

impl ThinkSplitter {
    pub fn new() -> ThinkSplitter {
        ThinkSplitter {
            state: State::Start,
            pending: String::new(),
            trim_after_close: false,
        }
    }

    /// Feeds the next piece of content.
    pub fn push(&mut self, text: &str) -> Split {
        let mut out = Split::default();
        self.pending.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.is_empty() {
                        return out;
                    }
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.pending = rest.to_string();
                        self.state = State::InThink;
                        continue;
                    }
                    if OPEN.starts_with(trimmed) {
                        // Could still become `<think>`: wait for more.
                        return out;
                    }
                    self.state = State::Content;
                }
                State::InThink => {
                    if let Some(pos) = self.pending.find(CLOSE) {
                        out.reasoning.push_str(&self.pending[..pos]);
                        self.pending = self.pending[pos + CLOSE.len()..].to_string();
                        self.state = State::Content;
                        self.trim_after_close = true;
                        continue;
                    }
                    let keep = partial_suffix(&self.pending, CLOSE);
                    let cut = self.pending.len() - keep;
                    out.reasoning.push_str(&self.pending[..cut]);
                    self.pending.drain(..cut);
                    return out;
                }
                State::Content => {
                    if self.trim_after_close {
                        let trimmed = self.pending.trim_start();
                        if trimmed.is_empty() {
                            self.pending.clear();
                            return out;
                        }
                        self.pending = trimmed.to_string();
                        self.trim_after_close = false;
                    }
                    out.content.push_str(&self.pending);
                    self.pending.clear();
                    return out;
                }
            }
        }
    }

    /// Flushes whatever was held back at the end of the message.
    pub fn finish(&mut self) -> Split {
        let mut out = Split::default();
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::InThink => out.reasoning = rest,
            State::Start | State::Content => {
                if !(self.trim_after_close && rest.trim().is_empty()) {
                    out.content = rest;
                }
            }
        }
        self.state = State::Content;
        out
    }

    /// Splits a complete text in one go.
    pub fn split_all(text: &str) -> Split {
        let mut s = ThinkSplitter::new();
        let mut out = s.push(text);
        let tail = s.finish();
        out.content.push_str(&tail.content);
        out.reasoning.push_str(&tail.reasoning);
        out
    }
}

/// A whole (non-streamed) assistant answer: a `<think>…</think>` prefix of
/// `text` is moved onto the end of `reasoning`, and empty text or reasoning
/// is left out.
pub(crate) fn assistant_message(mut text: String, mut reasoning: Option<String>) -> Message {
    if text.contains(OPEN) {
        let split = ThinkSplitter::split_all(&text);
        if !split.reasoning.is_empty() {
            reasoning = Some(match reasoning {
                Some(r) => r + &split.reasoning,
                None => split.reasoning,
            });
            text = split.content;
        }
    }
    let content = if text.is_empty() {
        Vec::new()
    } else {
        vec![ContentPart::Text(text)]
    };
    let mut message = Message::new(Role::Assistant, content);
    message.reasoning = reasoning.filter(|r| !r.is_empty());
    message
}

/// Length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_suffix(s: &str, tag: &str) -> usize {
    let max = tag.len().saturating_sub(1).min(s.len());
    (1..=max)
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_text() {
        let s = ThinkSplitter::split_all("<think>\nplan it\n</think>\n\nThe answer.");
        assert_eq!(s.reasoning, "\nplan it\n");
        assert_eq!(s.content, "The answer.");
    }

    #[test]
    fn no_think_is_untouched() {
        let s = ThinkSplitter::split_all("  Hello <think> is just text");
        assert_eq!(s.content, "  Hello <think> is just text");
        assert_eq!(s.reasoning, "");
    }

    #[test]
    fn tags_split_across_chunks() {
        let pieces = ["<th", "ink>a", "bc</th", "in", "k>", "\n", "Hi", " there"];
        let mut sp = ThinkSplitter::new();
        let (mut c, mut r) = (String::new(), String::new());
        for p in pieces {
            let o = sp.push(p);
            c.push_str(&o.content);
            r.push_str(&o.reasoning);
        }
        let o = sp.finish();
        c.push_str(&o.content);
        r.push_str(&o.reasoning);
        assert_eq!(r, "abc");
        assert_eq!(c, "Hi there");
    }

    #[test]
    fn short_plain_prefix_is_flushed_at_finish() {
        let mut sp = ThinkSplitter::new();
        let o = sp.push("<t");
        assert_eq!(o.content, "");
        let o = sp.finish();
        assert_eq!(o.content, "<t");
    }

    #[test]
    fn unterminated_think_stays_reasoning() {
        let s = ThinkSplitter::split_all("<think>still thinking");
        assert_eq!(s.reasoning, "still thinking");
        assert_eq!(s.content, "");
    }
}
