//! Reading `/proc/iomem`: which claims sit inside a PCI function's BARs. Pure, heap-free.
//!
//! The kernel prints the iomem resource tree one resource a line, `start-end : name`, each
//! nesting level indented by two more spaces (`r_show()` in kernel/resource.c). A PCI BAR is
//! a resource named after its function (`c0000000-c0ffffff : 0000:00:02.0`, from
//! `pci_setup_device()`), and whoever later requests part of it appears nested below it:
//! efifb requests `efifb`, vesafb `vesafb`, the fbdev simplefb `simplefb`, simpledrm
//! `simpledrm`, and the kernel's sysfb inserts its simple-framebuffer device's memory as
//! `BOOTFB` (drivers/firmware/sysfb_simplefb.c). vfio-pci requests `vfio` when it maps a BAR.
//!
//! Anything nested in a BAR stops vfio-pci from requesting that BAR for a VM: the kernel's
//! `__request_region()` refuses a range that overlaps a child it cannot descend into. That is
//! the EBUSY behind QEMU's "BAR 0: can't reserve".
//!
//! Without CAP_SYS_ADMIN the kernel prints every range as `00000000-00000000`; the names and
//! the indentation are still real, so nesting can be read, but ranges cannot be compared.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use core::fmt;

/// One line of `/proc/iomem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'t> {
    /// Nesting level: 0 at the top, one more for every two spaces of indentation.
    pub depth: usize,
    pub start: u64,
    pub end: u64,
    pub name: &'t str,
}

/// Parses one line; `None` for a line that is not `start-end : name`.
pub fn parse_line(line: &str) -> Option<Entry<'_>> {
    let trimmed = line.trim_start_matches(' ');
    let indent = line.len() - trimmed.len();
    let (range, name) = trimmed.split_once(" : ")?;
    let (start, end) = range.split_once('-')?;
    let hex = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
    };
    Some(Entry {
        depth: indent / 2,
        start: hex(start)?,
        end: hex(end)?,
        name: name.trim_end(),
    })
}

/// Every well-formed line of an iomem text, in order.
pub fn entries(text: &str) -> impl Iterator<Item = Entry<'_>> {
    text.lines().filter_map(parse_line)
}

/// Whether the ranges are hidden (every range reads 0-0, as for a reader without
/// CAP_SYS_ADMIN). Nesting is still real then; ranges cannot be compared.
pub fn ranges_hidden(text: &str) -> bool {
    let mut any = false;
    for entry in entries(text) {
        any = true;
        if entry.start != 0 || entry.end != 0 {
            return false;
        }
    }
    any
}

/// A framebuffer the firmware set up and a kernel driver took over before any GPU driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareFramebuffer {
    /// `efifb`: the EFI GOP framebuffer, platform device `efi-framebuffer.N`.
    Efifb,
    /// `vesafb`: the VESA framebuffer, platform device `vesa-framebuffer.N`.
    Vesafb,
    /// `simplefb`: the fbdev driver of a `simple-framebuffer.N` platform device.
    Simplefb,
    /// `simpledrm`: the DRM driver of a `simple-framebuffer.N` platform device.
    Simpledrm,
    /// `BOOTFB`: the memory of sysfb's `simple-framebuffer.N` device itself. It stays while
    /// the device is registered, whichever driver is unbound; only the kernel removes it.
    Bootfb,
}

impl FirmwareFramebuffer {
    pub fn from_claim(name: &str) -> Option<Self> {
        Some(match name {
            "efifb" => Self::Efifb,
            "vesafb" => Self::Vesafb,
            "simplefb" => Self::Simplefb,
            "simpledrm" => Self::Simpledrm,
            "BOOTFB" => Self::Bootfb,
            _ => return None,
        })
    }

