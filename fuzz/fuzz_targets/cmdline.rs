//! Fuzzes the command-line splitter and the rule grammar with arbitrary bytes.
//!
//! The bytes are decoded as lossy UTF-8, as the binder reads /proc/cmdline and the
//! fragment files. Checked: nothing panics; the rule set keeps at most `MAX_RULES`, and its
//! counters agree with what was reported; every kept rule prints to a canonical text that
//! parses back to the same rule and prints the same again; the no-IOMMU switch is read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_bind::cmdline::{self, RuleProblem, RuleSet, MAX_RULES};
use vfio_bind::rule::Rule;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut rules = RuleSet::new();
    let (mut malformed, mut too_many) = (0usize, 0usize);
    rules.add_command_line(&text, &mut |problem| match problem {
        RuleProblem::Malformed(..) => malformed += 1,
        RuleProblem::TooMany(..) => too_many += 1,
    });
    assert!(rules.rules().len() <= MAX_RULES);
    assert_eq!(rules.malformed, malformed);
    assert!(too_many <= 1);
    assert_eq!(too_many == 1, rules.overflowing > 0);
    if rules.overflowing > 0 {
        assert_eq!(rules.rules().len(), MAX_RULES);
    }
    for (index, rule) in rules.rules().iter().enumerate() {
        let canonical = rule.to_string();
        let again: Rule = canonical
            .parse()
            .unwrap_or_else(|error| panic!("{canonical:?} does not parse: {error:?}"));
        assert_eq!(&again, rule, "{canonical:?}");
        assert_eq!(again.to_string(), canonical);
        assert!(!rules.rules()[..index].contains(rule), "duplicate {rule}");
    }
    let _ = cmdline::requests_noiommu(&text);
    for parameter in cmdline::parameters(&text) {
        let _ = parameter.is(cmdline::BIND_PARAMETER);
        if let Some(value) = parameter.value {
            for piece in value.split(',') {
                if let Ok(rule) = piece.parse::<Rule>() {
                    assert_eq!(rule.to_string().parse::<Rule>(), Ok(rule));
                }
            }
        }
    }
});
