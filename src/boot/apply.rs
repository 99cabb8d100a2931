//! `vfio-bind apply` (and runtime `bind`/`release`): carries out a plan against sysfs, then
//! reports what the kernel did.
//!
//! Apply runs in phases, each recording in a [`Handled`] per function what it did:
//! 1. hand over: write `driver_override` first, so no other driver can take the function
//!    again, then unbind the driver that holds it (the order the kernel's driver core wants,
//!    and libvirt's);
//! 2. probe: load vfio-pci, whose registration binds every overridden function, or write
//!    `drivers_probe`;
//! 3. read back every function's driver;
//! 4. settle: a rule applies whole or not at all. A function goes back to its own driver
//!    (override cleared, vfio-pci unbound, probed again) when every rule that selected it
//!    failed, and where it ended is read back; a function that a rule which applied also
//!    selected stays on vfio-pci;
//! 5. report: each rule's line, the warnings, the summary and the exit status are derived
//!    from the records, so no message can disagree with what happened.
//!
//! Rules may overlap (`@07:00` and `1002:ab28@07:00.1`): a function is handed over once,
//! and each rule's report covers every function it selected.

use std::time::Instant;

use heapless::Vec;
use log::{error, info, warn, Level};
use nix::errno::Errno;

use crate::boot::exit::{EXIT_FAILED, EXIT_OK};
use crate::boot::kernel::{address_text, Kernel};
use crate::boot::kmsg;
use crate::boot::modprobe::ModuleError;
use crate::boot::plan::{
    plan_rules, rule_for, IdsList, Plan, RuleMask, Target, Verdict, MAX_TARGETS,
};
use crate::boot::sources::Gathered;
use crate::machine::function::{DriverName, Function, VFIO_PCI};
use crate::machine::sysfs::{Attribute, Sysfs};
use crate::rules::address::{Address, PciAddress, FUNCTIONS_PER_SLOT};
use crate::rules::rule::Rule;
use crate::rules::ruleset::MAX_RULES;

/// Modules loaded when vfio-pci is not registered. busybox's modprobe ignores softdeps, so
/// the IOMMU backend that vfio needs is loaded by name first.
const VFIO_MODULES: [&str; 2] = ["vfio_iommu_type1", "vfio-pci"];

/// Why a rule did not apply: what went wrong with the first of its functions that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Failure {
    OverrideWrite(Errno),
    Unbind(Errno, DriverName),
    NotBound(Option<DriverName>),
}

/// Where one function of the plan ended, as read back from sysfs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum End {
    /// Nothing was written to it: its rules had failed before its turn, or its first write
    /// failed.
    #[default]
    Untouched,
    OnVfio,
    /// Handed over, but not on vfio-pci: on this driver, or on none. Settling gives it back.
    Missed(Option<DriverName>),
    /// Given back: no override, off vfio-pci; the driver that took it, if one did yet.
    GivenBack(Option<DriverName>),
    /// The give-back did not work: the override and driver it was left with.
    Stuck {
        driver_override: Option<DriverName>,
        driver: Option<DriverName>,
    },
    /// The function is gone from sysfs.
    Gone,
}

/// What apply did to one function of the plan, and where it ended.
#[derive(Clone, Debug, Default)]
struct Handled {
    /// `driver_override` was written with vfio-pci, so clearing it is ours to do.
    overridden: bool,
    /// The driver it was unbound from.
    unbound_from: Option<DriverName>,
    end: End,
}

/// One run over a plan: a record per target (in `plan.targets` order) and the first
/// failure of each rule. Every message and the exit status are derived from it.
struct Handover<'p> {
    plan: &'p Plan,
    handled: Vec<Handled, MAX_TARGETS>,
    failures: [Option<(PciAddress, Failure)>; MAX_RULES],
}

impl<'p> Handover<'p> {
    fn new(plan: &'p Plan) -> Self {
        let mut handled = Vec::new();
        for _ in &plan.targets {
            // As many records as targets: pushing cannot fail.
            let _ = handled.push(Handled::default());
        }
        Handover {
            plan,
            handled,
            failures: [const { None }; MAX_RULES],
        }
    }

    fn failed(&self, rule: usize) -> bool {
        self.failures.get(rule).is_some_and(Option::is_some)
    }

