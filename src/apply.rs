//! `vfio-bind apply`: carries out a plan against sysfs, then checks what the kernel did.
//!
//! Order per function, as the kernel's driver core wants it (and libvirt does it): write
//! `driver_override` first, so no other driver can take the function again; then unbind
//! the driver that holds it; then have vfio-pci probe it (loading the module, whose
//! registration binds every overridden function, or writing `drivers_probe`). Afterwards
//! each function's driver is read back. A rule applies whole or not at all: when any of its
//! functions did not end on vfio-pci, every function it touched is given back (override
//! cleared, vfio-pci unbound, probed again), so no card is left without a driver.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use heapless::Vec;
use log::{error, info, warn, Level};
use nix::errno::Errno;

use crate::address::PciAddress;
use crate::cmdline::MAX_RULES;
use crate::kmsg;
use crate::plan::{plan_rules, rule_for, IdsList, Plan, Verdict, MAX_TARGETS};
use crate::rule::Rule;
use crate::sources::Gathered;
use crate::sysfs::{Attribute, DriverName, Function, Sysfs, VFIO_PCI};

/// The kernel side of apply: writes to sysfs and module loading. Tests put a simulated
/// kernel here; [`RunningKernel`] is the real one.
pub trait Kernel {
    fn write(&mut self, sysfs: &Sysfs, attribute: Attribute, value: &str) -> Result<(), Errno>;
    /// Loads a module; `Err` carries a short reason.
    fn load_module(&mut self, module: &str) -> Result<(), ModuleError>;
    /// Whether modules may be loaded at all (only on the real /sys).
    fn may_load_modules(&self) -> bool;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleError {
    NoModprobe,
    Failed(Option<i32>),
    /// It did not finish within this limit and was killed.
    TimedOut(std::time::Duration),
}

/// The modprobe binaries tried, in order: kmod's and busybox's usual places.
const MODPROBE_PATHS: [&str; 4] = [
    "/usr/sbin/modprobe",
    "/sbin/modprobe",
    "/usr/bin/modprobe",
    "/bin/modprobe",
];

/// The running kernel: files written for real, modules loaded with modprobe.
pub struct RunningKernel {
    pub modules_allowed: bool,
}

impl Kernel for RunningKernel {
    fn write(&mut self, sysfs: &Sysfs, attribute: Attribute, value: &str) -> Result<(), Errno> {
        crate::watchdog::writing(attribute, value);
        let result = sysfs.write(attribute, value);
        crate::watchdog::done();
        result
    }

    fn load_module(&mut self, module: &str) -> Result<(), ModuleError> {
        let modprobe = MODPROBE_PATHS
            .iter()
            .find(|path| Path::new(path).exists())
            .ok_or(ModuleError::NoModprobe)?;
        crate::watchdog::step(format_args!("modprobe {module}"));
        let limit = crate::watchdog::within(crate::modprobe::MODPROBE_LIMIT);
        let result = crate::modprobe::run(Path::new(modprobe), module, limit);
        crate::watchdog::done();
        result
    }

    fn may_load_modules(&self) -> bool {
        self.modules_allowed
    }
}

/// Modules loaded when vfio-pci is not registered. busybox's modprobe ignores softdeps, so
/// the IOMMU backend that vfio needs is loaded by name first.
const VFIO_MODULES: [&str; 2] = ["vfio_iommu_type1", "vfio-pci"];

/// Why a function of a rule did not end on vfio-pci.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Failure {
    OverrideWrite(Errno),
    Unbind(Errno, DriverName),
    NotBound(Option<DriverName>),
}

/// What apply did to one target, so it can be undone.
#[derive(Clone, Debug, Default)]
struct TargetState {
    override_written: bool,
    unbound_from: Option<DriverName>,
    on_vfio: bool,
}

/// Exit status: every rule applied.
pub const EXIT_OK: u8 = 0;
/// Exit status: some rule was malformed, did not match, or did not bind.
pub const EXIT_FAILED: u8 = 1;

/// Scans the functions the rules can select into a plan: a second time, keeping only the
/// rules still in play, when the first pass ran out of room. Errors: the device list cannot
/// be read.
pub fn scan(sysfs: &Sysfs, rules: &[Rule]) -> Result<Plan, Errno> {
    // A rule with an address can only select functions whose directory name it matches;
    // only bare-IDs rules need every function read.
    let wanted = |address| {
        rules.iter().any(|rule| match rule.location() {
            None => true,
            Some(location) => location.contains(address),
        })
    };
    plan_rules(rules, |planner| {
        sysfs.for_each_function_where(wanted, |function| planner.observe(function))
    })
}

