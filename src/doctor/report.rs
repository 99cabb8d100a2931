//! The commands for people: `list`, `rule` and `check`. They run after boot, on demand,
//! so unlike `apply` they collect what they read into ordinary collections.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::boot::apply::scan;
use crate::boot::bootfb::{bar_findings, IOMEM_CAPACITY};
use crate::boot::exit::{EXIT_FAILED, EXIT_OK};
use crate::boot::plan::{rule_for, IdsList, Plan, Verdict};
use crate::boot::sources::Gathered;
use crate::boot::topology::{path_form, path_of, twin_of};
use crate::doctor::checks::{Finding, Severity};
use crate::doctor::host::Host;
use crate::doctor::json;
use crate::doctor::pciids::PciNames;
use crate::machine::function::{base_and_subclass, Function, VFIO_PCI};
use crate::machine::guard::{HeldList, Holdings, LostList};
use crate::machine::order;
use crate::machine::sysfs::Sysfs;
use crate::rules::address::{Location, PciIds, PciPath};
use crate::rules::rule::Rule;

/// Every function, sorted by address. An unreadable device list reads as empty.
fn all_functions(sysfs: &Sysfs) -> Vec<Function> {
    let mut functions = Vec::new();
    let _ = sysfs.for_each_function(|function| functions.push(function.clone()));
    order::sort_by(&mut functions, |a, b| a.address < b.address);
    functions
}

/// The `check` step: reads iomem and every function, and says each [`bar_findings`] line.
fn check_bars(sysfs: &Sysfs, say: &mut dyn FnMut(Severity, String)) {
    let mut buffer = vec![0u8; IOMEM_CAPACITY];
    let iomem = match sysfs.read_iomem(&mut buffer) {
        Ok(Some(text)) => text,
        Ok(None) => return,
        Err(errno) => {
            say(
                Severity::Problem,
                format!(
                    "cannot read {} ({}), so whether a framebuffer holds a vfio-pci function's BAR cannot be told",
                    sysfs.iomem_path().unwrap_or("iomem"),
                    errno.desc()
                ),
            );
            return;
        }
    };
    for finding in bar_findings(iomem, &all_functions(sysfs)) {
        let severity = if finding.ok {
            Severity::Ok
        } else {
            Severity::Problem
        };
        say(severity, finding.text);
    }
}

/// `vfio-bind list`: every function grouped by IOMMU group.
pub fn list(sysfs: &Sysfs, gathered: &Gathered, format: Format, out: &mut dyn Write) -> u8 {
    let functions = all_functions(sysfs);
    if functions.is_empty() && format == Format::Text {
        let _ = writeln!(
            out,
            "no PCI functions under {}/bus/pci/devices",
            sysfs.root()
        );
        return EXIT_FAILED;
    }
    let wanted: BTreeSet<PciIds> =
        order::set_of(functions.iter().filter_map(|function| function.ids));
    let names = PciNames::load_installed(&wanted);
    let plan = scan(sysfs, gathered.rules.rules()).ok();
    let selected = |function: &Function| {
        plan.as_ref()
            .is_some_and(|plan| plan.is_target(function.address))
    };
    if format == Format::Json {
        list_json(sysfs, &functions, &selected, names.as_ref(), out);
        return if functions.is_empty() {
            EXIT_FAILED
        } else {
            EXIT_OK
        };
    }

    let mut groups: BTreeMap<Option<u32>, Vec<&Function>> = BTreeMap::new();
    for function in &functions {
        groups
            .entry(function.iommu_group)
            .or_default()
            .push(function);
    }
    let _ = if sysfs.iommu_enabled() {
        writeln!(out, "IOMMU on: {} groups", groups.keys().flatten().count())
    } else {
        writeln!(out, "IOMMU off: no IOMMU groups, so vfio-pci cannot bind anything (enable VT-d/AMD-Vi; intel_iommu=on on Intel)")
    };
    let _ = writeln!(
        out,
        "* = selected by the current vfio.bind rules ({} rules)",
        gathered.rules.rules().len()
    );
    // IOMMU groups in numeric order (the map's), functions without a group last.
    let ungrouped = groups.get_key_value(&None);
    for (group, members) in groups
        .iter()
        .filter(|(group, _)| group.is_some())
        .chain(ungrouped)
    {
        let _ = match group {
            Some(group) => writeln!(out, "\nIOMMU group {group}"),
            None => writeln!(out, "\nno IOMMU group"),
        };
        for function in members {
            let _ = writeln!(
                out,
                "{}",
                describe_line(
                    function,
                    selected(function),
                    path_of(sysfs, function.address),
                    names.as_ref()
                )
            );
        }
    }
    EXIT_OK
}

