//! Property tests of the command-line splitter and the rule grammar.
//!
//! Each property runs proptest's default number of cases, 256; set `PROPTEST_CASES` to run
//! more (`PROPTEST_CASES=100000 cargo test --test properties`) or fewer. CI uses the default.
//! A failing case is shrunk and saved in `tests/properties.proptest-regressions`, which is
//! then replayed first on every run; commit that file with the fix.
//!
//! The fuzz target in `fuzz/` checks the same things on unbounded input for as long as it
//! is left to run (docs/robustness.md).

use std::collections::HashSet;

use proptest::prelude::*;
use vfio_bind::rules::address::{
    Address, Hop, IdGuard, Location, PciIds, PciPath, SlotAddress, MAX_HOPS,
};
use vfio_bind::rules::cmdline;
use vfio_bind::rules::rule::Rule;
use vfio_bind::rules::ruleset::{RuleProblem, RuleSet, MAX_RULES};

/// Every problem a command line gave, by kind.
#[derive(Debug, Default)]
struct Problems {
    malformed: Vec<String>,
    too_many: Vec<String>,
}

fn add(rules: &mut RuleSet, text: &[u8]) -> Problems {
    let mut problems = Problems::default();
    rules.add_command_line(text, &mut |problem| match problem {
        RuleProblem::Malformed(text, _) => problems.malformed.push(text.to_string()),
        RuleProblem::NotText(bytes) => problems
            .malformed
            .push(String::from_utf8_lossy(bytes).into_owned()),
        RuleProblem::TooMany(text) => problems.too_many.push(text.to_string()),
    });
    problems
}

/// Whether `part` occurs in `whole`.
fn contains(whole: &[u8], part: &[u8]) -> bool {
    part.is_empty() || whole.windows(part.len()).any(|window| window == part)
}

/// The kernel's `parse_args()` loop over `next_arg()` (lib/cmdline.c, kernel/params.c),
/// transcribed as C does it: NULs written into a copy of the text, pointers as indexes.
/// The splitter under test is written another way; the two must always agree.
fn kernel_parameters(text: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    fn isspace(c: u8) -> bool {
        matches!(c, 9..=13 | 32 | 160)
    }
    let mut args: Vec<u8> = text.to_vec();
    args.push(0);
    let string = |args: &[u8], from: usize| -> Vec<u8> {
        let end = args[from..].iter().position(|&c| c == 0).unwrap() + from;
        args[from..end].to_vec()
    };
    let mut found = Vec::new();
    let mut at = 0;
    while isspace(args[at]) {
        at += 1;
    }
    while args[at] != 0 {
        // next_arg(args, &param, &val)
        let (mut in_quote, mut quoted) = (false, false);
        if args[at] == b'"' {
            at += 1;
            in_quote = true;
            quoted = true;
        }
        let mut i = 0;
        let mut equals = 0;
        while args[at + i] != 0 {
            if isspace(args[at + i]) && !in_quote {
                break;
            }
            if equals == 0 && args[at + i] == b'=' {
                equals = i;
            }
            if args[at + i] == b'"' {
                in_quote = !in_quote;
            }
            i += 1;
        }
        let param = at;
        let mut val = None;
        if equals != 0 {
            args[at + equals] = 0;
            let mut v = at + equals + 1;
            if args[v] == b'"' {
                v += 1;
                if args[at + i - 1] == b'"' {
                    args[at + i - 1] = 0;
                }
            }
            val = Some(v);
        }
        if quoted && args[at + i - 1] == b'"' {
            args[at + i - 1] = 0;
        }
        let next = if args[at + i] != 0 {
            args[at + i] = 0;
            at + i + 1
        } else {
            at + i
        };
        let name = string(&args, param);
        let value = val.map(|v| string(&args, v));
        if value.is_none() && name == b"--" {
            break;
        }
        found.push((name, value));
        at = next;
        while isspace(args[at]) {
            at += 1;
        }
    }
    found
}

