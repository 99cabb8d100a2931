//! Deciding which functions the rules select: pure logic, fed one function at a time.
//!
//! The planner never stores the whole device list. It keeps, per rule, what it saw at the
//! rule's location, and the functions a rule would take (at most [`MAX_TARGETS`]); when the
//! scan ends, a rule whose guard failed, or that would take more functions than fit, selects
//! nothing at all: a rule applies whole or not at all.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use core::fmt;

use heapless::Vec;

use crate::machine::function::{DriverName, Function, VFIO_PCI};
use crate::machine::order;
use crate::rules::address::{Address, Location, PciAddress, PciIds, FUNCTIONS_PER_SLOT};
use crate::rules::rule::Rule;
use crate::rules::ruleset::MAX_RULES;

/// How many cards of [`FUNCTIONS_PER_SLOT`] functions one run can hand to vfio-pci.
const MAX_CARDS: usize = 8;
/// How many functions one run can hand to vfio-pci.
pub const MAX_TARGETS: usize = MAX_CARDS * FUNCTIONS_PER_SLOT;
/// How many distinct IDs a guard-mismatch message lists: one per function of a slot.
const MAX_FOUND: usize = FUNCTIONS_PER_SLOT;

/// What the scan found for one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The rule selects `functions` functions (bridges excluded) and `bridges` bridges.
    Selected { functions: usize, bridges: usize },
    /// No function at the rule's location, or none with the rule's IDs.
    NothingThere,
    /// The rule's IDs are not at its location; `found` lists the IDs that are.
    GuardMismatch {
        found: Vec<Option<PciIds>, MAX_FOUND>,
    },
    /// The rule selects only bridges, which vfio-pci cannot take.
    OnlyBridges,
    /// The rule selects more functions than [`MAX_TARGETS`].
    TooManyFunctions,
    /// The rules together select more than [`MAX_TARGETS`] functions, and this one's did
    /// not fit beside those of the rules before it.
    NoRoom,
    /// A function the rule selects has a `driver_override` naming another driver
    /// (`pci-stub`), which someone else set: not vfio-bind's to overwrite, so the rule
    /// selects nothing.
    ForeignOverride {
        address: PciAddress,
        driver_override: DriverName,
    },
}

/// A set of rules, by index: [`MAX_RULES`] is 32, so one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleMask(u32);

const _: () = assert!(MAX_RULES <= u32::BITS as usize);

impl RuleMask {
    pub fn only(rule: usize) -> Self {
        RuleMask(1 << rule)
    }

    pub fn contains(self, rule: usize) -> bool {
        rule < MAX_RULES && self.0 & (1 << rule) != 0
    }

    pub fn insert(&mut self, rule: usize) {
        self.0 |= 1 << rule;
    }

    /// The rules in the set, lowest index first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_RULES).filter(move |&rule| self.contains(rule))
    }

    /// The lowest rule in the set (a target always has one).
    pub fn first(self) -> usize {
        self.0.trailing_zeros() as usize
    }

    /// Whether every rule in the set satisfies `test`.
    pub fn all(self, mut test: impl FnMut(usize) -> bool) -> bool {
        self.iter().all(&mut test)
    }
}

/// A function the plan hands to vfio-pci, and every rule that selected it. Rules may
/// overlap (`@07:00` and `1002:ab28@07:00.1`): the function is handed over once, and each
/// rule's report covers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub rules: RuleMask,
    pub function: Function,
}

impl Target {
    /// The first rule that selected this function, for messages that name one.
    pub fn rule(&self) -> usize {
        self.rules.first()
    }
}

/// The rules' decisions, ready to be carried out.
#[derive(Debug)]
pub struct Plan {
    /// In address order; each address once, with every rule that selected it.
    pub targets: Vec<Target, MAX_TARGETS>,
    /// Bridges that rules selected; they are left alone.
    pub bridges: Vec<Target, MAX_TARGETS>,
    /// One per rule, in rule order.
    pub verdicts: Vec<Verdict, MAX_RULES>,
    /// How many functions each rule matched on the scan, kept or not.
    pub matched: Vec<usize, MAX_RULES>,
}