/// `list --json`: one object per function, in address order (schema [`LIST_SCHEMA`]).
fn list_json(
    sysfs: &Sysfs,
    functions: &[Function],
    selected: &dyn Fn(&Function) -> bool,
    names: Option<&PciNames>,
    out: &mut dyn Write,
) {
    let _ = write!(
        out,
        "{{\"schema\":{},\"iommu\":{},\"functions\":[",
        json::Str(LIST_SCHEMA),
        sysfs.iommu_enabled()
    );
    for (index, function) in functions.iter().enumerate() {
        let hex4 = |value: Option<u16>| value.map(|value| format!("{value:04x}"));
        let vendor = hex4(function.ids.map(|ids| ids.vendor()));
        let device = hex4(function.ids.map(|ids| ids.device()));
        let class = function.class.map(|class| format!("{class:06x}"));
        let path = path_of(sysfs, function.address).map(|path| path.to_string());
        let name = names.and_then(|names| function.ids.and_then(|ids| names.describe(ids)));
        let class_name = names.and_then(|names| function.class.and_then(|c| names.class_name(c)));
        let _ = write!(
            out,
            "{}{{\"address\":{},\"vendor\":{},\"device\":{},\"class\":{},\"driver\":{},\"driver_override\":{},\"iommu_group\":{},\"boot_vga\":{},\"path\":{},\"selected\":{},\"name\":{},\"class_name\":{}}}",
            if index > 0 { "," } else { "" },
            json::Str(&function.address.to_string()),
            json::OptStr(vendor.as_deref()),
            json::OptStr(device.as_deref()),
            json::OptStr(class.as_deref()),
            json::OptStr(function.driver.as_deref()),
            json::OptStr(function.driver_override.as_deref()),
            json::OptNum(function.iommu_group),
            function.boot_vga,
            json::OptStr(path.as_deref()),
            selected(function),
            json::OptStr(name.as_deref()),
            json::OptStr(class_name),
        );
    }
    let _ = writeln!(out, "]}}");
}

fn describe_line(
    function: &Function,
    selected: bool,
    path: Option<PciPath>,
    names: Option<&PciNames>,
) -> String {
    let mut line = format!(
        "{} {}  {}  [{}]  driver={}",
        if selected { '*' } else { ' ' },
        function.address,
        IdsList(&[function.ids]),
        function.class.map_or_else(
            || "????".to_string(),
            |class| format!("{:04x}", base_and_subclass(class))
        ),
        function.driver.as_deref().unwrap_or("none"),
    );
    if let Some(driver) = &function.driver_override {
        line.push_str(&format!(" override={driver}"));
    }
    if function.boot_vga {
        line.push_str(" boot_vga");
    }
    if let Some(path) = path {
        line.push_str(&format!(" path={path}"));
    }
    if let Some(names) = names {
        if let Some(class) = function.class.and_then(|class| names.class_name(class)) {
            line.push_str(&format!("  {class}:"));
        }
        if let Some(name) = function.ids.and_then(|ids| names.describe(ids)) {
            line.push_str(&format!(" {name}"));
        }
    }
    line
}