/// Runs `vfio-bind apply`. Returns the exit status.
pub fn apply(
    sysfs: &Sysfs,
    gathered: &Gathered,
    kernel: &mut dyn Kernel,
    started: Instant,
    dry_run: bool,
) -> u8 {
    let rules = gathered.rules.rules();
    if rules.is_empty() {
        if gathered.rules.has_rejects() {
            summary(
                Level::Error,
                started,
                format_args!("no valid rule; nothing was bound"),
            );
            return EXIT_FAILED;
        }
        return EXIT_OK;
    }
    if !sysfs.iommu_enabled() && !gathered.noiommu {
        error!(
            "the IOMMU is off ({}/kernel/iommu_groups is empty), so vfio-pci cannot bind; no device was touched. \
             Enable VT-d or AMD-Vi (IOMMU) in the firmware setup and, on Intel, add intel_iommu=on to the kernel command line",
            sysfs.root()
        );
        summary(
            Level::Error,
            started,
            format_args!("0 of {} rules applied", rules.len()),
        );
        return EXIT_FAILED;
    }
    let plan = match scan(sysfs, rules) {
        Ok(plan) => plan,
        Err(errno) => {
            error!(
                "cannot list {}/bus/pci/devices: {}; nothing was bound",
                sysfs.root(),
                errno.desc()
            );
            summary(
                Level::Error,
                started,
                format_args!("0 of {} rules applied", rules.len()),
            );
            return EXIT_FAILED;
        }
    };
    for (index, verdict) in plan.verdicts.iter().enumerate() {
        report_verdict(&rules[index], verdict);
    }
    for bridge in &plan.bridges {
        warn!(
            "{}: {} is a PCI bridge, which vfio-pci cannot take; it is left alone",
            rules[bridge.rule], bridge.function.address
        );
    }
    if dry_run {
        print_plan(rules, &plan);
        return if all_selected(&plan) && !gathered.rules.has_rejects() {
            EXIT_OK
        } else {
            EXIT_FAILED
        };
    }

    let mut states: Vec<TargetState, MAX_TARGETS> = Vec::new();
    let mut failures: [Option<(PciAddress, Failure)>; MAX_RULES] = [const { None }; MAX_RULES];
    for target in &plan.targets {
        let mut state = TargetState::default();
        if failures[target.rule].is_none() {
            if let Err(failure) = hand_over(sysfs, kernel, &target.function, &mut state) {
                failures[target.rule] = Some((target.function.address, failure));
            }
        }
        let _ = states.push(state);
    }
    let live = |index: usize| failures[plan.targets[index].rule].is_none();
    if (0..plan.targets.len()).any(live) {
        make_vfio_pci_probe(sysfs, kernel, &plan, &live);
    }

    // Read back what the kernel did.
    for (index, target) in plan.targets.iter().enumerate() {
        let now = sysfs.read_function(target.function.address);
        let driver = now.as_ref().and_then(|function| function.driver.clone());
        states[index].on_vfio = driver.as_deref() == Some(VFIO_PCI);
        if !states[index].on_vfio && failures[target.rule].is_none() {
            failures[target.rule] = Some((target.function.address, Failure::NotBound(driver)));
        }
    }

    let mut applied = 0;
    let mut bound = 0;
    for (rule_index, rule) in rules.iter().enumerate() {
        if !matches!(plan.verdicts[rule_index], Verdict::Selected { .. }) {
            continue;
        }
        match &failures[rule_index] {
            None => {
                applied += 1;
                bound += plan.targets_of(rule_index).count();
                info!(
                    "{rule}: {} on vfio-pci",
                    TakenList {
                        plan: &plan,
                        states: &states,
                        rule: rule_index
                    }
                );
            }
            Some((address, failure)) => {
                give_back(sysfs, kernel, &plan, &mut states, rule_index);
                report_failure(rule, *address, failure, &plan, rule_index);
            }
        }
    }

    warn_about_group_companions(sysfs, &plan, &states);
    for (index, target) in plan.targets.iter().enumerate() {
        if states[index].on_vfio && target.function.boot_vga {
            warn!(
                "{} is the boot display: the host console on it goes dark now that vfio-pci has it",
                target.function.address
            );
        }
    }

    let all_applied = applied == rules.len() && !gathered.rules.has_rejects();
    let level = if all_applied {
        Level::Info
    } else {
        Level::Error
    };
    let rejected = gathered.rules.rejected();
    summary(
        level,
        started,
        format_args!(
            "{applied} of {} rules applied, {bound} functions on vfio-pci",
            rules.len() + rejected
        ),
    );
    if all_applied {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn all_selected(plan: &Plan) -> bool {
    plan.verdicts
        .iter()
        .all(|verdict| matches!(verdict, Verdict::Selected { .. }))
}

/// Overrides one function and unbinds its current driver, recording each step in `state`.
fn hand_over(
    sysfs: &Sysfs,
    kernel: &mut dyn Kernel,
    function: &Function,
    state: &mut TargetState,
) -> Result<(), Failure> {
    let address = function.address;
    if function.is_on(VFIO_PCI) && function.overridden_to(VFIO_PCI) {
        return Ok(());
    }
    kernel
        .write(sysfs, Attribute::DriverOverride(address), VFIO_PCI)
        .map_err(Failure::OverrideWrite)?;
    state.override_written = true;
    if let Some(driver) = function
        .driver
        .as_ref()
        .filter(|driver| driver.as_str() != VFIO_PCI)
    {
        kernel
            .write(sysfs, Attribute::Unbind(address), &address_text(address))
            .map_err(|errno| Failure::Unbind(errno, driver.clone()))?;
        state.unbound_from = Some(driver.clone());
    }
    Ok(())
}

/// Gets vfio-pci to probe the live targets: loads it if needed, then probes any function
/// that is still driverless.
fn make_vfio_pci_probe(
    sysfs: &Sysfs,
    kernel: &mut dyn Kernel,
    plan: &Plan,
    live: &dyn Fn(usize) -> bool,
) {
    if !sysfs.driver_registered(VFIO_PCI) {
        if kernel.may_load_modules() {
            let mut result = Ok(());
            for module in VFIO_MODULES {
                result = kernel.load_module(module);
                // A hung modprobe makes the next one likely to hang too: stop, give back.
                if let Err(ModuleError::TimedOut(limit)) = result {
                    let limit = crate::watchdog::Seconds(limit);
                    error!("modprobe {module} did not finish in {limit} s; killed");
                    break;
                }
            }
            if let Err(error) = result {
                match error {
                    ModuleError::NoModprobe => error!("cannot load vfio-pci: no modprobe in /usr/sbin, /sbin, /usr/bin or /bin"),
                    ModuleError::Failed(code) => error!("modprobe vfio-pci failed (exit status {code:?}); is the module in the initramfs?"),
                    ModuleError::TimedOut(_) => {}
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
        return;
    }
    for (index, target) in plan.targets.iter().enumerate() {
        if !live(index) {
            continue;
        }
        let driverless = sysfs
            .read_function(target.function.address)
            .is_some_and(|function| function.driver.is_none());
        if driverless {
            // A failed probe shows in the read-back that follows; its own error adds nothing.
            let _ = kernel.write(
                sysfs,
                Attribute::DriversProbe,
                &address_text(target.function.address),
            );
        }
    }
}

/// Undoes what apply did to a rule's functions, so their own drivers can take them.
fn give_back(
    sysfs: &Sysfs,
    kernel: &mut dyn Kernel,
    plan: &Plan,
    states: &mut [TargetState],
    rule: usize,
) {
    for (index, target) in plan.targets.iter().enumerate() {
        if target.rule != rule || !states[index].override_written {
            continue;
        }
        release(sysfs, kernel, target.function.address);
        states[index].on_vfio = false;
    }
}

/// Runs `vfio-bind release`: gives every function the rules select back to its own driver.
/// Exit 0 when every rule matched and none of its functions is left on vfio-pci.
pub fn release_rules(
    sysfs: &Sysfs,
    gathered: &Gathered,
    kernel: &mut dyn Kernel,
    started: Instant,
) -> u8 {
    let rules = gathered.rules.rules();
    let plan = match scan(sysfs, rules) {
        Ok(plan) => plan,
        Err(errno) => {
            error!(
                "cannot list {}/bus/pci/devices: {}; nothing was released",
                sysfs.root(),
                errno.desc()
            );
            return EXIT_FAILED;
        }
    };
    let mut released = 0;
    for (index, rule) in rules.iter().enumerate() {
        report_verdict(rule, &plan.verdicts[index]);
        if !matches!(plan.verdicts[index], Verdict::Selected { .. }) {
            continue;
        }
        let mut all_released = true;
        for target in plan.targets_of(index) {
            let address = target.function.address;
            if target.function.driver_override.is_some() || target.function.is_on(VFIO_PCI) {
                release(sysfs, kernel, address);
            }
            let now = sysfs.read_function(address);
            let driver = now.as_ref().and_then(|function| function.driver.as_deref());
            let overridden = now
                .as_ref()
                .is_some_and(|function| function.driver_override.is_some());
            match driver {
                Some(VFIO_PCI) => {
                    all_released = false;
                    error!("{rule}: {address} is still on vfio-pci (is a VM still using it?)");
                }
                _ if overridden => {
                    all_released = false;
                    error!("{rule}: cannot clear the driver_override of {address}");
                }
                Some(driver) => info!("{rule}: {address} is back on {driver}"),
                None => warn!("{rule}: {address} is off vfio-pci, but no driver took it (is its module loaded?)"),
            }
        }
        if all_released {
            released += 1;
        }
    }
    let all = released == rules.len() && !gathered.rules.has_rejects();
    let rejected = gathered.rules.rejected();
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

/// Clears a function's override, unbinds it from vfio-pci if it is there, and probes it so
/// its own driver (if loaded) takes it. Best effort: each step is tried whatever the last.
pub fn release(sysfs: &Sysfs, kernel: &mut dyn Kernel, address: PciAddress) -> bool {
    let text = address_text(address);
    let cleared = kernel
        .write(sysfs, Attribute::DriverOverride(address), "\n")
        .is_ok();
    let on_vfio = sysfs
        .read_function(address)
        .is_some_and(|function| function.is_on(VFIO_PCI));
    let unbound = !on_vfio
        || kernel
            .write(sysfs, Attribute::Unbind(address), &text)
            .is_ok();
    let _ = kernel.write(sysfs, Attribute::DriversProbe, &text);
    cleared && unbound
}

fn address_text(address: PciAddress) -> heapless::String<16> {
    let mut text = heapless::String::new();
    let _ = core::fmt::write(&mut text, format_args!("{address}"));
    text
}

fn report_verdict(rule: &Rule, verdict: &Verdict) {
    match verdict {
        Verdict::Selected { .. } => {}
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
    }
}

fn report_failure(
    rule: &Rule,
    address: PciAddress,
    failure: &Failure,
    plan: &Plan,
    rule_index: usize,
) {
    let given_back = AddressList(plan, rule_index);
    match failure {
        Failure::OverrideWrite(errno) => error!(
            "{rule} not applied: cannot write {address}/driver_override ({}); left as they were: {given_back}",
            errno.desc()
        ),
        Failure::Unbind(errno, driver) => error!(
            "{rule} not applied: cannot unbind {address} from {driver} ({}); given back: {given_back}",
            errno.desc()
        ),
        Failure::NotBound(driver) => match driver {
            Some(driver) => error!(
                "{rule} not applied: {address} is on {driver}, not vfio-pci; given back: {given_back}"
            ),
            None => error!(
                "{rule} not applied: vfio-pci did not take {address} (see the kernel's vfio-pci lines); given back: {given_back}"
            ),
        },
    }
}

/// Warns about functions sharing an IOMMU group with a bound target that no rule selects:
/// a VM cannot use a group until all its endpoints are on vfio-pci or driverless.
fn warn_about_group_companions(sysfs: &Sysfs, plan: &Plan, states: &[TargetState]) {
    const SHOWN: usize = 2;
    let mut count = 0;
    let mut groups: heapless::Vec<u32, MAX_TARGETS> = heapless::Vec::new();
    for target in &plan.targets {
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
        let _ = crate::sysfs::for_each_entry(path.as_str(), |name| {
            let Some(address) = core::str::from_utf8(name)
                .ok()
                .and_then(|n| n.parse::<PciAddress>().ok())
            else {
                return;
            };
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
                .is_some_and(|index| states[index].on_vfio);
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

fn print_plan(rules: &[Rule], plan: &Plan) {
    let mut out = std::io::stdout().lock();
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
                        DriverShown(&function.driver)
                    );
                }
                writeln!(out)
            }
            _ => writeln!(out, "{rule}: not applied (see the messages above)"),
        };
    }
}

/// The targets of a rule as `0000:07:00.0 (from amdgpu), 0000:07:00.1`.
struct TakenList<'a> {
    plan: &'a Plan,
    states: &'a [TargetState],
    rule: usize,
}

impl core::fmt::Display for TakenList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for (index, target) in self.plan.targets.iter().enumerate() {
            if target.rule != self.rule {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}", target.function.address)?;
            if let Some(driver) = &self.states[index].unbound_from {
                write!(f, " (from {driver})")?;
            }
        }
        Ok(())
    }
}

/// The addresses of a rule's targets, comma separated.
struct AddressList<'a>(&'a Plan, usize);

impl core::fmt::Display for AddressList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (position, target) in self.0.targets_of(self.1).enumerate() {
            if position > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", target.function.address)?;
        }
        Ok(())
    }
}

struct DriverShown<'a>(&'a Option<DriverName>);

impl core::fmt::Display for DriverShown<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(driver) => write!(f, "now on {driver}"),
            None => f.write_str("no driver yet"),
        }
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