/// Bytes near the kernel splitter's corner cases: quotes, `=`, `--`, every white space
/// it knows, NUL, and bytes that are not UTF-8.
fn splitter_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\"".to_vec()),
        Just(b"=".to_vec()),
        Just(b"--".to_vec()),
        Just(b"vfio.bind=".to_vec()),
        prop::sample::select(vec![9u8, 10, 11, 12, 13, 32, 160, 0]).prop_map(|b| vec![b]),
        prop::collection::vec(any::<u8>(), 1..4),
        "[a-z0-9:@.,]{1,6}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// A parameter that is not a rule: any bytes but the splitter's own (white space,
/// quotes, NUL), so that it stays one parameter whatever it holds.
fn foreign_parameter() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..40).prop_map(|mut bytes| {
        bytes.retain(|&b| !matches!(b, 9..=13 | 32 | 160 | 0 | b'"'));
        if bytes.is_empty() || bytes == b"--" {
            bytes = b"x".to_vec();
        }
        bytes
    })
}

/// Text made of the grammar's own characters and words, so that random text often comes
/// close to a rule (random bytes almost never do).
fn grammar_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("vfio.bind=".to_string()),
        Just("vfio-bind=".to_string()),
        Just("vfio.enable_unsafe_noiommu_mode=".to_string()),
        Just("--".to_string()),
        "[0-9a-fA-FxX:@.,\" \t\n=-]{1,12}",
        "[0-9a-f]{1,9}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// One rule's text, close to the grammar: right shapes with wrong lengths and digits.
fn rule_like() -> impl Strategy<Value = String> {
    "[0-9a-fA-FgG]{0,5}(:[0-9a-fA-F]{0,5})?(@([0-9a-fA-F]{0,9}:)?[0-9a-fA-F]{0,3}:[0-9a-fA-F]{0,3}(\\.[0-9a-f]{0,2})?)?(@[0-9:.]{0,4})?"
}

fn ids() -> impl Strategy<Value = PciIds> {
    (any::<u16>(), any::<u16>()).prop_map(|(vendor, device)| PciIds::new(vendor, device))
}

fn slot() -> impl Strategy<Value = SlotAddress> {
    (
        prop_oneof![Just(0u32), any::<u32>(), 0u32..=0xffff],
        any::<u8>(),
        0u8..=0x1f,
    )
        .prop_map(|(domain, bus, slot)| SlotAddress::new(domain, bus, slot).unwrap())
}

fn location() -> impl Strategy<Value = Location> {
    prop_oneof![
        slot().prop_map(Location::Slot),
        (slot(), 0u8..=7)
            .prop_map(|(slot, function)| Location::Function(slot.function(function).unwrap())),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        ids().prop_map(|ids| Rule::Ids(ids.into())),
        location().prop_map(|location| Rule::At(location.into())),
        (ids(), location()).prop_map(|(ids, location)| Rule::Guarded(ids.into(), location.into())),
    ]
}

/// IDs with, half the time, subsystem IDs.
fn guard() -> impl Strategy<Value = IdGuard> {
    (ids(), prop::option::of(ids())).prop_map(|(ids, subsystem)| IdGuard { ids, subsystem })
}

/// A path: a root-bus function and 1 to MAX_HOPS hops, the last one maybe a whole slot.
fn path() -> impl Strategy<Value = PciPath> {
    let root = (slot(), 0u8..=7).prop_map(|(slot, function)| slot.function(function).unwrap());
    let hops = prop::collection::vec((0u8..=0x1f, 0u8..=7), 1..=MAX_HOPS);
    (root, hops, any::<bool>()).prop_map(|(root, hops, whole_slot)| {
        let mut hops: Vec<Hop> = hops
            .into_iter()
            .map(|(slot, function)| Hop {
                slot,
                function: Some(function),
            })
            .collect();
        if whole_slot {
            hops.last_mut().unwrap().function = None;
        }
        PciPath::new(root, &hops).unwrap()
    })
}

/// Every rule form, the new ones (paths, subsystem IDs) included.
fn any_form_rule() -> impl Strategy<Value = Rule> {
    let address = prop_oneof![
        location().prop_map(Address::Bus),
        path().prop_map(Address::Path),
    ];
    prop_oneof![
        guard().prop_map(Rule::Ids),
        address.clone().prop_map(Rule::At),
        (guard(), address).prop_map(|(guard, address)| Rule::Guarded(guard, address)),
    ]
}