/// `vfio-bind rule ADDR`: the guarded rule for a card or function, what it leaves out, and
/// what of the host's it would take (`holdings`, when the host is known).
pub fn rule(
    sysfs: &Sysfs,
    location: Location,
    holdings: Option<&Holdings>,
    out: &mut dyn Write,
) -> u8 {
    let present = sysfs.functions_at(location);
    let Some(first) = present.first() else {
        let _ = writeln!(out, "no PCI function at {location}");
        return EXIT_FAILED;
    };
    let rule = match first.ids {
        None => Rule::At(location.into()),
        Some(ids) => Rule::Guarded(ids.into(), location.into()),
    };
    // Below a bridge, the same card by its path: what tells identical cards apart for good.
    let path_rule = path_form(sysfs, &rule, location, first.address);
    let mut rules = vec![rule];
    let groups: BTreeSet<u32> =
        order::set_of(present.iter().filter_map(|function| function.iommu_group));
    let companions: Vec<Function> = all_functions(sysfs)
        .into_iter()
        .filter(|function| {
            !location.contains(function.address)
                && !function.is_bridge()
                && function
                    .iommu_group
                    .is_some_and(|group| groups.contains(&group))
        })
        .collect();
    let _ = writeln!(out, "vfio.bind={rule}");
    if let Some(path_rule) = path_rule {
        let _ = writeln!(
            out,
            "or by its path, which stays right when bus numbers move (they do when a card is added in an earlier slot): vfio.bind={path_rule}"
        );
    }
    for function in present.iter() {
        let _ = writeln!(out, "  takes {}", FunctionShown(function));
    }
    for function in present.iter() {
        let held = holdings.map(|h| h.of(function.address)).unwrap_or_default();
        if !held.is_empty() {
            let _ = writeln!(
                out,
                "warning: {} holds {}: with this rule the host loses {} at the next boot. If that boot stops, add {}=0 to the kernel command line at the boot menu: vfio-bind then binds nothing",
                function.address,
                HeldList(&held),
                LostList(&held),
                crate::rules::cmdline::DISABLE_PARAMETER,
            );
        }
    }
    if !companions.is_empty() {
        let _ = writeln!(
            out,
            "\nits IOMMU group also holds these, which a VM needs too (or on no driver):"
        );
        for function in &companions {
            let _ = writeln!(out, "  {}", FunctionShown(function));
            rules.push(rule_for(function));
        }
        let all: Vec<String> = rules.iter().map(Rule::to_string).collect();
        let _ = writeln!(out, "\nfor the whole group:\nvfio.bind={}", all.join(","));
    }
    EXIT_OK
}

/// How `list` and `check` print: lines for people, or one JSON document for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// The schema names in the JSON output; a change that breaks a reader gets a new number.
pub const LIST_SCHEMA: &str = "vfio-bind.list/1";
pub const CHECK_SCHEMA: &str = "vfio-bind.check/1";

/// A cause that several functions of one rule (or one IOMMU group) can share: `check` says
/// it once for that rule, naming every function, as `apply` does. A new cause is one more
/// variant here and its arm in [`Cause::finding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// A function the rule selects is on another driver, or on none.
    NotOnVfioPci,
    /// A function of the group that no rule selects holds a driver.
    GroupHeldByUnselected,
    /// A function of the group that a rule selects holds a driver (its rule's line says why).
    GroupHeldBySelected,
}

/// One function's part in a shared finding.
#[derive(Clone, Debug)]
struct Part {
    address: crate::rules::address::PciAddress,
    /// What is seen of it, in the cause's words: its driver, or its IDs and driver.
    seen: String,
    /// Its share of the fix, when the fix differs by function (the rule that adds it).
    remedy: Option<String>,
}

impl Cause {
    /// The finding about `subject` (a rule, `IOMMU group N`) for all its `parts`.
    fn finding(self, subject: &str, parts: &[Part]) -> Finding {
        let list = |show: &dyn Fn(&Part) -> String| -> String {
            parts.iter().map(show).collect::<Vec<_>>().join(", ")
        };
        let one = parts.len() == 1;
        match self {
            Cause::NotOnVfioPci => {
                let text = if one {
                    format!(
                        "{subject}: {} is on {}, not vfio-pci",
                        parts[0].address, parts[0].seen
                    )
                } else {
                    let functions = list(&|part| format!("{} (on {})", part.address, part.seen));
                    format!("{subject}: {functions} are not on vfio-pci")
                };
                Finding::new(Severity::Problem, subject, text).fix("check that the vfio-bind hook is in the initramfs and runs before the GPU driver (dmesg | grep vfio-bind), or run vfio-bind apply")
            }
            Cause::GroupHeldByUnselected | Cause::GroupHeldBySelected => {
                let held = list(&|part| format!("{} {}", part.address, part.seen));
                let text = format!("{subject} is not viable: {held}");
                if self == Cause::GroupHeldBySelected {
                    let it = if one { "it" } else { "them" };
                    return Finding::new(
                        Severity::Problem,
                        subject,
                        format!("{text}; the rules above select {it}, so the fix is theirs"),
                    );
                }
                let rules: Vec<&str> = parts
                    .iter()
                    .filter_map(|part| part.remedy.as_deref())
                    .collect();
                Finding::new(Severity::Problem, subject, text)
                    .fix(format!("add vfio.bind={}", rules.join(",")))
            }
        }
    }
}