    /// The platform device's name up to its number: `efi-framebuffer.` for `efi-framebuffer.0`.
    pub fn device_prefix(self) -> &'static str {
        match self {
            Self::Efifb => "efi-framebuffer.",
            Self::Vesafb => "vesa-framebuffer.",
            Self::Simplefb | Self::Simpledrm | Self::Bootfb => "simple-framebuffer.",
        }
    }

    /// Whether unbinding the platform device from its driver frees the BAR. Not for
    /// `BOOTFB`: the device's own resource stays in the tree until the kernel unregisters it.
    pub fn released_by_unbinding(self) -> bool {
        !matches!(self, Self::Bootfb)
    }

    /// What the kernel command line can do instead, when the binder cannot act.
    pub fn kernel_remedy(self) -> &'static str {
        match self {
            Self::Efifb => "video=efifb:off",
            Self::Vesafb => "video=vesafb:off",
            Self::Simplefb | Self::Simpledrm | Self::Bootfb => "initcall_blacklist=sysfb_init",
        }
    }
}

/// What holds part of a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimKind {
    Framebuffer(FirmwareFramebuffer),
    /// vfio-pci's own claim while a VM maps the BAR: what should be there.
    Vfio,
    /// Anything else: a driver that requested the region, or something unknown.
    Other,
}

impl ClaimKind {
    pub fn of(name: &str) -> Self {
        match name {
            "vfio" | "vfio-pci" => Self::Vfio,
            _ => FirmwareFramebuffer::from_claim(name).map_or(Self::Other, Self::Framebuffer),
        }
    }
}

/// A resource nested directly in one of a function's BARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim<'t> {
    /// The BAR's range, as iomem shows it (0-0 when hidden).
    pub bar: (u64, u64),
    pub start: u64,
    pub end: u64,
    pub name: &'t str,
    pub kind: ClaimKind,
}

impl Claim<'_> {
    /// Everything but vfio's own claim keeps a VM from mapping the BAR.
    pub fn blocks_a_vm(&self) -> bool {
        self.kind != ClaimKind::Vfio
    }
}

/// The deepest indentation the kernel prints: `r_show()` stops counting levels at
/// MAX_IORES_LEVEL (5), so anything deeper is printed at that depth too.
pub const MAX_SHOWN_DEPTH: usize = 5;

/// The resources nested directly below each BAR named `address` (e.g. `0000:00:02.0`), in
/// iomem order. Deeper entries belong to the claim they are nested in (simpledrm's region
/// inside `BOOTFB`), so the claim that matters is the outermost one. A BAR printed at
/// [`MAX_SHOWN_DEPTH`] (a card behind several switches) has its claims printed at the same
/// depth: those are told by their range lying inside the BAR's, which needs ranges shown.
pub fn claims_in<'t>(text: &'t str, address: &'t str) -> impl Iterator<Item = Claim<'t>> + 't {
    let mut bar: Option<(usize, u64, u64)> = None;
    entries(text).filter_map(move |entry| {
        if let Some((depth, start, end)) = bar {
            let capped_child = depth == MAX_SHOWN_DEPTH
                && entry.depth == depth
                && end != 0
                && start <= entry.start
                && entry.end <= end
                && entry.name != address;
            if entry.depth == depth + 1 || capped_child {
                return Some(Claim {
                    bar: (start, end),
                    start: entry.start,
                    end: entry.end,
                    name: entry.name,
                    kind: ClaimKind::of(entry.name),
                });
            }
            if entry.depth > depth {
                return None;
            }
            bar = None;
        }
        if entry.name == address {
            bar = Some((entry.depth, entry.start, entry.end));
        }
        None
    })
}

/// Firmware framebuffers that are not nested in any PCI function's BAR, with ranges hidden:
/// where they lie cannot be told (the binder does not guess). With ranges visible, a
/// framebuffer outside every BAR is in no card's way.
pub fn unplaced_framebuffers(text: &str) -> impl Iterator<Item = Entry<'_>> {
    let hidden = ranges_hidden(text);
    // The depth of the PCI function entry we are inside, if any.
    let mut inside: Option<usize> = None;
    entries(text).filter(move |entry| {
        if inside.is_some_and(|depth| entry.depth <= depth) {
            inside = None;
        }
        if inside.is_none()
            && entry
                .name
                .parse::<crate::rules::address::PciAddress>()
                .is_ok()
        {
            inside = Some(entry.depth);
            return false;
        }
        hidden && inside.is_none() && FirmwareFramebuffer::from_claim(entry.name).is_some()
    })
}

