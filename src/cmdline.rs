//! The kernel command line: splitting it the way the kernel does, and collecting
//! `vfio.bind=` rules into fixed-capacity storage.
//!
//! Splitting follows `next_arg()` in the kernel's lib/cmdline.c and kernel/params.c:
//! parameters are separated by white space, double quotes group white space into one
//! parameter and are dropped from the value, and a bare `--` ends the kernel's parameters
//! (the rest belongs to init). Parameter names treat `-` and `_` alike (`parameq()`).

use heapless::Vec;

use crate::rule::{Rule, RuleError};

/// How many rules one boot can carry. A 2048-byte command line holds at most about 90
/// guarded rules; 32 cards is far beyond any real passthrough machine.
pub const MAX_RULES: usize = 32;

/// The parameter that carries rules.
pub const BIND_PARAMETER: &str = "vfio.bind";
/// The vfio module's switch for running without an IOMMU.
const NOIOMMU_PARAMETER: &str = "vfio.enable_unsafe_noiommu_mode";

/// One `name[=value]` parameter of a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parameter<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

impl Parameter<'_> {
    /// Compares names as the kernel does: `-` and `_` are the same character.
    pub fn is(&self, name: &str) -> bool {
        let normalise = |b: u8| if b == b'-' { b'_' } else { b };
        self.name.len() == name.len()
            && self
                .name
                .bytes()
                .zip(name.bytes())
                .all(|(a, b)| normalise(a) == normalise(b))
    }
}

/// Iterates over the parameters of a command line, stopping at a bare `--`.
pub fn parameters(text: &str) -> Parameters<'_> {
    Parameters { rest: text }
}

pub struct Parameters<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Parameters<'a> {
    type Item = Parameter<'a>;

    fn next(&mut self) -> Option<Parameter<'a>> {
        let text = self
            .rest
            .trim_start_matches(|c: char| c.is_ascii_whitespace());
        if text.is_empty() {
            return None;
        }
        let mut in_quote = false;
        let mut end = text.len();
        for (index, byte) in text.bytes().enumerate() {
            if byte.is_ascii_whitespace() && !in_quote {
                end = index;
                break;
            }
            if byte == b'"' {
                in_quote = !in_quote;
            }
        }
        let (word, rest) = text.split_at(end);
        self.rest = rest;
        if word == "--" {
            self.rest = "";
            return None;
        }
        let word = word.strip_prefix('"').unwrap_or(word);
        let parameter = match word.split_once('=') {
            None => Parameter {
                name: word.strip_suffix('"').unwrap_or(word),
                value: None,
            },
            Some((name, value)) => {
                let value = match value.strip_prefix('"') {
                    Some(quoted) => quoted.strip_suffix('"').unwrap_or(quoted),
                    None => value.strip_suffix('"').unwrap_or(value),
                };
                Parameter {
                    name,
                    value: Some(value),
                }
            }
        };
        Some(parameter)
    }
}

/// The kernel's `kstrtobool()` for a module's bool parameter given on the command line;
/// a bare parameter name means true.
fn is_true(value: Option<&str>) -> bool {
    match value {
        None => true,
        Some(value) => matches!(
            value.as_bytes(),
            [b'y' | b'Y' | b'1', ..] | [b'o' | b'O', b'n' | b'N', ..]
        ),
    }
}

/// Whether the command line asks vfio for no-IOMMU mode (`vfio.enable_unsafe_noiommu_mode=1`).
pub fn requests_noiommu(text: &str) -> bool {
    parameters(text)
        .filter(|parameter| parameter.is(NOIOMMU_PARAMETER))
        .last()
        .is_some_and(|parameter| is_true(parameter.value))
}

/// Something wrong with the rules a command line gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleProblem<'a> {
    /// The text of one rule, and why it does not parse. The rule is skipped.
    Malformed(&'a str, RuleError),
    /// The rule that did not fit in [`MAX_RULES`]; it and every later one are skipped.
    TooMany(&'a str),
}

/// The rules of one run, in command-line order, without duplicates.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule, MAX_RULES>,
    /// How many rule texts were malformed.
    pub malformed: usize,
    /// How many well-formed rules did not fit in [`MAX_RULES`].
    pub overflowing: usize,
}

