//! The scenarios: emulated cards, the kernel command line, and what the guest kernel must
//! report afterwards.

use super::image::{Generator, ALL_GENERATORS};
use super::qemu::Firmware;
use super::report::{GroupStatus, GuestState};
use Cards::*;

/// The emulated cards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cards {
    /// Two identical cards: bochs-display (1234:1111) + ich9-intel-hda (8086:293e) at
    /// 00:04.0/.1 and 00:05.0/.1.
    Twins,
    /// A host card and a guest card whose audio functions share IDs (seed 003's machine):
    /// two AMD-vendor cards (ati-vga rv100, 1002:5159) with audio
    /// functions of identical IDs, the host's at 00:03, the guest's at 00:07.
    SharedAudioIds,
    /// Identical twins (bochs-display, 1234:1111), each on its own bus behind a PCIe root
    /// port: the "left" one behind 00:1c.0 (bus 01), the "right" one behind 00:1d.0 (bus 02).
    RootPortTwins,
    /// The same, plus a USB controller (qemu-xhci) behind a root port at 00:1b.0, which
    /// SeaBIOS numbers first: the USB controller takes bus 01 and the twins move to 02 and
    /// 03. The renumbering a card added in an earlier slot causes on real machines.
    RootPortTwinsUsbFirst,
    /// The twins under UEFI (OVMF): 00:04.0, the first display card, is the boot display
    /// and efifb holds the start of its BAR0.
    UefiTwins,
    /// Single-GPU passthrough's shape under UEFI: one bochs-display + ich9-intel-hda at
    /// 00:04.0/.1, the boot display.
    UefiSingle,
    /// The control under UEFI: a VGA-class card (QEMU's `VGA`, 1234:1111, class 0x0300) +
    /// ich9-intel-hda at 00:04.0/.1, the boot display. vfio-pci itself removes the firmware
    /// framebuffer when it probes a VGA-class function.
    UefiVga,
}

/// `-device` arguments for a PCIe root port at `slot` on the root bus and one device
/// behind it.
fn behind_root_port(slot: &str, chassis: u8, device: &str) -> Vec<String> {
    vec![
        "-device".to_string(),
        format!("pcie-root-port,id=rp{slot},bus=pcie.0,addr={slot}.0,chassis={chassis}"),
        "-device".to_string(),
        format!("{device},bus=rp{slot},addr=00.0"),
    ]
}

impl Cards {
    pub fn qemu_args(self) -> Vec<String> {
        let (display, slots): (&str, &[&str]) = match self {
            Cards::Twins | Cards::UefiTwins => ("bochs-display", &["04", "05"]),
            Cards::SharedAudioIds => ("ati-vga,model=rv100", &["03", "07"]),
            Cards::UefiSingle => ("bochs-display", &["04"]),
            Cards::UefiVga => ("VGA", &["04"]),
            Cards::RootPortTwins | Cards::RootPortTwinsUsbFirst => {
                let mut args = Vec::new();
                if self == Cards::RootPortTwinsUsbFirst {
                    args.extend(behind_root_port("1b", 3, "qemu-xhci"));
                }
                args.extend(behind_root_port("1c", 1, "bochs-display"));
                args.extend(behind_root_port("1d", 2, "bochs-display"));
                return args;
            }
        };
        let mut args = Vec::new();
        for slot in slots {
            args.push("-device".to_string());
            args.push(format!("{display},addr={slot}.0,multifunction=on"));
            args.push("-device".to_string());
            args.push(format!("ich9-intel-hda,addr={slot}.1"));
        }
        args
    }

    /// Command-line words the cards need: radeon crashes on ati-vga when fbcon takes it.
    pub fn append(self) -> &'static str {
        match self {
            Cards::SharedAudioIds => ATI_VGA_APPEND,
            Cards::Twins
            | Cards::RootPortTwins
            | Cards::RootPortTwinsUsbFirst
            | Cards::UefiTwins
            | Cards::UefiSingle
            | Cards::UefiVga => "",
        }
    }

    /// The firmware the cards boot with.
    pub fn firmware(self) -> Firmware {
        match self {
            Cards::Twins
            | Cards::SharedAudioIds
            | Cards::RootPortTwins
            | Cards::RootPortTwinsUsbFirst => Firmware::SeaBios,
            Cards::UefiTwins | Cards::UefiSingle | Cards::UefiVga => Firmware::Uefi,
        }
    }
}

/// Kernel command-line words of every boot on ati-vga cards (vm-run's too): see
/// [`Cards::append`].
pub const ATI_VGA_APPEND: &str = "drm_kms_helper.fbdev_emulation=0";

/// Kernel command-line words of every boot (vm-run's too). `no_timer_check` skips the
/// kernel's check of the timer interrupt through the remapped IO-APIC: under emulation on a
/// loaded host it times out and panics ("timer doesn't work through Interrupt-remapped
/// IO-APIC") before any initramfs runs; seen on SeaBIOS and UEFI boots alike.
const EVERY_BOOT: [&str; 3] = ["console=ttyS0", "panic=-1", "no_timer_check"];

/// Where a function must end up.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    /// On vfio-pci with driver_override "vfio-pci".
    Vfio,
    /// On this native driver, with no override.
    Native(&'static str),
}

/// One boot of the matrix: the machine, the kernel command line, the images it boots on,
/// and what the guest must report afterwards. Rows are built with [`boot`] and the
/// methods below it, each stating one expectation that differs from the defaults.
#[derive(Debug)]
pub struct Scenario {
    pub number: u8,
    pub name: &'static str,
    /// The images this scenario boots on.
    pub images: &'static [Generator],
    pub cards: Cards,
    /// Rules and other words for the kernel command line.
    pub append: &'static str,
    /// Boot with the IOMMU on (intel_iommu=on) or off (intel_iommu=off: Debian's kernel
    /// turns the Intel IOMMU on by default when the firmware has one).
    pub iommu: bool,
    /// Boot the image with rules baked into /etc/cmdline.d.
    pub baked: bool,
    pub functions: &'static [(&'static str, Want)],
    /// Functions whose VFIO group must be viable (/dev/vfio/N opens, status says viable).
    pub viable: &'static [&'static str],
    /// Functions whose VFIO group must exist and not be viable.
    pub not_viable: &'static [&'static str],
    /// Each must appear in one binder line (`vfio-bind: ...`) at error level or worse
    /// (level <= 3), every word of it.
    pub binder_errors: &'static [&'static [&'static str]],
    /// Whether the binder must log its summary (false: it must log nothing at all).
    pub binder_speaks: bool,
    /// Each must appear in one binder line at any level, every word of it.
    pub binder_says: &'static [&'static [&'static str]],
    /// Text the kernel console must show (proof that a precondition held).
    pub console: &'static [&'static str],
    /// (function, native driver): the driver must never have probed the function, proof
    /// that the binder ran before it rather than taking the card back afterwards. Read from
    /// the kernel console: any line naming both, other than the binder's own.
    pub untouched: &'static [(&'static str, &'static str)],
    /// Kernel log records the guest's test hook must have written, exactly and in this
    /// order (`vfio-test: ...`: the runtime scenario's state after each step).
    pub guest_says: &'static [&'static str],
    /// The GPU driver is forced early through dracut's rd.driver.pre=: besides the outcome,
    /// dracut-pre-udev.service (which loads it) must have run.
    pub forced_driver: bool,
}

