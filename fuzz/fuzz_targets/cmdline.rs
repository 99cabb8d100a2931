//! Fuzzes the command-line splitter, the escape hatch and the rule grammar with arbitrary
//! bytes, taken as the binder takes /proc/cmdline and the fragment files: bytes, never
//! decoded (a non-UTF-8 byte is just text).
//!
//! Checked: nothing panics; the rule set keeps at most `MAX_RULES`, and its counters agree
//! with what was reported; every kept rule prints to a canonical text that parses back to
//! the same rule and prints the same again; every parameter the splitter yields is a piece
//! of the input; bytes after a NUL change nothing; a rule
//! appended after any input is kept unless the input could end the parameters or left
//! a quote open; the no-IOMMU switch and the escape hatch are read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_bind::rules::cmdline::{self, Escaped};
use vfio_bind::rules::ruleset::{RuleProblem, RuleSet, MAX_RULES};
use vfio_bind::rules::rule::Rule;

fn contains(whole: &[u8], part: &[u8]) -> bool {
    part.is_empty() || whole.windows(part.len()).any(|window| window == part)
}

fuzz_target!(|data: &[u8]| {
    let mut rules = RuleSet::new();
    let (mut malformed, mut too_many) = (0usize, 0usize);
    rules.add_command_line(data, &mut |problem| match problem {
        RuleProblem::Malformed(..) | RuleProblem::NotText(..) => malformed += 1,
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
    let _ = cmdline::requests_noiommu(data);
    let _ = cmdline::binder_disabled(data);
    let mut count = 0;
    for parameter in cmdline::parameters(data) {
        count += 1;
        assert!(contains(data, parameter.name), "{}", Escaped(data));
        let _ = Escaped(parameter.name).to_string();
        let _ = parameter.is(cmdline::BIND_PARAMETER);
        if let Some(value) = parameter.value {
            assert!(contains(data, value), "{}", Escaped(data));
            for piece in value.split(|&byte| byte == b',') {
                if let Ok(rule) = core::str::from_utf8(piece).unwrap_or("").parse::<Rule>() {
                    assert_eq!(rule.to_string().parse::<Rule>(), Ok(rule));
                }
            }
        }
    }
    // What follows a NUL is not the kernel's: the same parameters with or without it.
    let mut with_tail = data.to_vec();
    with_tail.extend_from_slice(b"\0 vfio.bind=@07:00");
    assert_eq!(cmdline::parameters(&with_tail).count(), count);
    // A rule after the input is found whatever bytes came before, unless the input could
    // end the parameters (a NUL, a `--`) or left a quote open (which swallows what follows
    // into its last parameter).
    let quotes_open = data.iter().filter(|&&byte| byte == b'"').count() % 2 == 1;
    if !data.contains(&0) && !contains(data, b"--") && !quotes_open {
        let mut appended = data.to_vec();
        appended.extend_from_slice(b" vfio.bind=1002:73ff@07:00");
        let mut more = RuleSet::new();
        more.add_command_line(&appended, &mut |_| {});
        let wanted: Rule = "1002:73ff@07:00".parse().unwrap();
        assert!(
            more.rules().contains(&wanted) || more.overflowing > 0,
            "{}",
            Escaped(&appended)
        );
    }
});