#[derive(Default)]
struct RuleScan {
    functions_seen: usize,
    guard_met: bool,
    found: Vec<Option<PciIds>, MAX_FOUND>,
    /// Whether some function of this rule found no room among the candidates.
    crowded: bool,
}

/// Builds a [`Plan`] from the functions it is shown.
///
/// Candidates of every rule share room for [`MAX_TARGETS`] functions, in the order the scan
/// sees them, before any guard is known. When that room runs out, [`plan_rules`] scans a
/// second time keeping only the candidates of the rules still in play.
pub struct Planner<'r> {
    rules: &'r [Rule],
    scans: Vec<RuleScan, MAX_RULES>,
    /// Whether each rule's candidates are kept (all, on a first pass).
    keeping: [bool; MAX_RULES],
    candidates: Vec<Target, MAX_TARGETS>,
}

impl<'r> Planner<'r> {
    pub fn new(rules: &'r [Rule]) -> Self {
        Self::keeping_only(rules, &[true; MAX_RULES])
    }

    /// A planner that keeps the candidates of the rules marked in `keep` only; the other
    /// rules still get their verdicts.
    pub fn keeping_only(rules: &'r [Rule], keep: &[bool; MAX_RULES]) -> Self {
        let mut scans = Vec::new();
        for _ in rules.iter().take(MAX_RULES) {
            let _ = scans.push(RuleScan::default());
        }
        Planner {
            rules: &rules[..scans.len()],
            scans,
            keeping: *keep,
            candidates: Vec::new(),
        }
    }

    /// Looks at one function; call once per function present.
    pub fn observe(&mut self, function: &Function) {
        for (index, rule) in self.rules.iter().enumerate() {
            let scan = &mut self.scans[index];
            let wanted = match rule {
                Rule::Ids(ids) => {
                    let matches = ids.matches(function.ids, function.subsystem);
                    scan.guard_met |= matches;
                    matches
                }
                Rule::At(location) => {
                    let here = location.contains(function.address);
                    scan.guard_met |= here;
                    here
                }
                Rule::Guarded(ids, location) => {
                    let here = location.contains(function.address);
                    if here {
                        scan.guard_met |= ids.matches(function.ids, function.subsystem);
                        if !scan.found.contains(&function.ids) {
                            let _ = scan.found.push(function.ids);
                        }
                    }
                    here
                }
            };
            if !wanted {
                continue;
            }
            scan.functions_seen += 1;
            if !self.keeping[index] || scan.functions_seen > MAX_TARGETS {
                continue;
            }
            let target = Target {
                rules: RuleMask::only(index),
                function: function.clone(),
            };
            if self.candidates.push(target).is_err() {
                scan.crowded = true;
            }
        }
    }