/// `check`'s findings in the order found, printed at the end in the chosen format.
#[derive(Default)]
struct Checklist {
    findings: Vec<Finding>,
    /// The shared findings so far: where each is in `findings`, its cause, subject and parts.
    shared: Vec<(usize, Cause, String, Vec<Part>)>,
}

impl Checklist {
    /// Adds a function to the finding of `cause` about `subject`, which is said once, where
    /// its first function was found.
    fn share(&mut self, cause: Cause, subject: &str, part: Part) {
        let existing = self
            .shared
            .iter_mut()
            .find(|(_, seen_cause, seen_subject, _)| {
                *seen_cause == cause && seen_subject == subject
            });
        match existing {
            Some((index, _, _, parts)) => {
                parts.push(part);
                self.findings[*index] = cause.finding(subject, parts);
            }
            None => {
                let parts = vec![part];
                self.findings.push(cause.finding(subject, &parts));
                self.shared
                    .push((self.findings.len() - 1, cause, subject.to_string(), parts));
            }
        }
    }

    /// Adds a finding given as one message, `TEXT[. Fix: FIX]`, whose subject is what it
    /// starts with: a rule or address before `: `, or `IOMMU group N`; else none.
    fn say(&mut self, severity: Severity, message: String) {
        let (text, fix) = match message.split_once(". Fix: ") {
            Some((text, fix)) => (text.to_string(), Some(fix.to_string())),
            None => (message, None),
        };
        let subject = if let Some(rest) = text.strip_prefix("IOMMU group ") {
            let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
            format!("IOMMU group {number}")
        } else {
            match text.split_once(": ") {
                Some((first, _)) if !first.contains(' ') => first.to_string(),
                _ => String::new(),
            }
        };
        self.findings.push(Finding {
            severity,
            subject,
            text,
            fix,
        });
    }

    fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|finding| finding.severity == Severity::Problem)
            .count()
    }

    fn print(&self, format: Format, out: &mut dyn Write) {
        match format {
            Format::Text => {
                for finding in &self.findings {
                    let text = json::Controls(&finding.text);
                    let _ = match &finding.fix {
                        Some(fix) => writeln!(
                            out,
                            "{} {text}. Fix: {}",
                            finding.severity.word(),
                            json::Controls(fix)
                        ),
                        None => writeln!(out, "{} {text}", finding.severity.word()),
                    };
                }
            }
            Format::Json => {
                let _ = write!(
                    out,
                    "{{\"schema\":{},\"ok\":{},\"findings\":[",
                    json::Str(CHECK_SCHEMA),
                    self.problems() == 0
                );
                for (index, finding) in self.findings.iter().enumerate() {
                    let severity = match finding.severity {
                        Severity::Ok => "ok",
                        Severity::Warning => "warning",
                        Severity::Problem => "problem",
                    };
                    let _ = write!(
                        out,
                        "{}{{\"severity\":{},\"subject\":{},\"text\":{},\"fix\":{}}}",
                        if index > 0 { "," } else { "" },
                        json::Str(severity),
                        json::Str(&finding.subject),
                        json::Str(&finding.text),
                        json::OptStr(finding.fix.as_deref())
                    );
                }
                let _ = writeln!(out, "]}}");
            }
        }
    }
}

