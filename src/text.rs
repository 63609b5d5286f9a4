//! Showing text that came from outside (a request, a StorageClass, FSx) in messages and logs.
//!
//! Such text may hold line breaks that would forge a new log line, terminal escapes, or a
//! megabyte that would turn one refusal into a 650 KB gRPC trailer (which clients reject as
//! too large) and a bloated log. [`Shown`] escapes every control character and cuts the value
//! to [`SHOWN_CHARS`] characters, saying how long it was; [`clip`] bounds a whole message.

use std::fmt;

/// How many characters of an outside value a message shows.
pub const SHOWN_CHARS: usize = 128;

/// The most bytes a status message or a logged message carries (gRPC clients refuse
/// trailers much above a few KiB).
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// Shows an outside value quoted, with control characters escaped, cut to [`SHOWN_CHARS`]
/// characters: `"pvc-1"`, `"a\nb"`, `"aaaa…" (1048576 characters)`.
#[derive(Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(SHOWN_CHARS) {
            write_escaped(f, c)?;
        }
        if chars.next().is_some() {
            write!(f, "…\" ({} characters)", self.0.chars().count())
        } else {
            f.write_str("\"")
        }
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Shows an outside value unquoted, escaped and cut like [`Shown`]: for span fields such as
/// `volume.name`, where quotes would be noise.
#[derive(Clone, Copy)]
pub struct Field<'a>(pub &'a str);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(SHOWN_CHARS) {
            write_escaped(f, c)?;
        }
        if chars.next().is_some() {
            write!(f, "…({} characters)", self.0.chars().count())?;
        }
        Ok(())
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    if c == '"' || c == '\\' || c.is_control() || is_line_separator(c) {
        write!(f, "{}", c.escape_debug())
    } else {
        fmt::Write::write_char(f, c)
    }
}

/// Unicode line and paragraph separators, which some viewers break lines on.
fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `message` with control characters escaped and cut to at most [`MAX_MESSAGE_BYTES`] bytes
/// (on a character boundary, ending with `…`). Messages built with [`Shown`] are already
/// short; this is the bound for everything else.
pub fn clip(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_BYTES));
    for c in message.chars() {
        let escaped: String =
            if c.is_control() || is_line_separator(c) { c.escape_debug().collect() } else { c.to_string() };
        if out.len() + escaped.len() > MAX_MESSAGE_BYTES - '…'.len_utf8() {
            out.push('…');
            return out;
        }
        out.push_str(&escaped);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(Shown("pvc-1").to_string(), "\"pvc-1\"");
        assert_eq!(Shown("a\r\nb\u{1b}[2J").to_string(), r#""a\r\nb\u{1b}[2J""#);
        assert_eq!(Shown("q\"\\").to_string(), r#""q\"\\""#);
        let big = "x".repeat(1 << 20);
        let s = Shown(&big).to_string();
        assert!(s.len() < 200, "{}", s.len());
        assert!(s.ends_with("…\" (1048576 characters)"), "{s}");
        assert_eq!(Field("a\nb").to_string(), "a\\nb");
        assert!(Field(&big).to_string().len() < 200);
    }

    #[test]
    fn clip_bounds_and_escapes() {
        assert_eq!(clip("plain"), "plain");
        assert_eq!(clip("two\nlines"), "two\\nlines");
        let big = "é".repeat(10_000);
        let c = clip(&big);
        assert!(c.len() <= MAX_MESSAGE_BYTES, "{}", c.len());
        assert!(c.ends_with('…'));
        let nl = "\n".repeat(10_000);
        assert!(clip(&nl).len() <= MAX_MESSAGE_BYTES);
    }
}