    /// Whether every rule that selected the target has failed: nothing more is done for it.
    fn abandoned(&self, target: &Target) -> bool {
        target.rules.all(|rule| self.failed(rule))
    }

    /// Records `failure` as the reason of each rule in `rules` that has not failed yet.
    fn fail(&mut self, rules: RuleMask, address: PciAddress, failure: &Failure) {
        for rule in rules.iter() {
            if let Some(slot @ None) = self.failures.get_mut(rule) {
                *slot = Some((address, failure.clone()));
            }
        }
    }

    fn applied(&self, rule: usize) -> bool {
        matches!(self.plan.verdicts.get(rule), Some(Verdict::Selected { .. })) && !self.failed(rule)
    }

    /// The targets a rule selected, each with its record.
    fn functions_of(&self, rule: usize) -> impl Iterator<Item = (&'p Target, &Handled)> {
        self.plan
            .targets
            .iter()
            .zip(self.handled.iter())
            .filter(move |(target, _)| target.rules.contains(rule))
    }

    fn on_vfio(&self) -> usize {
        self.handled
            .iter()
            .filter(|handled| handled.end == End::OnVfio)
            .count()
    }
}

/// The device list could not be read, so nothing could be planned. Reads as
/// "cannot list /sys/bus/pci/devices: No such file or directory".
#[derive(Clone, Copy, Debug)]
pub struct CannotList<'s> {
    root: &'s str,
    errno: Errno,
}

impl core::fmt::Display for CannotList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "cannot list {}/bus/pci/devices: {}",
            self.root,
            self.errno.desc()
        )
    }
}

/// Scans the functions the rules can select into a plan: a second time, keeping only the
/// rules still in play, when the first pass ran out of room. Errors: the device list cannot
/// be read.
pub fn scan<'s>(sysfs: &'s Sysfs, rules: &[Rule]) -> Result<Plan, CannotList<'s>> {
    let resolved = crate::boot::topology::resolve_rules(sysfs, rules);
    plan_resolved(sysfs, &resolved)
}

/// The plan of rules whose paths are already resolved ([`crate::boot::topology`]), reading
/// only the functions they can select.
pub fn plan_resolved<'s>(sysfs: &'s Sysfs, rules: &[Rule]) -> Result<Plan, CannotList<'s>> {
    // A rule with an address can only select functions whose directory name it matches;
    // only bare-IDs rules need every function read.
    let wanted = |address| {
        rules.iter().any(|rule| match rule.location() {
            None => true,
            Some(location) => location.contains(address),
        })
    };
    // When every rule has an address, its functions are looked up by address (at most
    // eight a slot): the device list, which the kernel builds entry by entry however few
    // of them are wanted, is not read at all.
    let all_located = rules.iter().all(|rule| rule.location().is_some());
    plan_rules(rules, |planner| {
        if !all_located {
            return sysfs.for_each_function_where(wanted, |function| planner.observe(function));
        }
        sysfs.devices_listable()?;
        let mut seen: Vec<PciAddress, { MAX_RULES * FUNCTIONS_PER_SLOT }> = Vec::new();
        for address in rules.iter().filter_map(Rule::location) {
            // An unresolved path selects nothing.
            let (Address::Bus(location) | Address::Resolved(_, location)) = address else {
                continue;
            };
            for function in sysfs.functions_at(location) {
                if !seen.contains(&function.address) && seen.push(function.address).is_ok() {
                    planner.observe(&function);
                }
            }
        }
        Ok(())
    })
    .map_err(|errno| CannotList {
        root: sysfs.root(),
        errno,
    })
}

/// Whether vfio runs without an IOMMU: asked for on the command line, or the vfio module's
/// parameter reads Y (it was loaded so, e.g. before a runtime `bind`).
fn noiommu_mode(sysfs: &Sysfs, gathered: &Gathered) -> bool {
    gathered.noiommu || sysfs.vfio_noiommu_mode()
}