    /// Ends the scan: decides each rule's verdict and the functions that go to vfio-pci.
    pub fn finish(self) -> Plan {
        let mut verdicts = Vec::new();
        let mut matched = Vec::new();
        let mut targets: Vec<Target, MAX_TARGETS> = Vec::new();
        let mut bridges: Vec<Target, MAX_TARGETS> = Vec::new();
        for (index, scan) in self.scans.iter().enumerate() {
            let verdict = if scan.functions_seen > MAX_TARGETS {
                Verdict::TooManyFunctions
            } else if scan.functions_seen == 0 {
                Verdict::NothingThere
            } else if !scan.guard_met {
                let mut found = scan.found.clone();
                order::sort(&mut found);
                Verdict::GuardMismatch { found }
            } else if scan.crowded || !self.keeping[index] {
                Verdict::NoRoom
            } else {
                let mut selected = Verdict::Selected {
                    functions: 0,
                    bridges: 0,
                };
                for candidate in self.candidates.iter().filter(|c| c.rules.contains(index)) {
                    let address = candidate.function.address;
                    let taken = targets
                        .iter_mut()
                        .chain(bridges.iter_mut())
                        .find(|t| t.function.address == address);
                    if let Verdict::Selected {
                        functions,
                        bridges: bridge_count,
                    } = &mut selected
                    {
                        if candidate.function.is_bridge() {
                            *bridge_count += 1;
                        } else {
                            *functions += 1;
                        }
                    }
                    if let Some(taken) = taken {
                        taken.rules.insert(index);
                        continue;
                    }
                    // Both lists hold at most the candidates' count: pushing cannot fail.
                    let list = if candidate.function.is_bridge() {
                        &mut bridges
                    } else {
                        &mut targets
                    };
                    let _ = list.push(candidate.clone());
                }
                match selected {
                    Verdict::Selected { functions: 0, .. } => Verdict::OnlyBridges,
                    selected => selected,
                }
            };
            let _ = verdicts.push(verdict);
            let _ = matched.push(scan.functions_seen);
        }
        let by_address = |a: &Target, b: &Target| a.function.address < b.function.address;
        order::sort_by(&mut targets, by_address);
        order::sort_by(&mut bridges, by_address);
        Plan {
            targets,
            bridges,
            verdicts,
            matched,
        }
    }
}

impl Plan {
    /// When some rule found no room on this pass, the rules whose candidates a second pass
    /// should keep: in command-line order, each rule in play (selected, or out of room) whose
    /// functions still fit beside those kept before it. `None`: this plan is final.
    pub fn rules_to_keep_on_second_pass(&self) -> Option<[bool; MAX_RULES]> {
        if !self.verdicts.contains(&Verdict::NoRoom) {
            return None;
        }
        let mut keep = [false; MAX_RULES];
        let mut room = MAX_TARGETS;
        for (index, verdict) in self.verdicts.iter().enumerate() {
            let in_play = matches!(verdict, Verdict::Selected { .. } | Verdict::NoRoom);
            if in_play && self.matched[index] <= room {
                keep[index] = true;
                room -= self.matched[index];
            }
        }
        Some(keep)
    }

    /// Refuses every rule that selects a function whose `driver_override` names another
    /// driver than vfio-pci: someone else set it (an administrator parking a card on
    /// `pci-stub`), and overwriting it, then clearing it on a give-back, would hand the card
    /// to the very driver it was kept from. A rule applies whole or not at all, so the
    /// rule's other functions are dropped too, unless a rule still in play selects them.
    /// (Bridges are left in [`Plan::bridges`]: they are only ever warned about.)
    pub fn refuse_foreign_overrides(&mut self) {
        for target in &self.targets {
            let Some(name) = target
                .function
                .driver_override
                .as_ref()
                .filter(|name| name.as_str() != VFIO_PCI)
            else {
                continue;
            };
            for rule in target.rules.iter() {
                let verdict = &mut self.verdicts[rule];
                if matches!(verdict, Verdict::Selected { .. }) {
                    *verdict = Verdict::ForeignOverride {
                        address: target.function.address,
                        driver_override: name.clone(),
                    };
                }
            }
        }
        let verdicts = &self.verdicts;
        let in_play = |target: &Target| {
            target
                .rules
                .iter()
                .any(|rule| matches!(verdicts[rule], Verdict::Selected { .. }))
        };
        self.targets.retain(in_play);
    }

    /// The targets a rule selected, those it shares with other rules included.
    pub fn targets_of(&self, rule: usize) -> impl Iterator<Item = &Target> {
        self.targets
            .iter()
            .filter(move |target| target.rules.contains(rule))
    }

    pub fn is_target(&self, address: PciAddress) -> bool {
        self.targets
            .iter()
            .any(|target| target.function.address == address)
    }