/// A path's text, close to the grammar: right shapes with wrong lengths, digits and hop
/// counts.
fn path_like() -> impl Strategy<Value = String> {
    "([0-9a-fA-F]{4,9}:)?[0-9a-f]{1,3}:[0-9a-f]{1,3}(\\.[0-9]{0,2})?(/[0-9a-fA-F]{0,3}(\\.[0-9]{0,2})?){0,10}"
}

/// Writes a rule the ways a user may: any case, the domain left out when it is 0, or
/// written with up to 8 digits (leading zeros).
fn spelled(rule: Rule, upper: bool, short_domain: bool, domain_digits: usize) -> String {
    fn hex(value: u32, width: usize, upper: bool) -> String {
        if upper {
            format!("{value:0width$X}")
        } else {
            format!("{value:0width$x}")
        }
    }
    let pair_text = |ids: PciIds| {
        format!(
            "{}:{}",
            hex(ids.vendor().into(), 4, upper),
            hex(ids.device().into(), 4, upper)
        )
    };
    let ids_text = |guard: IdGuard| match guard.subsystem {
        None => pair_text(guard.ids),
        Some(subsystem) => format!("{}:{}", pair_text(guard.ids), pair_text(subsystem)),
    };
    let slot_text = |slot: SlotAddress| {
        let bus_and_slot = format!(
            "{}:{}",
            hex(slot.bus().into(), 2, upper),
            hex(slot.slot().into(), 2, upper)
        );
        if short_domain && slot.domain() == 0 {
            bus_and_slot
        } else {
            format!(
                "{}:{bus_and_slot}",
                hex(slot.domain(), domain_digits, upper)
            )
        }
    };
    let location_text = |location: Location| match location {
        Location::Slot(slot) => slot_text(slot),
        Location::Function(address) => {
            format!(
                "{}.{}",
                slot_text(address.slot_address()),
                address.function()
            )
        }
    };
    let location_text = |address: Address| match address {
        Address::Bus(location) => location_text(location),
        Address::Path(path) | Address::Resolved(path, _) => {
            let mut text = location_text(Location::Function(path.root));
            for hop in path.hops() {
                text.push('/');
                text.push_str(&hex(hop.slot.into(), 2, upper));
                if let Some(function) = hop.function {
                    text.push_str(&format!(".{function}"));
                }
            }
            text
        }
    };
    match rule {
        Rule::Ids(ids) => ids_text(ids),
        Rule::At(location) => format!("@{}", location_text(location)),
        Rule::Guarded(ids, location) => format!("{}@{}", ids_text(ids), location_text(location)),
    }
}

/// Checks the round trip of one parsed rule: canonical text, parsed again, is the same rule
/// and prints the same.
fn assert_round_trips(rule: Rule) -> Result<(), TestCaseError> {
    let canonical = rule.to_string();
    let again: Rule = canonical
        .parse()
        .map_err(|error| TestCaseError::fail(format!("{canonical:?} fails: {error:?}")))?;
    prop_assert_eq!(again, rule);
    prop_assert_eq!(again.to_string(), canonical);
    Ok(())
}

