//! The card that shows the console: letting go of its firmware framebuffer and its virtual
//! consoles before vfio-pci takes it, and taking them back when it is given back.
//!
//! A firmware framebuffer (efifb, vesafb, simplefb, simpledrm) claims the start of the boot
//! card's BAR in the iomem tree. vfio-pci removes such framebuffers at probe only for
//! VGA-class functions (`vfio_pci_core_register_device()` → aperture removal, kernel 6.0
//! on); for any other class (a 0x0380 display, a 0x0302 3D controller) the claim stays and
//! the BAR cannot be mapped for a VM. Unbinding the framebuffer's platform device from its
//! driver releases the claim. At runtime the framebuffer console sits on the card's driver
//! too, and some drivers refuse to unbind while it does, so the frame-buffer virtual
//! consoles are let go first (`class/vtconsole/vtconN/bind` ← 0) and taken back on release.
//!
//! Everything on the apply path here is heap-free: iomem is read into a stack buffer and
//! what was let go is kept in fixed vectors.

use core::fmt::{self, Write as _};

use heapless::Vec;
use log::{error, info, warn};

use crate::boot::kernel::Kernel;
use crate::boot::plan::Plan;
use crate::machine::function::{
    base_and_subclass, base_class, Function, CLASS_DISPLAY, CLASS_VGA, VFIO_PCI,
};
use crate::machine::iomem::{claims_in, ClaimKind, ClaimShown, FirmwareFramebuffer};
use crate::machine::sysfs::{
    Attribute, DeviceName, FramebufferDriver, Sysfs, MAX_FRAMEBUFFER_DEVICES, MAX_VTCONSOLES,
};

/// The largest iomem tree read. A desktop's is 3 to 10 KiB, a big server's a few tens.
pub const IOMEM_CAPACITY: usize = 128 * 1024;

/// The platform driver whose device makes a claim of this name.
pub fn driver_of(framebuffer: FirmwareFramebuffer) -> Option<FramebufferDriver> {
    match framebuffer {
        FirmwareFramebuffer::Efifb => Some(FramebufferDriver::EfiFramebuffer),
        FirmwareFramebuffer::Vesafb => Some(FramebufferDriver::VesaFramebuffer),
        FirmwareFramebuffer::Simplefb | FirmwareFramebuffer::Simpledrm => {
            Some(FramebufferDriver::SimpleFramebuffer)
        }
        FirmwareFramebuffer::Bootfb => None,
    }
}

/// A function's address as sysfs and iomem write it.
fn address_text(function: &Function) -> heapless::String<16> {
    let mut text = heapless::String::new();
    let _ = write!(text, "{}", function.address);
    text
}

/// What was let go before the hand-over, so it can be taken back if a card stays.
#[derive(Debug, Default)]
pub struct LetGo {
    /// (index of the target whose BAR it held, its driver, the device).
    framebuffers: Vec<(usize, FramebufferDriver, DeviceName), MAX_FRAMEBUFFER_DEVICES>,
    /// The frame-buffer virtual consoles unbound, and the target that showed them.
    consoles: Vec<u8, MAX_VTCONSOLES>,
    console_target: Option<usize>,
}

/// Names for a log line: `vtcon1, efi-framebuffer.0`.
struct Released<'a> {
    consoles: &'a [u8],
    framebuffers: &'a [DeviceName],
}

