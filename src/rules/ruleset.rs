//! The rules of one run: every `vfio.bind=` rule of the command line and the fragments, in
//! order, without duplicates, in fixed-capacity storage; each rule that cannot be kept is
//! reported once.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use heapless::Vec;

use crate::rules::cmdline::{parameters, BIND_PARAMETER};
use crate::rules::rule::{Rule, RuleError};

/// How many rules one boot can carry. A 2048-byte command line holds at most about 90
/// guarded rules; 32 cards is far beyond any real passthrough machine.
pub const MAX_RULES: usize = 32;

/// Something wrong with the rules a command line gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleProblem<'a> {
    /// The text of one rule, and why it does not parse. The rule is skipped.
    Malformed(&'a str, RuleError),
    /// A rule's bytes are not UTF-8 (so not the ASCII a rule is written in). Skipped.
    NotText(&'a [u8]),
    /// The rule that did not fit in [`MAX_RULES`]; it and every later one are skipped.
    TooMany(&'a str),
}

/// The rules of one run, in command-line order, without duplicates.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule, MAX_RULES>,
    /// How many rule texts were malformed (or not text at all).
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
    pub fn add_command_line<'a>(
        &mut self,
        text: &'a [u8],
        report: &mut dyn FnMut(RuleProblem<'a>),
    ) {
        for parameter in parameters(text).filter(|parameter| parameter.is(BIND_PARAMETER)) {
            self.add_rule_list(parameter.value.unwrap_or_default(), report);
        }
    }

    /// Adds the rules of a comma-separated list, as in `vfio.bind=A,B` (or an argument of
    /// `bind` or `release`).
    pub fn add_rule_list<'a>(&mut self, list: &'a [u8], report: &mut dyn FnMut(RuleProblem<'a>)) {
        for rule_text in list.split(|&byte| byte == b',') {
            match core::str::from_utf8(rule_text) {
                Ok(rule_text) => self.add_rule_text(rule_text, report),
                Err(_) => {
                    self.malformed += 1;
                    report(RuleProblem::NotText(rule_text));
                }
            }
        }
    }

    /// Adds one rule given as text.
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

    #[test]
    fn rules_add_up_and_bad_ones_are_reported_and_skipped() {
        let mut rules = RuleSet::new();
        let mut problems = std::vec::Vec::new();
        rules.add_command_line(
            b"vfio.bind=1002:73ff@07:00,zz vfio.bind=@08:00.1,1002:73FF@0000:07:00 vfio.bind=",
            &mut |problem| problems.push(problem),
        );
        let texts: std::vec::Vec<_> = rules.rules().iter().map(|r| r.to_string()).collect();
        assert_eq!(texts, ["1002:73ff@0000:07:00", "@0000:08:00.1"]);
        assert_eq!(
            problems,
            [
                RuleProblem::Malformed(
                    "zz",
                    RuleError::BadIds(crate::rules::address::AddressError::Vendor)
                ),
                RuleProblem::Malformed("", RuleError::Empty),
            ]
        );
        assert_eq!((rules.malformed, rules.overflowing), (2, 0));
    }

    #[test]
    fn a_rule_that_is_not_utf8_is_malformed_and_the_next_one_is_kept() {
        let mut rules = RuleSet::new();
        let mut problems = std::vec::Vec::new();
        rules.add_command_line(b"vfio.bind=1002:73ff@07:0\xe9,@08:00", &mut |problem| {
            problems.push(problem)
        });
        assert_eq!(problems, [RuleProblem::NotText(b"1002:73ff@07:0\xe9")]);
        assert_eq!(rules.rules().len(), 1);
        assert_eq!(rules.malformed, 1);
    }

    #[test]
    fn overflow_is_reported_once_and_counted() {
        let mut text = std::string::String::new();
        for bus in 0..MAX_RULES + 5 {
            text.push_str(&format!("vfio.bind=@{bus:02x}:00 "));
        }
        let mut rules = RuleSet::new();
        let mut problems = std::vec::Vec::new();
        rules.add_command_line(text.as_bytes(), &mut |problem| problems.push(problem));
        assert_eq!(rules.rules().len(), MAX_RULES);
        assert_eq!(problems, [RuleProblem::TooMany("@20:00")]);
        assert_eq!(rules.overflowing, 5);
    }
}