/// A scenario with the defaults most rows share: the IOMMU on, no rules baked in, the
/// binder logging its summary and no error, and nothing else checked.
const fn boot(
    number: u8,
    name: &'static str,
    images: &'static [Generator],
    cards: Cards,
    append: &'static str,
    functions: &'static [(&'static str, Want)],
) -> Scenario {
    Scenario {
        number,
        name,
        images,
        cards,
        append,
        iommu: true,
        baked: false,
        functions,
        viable: &[],
        not_viable: &[],
        binder_errors: &[],
        binder_speaks: true,
        binder_says: &[],
        console: &[],
        untouched: &[],
        guest_says: &[],
        forced_driver: false,
    }
}

/// The builder methods of the table: each sets the field of the same name (see
/// [`Scenario`]), or one flag.
impl Scenario {
    const fn iommu_off(mut self) -> Self {
        self.iommu = false;
        self
    }
    const fn baked(mut self) -> Self {
        self.baked = true;
        self
    }
    const fn viable(mut self, viable: &'static [&'static str]) -> Self {
        self.viable = viable;
        self
    }
    const fn not_viable(mut self, not_viable: &'static [&'static str]) -> Self {
        self.not_viable = not_viable;
        self
    }
    const fn binder_errors(mut self, binder_errors: &'static [&'static [&'static str]]) -> Self {
        self.binder_errors = binder_errors;
        self
    }
    /// The binder must log nothing at all.
    const fn silent(mut self) -> Self {
        self.binder_speaks = false;
        self
    }
    const fn binder_says(mut self, binder_says: &'static [&'static [&'static str]]) -> Self {
        self.binder_says = binder_says;
        self
    }
    const fn console(mut self, console: &'static [&'static str]) -> Self {
        self.console = console;
        self
    }
    const fn untouched(mut self, untouched: &'static [(&'static str, &'static str)]) -> Self {
        self.untouched = untouched;
        self
    }
    const fn guest_says(mut self, guest_says: &'static [&'static str]) -> Self {
        self.guest_says = guest_says;
        self
    }
    const fn forced_driver(mut self) -> Self {
        self.forced_driver = true;
        self
    }

    /// Whether this scenario boots on `generator`'s image.
    pub fn runs_on(&self, generator: Generator) -> bool {
        self.images.contains(&generator)
    }
}

const BOCHS: &str = "bochs-drm";
const HDA: &str = "snd_hda_intel";
const RADEON: &str = "radeon";

/// Which images a scenario boots on. Every image: the scenarios each init's hook must pass
/// (1, 3, the baked rules of 9, which check each hook's copy of /etc/cmdline.d, and the
/// escape hatch, which the binder alone decides). The mkinitcpio (busybox) image runs them
/// all: its HOOKS order also lets scenario 5 load a driver before the binder. The
/// forced-driver scenario is about dracut's systemd mode and runs on that image alone.
const EVERY_IMAGE: &[Generator] = &ALL_GENERATORS;
const MKINITCPIO: &[Generator] = &[Generator::Mkinitcpio];
const DRACUT_SYSTEMD: &[Generator] = &[Generator::DracutSystemd];

const SECOND_TAKEN: &[(&str, Want)] = &[
    ("00:04.0", Want::Native(BOCHS)),
    ("00:04.1", Want::Native(HDA)),
    ("00:05.0", Want::Vfio),
    ("00:05.1", Want::Vfio),
];
const ALL_NATIVE: &[(&str, Want)] = &[
    ("00:04.0", Want::Native(BOCHS)),
    ("00:04.1", Want::Native(HDA)),
    ("00:05.0", Want::Native(BOCHS)),
    ("00:05.1", Want::Native(HDA)),
];
/// The first twin (the boot display under UEFI) on vfio-pci, the second left alone.
const FIRST_TAKEN: &[(&str, Want)] = &[
    ("00:04.0", Want::Vfio),
    ("00:04.1", Want::Vfio),
    ("00:05.0", Want::Native(BOCHS)),
    ("00:05.1", Want::Native(HDA)),
];
/// The single card (UEFI) on vfio-pci.
const ONLY_CARD_TAKEN: &[(&str, Want)] = &[("00:04.0", Want::Vfio), ("00:04.1", Want::Vfio)];
/// The second rv100 (the guest's) taken, the host's left on its drivers.
const GUESTS_RV100_TAKEN: &[(&str, Want)] = &[
    ("00:03.0", Want::Native(RADEON)),
    ("00:03.1", Want::Native(HDA)),
    ("00:07.0", Want::Vfio),
    ("00:07.1", Want::Vfio),
];
/// IDs only (8086:293e): both audio functions taken, both display functions left alone.
const AUDIO_TAKEN: &[(&str, Want)] = &[
    ("00:04.0", Want::Native(BOCHS)),
    ("00:04.1", Want::Vfio),
    ("00:05.0", Want::Native(BOCHS)),
    ("00:05.1", Want::Vfio),
];

/// The second twin, which the binder must reach before its drivers do.
const UNTOUCHED_SECOND: &[(&str, &str)] = &[("00:05.0", BOCHS), ("00:05.1", HDA)];