/// Runs `vfio-bind apply` (and `bind`). Returns the exit status.
pub fn apply(
    sysfs: &Sysfs,
    gathered: &Gathered,
    kernel: &mut dyn Kernel,
    started: Instant,
    dry_run: Option<&mut dyn std::io::Write>,
) -> u8 {
    if gathered.disabled {
        // As a summary, so the one line says how long the run took, like every other.
        summary(
            Level::Info,
            started,
            format_args!("{}", crate::boot::sources::DisabledNotice),
        );
        return EXIT_OK;
    }
    let mut plan = match plan_or_refuse(sysfs, gathered, started) {
        Ok(plan) => plan,
        Err(status) => return status,
    };
    plan.refuse_foreign_overrides();
    let rules = gathered.rules.rules();
    for (index, verdict) in plan.verdicts.iter().enumerate() {
        report_verdict(&rules[index], verdict);
    }
    for bridge in &plan.bridges {
        warn!(
            "{}: {} is a PCI bridge, which vfio-pci cannot take; it is left alone",
            rules[bridge.rule()],
            bridge.function.address
        );
    }
    if let Some(out) = dry_run {
        warn_about_twins(sysfs, rules, &plan);
        print_plan(out, rules, &plan);
        return if all_selected(&plan) && !gathered.has_rejects() {
            EXIT_OK
        } else {
            EXIT_FAILED
        };
    }

    let console = crate::boot::bootfb::let_go(sysfs, kernel, &plan);
    let mut run = Handover::new(&plan);
    hand_over_all(sysfs, kernel, &mut run);
    let in_play = plan.targets.iter().any(|target| !run.abandoned(target));
    let modules_loaded = !in_play || make_vfio_pci_probe(sysfs, kernel, &run);
    read_back(sysfs, &mut run);
    settle(sysfs, kernel, &mut run);
    let applied = report_rules(rules, &run);
    crate::boot::bootfb::take_back_unless_bound(sysfs, kernel, &plan, &console, &|index| {
        run.handled[index].end == End::OnVfio
    });
    warn_about_group_companions(sysfs, &run);
    warn_about_the_boot_display(&run);

    let all_applied = applied == rules.len() && !gathered.has_rejects() && modules_loaded;
    summary(
        if all_applied {
            Level::Info
        } else {
            Level::Error
        },
        started,
        format_args!(
            "{applied} of {} rules applied, {} functions on vfio-pci",
            rules.len() + gathered.rejected(),
            run.on_vfio()
        ),
    );
    if all_applied {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// The plan for the gathered rules, or the exit status when there is nothing to do (no
/// rule) or nothing may be done (the IOMMU is off, the devices cannot be listed), each
/// refusal logged.
fn plan_or_refuse(sysfs: &Sysfs, gathered: &Gathered, started: Instant) -> Result<Plan, u8> {
    let rules = gathered.rules.rules();
    if rules.is_empty() {
        if gathered.has_rejects() {
            summary(
                Level::Error,
                started,
                format_args!("no valid rule; nothing was bound"),
            );
            return Err(EXIT_FAILED);
        }
        return Err(EXIT_OK);
    }
    if !sysfs.iommu_enabled() && !noiommu_mode(sysfs, gathered) {
        error!(
            "the IOMMU is off ({}/kernel/iommu_groups is empty), so vfio-pci cannot bind; no device was touched. \
             Enable VT-d or AMD-Vi (IOMMU) in the firmware setup and, on Intel, add intel_iommu=on to the kernel command line",
            sysfs.root()
        );
    } else {
        match scan(sysfs, rules) {
            Ok(plan) => return Ok(plan),
            Err(failure) => error!("{failure}; nothing was bound"),
        }
    }
    summary(
        Level::Error,
        started,
        format_args!("0 of {} rules applied", rules.len()),
    );
    Err(EXIT_FAILED)
}

/// Phase 5: one line per selected rule, from the records. Returns how many applied.
fn report_rules(rules: &[Rule], run: &Handover<'_>) -> usize {
    let mut applied = 0;
    for (index, rule) in rules.iter().enumerate() {
        if !matches!(run.plan.verdicts[index], Verdict::Selected { .. }) {
            continue;
        }
        match &run.failures[index] {
            None => {
                applied += 1;
                info!("{rule}: {} on vfio-pci", TakenList { run, rule: index });
            }
            Some((address, failure)) => error!(
                "{rule} not applied: {}{}",
                FailureText(*address, failure),
                Fates { run, rule: index }
            ),
        }
    }
    applied
}

fn warn_about_the_boot_display(run: &Handover<'_>) {
    for (target, handled) in run.plan.targets.iter().zip(run.handled.iter()) {
        if handled.end == End::OnVfio && target.function.boot_vga {
            warn!(
                "{} is the boot display: the host console on it goes dark now that vfio-pci has it",
                target.function.address
            );
        }
    }
}

fn all_selected(plan: &Plan) -> bool {
    plan.verdicts
        .iter()
        .all(|verdict| matches!(verdict, Verdict::Selected { .. }))
}

/// Phase 1: overrides and unbinds every target whose rules are still in play. A function
/// that fails fails every rule that selected it.
fn hand_over_all(sysfs: &Sysfs, kernel: &mut dyn Kernel, run: &mut Handover<'_>) {
    let plan = run.plan;
    for (index, target) in plan.targets.iter().enumerate() {
        if run.abandoned(target) {
            continue;
        }
        if let Err(failure) = hand_over(sysfs, kernel, &target.function, &mut run.handled[index]) {
            run.fail(target.rules, target.function.address, &failure);
        }
    }
}

/// Overrides one function and unbinds its current driver, recording each step.
fn hand_over(
    sysfs: &Sysfs,
    kernel: &mut dyn Kernel,
    function: &Function,
    handled: &mut Handled,
) -> Result<(), Failure> {
    let address = function.address;
    if function.is_on(VFIO_PCI) && function.overridden_to(VFIO_PCI) {
        return Ok(());
    }
    kernel
        .write(sysfs, Attribute::DriverOverride(address), VFIO_PCI)
        .map_err(Failure::OverrideWrite)?;
    handled.overridden = true;
    if let Some(driver) = function
        .driver
        .as_ref()
        .filter(|driver| driver.as_str() != VFIO_PCI)
    {
        kernel
            .write(sysfs, Attribute::Unbind(address), &address_text(address))
            .map_err(|errno| Failure::Unbind(errno, driver.clone()))?;
        handled.unbound_from = Some(driver.clone());
    }
    Ok(())
}

/// Phase 2: gets vfio-pci to probe the targets still in play: loads it (and the IOMMU
/// backend) if needed, then probes any of them that is still driverless. Returns false when
/// a module did not load; each failure is logged.
fn make_vfio_pci_probe(sysfs: &Sysfs, kernel: &mut dyn Kernel, run: &Handover<'_>) -> bool {
    let mut loaded = true;
    if !sysfs.driver_registered(VFIO_PCI) {
        if kernel.may_load_modules() {
            for module in VFIO_MODULES {
                match kernel.load_module(module) {
                    Ok(()) => {}
                    // A hung modprobe makes the next one likely to hang too: stop, give back.
                    Err(ModuleError::TimedOut(limit)) => {
                        let limit = crate::boot::seconds::Seconds(limit);
                        error!("modprobe {module} did not finish in {limit} s; killed");
                        loaded = false;
                        break;
                    }
                    Err(error @ ModuleError::NoModprobe) => {
                        error!("cannot load {module}: {error}");
                        loaded = false;
                        break;
                    }
                    Err(error) if module == VFIO_PCI => {
                        error!(
                            "modprobe {module} failed ({error}); is the module in the initramfs?"
                        );
                        loaded = false;
                    }
                    Err(error) => {
                        error!("modprobe {module} failed ({error}): without it a VM cannot use vfio-pci devices; is the module in the initramfs?");
                        loaded = false;
                    }
                }
            }
        } else {
            error!(
                "vfio-pci is not registered ({}/bus/pci/drivers/vfio-pci is missing), and modules are loaded only when working on /sys",
                sysfs.root()
            );
        }
    }
    if !sysfs.driver_registered(VFIO_PCI) {
        return loaded;
    }
    for target in &run.plan.targets {
        if run.abandoned(target) {
            continue;
        }
        let address = target.function.address;
        // The driver link first: one readlink when it has one; still there when it has not.
        let driverless = sysfs.driver_of(address).is_none() && sysfs.binding_of(address).is_some();
        if driverless {
            // A failed probe shows in the read-back that follows; its own error adds nothing.
            let _ = kernel.write(
                sysfs,
                Attribute::DriversProbe,
                &address_text(target.function.address),
            );
        }
    }
    loaded
}

/// Phase 3: reads back the driver of every function written to or still in play. One not
/// on vfio-pci fails its rules.
fn read_back(sysfs: &Sysfs, run: &mut Handover<'_>) {
    let plan = run.plan;
    for (index, target) in plan.targets.iter().enumerate() {
        if run.abandoned(target) && !run.handled[index].overridden {
            continue;
        }
        let address = target.function.address;
        // The driver link first: one readlink in the usual case.
        let end = match sysfs.driver_of(address) {
            Some(driver) if driver.as_str() == VFIO_PCI => End::OnVfio,
            Some(driver) => End::Missed(Some(driver)),
            None if sysfs.binding_of(address).is_none() => End::Gone,
            None => End::Missed(None),
        };
        let missed = match &end {
            End::Missed(driver) => Some(driver.clone()),
            End::Gone => Some(None),
            _ => None,
        };
        if let Some(driver) = missed.filter(|_| !run.abandoned(target)) {
            run.fail(
                target.rules,
                target.function.address,
                &Failure::NotBound(driver),
            );
        }
        run.handled[index].end = end;
    }
}

/// Phase 4: a rule applies whole or not at all. Every function apply overrode whose rules
/// all failed is given back to its own driver, and where it ended is read back; a function
/// that a rule which applied also selected stays on vfio-pci.
fn settle(sysfs: &Sysfs, kernel: &mut dyn Kernel, run: &mut Handover<'_>) {
    let plan = run.plan;
    for (index, target) in plan.targets.iter().enumerate() {
        let kept = target.rules.iter().any(|rule| run.applied(rule));
        if kept || !run.handled[index].overridden {
            continue;
        }
        run.handled[index].end = give_back(sysfs, kernel, target.function.address);
    }
}

/// Gives back each function of the plan once, however many rules selected it, and
/// returns where each ended. One with no override that is not on vfio-pci is left as it
/// is; one whose override names another driver is not ours and is left alone.
fn release_each(sysfs: &Sysfs, kernel: &mut dyn Kernel, plan: &Plan) -> Vec<End, MAX_TARGETS> {
    let mut ends = Vec::new();
    for target in &plan.targets {
        let function = &target.function;
        let end = match &function.driver_override {
            Some(other) if other.as_str() != VFIO_PCI => End::Stuck {
                driver_override: Some(other.clone()),
                driver: function.driver.clone(),
            },
            None if !function.is_on(VFIO_PCI) => End::GivenBack(function.driver.clone()),
            _ => give_back(sysfs, kernel, function.address),
        };
        // As many ends as targets: pushing cannot fail.
        let _ = ends.push(end);
    }
    ends
}

/// One line per function of a rule being released. Returns whether all of them are off
/// vfio-pci with no override.
fn report_release(rule: &Rule, index: usize, plan: &Plan, ends: &[End]) -> bool {
    let mut all_released = true;
    for (target, end) in plan.targets.iter().zip(ends.iter()) {
        if !target.rules.contains(index) {
            continue;
        }
        let address = target.function.address;
        let foreign_override = target
            .function
            .driver_override
            .as_deref()
            .filter(|name| *name != VFIO_PCI);
        match (end, foreign_override) {
            (End::GivenBack(Some(driver)), _) => info!("{rule}: {address} is back on {driver}"),
            (End::GivenBack(None), _) => warn!(
                "{rule}: {address} is off vfio-pci, but no driver took it (is its module loaded?)"
            ),
            (_, Some(other)) => error!(
                "{rule}: {address} has driver_override={other}, which vfio-bind did not set; left alone"
            ),
            (End::Stuck { driver: Some(driver), .. }, None) if driver.as_str() == VFIO_PCI => {
                error!("{rule}: {address} is still on vfio-pci (is a VM still using it?)")
            }
            (End::Gone, None) => error!("{rule}: {address} is gone"),
            _ => error!("{rule}: cannot clear the driver_override of {address}"),
        }
        all_released &= matches!(end, End::GivenBack(_));
    }
    all_released
}

/// Clears a function's override, unbinds it from vfio-pci if it is there, and probes it so
/// its own driver (if loaded) takes it. Each step is tried whatever the last; the result is
/// what sysfs shows afterwards.
fn give_back(sysfs: &Sysfs, kernel: &mut dyn Kernel, address: PciAddress) -> End {
    crate::boot::kernel::give_back(sysfs, kernel, address);
    match sysfs.binding_of(address) {
        None => End::Gone,
        Some(now) if now.driver_override.is_some() || now.is_on(VFIO_PCI) => End::Stuck {
            driver_override: now.driver_override,
            driver: now.driver,
        },
        Some(now) => End::GivenBack(now.driver),
    }
}

/// Runs `vfio-bind release`: gives every function the rules select back to its own driver.
/// Exit 0 when every rule matched and all of its functions are off vfio-pci with no
/// override. An override naming another driver (`pci-stub`) is not ours: it is left alone.
pub fn release_rules(
    sysfs: &Sysfs,
    gathered: &Gathered,
    kernel: &mut dyn Kernel,
    started: Instant,
) -> u8 {
    let rules = gathered.rules.rules();
    let plan = match scan(sysfs, rules) {
        Ok(plan) => plan,
        Err(failure) => {
            error!("{failure}; nothing was released");
            return EXIT_FAILED;
        }
    };
    for (index, rule) in rules.iter().enumerate() {
        report_verdict(rule, &plan.verdicts[index]);
    }
    let ends = release_each(sysfs, kernel, &plan);
    let released = (0..rules.len())
        .filter(|&index| matches!(plan.verdicts[index], Verdict::Selected { .. }))
        .filter(|&index| report_release(&rules[index], index, &plan, &ends))
        .count();
    crate::boot::bootfb::take_back_console(sysfs, kernel, &plan);
    let all = released == rules.len() && !gathered.has_rejects();
    let rejected = gathered.rejected();
    summary(
        if all { Level::Info } else { Level::Error },
        started,
        format_args!("{released} of {} rules released", rules.len() + rejected),
    );
    if all {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn report_verdict(rule: &Rule, verdict: &Verdict) {
    match verdict {
        Verdict::Selected { .. } => {}
        Verdict::NothingThere if crate::boot::topology::is_path_rule(rule) => {}
        Verdict::NothingThere => match (rule.location(), rule.ids()) {
            (Some(location), _) => error!("{rule} not applied: no PCI function at {location}"),
            (None, Some(ids)) => error!("{rule} not applied: no PCI function has the IDs {ids}"),
            (None, None) => {}
        },
        Verdict::GuardMismatch { found } => {
            if let (Some(location), Some(ids)) = (rule.location(), rule.ids()) {
                error!(
                    "{rule} not applied: expected {ids} at {location} but found {}; nothing there was touched (did a card move?)",
                    IdsList(found)
                );
            }
        }
        Verdict::OnlyBridges => {
            error!("{rule} not applied: it selects only PCI bridges, which vfio-pci cannot take")
        }
        Verdict::TooManyFunctions => {
            error!("{rule} not applied: it selects more than {MAX_TARGETS} functions; nothing it selects was touched")
        }
        Verdict::NoRoom => error!(
            "{rule} not applied: the rules together select more than {MAX_TARGETS} functions and this one's did not fit; nothing it selects was touched"
        ),
        Verdict::ForeignOverride {
            address,
            driver_override,
        } => error!(
            "{rule} not applied: {address} has driver_override={driver_override}, which vfio-bind did not set; nothing it selects was touched (to hand it over, clear it first: echo > /sys/bus/pci/devices/{address}/driver_override)"
        ),
    }
}

/// Why a rule failed, as the middle of "RULE not applied: ...".
struct FailureText<'a>(PciAddress, &'a Failure);

impl core::fmt::Display for FailureText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let address = self.0;
        match self.1 {
            Failure::OverrideWrite(errno) => write!(
                f,
                "cannot write {address}/driver_override ({})",
                errno.desc()
            ),
            Failure::Unbind(errno, driver) => write!(
                f,
                "cannot unbind {address} from {driver} ({})",
                errno.desc()
            ),
            Failure::NotBound(Some(driver)) => write!(f, "{address} is on {driver}, not vfio-pci"),
            Failure::NotBound(None) => write!(
                f,
                "vfio-pci did not take {address} (see the kernel's vfio-pci lines)"
            ),
        }
    }
}

/// Where the functions of a rule that did not apply ended, grouped:
/// `; given back: 0000:07:00.0 (on amdgpu); untouched: 0000:07:00.1`.
struct Fates<'a, 'p> {
    run: &'a Handover<'p>,
    rule: usize,
}

/// The groups [`Fates`] prints, in this order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    GivenBack,
    NotGivenBack,
    Untouched,
    KeptForAnotherRule,
    LeftOnVfio,
    Gone,
}