/// `vfio-bind check`: after boot, is every rule applied and every group ready for a VM?
/// `host`, when given, is where the doctor reads /proc, /lib/modules, /boot and /etc (`/` on
/// the running system; `None` for a fixture sysfs given no host root).
pub fn check(
    sysfs: &Sysfs,
    gathered: &Gathered,
    host: Option<&Host>,
    format: Format,
    out: &mut dyn Write,
) -> u8 {
    let mut checklist = Checklist::default();
    let status = examine(sysfs, gathered, host, &mut checklist);
    checklist.print(format, out);
    if status == EXIT_OK && checklist.problems() == 0 {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn examine(
    sysfs: &Sysfs,
    gathered: &Gathered,
    host: Option<&Host>,
    checklist: &mut Checklist,
) -> u8 {
    let mut say = |severity: Severity, message: String| checklist.say(severity, message);
    let iommu = sysfs.iommu_enabled();
    if iommu {
        say(Severity::Ok, "the IOMMU is on".into());
    } else if gathered.noiommu || sysfs.vfio_noiommu_mode() {
        say(
            Severity::Ok,
            "the IOMMU is off, and vfio.enable_unsafe_noiommu_mode was asked for".into(),
        );
    } else {
        say(Severity::Problem, "the IOMMU is off, so vfio-pci cannot bind. Fix: enable VT-d or AMD-Vi in the firmware setup; on Intel add intel_iommu=on to the kernel command line".into());
    }
    let rejected = gathered.rejected();
    if rejected > 0 {
        say(Severity::Problem, format!("{rejected} rule texts or sources could not be used (see the messages above). Fix: correct them on the kernel command line or in /etc/cmdline.d"));
    }
    let rules = gathered.rules.rules();
    if rules.is_empty() {
        say(Severity::Problem, "no vfio.bind= rules on the kernel command line or in /etc/cmdline.d. Fix: add one; vfio-bind rule ADDR prints it".into());
        return EXIT_FAILED;
    }
    let mut plan = match scan(sysfs, rules) {
        Ok(plan) => plan,
        Err(failure) => {
            say(Severity::Problem, failure.to_string());
            return EXIT_FAILED;
        }
    };
    // As apply does: a rule that selects a function parked on another driver is refused.
    plan.refuse_foreign_overrides();
    for (index, rule) in rules.iter().enumerate() {
        check_rule(rule, &plan, index, checklist);
        let targets = plan.targets_of(index).map(|target| &target.function);
        if let Some(twin) = twin_of(sysfs, rule, targets) {
            checklist.say(
                Severity::Warning,
                format!(
                    "{rule}: {twin}. Fix: name it by its path: vfio.bind={}",
                    twin.path_rule
                ),
            );
        }
    }
    if let Some(host) = host {
        let holdings = crate::machine::host_usage::holdings(host.root(), sysfs);
        check_held(rules, &plan, &holdings, checklist);
    }
    check_groups(sysfs, &plan, checklist);
    check_bars(sysfs, &mut |severity, message| {
        checklist.say(severity, message)
    });
    if let Some(host) = host {
        let mut examined: Vec<Function> = plan.targets.iter().map(|t| t.function.clone()).collect();
        for function in all_functions(sysfs) {
            if function.is_on(VFIO_PCI) && !plan.is_target(function.address) {
                examined.push(function);
            }
        }
        order::sort_by(&mut examined, |a, b| a.address < b.address);
        checklist.findings.extend(host.findings(sysfs, &examined));
    }
    EXIT_OK
}

fn check_rule(rule: &Rule, plan: &Plan, index: usize, checklist: &mut Checklist) {
    match &plan.verdicts[index] {
        Verdict::Selected { .. } => {
            let mut all_bound = true;
            let subject = rule.to_string();
            for target in plan.targets_of(index) {
                let function = &target.function;
                if function.is_on(VFIO_PCI) {
                    continue;
                }
                all_bound = false;
                checklist.share(
                    Cause::NotOnVfioPci,
                    &subject,
                    Part {
                        address: function.address,
                        seen: function.driver.as_deref().unwrap_or("no driver").to_string(),
                        remedy: None,
                    },
                );
            }
            if all_bound {
                let addresses: Vec<String> = plan.targets_of(index).map(|t| t.function.address.to_string()).collect();
                checklist.say(Severity::Ok, format!("{rule}: {} on vfio-pci", addresses.join(", ")));
            }
        }
        Verdict::NothingThere => checklist.say(Severity::Problem, format!("{rule}: matches no PCI function. Fix: vfio-bind list shows what is there")),
        Verdict::GuardMismatch { found } => checklist.say(Severity::Problem, format!("{rule}: found {} there instead of the rule's IDs; the card may have moved. Fix: vfio-bind list, then vfio-bind rule ADDR", IdsList(found))),
        Verdict::OnlyBridges => checklist.say(Severity::Problem, format!("{rule}: selects only PCI bridges, which vfio-pci cannot take")),
        Verdict::TooManyFunctions => checklist.say(Severity::Problem, format!("{rule}: selects more than {} functions", crate::boot::plan::MAX_TARGETS)),
        Verdict::NoRoom => checklist.say(Severity::Problem, format!("{rule}: the rules together select more than {} functions", crate::boot::plan::MAX_TARGETS)),
        Verdict::ForeignOverride { address, driver_override } => checklist.say(Severity::Problem,
            format!("{rule}: {address} has driver_override={driver_override}, which vfio-bind does not overwrite, so the rule is not applied. Fix: to hand it over, clear it (echo > /sys/bus/pci/devices/{address}/driver_override) where it is set; or take the rule out"),
        ),
    }
}

/// A rule that selects a function the host uses takes it away at the next boot (at boot
/// `apply` cannot tell: the root is not mounted yet, and the network not up).
fn check_held(rules: &[Rule], plan: &Plan, holdings: &Holdings, checklist: &mut Checklist) {
    for (index, rule) in rules.iter().enumerate() {
        // One line per rule, naming every function of it the host uses.
        let mut lost = Vec::new();
        let mut holders = Vec::new();
        for target in plan.targets_of(index) {
            let address = target.function.address;
            let held = holdings.of(address);
            if held.is_empty() {
                continue;
            }
            holders.push(format!("{address} holds {}", HeldList(&held)));
            lost.extend(held);
        }
        if holders.is_empty() {
            continue;
        }
        checklist.say(
            Severity::Problem,
            format!(
                "{rule}: at the next boot the host loses {}: {}. Fix: take the rule out before rebooting, or stop the host using it first; if a boot stops there, add {}=0 at the boot menu",
                LostList(&lost),
                holders.join("; "),
                crate::rules::cmdline::DISABLE_PARAMETER,
            ),
        );
    }
}

/// For runtime `bind`: refuses, with one line each, the rules that select a function the
/// host uses, before anything is written. Returns whether any was refused.
pub fn refuse_held(sysfs: &Sysfs, gathered: &Gathered, holdings: &Holdings) -> bool {
    let rules = gathered.rules.rules();
    // Quietly: the bind that follows says where each path led, and any failure to list.
    let resolved = crate::boot::topology::resolve_rules_quietly(sysfs, rules);
    let Ok(plan) = crate::boot::apply::plan_resolved(sysfs, &resolved) else {
        return false;
    };
    let mut refused = false;
    for (index, rule) in rules.iter().enumerate() {
        for target in plan.targets_of(index) {
            let held = holdings.of(target.function.address);
            if held.is_empty() {
                continue;
            }
            refused = true;
            log::error!(
                "{rule} refused: {} holds {}, which the host would lose; nothing was touched (--force binds it anyway)",
                target.function.address,
                HeldList(&held)
            );
        }
    }
    refused
}

/// A group is viable when every endpoint in it is on vfio-pci or on no driver.
fn check_groups(sysfs: &Sysfs, plan: &Plan, checklist: &mut Checklist) {
    let groups: BTreeSet<u32> =
        order::set_of(plan.targets.iter().filter_map(|t| t.function.iommu_group));
    let functions = all_functions(sysfs);
    for group in groups {
        let blockers: Vec<&Function> = functions
            .iter()
            .filter(|f| {
                f.iommu_group == Some(group)
                    && !f.is_bridge()
                    && f.driver.is_some()
                    && !f.is_on(VFIO_PCI)
            })
            .collect();
        let subject = format!("IOMMU group {group}");
        if blockers.is_empty() {
            checklist.say(Severity::Ok, format!("{subject} is viable"));
            continue;
        }
        for blocker in blockers {
            let seen = format!(
                "({}) is on {}",
                IdsList(&[blocker.ids]),
                blocker.driver.as_deref().unwrap_or("a driver"),
            );
            // A function a rule already selects was reported with that rule: adding the
            // rule again would fix nothing.
            let (cause, remedy) = if plan.is_target(blocker.address) {
                (Cause::GroupHeldBySelected, None)
            } else {
                (
                    Cause::GroupHeldByUnselected,
                    Some(rule_for(blocker).to_string()),
                )
            };
            let part = Part {
                address: blocker.address,
                seen,
                remedy,
            };
            checklist.share(cause, &subject, part);
        }
    }
}

/// `0000:07:00.0  1002:73ff  driver=amdgpu`: a function as `rule` lists what it takes.
struct FunctionShown<'a>(&'a Function);

impl std::fmt::Display for FunctionShown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let function = self.0;
        write!(
            f,
            "{}  {}  driver={}",
            function.address,
            IdsList(&[function.ids]),
            function.driver.as_deref().unwrap_or("none")
        )
    }
}