/// Notes on the rows:
/// - 3: the error says what was expected and what was found.
/// - 5: bochs-drm really had the second card before the binder took it.
/// - 8: each audio function shares its group with a display function still on bochs.
/// - 11: rd.driver.pre= on the command line as well as force_drivers+=" bochs " in the
///   image's dracut.conf.d (written into its /etc/cmdline.d): dracut-pre-udev.service loads
///   both. Judged by the unit order systemd reports (see `unit_order`), since under
///   emulation the binder wins the race by chance.
/// - 12-15, renumbering (issue 12): the same two rules, a path rule and a bus-number rule,
///   each booted on both topologies. The console line naming the bridge in front of bus 01
///   or 02 proves which physical twin (the one behind root port 1c.0 or 1d.0) sits at the
///   address the scenario checks: in 13 the left twin (behind 1c.0) is at 02:00.0 now; in
///   14 02:00.0 is the right twin, behind 1d.0; in 15, the hazard, the same text took the
///   left twin this time, and the binder reported success, since both twins have the same
///   IDs.
/// - 16: quoted, as a boot-menu edit may leave it: the kernel strips the quotes, and the
///   binder, not the init, decides (systemd's and the shells' parsers differ here).
/// - 17-20, the boot display under UEFI (issue 11): OVMF makes 00:04.0 the boot display and
///   efifb holds its BAR0 (the precondition the console line proves); each vfio-pci
///   function's BARs must map through VFIO as QEMU maps them. In 19 `vfio-bind bind` (on
///   the console) says it let go of the console on the card.
#[rustfmt::skip]
pub const SCENARIOS: &[Scenario] = &[
    //   no  name                                          images          cards                  kernel command line                                               functions end on
    boot(1,  "identical twins",                            EVERY_IMAGE,    Twins,                 "vfio.bind=1234:1111@00:05",                                      SECOND_TAKEN).viable(&["00:05.0"]).untouched(UNTOUCHED_SECOND),
    boot(2,  "host and guest share audio IDs",             MKINITCPIO,     SharedAudioIds,        "vfio.bind=1002:5159@00:07",                                             GUESTS_RV100_TAKEN).viable(&["00:07.0"]).untouched(&[("00:07.0", RADEON), ("00:07.1", HDA)]),
    boot(3,  "guard mismatch",                             EVERY_IMAGE,    Twins,                 "vfio.bind=1002:73ff@00:05",                                      ALL_NATIVE).binder_errors(&[&["1002:73ff", "1234:1111"]]),
    boot(4,  "malformed beside good",                      MKINITCPIO,     Twins,                 "vfio.bind=1234:1111@00:05,12g4:1111@00:04",                      SECOND_TAKEN).viable(&["00:05.0"]).binder_errors(&[&["12g4:1111@00:04"]]).untouched(UNTOUCHED_SECOND),
    boot(5,  "native driver first",                        MKINITCPIO,     Twins,                 "vfiotest.preload=bochs,snd_hda_intel vfio.bind=1234:1111@00:05", SECOND_TAKEN).viable(&["00:05.0"]).binder_says(&[&["0000:00:05.0", "from bochs-drm"], &["0000:00:05.1", "from snd_hda_intel"]]).console(&["Initialized bochs-drm", "for 0000:00:05.0"]),
    boot(6,  "IOMMU off",                                  MKINITCPIO,     Twins,                 "vfio.bind=1234:1111@00:05",                                      ALL_NATIVE).iommu_off().binder_errors(&[&["IOMMU"]]),
    boot(7,  "no rule",                                    MKINITCPIO,     Twins,                 "",                                                               ALL_NATIVE).silent(),
    boot(8,  "IDs only",                                   MKINITCPIO,     Twins,                 "vfio.bind=8086:293e",                                            AUDIO_TAKEN).not_viable(&["00:04.1", "00:05.1"]).untouched(&[("00:04.1", HDA), ("00:05.1", HDA)]),
    boot(9,  "rules baked in",                             EVERY_IMAGE,    Twins,                 "",                                                               SECOND_TAKEN).baked().viable(&["00:05.0"]).untouched(UNTOUCHED_SECOND),
    boot(10, "runtime bind and release, twice",            MKINITCPIO,     Twins,                 "vfiotest.runtime=1234:1111@00:05",                               ALL_NATIVE).silent().guest_says(RUNTIME_ROUNDS),
    boot(11, "GPU driver forced early",                    DRACUT_SYSTEMD, Twins,                 "rd.driver.pre=bochs vfio.bind=1234:1111@00:05",                  SECOND_TAKEN).viable(&["00:05.0"]).untouched(UNTOUCHED_SECOND).forced_driver(),
    boot(12, "path rule, twins behind root ports",         MKINITCPIO,     RootPortTwins,         PATH_RULE,                                                        &[("01:00.0", Want::Vfio), ("02:00.0", Want::Native(BOCHS))]).viable(&["01:00.0"]).binder_says(&[&["1234:1111@0000:00:1c.0/00:", "resolved to 0000:01:00"]]).console(&["pci 0000:00:1c.0: PCI bridge to [bus 01]"]).untouched(&[("01:00.0", BOCHS)]),
    boot(13, "path rule after renumbering: the same twin", MKINITCPIO,     RootPortTwinsUsbFirst, PATH_RULE,                                                        &[("02:00.0", Want::Vfio), ("03:00.0", Want::Native(BOCHS))]).viable(&["02:00.0"]).binder_says(&[&["1234:1111@0000:00:1c.0/00:", "resolved to 0000:02:00"]]).console(&["pci 0000:00:1c.0: PCI bridge to [bus 02]"]).untouched(&[("02:00.0", BOCHS)]),
    boot(14, "bus rule, twins behind root ports",          MKINITCPIO,     RootPortTwins,         BUS_RULE,                                                         &[("01:00.0", Want::Native(BOCHS)), ("02:00.0", Want::Vfio)]).viable(&["02:00.0"]).binder_says(&[&["1234:1111@0000:02:00:", "0000:02:00.0 on vfio-pci"]]).console(&["pci 0000:00:1d.0: PCI bridge to [bus 02]"]).untouched(&[("02:00.0", BOCHS)]),
    boot(15, "bus rule after renumbering: the OTHER twin", MKINITCPIO,     RootPortTwinsUsbFirst, BUS_RULE,                                                         &[("02:00.0", Want::Vfio), ("03:00.0", Want::Native(BOCHS))]).viable(&["02:00.0"]).binder_says(&[&["1234:1111@0000:02:00:", "0000:02:00.0 on vfio-pci"]]).console(&["pci 0000:00:1c.0: PCI bridge to [bus 02]"]).untouched(&[("02:00.0", BOCHS)]),
    boot(16, "escape hatch, rules baked in",               EVERY_IMAGE,    Twins,                 "\"rd.vfio_bind=off\"",                                           ALL_NATIVE).baked().binder_says(&[&["not run: rd.vfio_bind=0 is on the kernel command line"]]),
    boot(17, "UEFI single GPU",                            MKINITCPIO,     UefiSingle,            "vfio.bind=1234:1111@00:04",                                      ONLY_CARD_TAKEN).viable(&["00:04.0"]).binder_says(RELEASED_EFIFB).console(UEFI_BOOT_DISPLAY).untouched(UNTOUCHED_FIRST),
    boot(18, "UEFI boot display twin",                     MKINITCPIO,     UefiTwins,             "vfio.bind=1234:1111@00:04",                                      FIRST_TAKEN).viable(&["00:04.0"]).binder_says(RELEASED_EFIFB).console(UEFI_BOOT_DISPLAY).untouched(UNTOUCHED_FIRST),
    boot(19, "UEFI runtime boot GPU",                      MKINITCPIO,     UefiTwins,             "vfiotest.runtime=1234:1111@00:04",                               ALL_NATIVE).silent().console(RELEASED_CONSOLE).guest_says(UEFI_RUNTIME_ROUNDS),
    boot(20, "UEFI VGA control",                           MKINITCPIO,     UefiVga,               "vfio.bind=1234:1111@00:04",                                      ONLY_CARD_TAKEN).viable(&["00:04.0"]).console(UEFI_BOOT_DISPLAY).untouched(UNTOUCHED_FIRST),
];