impl Fate {
    const ORDER: [Fate; 6] = [
        Fate::GivenBack,
        Fate::NotGivenBack,
        Fate::Untouched,
        Fate::KeptForAnotherRule,
        Fate::LeftOnVfio,
        Fate::Gone,
    ];

    fn heading(self) -> &'static str {
        match self {
            Fate::GivenBack => "given back",
            Fate::NotGivenBack => "NOT given back",
            Fate::Untouched => "untouched",
            Fate::KeptForAnotherRule => "kept on vfio-pci for another rule",
            Fate::LeftOnVfio => "left on vfio-pci as it was",
            Fate::Gone => "gone",
        }
    }
}

impl Fates<'_, '_> {
    fn fate(&self, target: &Target, handled: &Handled) -> Fate {
        match handled.end {
            End::GivenBack(_) => Fate::GivenBack,
            End::Stuck { .. } | End::Missed(_) => Fate::NotGivenBack,
            End::Untouched => Fate::Untouched,
            End::OnVfio if target.rules.iter().any(|rule| self.run.applied(rule)) => {
                Fate::KeptForAnotherRule
            }
            End::OnVfio => Fate::LeftOnVfio,
            End::Gone => Fate::Gone,
        }
    }
}

/// A function's driver, for a message: `on amdgpu` or `no driver` after a hand-over;
/// `now on amdgpu` or `no driver yet` in a plan, before it.
struct DriverNote<'a> {
    driver: &'a Option<DriverName>,
    on: &'static str,
    none: &'static str,
}

