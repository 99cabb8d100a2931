//! Just enough JSON for `list --json` and `check --json`: strings escaped as RFC 8259 wants,
//! written by hand so the binary carries no serializer.

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
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
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
        assert_eq!(OptStr(None).to_string(), "null");
        assert_eq!(OptNum(Some(17)).to_string(), "17");
        assert_eq!(OptNum::<u32>(None).to_string(), "null");
    }
}