/// A claim shown for people: `efifb at c0000000-c02fffff`, or just the name when hidden.
pub struct ClaimShown<'a, 't>(pub &'a Claim<'t>);

impl fmt::Display for ClaimShown<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let claim = self.0;
        if claim.start == 0 && claim.end == 0 {
            write!(f, "{}", claim.name)
        } else {
            write!(
                f,
                "{} at {:x}-{:x} (BAR {:x}-{:x})",
                claim.name, claim.start, claim.end, claim.bar.0, claim.bar.1
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UEFI boot of QEMU q35 with OVMF: efifb holds the start of bochs-display's BAR0.
    const OVMF_BOOT: &str = "\
00000000-00000fff : Reserved
00001000-0009ffff : System RAM
000a0000-000bffff : PCI Bus 0000:00
00100000-7fffffff : System RAM
  2c000000-2cc02016 : Kernel code
80000000-afffffff : PCI Bus 0000:00
  80000000-80ffffff : 0000:00:02.0
    80000000-802fffff : efifb
  81000000-81000fff : 0000:00:02.0
  81001000-81001fff : 0000:00:03.0
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
  b0000000-bfffffff : Reserved
c0000000-febfffff : PCI Bus 0000:00
  c0000000-c0ffffff : 0000:00:03.0
";

    fn names<'t>(claims: impl Iterator<Item = Claim<'t>>) -> Vec<&'t str> {
        claims.map(|claim| claim.name).collect()
    }

    #[test]
    fn lines_parse_with_their_depth_and_range() {
        assert_eq!(
            parse_line("    80000000-802fffff : efifb"),
            Some(Entry {
                depth: 2,
                start: 0x8000_0000,
                end: 0x802f_ffff,
                name: "efifb"
            })
        );
        assert_eq!(parse_line("not a range"), None);
        assert_eq!(parse_line("zz-10 : x"), None);
        assert_eq!(parse_line("10-20: x"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn efifb_is_found_in_the_boot_cards_bar_and_nowhere_else() {
        let claims: Vec<Claim> = claims_in(OVMF_BOOT, "0000:00:02.0").collect();
        assert_eq!(claims.len(), 1);
        assert_eq!(
            claims[0].kind,
            ClaimKind::Framebuffer(FirmwareFramebuffer::Efifb)
        );
        assert_eq!(claims[0].bar, (0x8000_0000, 0x80ff_ffff));
        assert!(claims[0].blocks_a_vm());
        assert!(names(claims_in(OVMF_BOOT, "0000:00:03.0")).is_empty());
        assert!(names(claims_in(OVMF_BOOT, "0000:00:04.0")).is_empty());
        assert!(!ranges_hidden(OVMF_BOOT));
        assert_eq!(unplaced_framebuffers(OVMF_BOOT).count(), 0);
    }

    #[test]
    fn a_card_behind_a_bridge_and_sysfb_bootfb_with_simpledrm_inside() {
        let text = "\
80000000-efffffff : PCI Bus 0000:00
  e0000000-efffffff : PCI Bus 0000:01
    e0000000-efffffff : 0000:01:00.0
      e0000000-e07e8fff : BOOTFB
        e0000000-e07e8fff : simpledrm
  f0000000-f01fffff : PCI Bus 0000:01
    f0000000-f001ffff : 0000:01:00.0
    f0020000-f0023fff : 0000:01:00.1
      f0020000-f0023fff : ICH HD audio
";
        let claims: Vec<Claim> = claims_in(text, "0000:01:00.0").collect();
        assert_eq!(names(claims.iter().copied()), ["BOOTFB"]);
        assert_eq!(
            claims[0].kind,
            ClaimKind::Framebuffer(FirmwareFramebuffer::Bootfb)
        );
        assert!(!FirmwareFramebuffer::Bootfb.released_by_unbinding());
        let audio: Vec<Claim> = claims_in(text, "0000:01:00.1").collect();
        assert_eq!(names(audio.iter().copied()), ["ICH HD audio"]);
        assert_eq!(audio[0].kind, ClaimKind::Other);
    }

    #[test]
    fn a_bar_at_the_deepest_printed_level_still_shows_its_claims_by_range() {
        // A GPU behind a root port and two switch levels: the BAR is at depth 5 and the
        // kernel prints efifb, one level deeper, at depth 5 too.
        let text = "\
80000000-efffffff : PCI Bus 0000:00
  e0000000-efffffff : PCI Bus 0000:0a
    e0000000-efffffff : PCI Bus 0000:0b
      e0000000-efffffff : PCI Bus 0000:0c
        e0000000-efffffff : PCI Bus 0000:0d
          e0000000-e0ffffff : 0000:0d:00.0
          e0000000-e07e8fff : efifb
          e1000000-e100ffff : 0000:0d:00.1
";
        assert_eq!(names(claims_in(text, "0000:0d:00.0")), ["efifb"]);
        assert!(names(claims_in(text, "0000:0d:00.1")).is_empty());
        // Hidden ranges at that depth cannot be told apart: nothing is claimed.
        let hidden = text
            .lines()
            .map(|line| {
                let (indent, rest) = line.split_at(line.len() - line.trim_start().len());
                let name = rest.split_once(" : ").unwrap().1;
                format!("{indent}00000000-00000000 : {name}\n")
            })
            .collect::<String>();
        assert!(names(claims_in(&hidden, "0000:0d:00.0")).is_empty());
    }

    #[test]
    fn vfios_own_claim_does_not_block() {
        let text = "\
80000000-afffffff : PCI Bus 0000:00
  80000000-80ffffff : 0000:00:02.0
    80000000-80ffffff : vfio
";
        let claims: Vec<Claim> = claims_in(text, "0000:00:02.0").collect();
        assert_eq!(claims[0].kind, ClaimKind::Vfio);
        assert!(!claims[0].blocks_a_vm());
    }

    #[test]
    fn hidden_ranges_still_show_nesting_but_cannot_place_a_loose_framebuffer() {
        let text = "\
00000000-00000000 : System RAM
00000000-00000000 : PCI Bus 0000:00
  00000000-00000000 : 0000:00:02.0
    00000000-00000000 : efifb
  00000000-00000000 : 0000:00:03.0
00000000-00000000 : vesafb
";
        assert!(ranges_hidden(text));
        let claims: Vec<Claim> = claims_in(text, "0000:00:02.0").collect();
        assert_eq!(names(claims.iter().copied()), ["efifb"]);
        assert_eq!(ClaimShown(&claims[0]).to_string(), "efifb");
        let loose: Vec<&str> = unplaced_framebuffers(text).map(|e| e.name).collect();
        assert_eq!(loose, ["vesafb"]);
        // With real ranges, a framebuffer outside every BAR is in no card's way.
        assert_eq!(unplaced_framebuffers("a0000-bffff : vesafb\n").count(), 0);
    }

    #[test]
    fn claim_names_map_to_the_kernels_platform_devices() {
        let cases = [
            ("efifb", "efi-framebuffer.", "video=efifb:off"),
            ("vesafb", "vesa-framebuffer.", "video=vesafb:off"),
            (
                "simplefb",
                "simple-framebuffer.",
                "initcall_blacklist=sysfb_init",
            ),
            (
                "simpledrm",
                "simple-framebuffer.",
                "initcall_blacklist=sysfb_init",
            ),
        ];
        for (name, prefix, remedy) in cases {
            let kind = FirmwareFramebuffer::from_claim(name).unwrap();
            assert_eq!(kind.device_prefix(), prefix);
            assert_eq!(kind.kernel_remedy(), remedy);
            assert!(kind.released_by_unbinding());
        }
        assert_eq!(FirmwareFramebuffer::from_claim("amdgpu"), None);
    }
}