/// The renumbering scenarios' rules: the left twin by its path, and by the bus number the
/// right twin has on the first topology.
const PATH_RULE: &str = "vfio.bind=1234:1111@00:1c.0/00";
const BUS_RULE: &str = "vfio.bind=1234:1111@02:00";

/// Scenario 21, the installed Debian system (`system.rs`): not a row of the matrix (it boots
/// a disk, not an image, twice), judged at each point of its life by the same checks as the
/// rows. Its rule is [`BAKED_RULE`](super::stage::BAKED_RULE), in the disk's /etc/cmdline.d.
pub const SYSTEM_NUMBER: u8 = 21;
pub const SYSTEM_NAME: &str = "installed Debian system";
/// The boot from the disk: the image the package's trigger built took the second twin
/// before its drivers could.
pub const SYSTEM_BOOTED: Scenario = boot(SYSTEM_NUMBER, SYSTEM_NAME, &[], Twins, "", SECOND_TAKEN)
    .viable(&["00:05.0"])
    .untouched(UNTOUCHED_SECOND);
/// After the libvirt hook's `prepare begin` for the guest that owns the first twin: both
/// twins on vfio-pci.
pub const SYSTEM_PREPARED: Scenario =
    boot(SYSTEM_NUMBER, SYSTEM_NAME, &[], Twins, "", BOTH_TAKEN).viable(&["00:04.0", "00:05.0"]);
/// After the hook ran for another guest (nothing moves), and after `release end`: the
/// first twin on its own drivers again, the second as booted.
pub const SYSTEM_AS_BOOTED: Scenario =
    boot(SYSTEM_NUMBER, SYSTEM_NAME, &[], Twins, "", SECOND_TAKEN).viable(&["00:05.0"]);
/// The second boot, after `dpkg -r vfio-bind`: the image has no binder, so nothing binds
/// and nothing logs.
pub const SYSTEM_REMOVED: Scenario =
    boot(SYSTEM_NUMBER, SYSTEM_NAME, &[], Twins, "", ALL_NATIVE).silent();
/// Both twins on vfio-pci.
const BOTH_TAKEN: &[(&str, Want)] = &[
    ("00:04.0", Want::Vfio),
    ("00:04.1", Want::Vfio),
    ("00:05.0", Want::Vfio),
    ("00:05.1", Want::Vfio),
];

/// The precondition of the UEFI scenarios: OVMF made 00:04.0 the boot display and the EFI
/// framebuffer lies in its BAR0. The kernel says so when it pins the BAR under the
/// framebuffer (`efifb_fixup_resources`, drivers/firmware/efi/sysfb_efi.c).
const UEFI_BOOT_DISPLAY: &[&str] = &["pci 0000:00:04.0: BAR 0: assigned to efifb"];

/// The binder's line at boot when it unbinds efifb from the boot display's BAR0.
const RELEASED_EFIFB: &[&[&str]] = &[&[
    "released the boot console for 0000:00:04.0",
    "efi-framebuffer.0",
]];

/// `vfio-bind bind`'s line when it unbinds the framebuffer console from the boot display.
const RELEASED_CONSOLE: &[&str] = &["vfio-bind: released the boot console for 0000:00:04.0"];

/// The card OVMF makes the boot display: the first display card.
const BOOT_DISPLAY: &str = "00:04.0";

/// The first card (the boot display under UEFI), which the binder must reach before its
/// drivers do.
const UNTOUCHED_FIRST: &[(&str, &str)] = &[("00:04.0", BOCHS), ("00:04.1", HDA)];

/// What the guest's test hook logs after each `vfio-bind bind` and `release` of the second
/// twin (xtask/guest/mkinitcpio/hooks/vfio-test): the step, the command's exit status, and
/// each function's driver as the kernel's `driver` link names it. The first twin never moves.
const RUNTIME_BOUND_1: &str = "vfio-test: round 1 bind exit 0: 0000:00:04.0=bochs-drm 0000:00:04.1=snd_hda_intel 0000:00:05.0=vfio-pci 0000:00:05.1=vfio-pci";
const RUNTIME_BARS_1: &str =
    "vfio-test: round 1 bind bars: 0000:00:05.0=mapped 0000:00:05.1=mapped";
const RUNTIME_BARS_2: &str =
    "vfio-test: round 2 bind bars: 0000:00:05.0=mapped 0000:00:05.1=mapped";
const RUNTIME_RELEASED_1: &str = "vfio-test: round 1 release exit 0: 0000:00:04.0=bochs-drm 0000:00:04.1=snd_hda_intel 0000:00:05.0=bochs-drm 0000:00:05.1=snd_hda_intel";
const RUNTIME_BOUND_2: &str = "vfio-test: round 2 bind exit 0: 0000:00:04.0=bochs-drm 0000:00:04.1=snd_hda_intel 0000:00:05.0=vfio-pci 0000:00:05.1=vfio-pci";
const RUNTIME_RELEASED_2: &str = "vfio-test: round 2 release exit 0: 0000:00:04.0=bochs-drm 0000:00:04.1=snd_hda_intel 0000:00:05.0=bochs-drm 0000:00:05.1=snd_hda_intel";
const RUNTIME_ROUNDS: &[&str] = &[
    RUNTIME_BOUND_1,
    RUNTIME_BARS_1,
    RUNTIME_RELEASED_1,
    RUNTIME_BOUND_2,
    RUNTIME_BARS_2,
    RUNTIME_RELEASED_2,
];

/// Scenario 19: the same rounds on the first twin, the boot display with the console on it.
const UEFI_RUNTIME_BOUND_1: &str = "vfio-test: round 1 bind exit 0: 0000:00:04.0=vfio-pci 0000:00:04.1=vfio-pci 0000:00:05.0=bochs-drm 0000:00:05.1=snd_hda_intel";
const UEFI_RUNTIME_BARS_1: &str =
    "vfio-test: round 1 bind bars: 0000:00:04.0=mapped 0000:00:04.1=mapped";