proptest! {
    /// Any bytes, as the binder reads /proc/cmdline (bytes, not decoded): no panic
    /// anywhere, and the rule set's counters agree with what it reported.
    #[test]
    fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for parameter in cmdline::parameters(&bytes) {
            let _ = parameter.is(cmdline::BIND_PARAMETER);
            let _ = cmdline::Escaped(parameter.name).to_string();
        }
        let _ = cmdline::requests_noiommu(&bytes);
        let _ = cmdline::binder_disabled(&bytes);
        let _ = String::from_utf8_lossy(&bytes).parse::<Rule>();
        let mut rules = RuleSet::new();
        let problems = add(&mut rules, &bytes);
        prop_assert!(rules.rules().len() <= MAX_RULES);
        prop_assert_eq!(problems.malformed.len(), rules.malformed);
    }

    /// The splitter finds exactly the parameters the kernel's own loop finds, quotes,
    /// `\v`, 0xa0, NUL and `"--"` included.
    #[test]
    fn splits_exactly_as_the_kernel(bytes in prop_oneof![
        splitter_soup(),
        prop::collection::vec(any::<u8>(), 0..200),
    ]) {
        let ours: Vec<(Vec<u8>, Option<Vec<u8>>)> = cmdline::parameters(&bytes)
            .map(|p| (p.name.to_vec(), p.value.map(<[u8]>::to_vec)))
            .collect();
        prop_assert_eq!(ours, kernel_parameters(&bytes), "{}", cmdline::Escaped(&bytes));
    }

    /// A rule is kept whatever bytes the parameters around it hold (a Latin-1 label, a
    /// broken UTF-8 sequence): nothing after a non-UTF-8 byte is lost.
    #[test]
    fn foreign_bytes_around_a_rule_never_drop_it(
        rule in rule(),
        before in prop::collection::vec(foreign_parameter(), 0..4),
        after in prop::collection::vec(foreign_parameter(), 0..4),
        separator in prop::sample::select(vec![&b" "[..], b"\t", b"\x0b", b"\n", b"\xa0"]),
    ) {
        let mut text: Vec<u8> = Vec::new();
        for parameter in &before {
            text.extend_from_slice(parameter);
            text.extend_from_slice(separator);
        }
        text.extend_from_slice(format!("vfio.bind={rule}").as_bytes());
        for parameter in &after {
            text.extend_from_slice(separator);
            text.extend_from_slice(parameter);
        }
        let mut rules = RuleSet::new();
        let _ = add(&mut rules, &text);
        prop_assert!(rules.rules().contains(&rule), "{}", cmdline::Escaped(&text));
    }

    /// Text near the grammar: no panic; every kept rule round-trips; every name and value
    /// the splitter yields is a piece of the text.
    #[test]
    fn grammar_soup_never_panics_and_kept_rules_round_trip(text in grammar_soup()) {
        let _ = text.parse::<Rule>();
        let bytes = text.as_bytes();
        let _ = cmdline::requests_noiommu(bytes);
        for parameter in cmdline::parameters(bytes) {
            prop_assert!(contains(bytes, parameter.name));
            if let Some(value) = parameter.value {
                prop_assert!(contains(bytes, value));
            }
        }
        let mut rules = RuleSet::new();
        let problems = add(&mut rules, bytes);
        prop_assert!(rules.rules().len() <= MAX_RULES);
        prop_assert_eq!(problems.malformed.len(), rules.malformed);
        prop_assert!(problems.too_many.len() <= 1);
        prop_assert_eq!(problems.too_many.len() == 1, rules.overflowing > 0);
        for rule in rules.rules() {
            assert_round_trips(*rule)?;
        }
    }

    /// Any rule that parses prints back to text that parses to the same rule.
    #[test]
    fn whatever_parses_round_trips(text in prop_oneof![rule_like(), "\\PC{0,24}"]) {
        if let Ok(rule) = text.parse::<Rule>() {
            assert_round_trips(rule)?;
        }
    }

    /// Rules built from their parts, spelled any valid way, parse to those parts, and their
    /// canonical form round-trips.
    #[test]
    fn generated_rules_round_trip(
        rule in rule(),
        upper in any::<bool>(),
        short_domain in any::<bool>(),
        domain_digits in 4usize..=8,
    ) {
        let text = spelled(rule, upper, short_domain, domain_digits);
        prop_assert_eq!(text.parse::<Rule>(), Ok(rule), "{}", text);
        assert_round_trips(rule)?;
        // And inside a command line, among other parameters.
        let mut rules = RuleSet::new();
        let problems = add(&mut rules, format!("quiet vfio.bind={text} splash").as_bytes());
        prop_assert_eq!(rules.rules(), &[rule]);
        prop_assert!(problems.malformed.is_empty() && problems.too_many.is_empty());
    }

    /// More distinct rules than fit, mixed with duplicates and malformed ones, spread over
    /// several parameters: exactly MAX_RULES kept (the first ones, in order), one TooMany
    /// naming the first that did not fit, and the counts add up. Nothing is dropped silently.
    #[test]
    fn capacity_gives_an_error_never_a_silent_drop(
        rules in prop::collection::vec(rule(), MAX_RULES + 1..MAX_RULES * 3),
        duplicates in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        malformed in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        per_parameter in 1usize..6,
    ) {
        let mut distinct: Vec<Rule> = Vec::new();
        for rule in rules {
            if !distinct.contains(&rule) {
                distinct.push(rule);
            }
        }
        prop_assume!(distinct.len() > MAX_RULES);
        let mut texts: Vec<String> = distinct.iter().map(Rule::to_string).collect();
        for index in &duplicates {
            // The same rule spelled differently, right after its first spelling.
            let rule = distinct[index.index(distinct.len())];
            let at = texts.iter().position(|text| *text == rule.to_string()).unwrap();
            texts.insert(at + 1, spelled(rule, true, true, 8));
        }
        for index in &malformed {
            texts.insert(index.index(texts.len() + 1), "1002:73ff@07:20".to_string());
        }
        let command_line: Vec<String> = texts
            .chunks(per_parameter)
            .map(|chunk| format!("vfio.bind={}", chunk.join(",")))
            .collect();
        let mut set = RuleSet::new();
        let problems = add(&mut set, command_line.join(" ").as_bytes());

        let kept = &distinct[..MAX_RULES];
        prop_assert_eq!(set.rules(), kept);
        prop_assert_eq!(&problems.too_many, &[distinct[MAX_RULES].to_string()]);
        prop_assert_eq!(set.malformed, malformed.len());
        prop_assert_eq!(problems.malformed.len(), malformed.len());
        // Every text is kept (or a duplicate of a kept rule), malformed, or overflowing:
        // a later spelling of a rule that did not fit counts as overflowing again.
        let kept_texts = texts
            .iter()
            .filter(|text| text.parse().is_ok_and(|rule| kept.contains(&rule)))
            .count();
        prop_assert_eq!(kept_texts + set.malformed + set.overflowing, texts.len());
        prop_assert!(set.overflowing >= distinct.len() - MAX_RULES);
        prop_assert!(set.has_rejects());
        let unique: HashSet<String> = set.rules().iter().map(Rule::to_string).collect();
        prop_assert_eq!(unique.len(), MAX_RULES);
    }

    /// Path addresses and subsystem IDs, spelled any valid way, parse to their parts and
    /// round-trip; on a command line they are kept as the same rule.
    #[test]
    fn path_and_subsystem_rules_round_trip(
        rule in any_form_rule(),
        upper in any::<bool>(),
        short_domain in any::<bool>(),
        domain_digits in 4usize..=8,
    ) {
        let text = spelled(rule, upper, short_domain, domain_digits);
        prop_assert_eq!(text.parse::<Rule>(), Ok(rule), "{}", text);
        assert_round_trips(rule)?;
        let mut rules = RuleSet::new();
        let problems = add(&mut rules, format!("quiet vfio.bind={text},10de:1b80 splash").as_bytes());
        prop_assert_eq!(rules.rules()[0], rule);
        prop_assert!(problems.malformed.is_empty() && problems.too_many.is_empty());
    }

    /// Text shaped like a path: what parses round-trips, has 1 to MAX_HOPS hops, and text
    /// without a '/' never parses as a path (the old forms keep their meaning).
    #[test]
    fn path_like_text_parses_strictly(text in path_like(), ids in prop::option::of("[0-9a-f]{4}:[0-9a-f]{4}(:[0-9a-f]{3,5}:[0-9a-f]{4})?")) {
        let text = format!("{}@{text}", ids.unwrap_or_default());
        if let Ok(rule) = text.parse::<Rule>() {
            assert_round_trips(rule)?;
            match rule.location() {
                Some(Address::Path(path)) => {
                    prop_assert!(text.contains('/'));
                    prop_assert!((1..=MAX_HOPS).contains(&path.hops().len()));
                    prop_assert_eq!(text.matches('/').count(), path.hops().len());
                }
                Some(Address::Bus(_)) => prop_assert!(!text.contains('/')),
                other => prop_assert!(false, "unexpected address {:?}", other),
            }
        }
    }
}