impl RuleSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many rule texts were given but not kept: malformed, or beyond the capacity.
    pub fn rejected(&self) -> usize {
        self.malformed + self.overflowing
    }

    /// Whether any rule text was given but not kept.
    pub fn has_rejects(&self) -> bool {
        self.rejected() > 0
    }

    /// Adds the rules of every `vfio.bind=` parameter of `text`. Each malformed rule is
    /// handed to `report`; overflow is reported once, for the first rule that did not fit.
    pub fn add_command_line<'a>(&mut self, text: &'a str, report: &mut dyn FnMut(RuleProblem<'a>)) {
        for parameter in parameters(text).filter(|parameter| parameter.is(BIND_PARAMETER)) {
            for rule_text in parameter.value.unwrap_or("").split(',') {
                self.add_rule_text(rule_text, report);
            }
        }
    }

    /// Adds one rule given as text (a command-line argument of `bind` or `release`).
    pub fn add_rule_text<'a>(
        &mut self,
        rule_text: &'a str,
        report: &mut dyn FnMut(RuleProblem<'a>),
    ) {
        let rule = match rule_text.parse::<Rule>() {
            Ok(rule) => rule,
            Err(error) => {
                self.malformed += 1;
                return report(RuleProblem::Malformed(rule_text, error));
            }
        };
        if self.rules.contains(&rule) {
            return;
        }
        if self.rules.push(rule).is_err() {
            if self.overflowing == 0 {
                report(RuleProblem::TooMany(rule_text));
            }
            self.overflowing += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_values(text: &str) -> std::vec::Vec<(&str, Option<&str>)> {
        parameters(text).map(|p| (p.name, p.value)).collect()
    }

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            names_and_values(
                "  ro quiet vfio.bind=1002:73ff@07:00\tfoo=\"a b\" \"bar=c d\" -- init=x"
            ),
            [
                ("ro", None),
                ("quiet", None),
                ("vfio.bind", Some("1002:73ff@07:00")),
                ("foo", Some("a b")),
                ("bar", Some("c d")),
            ]
        );
        assert_eq!(names_and_values(""), []);
        assert_eq!(
            names_and_values("a=\"unterminated value"),
            [("a", Some("unterminated value"))]
        );
    }

    #[test]
    fn noiommu_switch() {
        assert!(requests_noiommu("vfio.enable_unsafe_noiommu_mode=1"));
        assert!(requests_noiommu("vfio.enable-unsafe-noiommu-mode=Y"));
        assert!(requests_noiommu("vfio.enable_unsafe_noiommu_mode"));
        assert!(!requests_noiommu(
            "vfio.enable_unsafe_noiommu_mode=1 vfio.enable_unsafe_noiommu_mode=0"
        ));
        assert!(!requests_noiommu("enable_unsafe_noiommu_mode=1"));
        assert!(!requests_noiommu("-- vfio.enable_unsafe_noiommu_mode=1"));
    }

    #[test]
    fn rules_add_up_and_bad_ones_are_reported_and_skipped() {
        let mut rules = RuleSet::new();
        let mut problems = std::vec::Vec::new();
        rules.add_command_line(
            "vfio.bind=1002:73ff@07:00,zz vfio.bind=@08:00.1,1002:73FF@0000:07:00 vfio.bind=",
            &mut |problem| problems.push(problem),
        );
        let texts: std::vec::Vec<_> = rules.rules().iter().map(|r| r.to_string()).collect();
        assert_eq!(texts, ["1002:73ff@0000:07:00", "@0000:08:00.1"]);
        assert_eq!(
            problems,
            [
                RuleProblem::Malformed(
                    "zz",
                    RuleError::BadIds(crate::address::AddressError::Vendor)
                ),
                RuleProblem::Malformed("", RuleError::Empty),
            ]
        );
        assert_eq!((rules.malformed, rules.overflowing), (2, 0));
    }

    #[test]
    fn overflow_is_reported_once_and_counted() {
        let mut text = std::string::String::new();
        for bus in 0..MAX_RULES + 5 {
            text.push_str(&format!("vfio.bind=@{bus:02x}:00 "));
        }
        let mut rules = RuleSet::new();
        let mut problems = std::vec::Vec::new();
        rules.add_command_line(&text, &mut |problem| problems.push(problem));
        assert_eq!(rules.rules().len(), MAX_RULES);
        assert_eq!(problems, [RuleProblem::TooMany("@20:00")]);
        assert_eq!(rules.overflowing, 5);
    }
}