const UEFI_RUNTIME_RELEASED_1: &str = "vfio-test: round 1 release exit 0: 0000:00:04.0=bochs-drm 0000:00:04.1=snd_hda_intel 0000:00:05.0=bochs-drm 0000:00:05.1=snd_hda_intel";
const UEFI_RUNTIME_BOUND_2: &str = "vfio-test: round 2 bind exit 0: 0000:00:04.0=vfio-pci 0000:00:04.1=vfio-pci 0000:00:05.0=bochs-drm 0000:00:05.1=snd_hda_intel";
const UEFI_RUNTIME_BARS_2: &str =
    "vfio-test: round 2 bind bars: 0000:00:04.0=mapped 0000:00:04.1=mapped";
const UEFI_RUNTIME_RELEASED_2: &str = "vfio-test: round 2 release exit 0: 0000:00:04.0=bochs-drm 0000:00:04.1=snd_hda_intel 0000:00:05.0=bochs-drm 0000:00:05.1=snd_hda_intel";
const UEFI_RUNTIME_ROUNDS: &[&str] = &[
    UEFI_RUNTIME_BOUND_1,
    UEFI_RUNTIME_BARS_1,
    UEFI_RUNTIME_RELEASED_1,
    UEFI_RUNTIME_BOUND_2,
    UEFI_RUNTIME_BARS_2,
    UEFI_RUNTIME_RELEASED_2,
];

/// The kernel command line for a scenario on an image.
pub fn command_line(scenario: &Scenario, generator: Generator) -> String {
    kernel_command_line(
        scenario.iommu,
        generator,
        &[scenario.cards.append(), scenario.append],
    )
}

/// The kernel command line of every boot, vm-test's and vm-run's: the serial console, no
/// reboot on panic, the IOMMU on or off, the words the image needs, then `extra` (the
/// cards' words, then the rules).
pub fn kernel_command_line(iommu: bool, generator: Generator, extra: &[&str]) -> String {
    let mut words = EVERY_BOOT.to_vec();
    words.push(if iommu {
        "intel_iommu=on"
    } else {
        "intel_iommu=off"
    });
    words.extend(generator.append().split_whitespace());
    for text in extra {
        words.extend(text.split_whitespace());
    }
    words.join(" ")
}

/// Checks the guest's report against the scenario; returns the mismatches (empty: pass).
pub fn check(scenario: &Scenario, state: &GuestState, console: &str) -> Vec<String> {
    let mut problems = Vec::new();
    check_drivers(scenario, state, &mut problems);
    check_bars(scenario, state, &mut problems);
    check_boot_display_console(scenario, state, &mut problems);
    check_groups(scenario, state, &mut problems);
    check_binder_log(scenario, state, &mut problems);
    check_guest_lines(scenario, state, &mut problems);
    check_untouched(scenario, console, &mut problems);
    check_console_words(scenario, console, &mut problems);
    check_kernel_log(state, &mut problems);
    check_units(scenario, state, &mut problems);
    problems
}

/// Each function ends on the driver (and driver_override) the scenario wants.
fn check_drivers(scenario: &Scenario, state: &GuestState, problems: &mut Vec<String>) {
    for (address, want) in scenario.functions {
        let Some(found) = state.function(address) else {
            problems.push(format!("{address}: not in the guest's PCI device list"));
            continue;
        };
        let driver = found.driver.as_deref().unwrap_or("-");
        let over = found.driver_override.as_deref().unwrap_or("-");
        let (want_driver, want_override) = match want {
            Want::Vfio => ("vfio-pci", "vfio-pci"),
            Want::Native(driver) => (*driver, "-"),
        };
        if driver != want_driver || over != want_override {
            problems.push(format!(
                "{address}: expected driver {want_driver}, override {want_override}; found driver {driver}, override {over}"
            ));
        }
    }
}

fn check_bars(scenario: &Scenario, state: &GuestState, problems: &mut Vec<String>) {
    // "Viable" is not "usable": every function on vfio-pci must map its BARs through VFIO as
    // QEMU maps them. (A group expected not viable cannot join a container: nothing maps.)
    for (address, want) in scenario.functions {
        if matches!(want, Want::Vfio) && !scenario.not_viable.contains(address) {
            let bars = state.bars_of(address);
            if bars != "mapped" {
                problems.push(format!(
                    "{address}: expected bars mapped (every BAR mmapped through VFIO, as QEMU does); found {bars}"
                ));
            }
        }
    }
}