    /// For a function no rule selected, the target whose IOMMU group it shares, if any.
    /// Bridges are not counted: a group is viable whatever driver its bridges have.
    pub fn companion_of(&self, function: &Function) -> Option<&Target> {
        if function.is_bridge() || self.is_target(function.address) {
            return None;
        }
        let group = function.iommu_group?;
        self.targets
            .iter()
            .find(|target| target.function.iommu_group == Some(group))
    }
}

/// Plans `rules` over the functions `show_functions` hands to a planner: once, and when that
/// pass ran out of room, a second time keeping only the rules still in play. `show_functions`
/// must show the same functions each time it is called; its error ends the planning.
pub fn plan_rules<E>(
    rules: &[Rule],
    mut show_functions: impl FnMut(&mut Planner<'_>) -> Result<(), E>,
) -> Result<Plan, E> {
    let mut planner = Planner::new(rules);
    show_functions(&mut planner)?;
    let first = planner.finish();
    let Some(keep) = first.rules_to_keep_on_second_pass() else {
        return Ok(first);
    };
    let mut planner = Planner::keeping_only(rules, &keep);
    show_functions(&mut planner)?;
    Ok(planner.finish())
}

/// Whether `other` is a twin of `target`, a function a bus-number rule selects: outside
/// the rule's location, and such that the rule's guard cannot tell them apart (it passes
/// the guard as `target` does; for a rule with no IDs, it has `target`'s IDs and subsystem
/// IDs). When a card added in an earlier slot moves the buses, such a rule takes the twin.
/// Path rules and IDs-only rules have no twins: the first follows its card, the second
/// takes every match anyway.
pub fn is_twin(rule: &Rule, target: &Function, other: &Function) -> bool {
    let Some(Address::Bus(location)) = rule.location() else {
        return false;
    };
    if location.contains(other.address) || other.is_bridge() || target.ids.is_none() {
        return false;
    }
    match rule.ids() {
        Some(guard) => {
            other.ids == target.ids
                && guard.matches(target.ids, target.subsystem)
                && guard.matches(other.ids, other.subsystem)
        }
        None => other.ids == target.ids && other.subsystem == target.subsystem,
    }
}

/// The rule that would add `function` to vfio-pci alone, guarded by its own IDs.
pub fn rule_for(function: &Function) -> Rule {
    let location = Location::Function(function.address);
    match function.ids {
        Some(ids) => Rule::Guarded(ids.into(), location.into()),
        None => Rule::At(location.into()),
    }
}

/// IDs as a list for messages: `10de:2204, 10de:1aef`, `unreadable` for unknown ones.
pub struct IdsList<'a>(pub &'a [Option<PciIds>]);

impl fmt::Display for IdsList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, ids) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            match ids {
                Some(ids) => write!(f, "{ids}")?,
                None => f.write_str("unreadable IDs")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::function::DriverName;

    fn function(address: &str, ids: &str, class: u32, group: u32) -> Function {
        Function {
            address: address.parse().unwrap(),
            ids: Some(ids.parse().unwrap()),
            subsystem: None,
            class: Some(class),
            driver: None,
            driver_override: None,
            iommu_group: Some(group),
            boot_vga: false,
        }
    }

    /// The host's RX 6750 XT at 03:00 and the guest's RX 6600 at 07:00, whose HDMI-audio
    /// functions are both 1002:ab28 (the machine of seed 003).
    fn host_and_guest_share_audio_ids() -> [Function; 5] {
        [
            function("0000:00:01.1", "1022:14db", 0x060400, 1),
            function("0000:03:00.0", "1002:73df", 0x030000, 14),
            function("0000:03:00.1", "1002:ab28", 0x040300, 14),
            function("0000:07:00.0", "1002:73ff", 0x030000, 17),
            function("0000:07:00.1", "1002:ab28", 0x040300, 17),
        ]
    }