impl fmt::Display for Released<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let consoles = self.consoles.iter().map(|number| (Some(*number), None));
        let devices = self.framebuffers.iter().map(|device| (None, Some(device)));
        for (position, (console, device)) in consoles.chain(devices).enumerate() {
            if position > 0 {
                f.write_str(", ")?;
            }
            match (console, device) {
                (Some(number), _) => write!(f, "vtcon{number}")?,
                (_, Some(device)) => f.write_str(device)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Before the hand-over (apply and bind): for every target whose BAR holds a firmware
/// framebuffer, unbinds the framebuffer's platform device; when a target's driver shows the
/// console (runtime), unbinds the frame-buffer virtual consoles first. Logs one line per
/// card. Framebuffers in cards no rule selects are never touched.
pub fn let_go(sysfs: &Sysfs, kernel: &mut dyn Kernel, plan: &Plan) -> LetGo {
    let mut done = LetGo::default();
    // Only display controllers carry a firmware framebuffer or a console: a rule for an
    // audio or network function costs no iomem read.
    if !plan
        .targets
        .iter()
        .any(|target| is_display(&target.function))
    {
        return done;
    }
    // No iomem to read (a fixture given none): not even the buffer's stack pages are
    // touched.
    let wanted = match sysfs.iomem_path() {
        Some(_) => framebuffers_claimed(sysfs, plan),
        None => Vec::new(),
    };
    if let Some(index) = console_card(sysfs, plan, &wanted) {
        release_consoles(sysfs, kernel, plan, index, &mut done);
    }
    unbind_framebuffers(sysfs, kernel, plan, wanted, &mut done);
    report_released(plan, &done);
    done
}

/// A framebuffer device to unbind: the target whose BAR it holds, its driver, its name.
type Wanted = (usize, FramebufferDriver, DeviceName);

/// Reads iomem and finds the framebuffers in the targets' BARs. A function of its own, never
/// inlined: its 128 KiB buffer is on the stack only while it runs, so a run that reads no
/// iomem does not fault in 32 stack pages for it.
#[inline(never)]
fn framebuffers_claimed(sysfs: &Sysfs, plan: &Plan) -> Vec<Wanted, MAX_FRAMEBUFFER_DEVICES> {
    let mut buffer = [0u8; IOMEM_CAPACITY];
    match sysfs.read_iomem(&mut buffer) {
        Ok(Some(iomem)) => framebuffers_in_targets(sysfs, plan, iomem),
        Ok(None) => Vec::new(),
        Err(errno) => {
            warn!(
                "cannot read {} ({}): firmware framebuffers in the cards' BARs were not looked for",
                sysfs.iomem_path().unwrap_or("iomem"),
                errno.desc()
            );
            Vec::new()
        }
    }
}

/// The firmware framebuffers that lie in a target's BAR, each with the one platform device
/// that owns it; the kernel's own (`BOOTFB`), or one that cannot be told apart, gets a line.
fn framebuffers_in_targets(
    sysfs: &Sysfs,
    plan: &Plan,
    iomem: &str,
) -> Vec<Wanted, MAX_FRAMEBUFFER_DEVICES> {
    let mut wanted: Vec<Wanted, MAX_FRAMEBUFFER_DEVICES> = Vec::new();
    for (index, target) in plan.targets.iter().enumerate() {
        let address = address_text(&target.function);
        for claim in claims_in(iomem, &address) {
            let ClaimKind::Framebuffer(framebuffer) = claim.kind else {
                continue;
            };
            let Some(driver) = driver_of(framebuffer) else {
                // vfio-pci removes sysfb's device itself for a VGA-class function.
                if !is_vga(&target.function) {
                    warn!(
                        "{address}: the kernel's boot framebuffer ({}) holds its BAR and no unbind removes it, so a VM cannot map it; boot with {}",
                        ClaimShown(&claim),
                        framebuffer.kernel_remedy()
                    );
                }
                continue;
            };
            let devices = sysfs.platform_devices_of(driver);
            match devices.as_slice() {
                [device] => {
                    if !wanted.iter().any(|(_, _, known)| known == device) {
                        let _ = wanted.push((index, driver, device.clone()));
                    }
                }
                _ => warn!(
                    "{address}: {} holds its BAR, but {} {} devices are bound, so which to unbind cannot be told; boot with {}",
                    ClaimShown(&claim),
                    devices.len(),
                    driver.name(),
                    framebuffer.kernel_remedy()
                ),
            }
        }
    }
    wanted
}

/// The target that shows the console and has a driver to be unbound from it (runtime; at
/// early boot the card has no driver, and the framebuffer console follows the framebuffer
/// as the kernel unregisters it). Which card that is: the one behind the framebuffer the
/// console draws on (fb0 unless `fbcon=map:` says otherwise), directly or through its
/// firmware framebuffer. A GPU that only has a second framebuffer is let go without
/// touching the host's console.
fn console_card(sysfs: &Sysfs, plan: &Plan, wanted: &[Wanted]) -> Option<usize> {
    let candidate = |function: &Function| {
        is_display(function) && function.driver.as_deref().is_some_and(|d| d != VFIO_PCI)
    };
    // At boot no display card has a driver yet: the 32 framebuffer links are not read.
    if !plan
        .targets
        .iter()
        .any(|target| candidate(&target.function))
    {
        return None;
    }
    let console_device = sysfs.console_framebuffer_device()?;
    plan.targets.iter().enumerate().position(|(index, target)| {
        let function = &target.function;
        candidate(function)
            && (address_text(function).as_str() == console_device.as_str()
                || wanted
                    .iter()
                    .any(|(card, _, name)| *card == index && *name == console_device))
    })
}

/// Lets go of every bound frame-buffer virtual console, for the card at `index`.
fn release_consoles(
    sysfs: &Sysfs,
    kernel: &mut dyn Kernel,
    plan: &Plan,
    index: usize,
    done: &mut LetGo,
) {
    for console in sysfs.vtconsoles() {
        if !(console.framebuffer && console.bound) {
            continue;
        }
        match kernel.write(sysfs, Attribute::VtconsoleBind(console.number), "0") {
            Ok(()) => {
                let _ = done.consoles.push(console.number);
            }
            Err(errno) => error!(
                "{}: cannot let go of the framebuffer console vtcon{} ({})",
                plan.targets[index].function.address,
                console.number,
                errno.desc()
            ),
        }
    }
    done.console_target = Some(index);
}

fn unbind_framebuffers(
    sysfs: &Sysfs,
    kernel: &mut dyn Kernel,
    plan: &Plan,
    wanted: Vec<Wanted, MAX_FRAMEBUFFER_DEVICES>,
    done: &mut LetGo,
) {
    for (index, driver, device) in wanted {
        match kernel.write(sysfs, Attribute::PlatformUnbind(driver), &device) {
            Ok(()) => {
                let _ = done.framebuffers.push((index, driver, device));
            }
            Err(errno) => error!(
                "{}: cannot unbind {device} from {} ({}), so its BAR stays claimed; boot with {}",
                plan.targets[index].function.address,
                driver.name(),
                errno.desc(),
                remedy(driver)
            ),
        }
    }
}

/// One line per card whose consoles or framebuffers were let go.
fn report_released(plan: &Plan, done: &LetGo) {
    for index in 0..plan.targets.len() {
        let consoles: &[u8] = if done.console_target == Some(index) {
            &done.consoles
        } else {
            &[]
        };
        let framebuffers: Vec<DeviceName, MAX_FRAMEBUFFER_DEVICES> = done
            .framebuffers
            .iter()
            .filter(|(card, _, _)| *card == index)
            .map(|(_, _, device)| device.clone())
            .collect();
        if consoles.is_empty() && framebuffers.is_empty() {
            continue;
        }
        info!(
            "released the boot console for {}: {}",
            plan.targets[index].function.address,
            Released {
                consoles,
                framebuffers: &framebuffers
            }
        );
    }
}

/// After the read-back: takes back what [`let_go`] let go for every card that is not on
/// vfio-pci after all (its rule was given back), so the card is left as it was.
pub fn take_back_unless_bound(
    sysfs: &Sysfs,
    kernel: &mut dyn Kernel,
    plan: &Plan,
    done: &LetGo,
    on_vfio: &dyn Fn(usize) -> bool,
) {
    for (index, target) in plan.targets.iter().enumerate() {
        if on_vfio(index) {
            continue;
        }
        let mut consoles: Vec<u8, MAX_VTCONSOLES> = Vec::new();
        let mut framebuffers: Vec<DeviceName, MAX_FRAMEBUFFER_DEVICES> = Vec::new();
        for (card, driver, device) in &done.framebuffers {
            if *card == index
                && kernel
                    .write(sysfs, Attribute::PlatformBind(*driver), device)
                    .is_ok()
            {
                let _ = framebuffers.push(device.clone());
            }
        }
        if done.console_target == Some(index) {
            for number in &done.consoles {
                if kernel
                    .write(sysfs, Attribute::VtconsoleBind(*number), "1")
                    .is_ok()
                {
                    let _ = consoles.push(*number);
                }
            }
        }
        if consoles.is_empty() && framebuffers.is_empty() {
            continue;
        }
        let released = Released {
            consoles: &consoles,
            framebuffers: &framebuffers,
        };
        match &target.function.driver {
            Some(driver) if driver.as_str() != VFIO_PCI => error!(
                "{}: {driver} did not let go, so the console was given back ({released}); it is usually held by the display manager or a program on the card: stop it first",
                target.function.address
            ),
            _ => warn!(
                "{}: not handed over, so the console was given back ({released})",
                target.function.address
            ),
        }
    }
}

/// After `release` gave a display card back: rebinds the firmware framebuffer when no
/// driver took the card and no display card is left on vfio-pci (checking in iomem that it
/// landed in this card's BAR, else letting it go again), and rebinds the frame-buffer
/// virtual consoles. Says what it took back.
pub fn take_back_console(sysfs: &Sysfs, kernel: &mut dyn Kernel, plan: &Plan) {
    // Which card an unbound firmware framebuffer belongs to shows only once it is bound
    // again, and it must never draw into a BAR a VM may be using: while any display card
    // is on vfio-pci, none is rebound.
    let mut display_on_vfio = false;
    let _ = sysfs.for_each_function(|function| {
        display_on_vfio |= is_display(function) && function.is_on(VFIO_PCI);
    });
    for target in &plan.targets {
        if !is_display(&target.function) {
            continue;
        }
        let Some(now) = sysfs.read_function(target.function.address) else {
            continue;
        };
        if now.is_on(VFIO_PCI) {
            continue;
        }
        let address = address_text(&now);
        let mut framebuffers: Vec<DeviceName, MAX_FRAMEBUFFER_DEVICES> = Vec::new();
        if now.driver.is_none() && !display_on_vfio {
            for device in sysfs.unbound_framebuffer_devices() {
                let Some(driver) = FramebufferDriver::of_device(&device) else {
                    continue;
                };
                if kernel
                    .write(sysfs, Attribute::PlatformBind(driver), &device)
                    .is_err()
                {
                    continue;
                }
                if lands_elsewhere(sysfs, &address) {
                    let _ = kernel.write(sysfs, Attribute::PlatformUnbind(driver), &device);
                    continue;
                }
                let _ = framebuffers.push(device);
            }
        }
        // A framebuffer console needs a framebuffer: the one rebound, or the driver's.
        let shows_console = !framebuffers.is_empty()
            || sysfs.console_framebuffer_device().as_deref() == Some(address.as_str());
        if shows_console || now.driver.is_some() {
            for console in sysfs.vtconsoles() {
                if console.framebuffer && !console.bound {
                    let _ = kernel.write(sysfs, Attribute::VtconsoleBind(console.number), "1");
                }
            }
        }
        // The kernel's framebuffer console also comes back by itself when the card's
        // driver registers its framebuffer: say which consoles are on, whoever bound them.
        if !shows_console {
            continue;
        }
        let consoles: Vec<u8, MAX_VTCONSOLES> = sysfs
            .vtconsoles()
            .iter()
            .filter(|console| console.framebuffer && console.bound)
            .map(|console| console.number)
            .collect();
        if consoles.is_empty() && framebuffers.is_empty() {
            continue;
        }
        info!(
            "{address}: the console is back ({})",
            Released {
                consoles: &consoles,
                framebuffers: &framebuffers
            }
        );
    }
}

/// Whether, after rebinding, no firmware framebuffer claims this card's BAR while iomem
/// shows one elsewhere: the device belonged to another card. Unknown iomem reads as no.
#[inline(never)]
fn lands_elsewhere(sysfs: &Sysfs, address: &str) -> bool {
    let mut buffer = [0u8; IOMEM_CAPACITY];
    let Ok(Some(iomem)) = sysfs.read_iomem(&mut buffer) else {
        return false;
    };
    let here =
        claims_in(iomem, address).any(|claim| matches!(claim.kind, ClaimKind::Framebuffer(_)));
    !here
}

fn remedy(driver: FramebufferDriver) -> &'static str {
    match driver {
        FramebufferDriver::EfiFramebuffer => FirmwareFramebuffer::Efifb.kernel_remedy(),
        FramebufferDriver::VesaFramebuffer => FirmwareFramebuffer::Vesafb.kernel_remedy(),
        FramebufferDriver::SimpleFramebuffer => FirmwareFramebuffer::Simplefb.kernel_remedy(),
    }
}

/// Display controllers, class 0x03xxxx.
fn is_display(function: &Function) -> bool {
    function
        .class
        .is_some_and(|class| base_class(class) == CLASS_DISPLAY)
}

/// VGA-compatible display controllers, class 0x0300xx.
fn is_vga(function: &Function) -> bool {
    function
        .class
        .is_some_and(|class| base_and_subclass(class) == CLASS_VGA)
}

/// One finding of `check` about a vfio-pci function's BARs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarFinding {
    pub ok: bool,
    pub text: String,
}