fn check_boot_display_console(scenario: &Scenario, state: &GuestState, problems: &mut Vec<String>) {
    // Under UEFI 00:04.0 is the boot display: when it ends on its own driver (never taken, or
    // given back by a runtime release), the console must be on it, not left on nothing.
    let boot_display_native = scenario
        .functions
        .iter()
        .any(|(address, want)| *address == BOOT_DISPLAY && matches!(want, Want::Native(_)));
    if scenario.cards.firmware() == Firmware::Uefi && boot_display_native {
        let full = super::report::full_address(BOOT_DISPLAY);
        let on_card = state.framebuffers.iter().any(|(_, device)| *device == full);
        let bound = state
            .vtconsoles
            .iter()
            .any(|(_, bound, name)| *bound && name.contains("frame buffer"));
        if !on_card || !bound {
            problems.push(format!(
                "expected the console back on the boot display {BOOT_DISPLAY}: a framebuffer of {full} and a bound frame-buffer console; found framebuffers [{}], consoles [{}]",
                state
                    .framebuffers
                    .iter()
                    .map(|(fb, device)| format!("{fb} on {device}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                state
                    .vtconsoles
                    .iter()
                    .map(|(vtcon, bound, name)| format!(
                        "{vtcon} {name} {}",
                        if *bound { "bound" } else { "unbound" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
}

/// The VFIO groups: viable where expected, not viable where expected, and none at all when
/// no function is to be on vfio-pci.
fn check_groups(scenario: &Scenario, state: &GuestState, problems: &mut Vec<String>) {
    let group_of = |address: &str| state.function(address).and_then(|f| f.group);
    for address in scenario.viable {
        match group_of(address) {
            None => problems.push(format!(
                "{address}: expected a viable VFIO group; it has no IOMMU group"
            )),
            Some(group) => match state.groups.get(&group) {
                Some(GroupStatus::Viable) => {}
                Some(other) => problems.push(format!(
                    "{address}: expected group {group} viable; found {other:?}"
                )),
                None => problems.push(format!(
                    "{address}: expected group {group} viable; /dev/vfio/{group} does not exist"
                )),
            },
        }
    }
    for address in scenario.not_viable {
        match group_of(address).map(|group| (group, state.groups.get(&group))) {
            Some((_, Some(GroupStatus::NotViable))) => {}
            Some((group, other)) => problems.push(format!(
                "{address}: expected /dev/vfio/{group} to report not viable; found {}",
                other.map_or(format!("no /dev/vfio/{group}"), |status| status.to_string())
            )),
            None => problems.push(format!(
                "{address}: expected a VFIO group; it has no IOMMU group"
            )),
        }
    }
    if !scenario
        .functions
        .iter()
        .any(|(_, want)| matches!(want, Want::Vfio))
        && !state.groups.is_empty()
    {
        problems.push(format!(
            "expected no VFIO group; found /dev/vfio/{}",
            state
                .groups
                .keys()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", /dev/vfio/")
        ));
    }
}

/// The binder's own lines: the errors, summary, silence and words the scenario expects, and
/// no unexpected error.
fn check_binder_log(scenario: &Scenario, state: &GuestState, problems: &mut Vec<String>) {
    let binder: Vec<&(u8, String)> = state.binder_lines().collect();
    for words in scenario.binder_errors {
        let found = binder
            .iter()
            .any(|(level, text)| *level <= 3 && words.iter().all(|word| text.contains(word)));
        if !found {
            problems.push(format!(
                "expected a binder error line containing {words:?}; the binder logged {}",
                if binder.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("{} lines", binder.len())
                }
            ));
        }
    }
    if scenario.binder_speaks && state.summary().is_none() {
        problems
            .push("expected the binder's summary line (`... in N us`) in the kernel log".into());
    }
    if !scenario.binder_speaks && !binder.is_empty() {
        problems.push(format!(
            "expected the binder to log nothing; it logged {} lines",
            binder.len()
        ));
    }
    if scenario.binder_errors.is_empty() && scenario.binder_speaks {
        if let Some((_, text)) = binder.iter().find(|(level, _)| *level <= 3) {
            problems.push(format!("unexpected binder error: {text}"));
        }
    }
    for words in scenario.binder_says {
        if !binder
            .iter()
            .any(|(_, text)| words.iter().all(|word| text.contains(word)))
        {
            problems.push(format!("expected a binder line containing {words:?}"));
        }
    }
}

/// The test hook's records, exactly and in order.
fn check_guest_lines(scenario: &Scenario, state: &GuestState, problems: &mut Vec<String>) {
    let guest_lines: Vec<&str> = state
        .kmsg
        .iter()
        .map(|(_, text)| text.as_str())
        .filter(|text| text.starts_with("vfio-test: "))
        .collect();
    if guest_lines != scenario.guest_says {
        problems.push(format!(
            "expected the test hook's lines {:?}, found {guest_lines:?}",
            scenario.guest_says
        ));
    }
}

/// The console: the functions the binder had to reach first were never probed by their
/// native driver.
fn check_untouched(scenario: &Scenario, console: &str, problems: &mut Vec<String>) {
    for (address, driver) in scenario.untouched {
        let full = super::report::full_address(address);
        if let Some(line) = console
            .lines()
            .filter(|line| !line.starts_with("fn ") && !line.starts_with("kmsg "))
            .find(|line| {
                line.contains(&full) && line.contains(driver) && !line.contains("vfio-bind")
            })
        {
            problems.push(format!(
                "{address}: {driver} probed it before the binder ran: {}",
                line.trim()
            ));
        }
    }
}

/// The console line that proves the scenario's precondition.
fn check_console_words(scenario: &Scenario, console: &str, problems: &mut Vec<String>) {
    if !scenario.console.is_empty()
        && !console
            .lines()
            .any(|line| scenario.console.iter().all(|word| line.contains(word)))
    {
        problems.push(format!(
            "expected a console line containing {:?}",
            scenario.console
        ));
    }
}

/// No kernel BUG or Oops, no binder line dropped by the rate limit, no reporter error.
fn check_kernel_log(state: &GuestState, problems: &mut Vec<String>) {
    for (_, text) in &state.kmsg {
        if text.contains("BUG:") || text.contains("Oops") {
            problems.push(format!("kernel: {text}"));
        }
        // printk.devkmsg=ratelimit drops a process's records past a burst of 10 and says
        // so under the process's name.
        if text.starts_with("vfio-bind") && text.contains("suppressed") {
            problems.push(format!("the kernel dropped binder lines: {text}"));
        }
    }
    for error in &state.errors {
        problems.push(format!("reporter: {error}"));
    }
}

/// On a systemd image, the binder's unit order; where the driver is forced early, that
/// dracut-pre-udev.service ran.
fn check_units(scenario: &Scenario, state: &GuestState, problems: &mut Vec<String>) {
    problems.extend(unit_order(state));
    if scenario.forced_driver {
        if state.units.is_empty() {
            problems.push("expected systemd's report of the unit order; there was none".into());
        } else if state
            .unit_time(PRE_UDEV, "InactiveExitTimestampMonotonic")
            .is_none()
        {
            problems.push(format!(
                "expected {PRE_UDEV} (which loads rd.driver.pre=) to have run; systemd never started it"
            ));
        }
    }
}

const BINDER_UNIT: &str = "vfio-bind.service";
const PRE_UDEV: &str = "dracut-pre-udev.service";
/// Units that can load a GPU driver, which the binder's unit must be done before:
/// dracut's two run cmdline hooks and rd.driver.pre= (force_drivers+=).
const LOADS_DRIVERS: [&str; 2] = ["dracut-cmdline.service", PRE_UDEV];
/// What the unit must declare it runs before (systemd's `Before=` property also lists
/// the units that are ordered after it, such as the test's reporter).
const DECLARED_BEFORE: [&str; 6] = [
    "systemd-modules-load.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "sysinit.target",
    "dracut-cmdline.service",
    PRE_UDEV,
];

/// On a systemd-based image (the report carries systemd's view of the units): the binder's
/// unit became active, declares its ordering, and every driver-loading unit that ran started
/// no earlier than the binder's unit was done. The outcome alone cannot show this: under
/// emulation the binder wins an unordered race by chance.
fn unit_order(state: &GuestState) -> Vec<String> {
    let mut problems = Vec::new();
    if state.units.is_empty() {
        return problems;
    }
    let before = state.unit_property(BINDER_UNIT, "Before").unwrap_or("");
    for unit in DECLARED_BEFORE {
        if !before.split_whitespace().any(|word| word == unit) {
            problems.push(format!(
                "{BINDER_UNIT}: expected Before= to include {unit}; systemd says Before={before}"
            ));
        }
    }
    let Some(done) = state.unit_time(BINDER_UNIT, "ActiveEnterTimestampMonotonic") else {
        problems.push(format!(
            "{BINDER_UNIT} never became active (ActiveState={})",
            state
                .unit_property(BINDER_UNIT, "ActiveState")
                .unwrap_or("?")
        ));
        return problems;
    };
    for unit in LOADS_DRIVERS {
        if let Some(started) = state.unit_time(unit, "InactiveExitTimestampMonotonic") {
            if started < done {
                problems.push(format!(
                    "{unit} started at {started} us, before {BINDER_UNIT} was done at {done} us"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::report::parse;

    fn twins(d4: &str, d5: &str, o5: &str, extra: &str) -> String {
        format!(
            "vfio-test: begin\n\
             fn 0000:00:04.0 1234:1111 {d4} - 1\n\
             fn 0000:00:04.1 8086:293e snd_hda_intel - 1\n\
             fn 0000:00:05.0 1234:1111 {d5} {o5} 2\n\
             fn 0000:00:05.1 8086:293e {d5h} {o5} 2\n\
             {extra}\
             vfio-test: end\n",
            d5h = if d5 == "vfio-pci" {
                "vfio-pci"
            } else {
                "snd_hda_intel"
            }
        )
    }

    #[test]
    fn twins_pass_when_the_second_card_is_taken_whole() {
        let report = twins(
            "bochs-drm",
            "vfio-pci",
            "vfio-pci",
            "group 2 viable\nbars 0000:00:05.0 mapped\nbars 0000:00:05.1 mapped\n\
             kmsg 6 vfio-bind: 1 of 1 rules applied, 2 functions on vfio-pci in 900 us\n",
        );
        let state = parse(&report).unwrap();
        assert_eq!(check(&SCENARIOS[0], &state, ""), Vec::<String>::new());
    }

    #[test]
    fn viable_is_not_enough_when_a_bar_does_not_map() {
        // What the guest said on a UEFI boot before the binder released the framebuffer.
        let report = twins(
            "bochs-drm",
            "vfio-pci",
            "vfio-pci",
            "group 2 viable\nbars 0000:00:05.0 BAR0:EBUSY\nbars 0000:00:05.1 mapped\n\
             iomem   c0000000-c0ffffff : 0000:00:05.0\niomem     c0000000-c03e7fff : efifb\n\
             kmsg 6 vfio-bind: 1 of 1 rules applied, 2 functions on vfio-pci in 900 us\n",
        );
        let state = parse(&report).unwrap();
        assert_eq!(
            check(&SCENARIOS[0], &state, ""),
            ["00:05.0: expected bars mapped (every BAR mmapped through VFIO, as QEMU does); found BAR0:EBUSY"]
        );
        // No bars line at all (the reporter could not open the device): a failure too.
        let report = twins(
            "bochs-drm",
            "vfio-pci",
            "vfio-pci",
            "group 2 viable\nbars 0000:00:05.1 mapped\n\
             kmsg 6 vfio-bind: 1 of 1 rules applied, 2 functions on vfio-pci in 900 us\n",
        );
        let problems = check(&SCENARIOS[0], &parse(&report).unwrap(), "");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].ends_with("found -"), "{problems:?}");
    }

    #[test]
    fn a_group_expected_not_viable_needs_no_mapped_bars() {
        let ids_only = SCENARIOS.iter().find(|s| s.number == 8).unwrap();
        let report = "vfio-test: begin\n\
             fn 0000:00:04.0 1234:1111 bochs-drm - 1\n\
             fn 0000:00:04.1 8086:293e vfio-pci vfio-pci 1\n\
             fn 0000:00:05.0 1234:1111 bochs-drm - 2\n\
             fn 0000:00:05.1 8086:293e vfio-pci vfio-pci 2\n\
             group 1 not-viable\ngroup 2 not-viable\n\
             bars 0000:00:04.1 group-not-viable\nbars 0000:00:05.1 group-not-viable\n\
             kmsg 6 vfio-bind: 1 of 1 rules applied, 2 functions on vfio-pci in 900 us\n\
             vfio-test: end\n";
        assert_eq!(
            check(ids_only, &parse(report).unwrap(), ""),
            Vec::<String>::new()
        );
    }

    #[test]
    fn uefi_runtime_needs_the_console_back_on_the_boot_display() {
        let runtime = SCENARIOS.iter().find(|s| s.number == 19).unwrap();
        let report = |consoles: &str| {
            let hook: String = runtime
                .guest_says
                .iter()
                .map(|line| format!("kmsg 6 {line}\n"))
                .collect();
            format!(
                "vfio-test: begin\n\
                 fn 0000:00:04.0 1234:1111 bochs-drm - 1\n\
                 fn 0000:00:04.1 8086:293e snd_hda_intel - 1\n\
                 fn 0000:00:05.0 1234:1111 bochs-drm - 2\n\
                 fn 0000:00:05.1 8086:293e snd_hda_intel - 2\n\
                 {consoles}{hook}vfio-test: end\n"
            )
        };
        let console = "vfio-bind: released the boot console for 0000:00:04.0: vtcon1\n";
        let back = "fb fb0 0000:00:04.0\nfb fb1 0000:00:05.0\n\
                    vtcon vtcon0 0 (S) dummy device\nvtcon vtcon1 1 (M) frame buffer device\n";
        assert_eq!(
            check(runtime, &parse(&report(back)).unwrap(), console),
            Vec::<String>::new()
        );
        // A release that gave the card back but not the console.
        let left = "fb fb0 0000:00:04.0\nfb fb1 0000:00:05.0\n\
                    vtcon vtcon0 1 (S) dummy device\nvtcon vtcon1 0 (M) frame buffer device\n";
        let problems = check(runtime, &parse(&report(left)).unwrap(), console);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("expected the console back on the boot display 00:04.0"));
        assert!(problems[0].contains("vtcon1 (M) frame buffer device unbound"));
    }

    #[test]
    fn uefi_cards_boot_with_ovmf_and_the_rest_with_seabios() {
        for scenario in SCENARIOS {
            let uefi = scenario.name.starts_with("UEFI");
            assert_eq!(
                scenario.cards.firmware() == Firmware::Uefi,
                uefi,
                "scenario {}",
                scenario.number
            );
        }
        let vga = Cards::UefiVga.qemu_args().join(" ");
        assert_eq!(
            vga,
            "-device VGA,addr=04.0,multifunction=on -device ich9-intel-hda,addr=04.1"
        );
    }

    #[test]
    fn twins_fail_when_the_card_kept_its_driver() {
        let report = twins("bochs-drm", "bochs-drm", "-", "");
        let state = parse(&report).unwrap();
        let problems = check(&SCENARIOS[0], &state, "");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("00:05.0: expected driver vfio-pci")));
        assert!(problems.iter().any(|p| p.contains("summary")));
    }

    #[test]
    fn guard_mismatch_needs_the_error_line() {
        let report = twins(
            "bochs-drm",
            "bochs-drm",
            "-",
            "kmsg 3 vfio-bind: 1002:73ff@00:05: expected 1002:73ff, found 1234:1111\nkmsg 3 vfio-bind: 0 of 1 rules applied in 10 us\n",
        );
        let state = parse(&report).unwrap();
        assert_eq!(check(&SCENARIOS[2], &state, ""), Vec::<String>::new());
    }

    fn forced() -> &'static Scenario {
        SCENARIOS.iter().find(|s| s.forced_driver).unwrap()
    }

    /// Systemd's lines for the binder's unit done at `done` us and dracut-pre-udev started
    /// at `pre_udev` us, with the binder's unit declaring `before`.
    fn units(done: u64, pre_udev: u64, before: &str) -> String {
        format!(
            "unit vfio-bind.service ActiveEnterTimestampMonotonic={done}\n\
             unit vfio-bind.service ActiveState=active\n\
             unit vfio-bind.service Before={before}\n\
             unit dracut-cmdline.service InactiveExitTimestampMonotonic={cmdline}\n\
             unit dracut-pre-udev.service InactiveExitTimestampMonotonic={pre_udev}\n",
            cmdline = pre_udev.saturating_sub(10),
        )
    }

    const FULL_BEFORE: &str = "systemd-modules-load.service systemd-udevd.service \
        systemd-udev-trigger.service sysinit.target dracut-cmdline.service \
        dracut-pre-udev.service vfio-test-report.service";
    const SUMMARY: &str = "group 2 viable\nbars 0000:00:05.0 mapped\nbars 0000:00:05.1 mapped\n\
        kmsg 6 vfio-bind: 1 of 1 rules applied, 2 functions on vfio-pci in 900 us\n";

    #[test]
    fn forced_driver_passes_when_the_binder_was_done_before_dracut_started() {
        let extra = format!("{SUMMARY}{}", units(2_000, 2_500, FULL_BEFORE));
        let state = parse(&twins("bochs-drm", "vfio-pci", "vfio-pci", &extra)).unwrap();
        assert_eq!(check(forced(), &state, ""), Vec::<String>::new());
    }

    #[test]
    fn forced_driver_fails_on_a_race_won_by_chance() {
        // The old unit: the right outcome, but dracut's units started while the binder ran
        // and the unit never asked to come first.
        let old_before = "systemd-modules-load.service systemd-udevd.service \
            systemd-udev-trigger.service sysinit.target vfio-test-report.service";
        let extra = format!("{SUMMARY}{}", units(2_000, 1_900, old_before));
        let state = parse(&twins("bochs-drm", "vfio-pci", "vfio-pci", &extra)).unwrap();
        let problems = check(forced(), &state, "");
        assert!(problems.iter().any(|p| p
            .starts_with("dracut-pre-udev.service started at 1900 us, before vfio-bind.service")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("dracut-cmdline.service started at 1890 us")));
        assert!(problems
            .iter()
            .any(|p| p.contains("expected Before= to include dracut-pre-udev.service")));
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn forced_driver_fails_without_the_race_or_systemds_report() {
        let state = parse(&twins("bochs-drm", "vfio-pci", "vfio-pci", SUMMARY)).unwrap();
        assert_eq!(
            check(forced(), &state, ""),
            ["expected systemd's report of the unit order; there was none"]
        );
        let extra = format!("{SUMMARY}{}", units(2_000, 0, FULL_BEFORE));
        let state = parse(&twins("bochs-drm", "vfio-pci", "vfio-pci", &extra)).unwrap();
        assert_eq!(
            check(forced(), &state, ""),
            ["expected dracut-pre-udev.service (which loads rd.driver.pre=) to have run; systemd never started it"]
        );
    }

    #[test]
    fn every_systemd_boot_is_judged_by_the_unit_order() {
        // Scenario 1 on a systemd image: the same order is required.
        let extra = format!("{SUMMARY}{}", units(2_000, 1_000, FULL_BEFORE));
        let state = parse(&twins("bochs-drm", "vfio-pci", "vfio-pci", &extra)).unwrap();
        assert_eq!(check(&SCENARIOS[0], &state, "").len(), 2);
        // A unit that never ran (condition false) was not raced.
        let extra = format!(
            "{SUMMARY}unit vfio-bind.service ActiveEnterTimestampMonotonic=0\n\
             unit vfio-bind.service ActiveState=inactive\n\
             unit vfio-bind.service Before={FULL_BEFORE}\n"
        );
        let state = parse(&twins("bochs-drm", "vfio-pci", "vfio-pci", &extra)).unwrap();
        assert_eq!(
            check(&SCENARIOS[0], &state, ""),
            ["vfio-bind.service never became active (ActiveState=inactive)"]
        );
    }

    #[test]
    fn forced_driver_runs_on_dracut_systemd_alone() {
        for generator in crate::vm::image::ALL_GENERATORS {
            assert_eq!(
                forced().runs_on(generator),
                generator == Generator::DracutSystemd,
                "{generator}"
            );
        }
    }

    /// The renumbering scenarios compare like with like: each pair boots the same rule text
    /// on the two topologies, the path pair names the same root port both times, and the
    /// bus pair names a different one each time.
    #[test]
    fn renumbering_scenarios_pair_up() {
        let by_number = |n: u8| SCENARIOS.iter().find(|s| s.number == n).unwrap();
        let root_port = |s: &Scenario| s.console[0].split(": PCI bridge").next().unwrap();
        for (first, second, same_twin) in [(12, 13, true), (14, 15, false)] {
            let (first, second) = (by_number(first), by_number(second));
            assert_eq!(first.append, second.append);
            assert_eq!(first.cards, Cards::RootPortTwins);
            assert_eq!(second.cards, Cards::RootPortTwinsUsbFirst);
            assert_eq!(root_port(first) == root_port(second), same_twin);
        }
        let args = Cards::RootPortTwinsUsbFirst.qemu_args().join(" ");
        assert!(args.starts_with("-device pcie-root-port,id=rp1b,bus=pcie.0,addr=1b.0,chassis=3 -device qemu-xhci,bus=rp1b,addr=00.0 "));
        assert!(args.ends_with("-device bochs-display,bus=rp1d,addr=00.0"));
    }

    #[test]
    fn command_lines_carry_iommu_generator_and_rule() {
        let line = command_line(&SCENARIOS[0], Generator::Dracut);
        assert!(line.starts_with("console=ttyS0 panic=-1 no_timer_check intel_iommu=on "));
        assert!(line.contains("rd.driver.pre=bochs"));
        assert!(line.ends_with("vfio.bind=1234:1111@00:05"));
        assert!(command_line(&SCENARIOS[5], Generator::Mkinitcpio).contains("intel_iommu=off"));
    }
}