    /// `count` functions of one multi-port network card model (8086:1520), 8 per slot.
    fn network_functions(count: usize) -> std::vec::Vec<Function> {
        (0..count)
            .map(|n| {
                function(
                    &format!("0000:{:02x}:00.{}", 0x10 + n / 8, n % 8),
                    "8086:1520",
                    0x020000,
                    30,
                )
            })
            .collect()
    }

    /// Space-separated rule texts, parsed.
    fn rules(texts: &str) -> std::vec::Vec<Rule> {
        texts.split(' ').map(|r| r.parse().unwrap()).collect()
    }

    fn plan(rules_text: &str, functions: &[Function]) -> Plan {
        let rules = rules(rules_text);
        let mut planner = Planner::new(&rules);
        for function in functions {
            planner.observe(function);
        }
        planner.finish()
    }

    /// [`plan_rules`] over a list of functions, as `apply::scan` runs it over sysfs.
    fn plan_in_two_passes(rules: &[Rule], functions: &[Function]) -> Plan {
        let shown: Result<Plan, ()> = plan_rules(rules, |planner| {
            functions.iter().for_each(|f| planner.observe(f));
            Ok(())
        });
        shown.unwrap()
    }

    fn addresses(targets: &[Target]) -> std::vec::Vec<std::string::String> {
        targets
            .iter()
            .map(|t| t.function.address.to_string())
            .collect()
    }

    #[test]
    fn guarded_slot_rule_takes_the_whole_card_and_nothing_else() {
        let plan = plan("1002:73ff@07:00", &host_and_guest_share_audio_ids());
        assert_eq!(addresses(&plan.targets), ["0000:07:00.0", "0000:07:00.1"]);
        assert_eq!(
            plan.verdicts[0],
            Verdict::Selected {
                functions: 2,
                bridges: 0
            }
        );
    }

    #[test]
    fn ids_rule_takes_every_function_with_them_like_vfio_pci_ids() {
        let plan = plan("1002:ab28", &host_and_guest_share_audio_ids());
        assert_eq!(addresses(&plan.targets), ["0000:03:00.1", "0000:07:00.1"]);
    }

    #[test]
    fn a_moved_card_fails_the_guard_and_nothing_is_selected() {
        let plan = plan("1002:73ff@03:00", &host_and_guest_share_audio_ids());
        assert!(plan.targets.is_empty());
        let found = [
            Some("1002:73df".parse().unwrap()),
            Some("1002:ab28".parse().unwrap()),
        ];
        assert_eq!(
            plan.verdicts[0],
            Verdict::GuardMismatch {
                found: Vec::from_slice(&found).unwrap()
            }
        );
    }

    #[test]
    fn function_rule_is_guarded_by_its_own_ids() {
        let plan = plan(
            "1002:ab28@07:00.1 1002:73ff@07:00.1",
            &host_and_guest_share_audio_ids(),
        );
        assert_eq!(addresses(&plan.targets), ["0000:07:00.1"]);
        assert!(matches!(plan.verdicts[1], Verdict::GuardMismatch { .. }));
    }

    #[test]
    fn empty_location_and_unknown_ids_select_nothing() {
        let plan = plan("@09:00 10de:1b80", &host_and_guest_share_audio_ids());
        assert_eq!(
            plan.verdicts.as_slice(),
            [Verdict::NothingThere, Verdict::NothingThere]
        );
    }

    #[test]
    fn bridges_are_set_aside_and_a_bridge_only_rule_fails() {
        let plan = plan("@00:01", &host_and_guest_share_audio_ids());
        assert!(plan.targets.is_empty());
        assert_eq!(addresses(&plan.bridges), ["0000:00:01.1"]);
        assert_eq!(plan.verdicts[0], Verdict::OnlyBridges);
    }