/// `check`'s BAR findings, pure: for every function on vfio-pci, whether its BARs hold a
/// firmware framebuffer or any other claim (anything nested but vfio's own), with the fix.
pub fn bar_findings(iomem: &str, functions: &[Function]) -> std::vec::Vec<BarFinding> {
    let mut findings = std::vec::Vec::new();
    let on_vfio: std::vec::Vec<&Function> =
        functions.iter().filter(|f| f.is_on(VFIO_PCI)).collect();
    for function in &on_vfio {
        let address = address_text(function);
        let mut blocked = false;
        for claim in claims_in(iomem, &address).filter(|claim| claim.blocks_a_vm()) {
            blocked = true;
            let text = match claim.kind {
                ClaimKind::Framebuffer(framebuffer) => match driver_of(framebuffer) {
                    Some(driver) => format!(
                        "{address}: its BAR holds the firmware framebuffer {}, so a VM cannot map it (QEMU: \"can't reserve\"). Fix: echo {}N > /sys/bus/platform/drivers/{}/unbind (vfio-bind apply does it at boot), or boot with {}",
                        ClaimShown(&claim),
                        framebuffer.device_prefix(),
                        driver.name(),
                        framebuffer.kernel_remedy()
                    ),
                    None => format!(
                        "{address}: its BAR holds the kernel's boot framebuffer {}, which no unbind removes, so a VM cannot map it. Fix: boot with {}",
                        ClaimShown(&claim),
                        framebuffer.kernel_remedy()
                    ),
                },
                _ => format!(
                    "{address}: its BAR is claimed by {}, so a VM cannot map it. Fix: find what holds it (grep -n -A2 {address} /proc/iomem) and stop or unbind it",
                    ClaimShown(&claim)
                ),
            };
            findings.push(BarFinding { ok: false, text });
        }
        if !blocked {
            findings.push(BarFinding {
                ok: true,
                text: format!("{address}: no framebuffer or other claim in its BARs"),
            });
        }
    }
    if !on_vfio.is_empty() {
        for loose in crate::machine::iomem::unplaced_framebuffers(iomem) {
            findings.push(BarFinding {
                ok: false,
                text: format!(
                    "the firmware framebuffer {} is in the iomem tree, but whether it lies in a vfio-pci function's BAR cannot be told: /proc/iomem shows addresses to root only. Fix: run vfio-bind check as root",
                    loose.name
                ),
            });
        }
    }
    findings
}