impl<'a> DriverNote<'a> {
    /// Where a function ended: `on amdgpu`, `no driver`.
    fn after(driver: &'a Option<DriverName>) -> Self {
        DriverNote {
            driver,
            on: "on",
            none: "no driver",
        }
    }

    /// Where a function is before anything is done: `now on amdgpu`, `no driver yet`.
    fn before(driver: &'a Option<DriverName>) -> Self {
        DriverNote {
            driver,
            on: "now on",
            none: "no driver yet",
        }
    }
}

impl core::fmt::Display for DriverNote<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.driver {
            Some(driver) => write!(f, "{} {driver}", self.on),
            None => f.write_str(self.none),
        }
    }
}

impl core::fmt::Display for Fates<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for fate in Fate::ORDER {
            let mut first = true;
            for (target, handled) in self.run.functions_of(self.rule) {
                if self.fate(target, handled) != fate {
                    continue;
                }
                if first {
                    write!(f, "; {}: ", fate.heading())?;
                } else {
                    f.write_str(", ")?;
                }
                first = false;
                write!(f, "{}", target.function.address)?;
                match &handled.end {
                    End::GivenBack(Some(driver)) => write!(f, " (on {driver})")?,
                    End::Stuck {
                        driver_override: Some(name),
                        driver,
                    } => write!(
                        f,
                        " (driver_override is still {name}, {})",
                        DriverNote::after(driver)
                    )?,
                    End::Stuck { driver, .. } | End::Missed(driver) => {
                        write!(f, " ({})", DriverNote::after(driver))?
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Warns about functions sharing an IOMMU group with a bound target that no rule selects:
/// a VM cannot use a group until all its endpoints are on vfio-pci or driverless.
fn warn_about_group_companions(sysfs: &Sysfs, run: &Handover<'_>) {
    let plan = run.plan;
    const SHOWN: usize = 2;
    let mut count = 0;
    let mut groups: heapless::Vec<u32, MAX_TARGETS> = heapless::Vec::new();
    // Only the groups of functions now on vfio-pci can be held back by a companion.
    for (target, handled) in plan.targets.iter().zip(run.handled.iter()) {
        if handled.end != End::OnVfio {
            continue;
        }
        if let Some(group) = target.function.iommu_group {
            if !groups.contains(&group) {
                let _ = groups.push(group);
            }
        }
    }
    for group in groups {
        let Ok(path) = sysfs.path(format_args!("kernel/iommu_groups/{group}/devices")) else {
            continue;
        };
        let _ = crate::machine::sysfs::for_each_entry(path.as_str(), |name| {
            let Some(address) = core::str::from_utf8(name)
                .ok()
                .and_then(|n| n.parse::<PciAddress>().ok())
            else {
                return;
            };
            // A target is no companion: it is not read again.
            if plan
                .targets
                .iter()
                .any(|target| target.function.address == address)
            {
                return;
            }
            let Some(function) = sysfs.read_function(address) else {
                return;
            };
            let function = &function;
            if function.is_on(VFIO_PCI) {
                return;
            }
            let Some(target) = plan.companion_of(function) else {
                return;
            };
            let bound = plan
                .targets
                .iter()
                .position(|t| t.function.address == target.function.address)
                .is_some_and(|index| run.handled[index].end == End::OnVfio);
            if !bound {
                return;
            }
            count += 1;
            if count <= SHOWN {
                warn!(
                "IOMMU group {} of {} also holds {} ({}), which no rule selects; a VM cannot use the group while a driver holds it. Add: vfio.bind={}",
                target.function.iommu_group.unwrap_or_default(),
                target.function.address,
                function.address,
                IdsList(&[function.ids]),
                rule_for(function)
            );
            }
        });
    }
    if count > SHOWN {
        warn!(
            "{} more functions share an IOMMU group with a bound one; run vfio-bind check",
            count - SHOWN
        );
    }
}

/// For `--dry-run`: a bus-number rule whose card has an identical twin on the host takes
/// the twin once a card added in an earlier slot moves the buses; the path form does not.
fn warn_about_twins(sysfs: &Sysfs, rules: &[Rule], plan: &Plan) {
    for (index, rule) in rules.iter().enumerate() {
        let targets = plan.targets_of(index).map(|target| &target.function);
        if let Some(twin) = crate::boot::topology::twin_of(sysfs, rule, targets) {
            warn!(
                "{rule}: {twin}; name it by its path instead: vfio.bind={}",
                twin.path_rule
            );
        }
    }
}

fn print_plan(out: &mut dyn std::io::Write, rules: &[Rule], plan: &Plan) {
    for (index, rule) in rules.iter().enumerate() {
        let _ = match &plan.verdicts[index] {
            Verdict::Selected { .. } => {
                let _ = write!(out, "{rule}: would hand to vfio-pci:");
                for target in plan.targets_of(index) {
                    let function = &target.function;
                    let _ = write!(
                        out,
                        " {} ({}, {})",
                        function.address,
                        IdsList(&[function.ids]),
                        DriverNote::before(&function.driver)
                    );
                }
                writeln!(out)
            }
            _ => writeln!(out, "{rule}: not applied (see the messages above)"),
        };
    }
}

/// The targets of a rule as `0000:07:00.0 (from amdgpu), 0000:07:00.1`.
struct TakenList<'a, 'p> {
    run: &'a Handover<'p>,
    rule: usize,
}

impl core::fmt::Display for TakenList<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (position, (target, handled)) in self.run.functions_of(self.rule).enumerate() {
            if position > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", target.function.address)?;
            if let Some(driver) = &handled.unbound_from {
                write!(f, " (from {driver})")?;
            }
        }
        Ok(())
    }
}

fn summary(level: Level, started: Instant, outcome: core::fmt::Arguments<'_>) {
    let micros = started.elapsed().as_micros();
    match kmsg::held_back() {
        0 => kmsg::log_summary(level, format_args!("{outcome} in {micros} us")),
        held => kmsg::log_summary(
            level,
            format_args!("{outcome} in {micros} us; {held} more messages held back from the kernel log, run vfio-bind check"),
        ),
    }
}