    #[test]
    fn overlapping_rules_take_a_function_once() {
        let plan = plan(
            "1002:ab28 1002:73ff@07:00",
            &host_and_guest_share_audio_ids(),
        );
        assert_eq!(
            addresses(&plan.targets),
            ["0000:03:00.1", "0000:07:00.0", "0000:07:00.1"]
        );
        assert_eq!(
            plan.targets[2].rules.iter().collect::<std::vec::Vec<_>>(),
            [0, 1]
        );
        assert_eq!(
            addresses(&plan.targets_of(1).cloned().collect::<std::vec::Vec<_>>()),
            ["0000:07:00.0", "0000:07:00.1"]
        );
        assert_eq!(
            plan.verdicts[1],
            Verdict::Selected {
                functions: 2,
                bridges: 0
            }
        );
    }

    #[test]
    fn a_rule_too_big_for_the_plan_selects_nothing() {
        let many = network_functions(MAX_TARGETS + 1);
        let mut functions = host_and_guest_share_audio_ids().to_vec();
        functions.extend(many);
        let plan = plan("1002:73ff@07:00 8086:1520", &functions);
        assert_eq!(plan.verdicts[1], Verdict::TooManyFunctions);
        assert_eq!(addresses(&plan.targets), ["0000:07:00.0", "0000:07:00.1"]);
    }

    #[test]
    fn a_rule_is_not_blamed_for_room_other_rules_took() {
        // 65 functions of a bare-IDs rule come first in directory order, then the card.
        let mut functions = network_functions(MAX_TARGETS + 1);
        functions.extend(host_and_guest_share_audio_ids());
        let plan = plan_in_two_passes(&rules("1002:73ff@07:00 8086:1520"), &functions);
        assert_eq!(
            plan.verdicts[0],
            Verdict::Selected {
                functions: 2,
                bridges: 0
            }
        );
        assert_eq!(plan.verdicts[1], Verdict::TooManyFunctions);
        assert_eq!(addresses(&plan.targets), ["0000:07:00.0", "0000:07:00.1"]);
    }

    #[test]
    fn rules_whose_guard_fails_take_no_room_from_the_others() {
        // Eight full slots whose guard fails (64 candidates), then a good rule.
        let mut functions = std::vec::Vec::new();
        let mut rules = std::vec::Vec::new();
        for bus in 0x20..0x28 {
            for f in 0..8 {
                functions.push(function(
                    &format!("0000:{bus:02x}:00.{f}"),
                    "10de:1e84",
                    0x030000,
                    bus,
                ));
            }
            rules.push(format!("1002:73ff@{bus:02x}:00").parse().unwrap());
        }
        functions.extend(host_and_guest_share_audio_ids());
        rules.push("1002:73ff@07:00".parse().unwrap());
        let plan = plan_in_two_passes(&rules, &functions);
        assert!(matches!(plan.verdicts[0], Verdict::GuardMismatch { .. }));
        assert_eq!(
            plan.verdicts[8],
            Verdict::Selected {
                functions: 2,
                bridges: 0
            }
        );
    }

    #[test]
    fn rules_that_together_select_too_much_keep_the_first_that_fit() {
        let functions: std::vec::Vec<Function> = (0..40)
            .flat_map(|n| {
                let bus = 0x10 + n;
                [
                    function(&format!("0000:{bus:02x}:00.0"), "10de:1e84", 0x030000, n),
                    function(&format!("0000:{bus:02x}:00.1"), "10de:10f8", 0x040300, n),
                ]
            })
            .collect();
        let plan = plan_in_two_passes(&rules("10de:1e84 10de:10f8"), &functions);
        assert_eq!(
            plan.verdicts[0],
            Verdict::Selected {
                functions: 40,
                bridges: 0
            }
        );
        assert_eq!(plan.verdicts[1], Verdict::NoRoom);
        assert_eq!(plan.targets.len(), 40);
    }

