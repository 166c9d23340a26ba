//! Text for a person's terminal. What a step logs, panics with, names a task or writes as a key
//! is a third party's text: a control character in it (an ANSI escape that clears the screen or
//! paints a fake "all tasks completed", a carriage return that types over a line, a bell, a
//! right-to-left override) would act on the operator's terminal. Shown escaped, it cannot.

use std::borrow::Cow;

/// `text` with every control character but the line break and the tab escaped as Rust writes it
/// (`\u{1b}`), and the bidirectional controls too; text without any is returned as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acts_on_terminal) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if acts_on_terminal(c) {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// Whether `c` does something to a terminal rather than show.
fn acts_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `println!` for people: the text with what would act on the terminal shown escaped
/// ([`printable`]).
macro_rules! say {
    () => { println!() };
    ($($arg:tt)*) => { println!("{}", $crate::cli::printable::printable(&format!($($arg)*))) };
}

/// `eprintln!` for people, as [`say!`].
macro_rules! say_err {
    ($($arg:tt)*) => { eprintln!("{}", $crate::cli::printable::printable(&format!($($arg)*))) };
}

pub(crate) use {say, say_err};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_would_act_on_a_terminal_is_shown_escaped() {
        assert!(matches!(printable("plain text, ünïcode\tand\nlines"), Cow::Borrowed(_)));
        assert_eq!(
            printable("\u{1b}[2J\u{1b}[31mFAKE: all tasks completed\r\u{7}\u{8}"),
            "\\u{1b}[2J\\u{1b}[31mFAKE: all tasks completed\\u{d}\\u{7}\\u{8}"
        );
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
    }
}
