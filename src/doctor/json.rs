//! Just enough JSON for `list --json` and `check --json`: strings escaped as RFC 8259 wants,
//! written by hand so the binary carries no serializer.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use core::fmt;

/// A string as a JSON string literal, quotes included.
pub struct Str<'a>(pub &'a str);

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for character in self.0.chars() {
            match character {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c => control(c, f)?,
            }
        }
        f.write_str("\"")
    }
}

/// A string with its control characters written as JSON writes them (`\n`, `\u001b`), the
/// rest as it is: what `check` prints in text, so that no control character read from the
/// host (an EFI variable, a file name under /boot) reaches a terminal. C1 controls and DEL
/// are escaped too (some terminals act on them), in JSON as well.
pub struct Controls<'a>(pub &'a str);

impl fmt::Display for Controls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .chars()
            .try_for_each(|character| control(character, f))
    }
}

fn control(character: char, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match character {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c)),
        c => write!(f, "{c}"),
    }
}

/// An optional string: the literal, or `null`.
pub struct OptStr<'a>(pub Option<&'a str>);

impl fmt::Display for OptStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(text) => Str(text).fmt(f),
            None => f.write_str("null"),
        }
    }
}

/// An optional number: the number, or `null`.
pub struct OptNum<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for OptNum<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(number) => number.fmt(f),
            None => f.write_str("null"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            Str("a\"b\\c\nd\u{1}é").to_string(),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
        assert_eq!(Str("\u{7f}\u{9b}").to_string(), "\"\\u007f\\u009b\"");
        assert_eq!(
            Controls("entry \"a\\b\"\u{1b}[2J\n").to_string(),
            "entry \"a\\b\"\\u001b[2J\\n"
        );
        assert_eq!(OptStr(None).to_string(), "null");
        assert_eq!(OptNum(Some(17)).to_string(), "17");
        assert_eq!(OptNum::<u32>(None).to_string(), "null");
    }
}