    #[test]
    fn a_foreign_override_refuses_every_rule_that_selects_the_function_and_only_those() {
        let mut functions = host_and_guest_share_audio_ids().to_vec();
        functions[4].driver_override = Some(DriverName::try_from("pci-stub").unwrap());
        let mut plan = plan(
            "1002:73ff@07:00 1002:ab28@07:00.1 1002:73df@03:00 @07:00.0",
            &functions,
        );
        plan.refuse_foreign_overrides();
        let refused = Verdict::ForeignOverride {
            address: "0000:07:00.1".parse().unwrap(),
            driver_override: DriverName::try_from("pci-stub").unwrap(),
        };
        assert_eq!(plan.verdicts[0], refused);
        assert_eq!(plan.verdicts[1], refused);
        assert!(matches!(plan.verdicts[2], Verdict::Selected { .. }));
        assert!(matches!(plan.verdicts[3], Verdict::Selected { .. }));
        // 07:00.0 stays for the rule @07:00.0, which does not select the parked function.
        assert_eq!(
            addresses(&plan.targets),
            ["0000:03:00.0", "0000:03:00.1", "0000:07:00.0"]
        );
    }

    #[test]
    fn an_override_to_vfio_pci_is_not_foreign() {
        let mut functions = host_and_guest_share_audio_ids().to_vec();
        functions[3].driver_override = Some(DriverName::try_from(VFIO_PCI).unwrap());
        let mut plan = plan("1002:73ff@07:00", &functions);
        plan.refuse_foreign_overrides();
        assert_eq!(addresses(&plan.targets), ["0000:07:00.0", "0000:07:00.1"]);
    }

    #[test]
    fn twins_are_what_a_bus_number_rules_guard_cannot_tell_apart() {
        let with_subsystem = |address: &str, subsystem: &str| Function {
            subsystem: Some(subsystem.parse().unwrap()),
            ..function(address, "10de:1e89", 0x030000, 1)
        };
        let first = with_subsystem("0000:06:00.0", "1462:3750");
        let second = with_subsystem("0000:0a:00.0", "1462:3750");
        let other_maker = with_subsystem("0000:0b:00.0", "1043:8800");
        let rule = |text: &str| text.parse::<Rule>().unwrap();
        assert!(is_twin(&rule("10de:1e89@0a:00"), &second, &first));
        assert!(is_twin(&rule("10de:1e89@0a:00"), &second, &other_maker));
        assert!(is_twin(&rule("@0a:00.0"), &second, &first));
        assert!(!is_twin(&rule("@0a:00.0"), &second, &other_maker));
        assert!(!is_twin(
            &rule("10de:1e89:1462:3750@0a:00"),
            &second,
            &other_maker
        ));
        assert!(!is_twin(&rule("10de:1e89@00:1d.0/00"), &second, &first));
        assert!(!is_twin(&rule("10de:1e89"), &second, &first));
        assert!(!is_twin(&rule("10de:1e89@0a:00"), &second, &second));
        // The card's audio function is no twin of a rule guarded by the display's IDs.
        let audio = function("0000:0a:00.1", "10de:10f8", 0x040300, 1);
        let other_audio = function("0000:06:00.1", "10de:10f8", 0x040300, 1);
        assert!(!is_twin(&rule("10de:1e89@0a:00"), &audio, &other_audio));
    }

    #[test]
    fn group_companions_are_found_and_named_by_a_rule() {
        let mut functions = host_and_guest_share_audio_ids().to_vec();
        let mut usb = function("0000:07:00.2", "1002:73a6", 0x0c0330, 17);
        usb.driver = Some(DriverName::try_from("xhci_hcd").unwrap());
        functions.push(usb.clone());
        let plan = plan("1002:73ff@07:00.0 1002:ab28@07:00.1", &functions);
        assert_eq!(
            plan.companion_of(&usb)
                .map(|t| t.function.address.to_string())
                .as_deref(),
            Some("0000:07:00.0")
        );
        assert_eq!(plan.companion_of(&functions[2]), None);
        assert_eq!(plan.companion_of(&functions[3]), None);
        assert_eq!(rule_for(&usb).to_string(), "1002:73a6@0000:07:00.2");
    }
}
