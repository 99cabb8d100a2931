//! The passthrough doctor behind `vfio-bind check`: why a card on vfio-pci may still fail a
//! VM. Each check is a pure function over what [`crate::doctor::host`] read (sysfs attributes,
//! /proc files, module lists, image bytes), returning findings with their fix.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use crate::doctor::image::Image;
use crate::rules::address::PciAddress;
use crate::rules::rule::Rule;
use crate::rules::ruleset::RuleSet;

/// How bad a finding is. A `Problem` makes `check` exit 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Warning,
    Problem,
}

impl Severity {
    /// The word `check` starts the line with (all seven characters wide).
    pub fn word(self) -> &'static str {
        match self {
            Severity::Ok => "ok     ",
            Severity::Warning => "warning",
            Severity::Problem => "PROBLEM",
        }
    }
}

/// One finding: what was seen, and what to do about it (`None` when nothing is to be done).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// What it is about: a function's address, `kernel`, `initramfs`, `boot`.
    pub subject: String,
    pub text: String,
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(severity: Severity, subject: impl Into<String>, text: impl Into<String>) -> Self {
        Finding {
            severity,
            subject: subject.into(),
            text: text.into(),
            fix: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// A function's `reset_method` attribute (Linux 5.15+), as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetMethod {
    /// The methods the kernel will try, e.g. `flr bus`; empty: none.
    Methods(String),
    /// The attribute does not exist: an older kernel, or (since 5.15) no method at all.
    Absent,
}

/// Warns about every function the kernel cannot reset between VM runs.
pub fn reset(address: PciAddress, vendor: Option<u16>, method: &ResetMethod) -> Option<Finding> {
    let methods = match method {
        ResetMethod::Methods(methods) => methods.trim(),
        ResetMethod::Absent => "",
    };
    if !methods.is_empty() {
        return None;
    }
    let seen = match method {
        ResetMethod::Methods(_) => "its reset_method is empty",
        ResetMethod::Absent => "it has no reset_method attribute",
    };
    let amd = if vendor == Some(0x1002) {
        "; for AMD cards the vendor-reset module adds one"
    } else {
        ""
    };
    Some(
        Finding::new(
            Severity::Warning,
            address.to_string(),
            format!("{address}: the kernel has no way to reset it between VM runs ({seen}): a second VM start may find it dead"),
        )
        .fix(format!("a bus reset needs the card alone behind its bridge (then reset_method lists bus){amd}; otherwise reboot the host between VM runs")),
    )
}

/// What the kernel shows about interrupt remapping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterruptRemapping {
    /// Interrupt chips named in /proc/interrupts with the `IR-` prefix (remapped MSI,
    /// IO-APIC): remapping is in use. `None`: /proc/interrupts could not be read.
    pub remapped_chips: Option<usize>,
    /// Intel VT-d units (`/sys/class/iommu/dmarN/intel-iommu/ecap`): whether each
    /// advertises interrupt remapping (ecap bit 3).
    pub intel_units_with_ir: Vec<bool>,
    /// AMD-Vi units (`/sys/class/iommu/ivhdN`).
    pub amd_units: usize,
    /// `vfio_iommu_type1`'s `allow_unsafe_interrupts` parameter, when the module is loaded.
    pub allow_unsafe_interrupts: Option<bool>,
}

/// Whether vfio_iommu_type1 will assign devices: it refuses without interrupt remapping
/// unless `allow_unsafe_interrupts=1`.
pub fn interrupt_remapping(seen: &InterruptRemapping) -> Option<Finding> {
    let units = seen.intel_units_with_ir.len() + seen.amd_units;
    if units == 0 {
        // No IOMMU unit: the IOMMU finding says what to do.
        return None;
    }
    let subject = "kernel";
    if seen.remapped_chips.is_some_and(|chips| chips > 0) {
        return Some(Finding::new(
            Severity::Ok,
            subject,
            "interrupt remapping is on (IR- interrupt chips in /proc/interrupts)",
        ));
    }
    let hardware = if seen.intel_units_with_ir.iter().any(|ir| !ir) {
        "a VT-d unit does not offer it (ecap bit 3 is clear)"
    } else if seen.remapped_chips.is_none() {
        "/proc/interrupts could not be read"
    } else {
        "no interrupt chip in /proc/interrupts is remapped (IR-)"
    };
    if seen.allow_unsafe_interrupts == Some(true) {
        return Some(Finding::new(
            Severity::Warning,
            subject,
            format!("interrupt remapping is off ({hardware}); vfio_iommu_type1.allow_unsafe_interrupts=1 lets VMs start anyway, without protection against a device forging interrupts"),
        ));
    }
    Some(
        Finding::new(
            Severity::Problem,
            subject,
            format!("interrupt remapping is off ({hardware}), so vfio_iommu_type1 refuses to assign devices to a VM"),
        )
        .fix("enable interrupt remapping in the firmware (it comes with VT-d/AMD-Vi; do not boot with intremap=off), or accept the risk with vfio_iommu_type1.allow_unsafe_interrupts=1"),
    )
}

/// Where a kernel module is for the running kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModulePlace {
    BuiltIn,
    Module,
    Missing,
    /// The module lists could not be read.
    Unknown,
}

/// Finds a module in `modules.builtin` and `modules.dep` text (names with `-` or `_`).
pub fn module_place(module: &str, builtin: Option<&str>, dep: Option<&str>) -> ModulePlace {
    let file = module.replace('-', "_");
    let names = |list: &str, line: &str| -> bool {
        let path = line.split(':').next().unwrap_or("");
        let base = path.rsplit('/').next().unwrap_or("");
        let stem = base.split(".ko").next().unwrap_or("");
        !list.is_empty() && stem.replace('-', "_") == file
    };
    if builtin.is_some_and(|list| list.lines().any(|line| names(list, line))) {
        return ModulePlace::BuiltIn;
    }
    if dep.is_some_and(|list| list.lines().any(|line| names(list, line))) {
        return ModulePlace::Module;
    }
    if builtin.is_none() && dep.is_none() {
        ModulePlace::Unknown
    } else {
        ModulePlace::Missing
    }
}

/// The vfio modules the binder needs, for kernel `release`.
pub fn vfio_modules(release: &str, builtin: Option<&str>, dep: Option<&str>) -> Vec<Finding> {
    ["vfio-pci", "vfio_iommu_type1"]
        .iter()
        .filter_map(|module| {
            let subject = "kernel";
            match module_place(module, builtin, dep) {
                ModulePlace::BuiltIn => Some(Finding::new(
                    Severity::Ok,
                    subject,
                    format!("{module} is built into kernel {release}"),
                )),
                ModulePlace::Module => Some(Finding::new(
                    Severity::Ok,
                    subject,
                    format!("{module} is a module of kernel {release}"),
                )),
                ModulePlace::Missing => Some(
                    Finding::new(
                        Severity::Problem,
                        subject,
                        format!("{module} is neither built into kernel {release} nor one of its modules"),
                    )
                    .fix("install a kernel built with CONFIG_VFIO_PCI and CONFIG_VFIO_IOMMU_TYPE1 (every distribution kernel is)"),
                ),
                ModulePlace::Unknown => None,
            }
        })
        .collect()
}

/// Files whose presence shows the hook in an image: the mkinitcpio runscript, the unit,
/// the dracut cmdline hook (under `usr/lib/dracut/hooks/` in dracut 059, under
/// `var/lib/dracut/hooks/` in dracut-ng), the initramfs-tools init-top script.
fn is_hook_file(name: &str) -> bool {
    name == "hooks/vfio-bind"
        || name.ends_with("systemd/system/vfio-bind.service")
        || name.ends_with("hooks/cmdline/00-vfio-bind.sh")
        || name == "scripts/init-top/00-vfio-bind"
}

fn is_binary(name: &str) -> bool {
    name == "usr/bin/vfio-bind" || name == "bin/vfio-bind"
}

/// The files of an image the doctor looks at: the binary, its hooks, the rule fragments.
pub fn wanted_in_image(name: &str) -> bool {
    is_binary(name) || is_hook_file(name) || name.starts_with("etc/cmdline.d/")
}

/// The one file of the host's `/etc/cmdline.d` that every hook copies into the image (the
/// binder reads every `*.conf` there, but at boot only what the image carries).
pub const COPIED_FRAGMENT: &str = "vfio-bind.conf";

/// A rule fragment of the host: its file name in `/etc/cmdline.d`, and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFragment {
    pub name: String,
    pub contents: Vec<u8>,
}

/// The rules of `*.conf` fragments, as the binder reads them (comment lines skipped).
fn fragment_rules<'a>(fragments: impl Iterator<Item = &'a [u8]>) -> Vec<Rule> {
    let mut rules = RuleSet::new();
    for fragment in fragments {
        for line in fragment
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.trim_ascii_start().starts_with(b"#"))
        {
            rules.add_command_line(line, &mut |_| {});
        }
    }
    rules.rules().to_vec()
}

fn rules_list(rules: &[&Rule]) -> String {
    rules
        .iter()
        .map(|rule| rule.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Is the hook in the image that booted, and do the host's `/etc/cmdline.d` rules reach the
/// binder at boot? `image` names what was read (one file, or the `initrd=` files the kernel
/// got as one); `proc_cmdline` is the running kernel's command line (a rule there applies
/// whatever the image holds: a unified kernel image's `.cmdline` puts rules there).
/// `embeds_fragments` names the booted unified kernel image when its `.cmdline` was built
/// from `/etc/cmdline.d/*.conf` (mkinitcpio does so when there is no /etc/kernel/cmdline):
/// then every fragment travels, and a rebuild brings a new one along.
pub fn booted_image(
    image: &str,
    read: &Image,
    host_fragments: &[HostFragment],
    proc_cmdline: &str,
    embeds_fragments: Option<&str>,
) -> Vec<Finding> {
    let subject = "initramfs";
    let mut findings = Vec::new();
    let files = &read.files;
    let has_binary = files.iter().any(|file| is_binary(&file.name));
    let has_hook = files.iter().any(|file| is_hook_file(&file.name));
    // A part shows what is there, never what is missing.
    let whole = read.unread.is_none();
    if let Some(unread) = &read.unread {
        findings.push(
            Finding::new(
                Severity::Warning,
                subject,
                format!("the booted image {image} was read only in part ({unread}), so what that part lacks is not judged"),
            )
            .fix("check it by hand: lsinitcpio -a, lsinitrd or lsinitramfs IMAGE | grep vfio-bind"),
        );
    }
    let rebuild = "rebuild it (mkinitcpio -P, dracut -f, or update-initramfs -u) after adding the hook as docs/initramfs.md says";
    match (has_binary, has_hook) {
        (true, true) => findings.push(Finding::new(
            Severity::Ok,
            subject,
            format!("the booted image {image} carries vfio-bind and its hook"),
        )),
        (false, _) if whole => findings.push(
            Finding::new(
                Severity::Problem,
                subject,
                format!("the booted image {image} has no /usr/bin/vfio-bind, so nothing binds at boot"),
            )
            .fix(rebuild),
        ),
        (true, false) if whole => findings.push(
            Finding::new(
                Severity::Problem,
                subject,
                format!("the booted image {image} has /usr/bin/vfio-bind but no hook or unit that runs it"),
            )
            .fix(rebuild),
        ),
        _ => {}
    }
    if !whole {
        return findings;
    }
    let in_image = fragment_rules(
        files
            .iter()
            .filter(|file| file.name.starts_with("etc/cmdline.d/"))
            .map(|file| file.contents.as_slice()),
    );
    let on_cmdline = fragment_rules([proc_cmdline.as_bytes()].into_iter());
    for fragment in host_fragments {
        let rules = fragment_rules([fragment.contents.as_slice()].into_iter());
        let missing: Vec<&Rule> = rules
            .iter()
            .filter(|rule| !in_image.contains(rule) && !on_cmdline.contains(rule))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let (those, them) = if missing.len() == 1 {
            ("the rule", "it")
        } else {
            ("the rules", "them")
        };
        if let (Some(uki), false) = (embeds_fragments, fragment.name == COPIED_FRAGMENT) {
            findings.push(
                Finding::new(
                    Severity::Problem,
                    subject,
                    format!("{those} {} in /etc/cmdline.d/{} but not on the command line embedded in the booted unified kernel image {uki}: the image was built before {} added", rules_list_is(&missing), fragment.name, if missing.len() == 1 { "it was" } else { "they were" }),
                )
                .fix("rebuild it (mkinitcpio -P joins /etc/cmdline.d/*.conf into its .cmdline when there is no /etc/kernel/cmdline) and reboot"),
            );
        } else if fragment.name == COPIED_FRAGMENT {
            findings.push(
                Finding::new(
                    Severity::Problem,
                    subject,
                    format!("{those} {} in the host's /etc/cmdline.d/{COPIED_FRAGMENT} but not in the booted image {image}: the image was built before {} added", rules_list_is(&missing), if missing.len() == 1 { "it was" } else { "they were" }),
                )
                .fix("rebuild the image (mkinitcpio -P, dracut -f, or update-initramfs -u) and reboot"),
            );
        } else {
            findings.push(
                Finding::new(
                    Severity::Problem,
                    subject,
                    format!("{those} {} in /etc/cmdline.d/{}, which no hook copies into the initramfs, and not on the kernel command line: nothing applies {them} at boot", rules_list_is(&missing), fragment.name),
                )
                .fix(format!("move {them} to /etc/cmdline.d/{COPIED_FRAGMENT}, which every hook copies, then rebuild the image (mkinitcpio -P, dracut -f, or update-initramfs -u)")),
            );
        }
    }
    findings
}

/// `R is` or `R1, R2 are`.
fn rules_list_is(rules: &[&Rule]) -> String {
    let verb = if rules.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", rules_list(rules))
}

/// What is known of a boot through a unified kernel image (systemd-stub).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedImage {
    /// The file examined, for messages.
    pub path: String,
    /// Its embedded `.cmdline` section, if it has one.
    pub embedded: Option<String>,
}

/// Compares a booted UKI's embedded command line with /proc/cmdline and with what the host
/// will put in the next one (`/etc/kernel/cmdline`), saying where rules belong.
pub fn unified_image(
    uki: &UnifiedImage,
    proc_cmdline: &str,
    etc_kernel_cmdline: Option<&str>,
) -> Vec<Finding> {
    let subject = "boot";
    let rules_in = |text: &str| -> Vec<Rule> {
        let mut rules = RuleSet::new();
        rules.add_command_line(text.as_bytes(), &mut |_| {});
        rules.rules().to_vec()
    };
    let mut findings = Vec::new();
    let Some(embedded) = &uki.embedded else {
        findings.push(Finding::new(
            Severity::Ok,
            subject,
            format!("booted the unified kernel image {}, which has no embedded command line: the boot loader's is used", uki.path),
        ));
        return findings;
    };
    let proc = proc_cmdline.trim();
    if embedded.trim() == proc {
        findings.push(
            Finding::new(
                Severity::Ok,
                subject,
                format!("booted the unified kernel image {}; its embedded command line is the one in use, so edits at the boot menu or in a loader entry are ignored", uki.path),
            )
            .fix("keep rules in /etc/kernel/cmdline (kernel-install, ukify, mkinitcpio's uki presets read it) and rebuild the image, or ship them in a .cmdline addon"),
        );
    }
    if let Some(next) = etc_kernel_cmdline {
        let embedded_rules = rules_in(embedded);
        for rule in rules_in(next) {
            if !embedded_rules.contains(&rule) {
                findings.push(
                    Finding::new(
                        Severity::Problem,
                        subject,
                        format!("the rule {rule} is in /etc/kernel/cmdline but not in the command line embedded in {}", uki.path),
                    )
                    .fix("rebuild the unified kernel image (kernel-install add, ukify build, or mkinitcpio -P) and reboot"),
                );
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> PciAddress {
        "0000:07:00.0".parse().unwrap()
    }

    #[test]
    fn a_function_without_a_reset_method_is_warned_about() {
        let methods = ResetMethod::Methods("flr bus\n".into());
        assert_eq!(reset(address(), Some(0x1002), &methods), None);
        let none = reset(address(), Some(0x1002), &ResetMethod::Methods("\n".into())).unwrap();
        assert_eq!(none.severity, Severity::Warning);
        assert!(none.text.contains("reset_method is empty"), "{}", none.text);
        assert!(none.fix.unwrap().contains("vendor-reset"));
        let absent = reset(address(), Some(0x10de), &ResetMethod::Absent).unwrap();
        assert!(absent.text.contains("no reset_method attribute"));
        assert!(!absent.fix.unwrap().contains("vendor-reset"));
    }

    #[test]
    fn interrupt_remapping_from_what_the_kernel_exposes() {
        let on = InterruptRemapping {
            remapped_chips: Some(3),
            intel_units_with_ir: vec![true],
            ..Default::default()
        };
        assert_eq!(interrupt_remapping(&on).unwrap().severity, Severity::Ok);
        let off = InterruptRemapping {
            remapped_chips: Some(0),
            intel_units_with_ir: vec![false],
            ..Default::default()
        };
        let finding = interrupt_remapping(&off).unwrap();
        assert_eq!(finding.severity, Severity::Problem);
        assert!(finding.text.contains("ecap bit 3"), "{}", finding.text);
        let allowed = InterruptRemapping {
            allow_unsafe_interrupts: Some(true),
            ..off.clone()
        };
        assert_eq!(
            interrupt_remapping(&allowed).unwrap().severity,
            Severity::Warning
        );
        let amd_off = InterruptRemapping {
            remapped_chips: Some(0),
            amd_units: 1,
            ..Default::default()
        };
        assert!(interrupt_remapping(&amd_off)
            .unwrap()
            .text
            .contains("no interrupt chip"));
        assert_eq!(interrupt_remapping(&InterruptRemapping::default()), None);
    }

    #[test]
    fn vfio_built_in_a_module_or_missing() {
        let builtin = "kernel/drivers/vfio/vfio.ko\nkernel/drivers/vfio/pci/vfio-pci.ko\n";
        let dep = "kernel/drivers/vfio/vfio_iommu_type1.ko.zst: kernel/drivers/vfio/vfio.ko.zst\n";
        assert_eq!(
            module_place("vfio-pci", Some(builtin), Some(dep)),
            ModulePlace::BuiltIn
        );
        assert_eq!(
            module_place("vfio_iommu_type1", Some(builtin), Some(dep)),
            ModulePlace::Module
        );
        assert_eq!(
            module_place("vfio-pci", Some(""), Some(dep)),
            ModulePlace::Missing
        );
        assert_eq!(module_place("vfio-pci", None, None), ModulePlace::Unknown);
        let findings = vfio_modules("6.1.0-57-amd64", Some(""), Some(dep));
        assert_eq!(findings[0].severity, Severity::Problem);
        assert_eq!(findings[1].severity, Severity::Ok);
        assert!(vfio_modules("6.1", None, None).is_empty());
    }

    fn file(name: &str, contents: &[u8]) -> crate::doctor::image::ImageFile {
        crate::doctor::image::ImageFile {
            name: name.into(),
            contents: contents.to_vec(),
        }
    }

    fn whole(files: Vec<crate::doctor::image::ImageFile>) -> Image {
        Image {
            files,
            unread: None,
        }
    }

    fn fragment(name: &str, contents: &[u8]) -> HostFragment {
        HostFragment {
            name: name.into(),
            contents: contents.to_vec(),
        }
    }

    #[test]
    fn the_booted_image_must_carry_the_hook_and_the_hosts_rules() {
        let host = vec![fragment(
            "vfio-bind.conf",
            b"# mine\nvfio.bind=1002:73ff@07:00,@08:00.1\n",
        )];
        let good = whole(vec![
            file("usr/bin/vfio-bind", b""),
            file("hooks/vfio-bind", b""),
            file(
                "etc/cmdline.d/vfio-bind.conf",
                b"vfio.bind=1002:73FF@0000:07:00 vfio.bind=@08:00.1",
            ),
        ]);
        let findings = booted_image("/boot/initramfs-linux.img", &good, &host, "", None);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Ok);

        let stale = whole(vec![
            file("usr/bin/vfio-bind", b""),
            file("usr/lib/systemd/system/vfio-bind.service", b""),
            file("etc/cmdline.d/vfio-bind.conf", b"vfio.bind=1002:73ff@07:00"),
        ]);
        let findings = booted_image("/boot/initrd.img-6.1", &stale, &host, "", None);
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings[1].text.starts_with("the rule @0000:08:00.1 is in the host's /etc/cmdline.d/vfio-bind.conf but not in the booted image /boot/initrd.img-6.1"), "{}", findings[1].text);
        // A rule that is on the kernel command line applies whatever the image holds.
        let findings = booted_image(
            "/boot/initrd.img-6.1",
            &stale,
            &host,
            "vfio.bind=@08:00.1",
            None,
        );
        assert_eq!(findings.len(), 1, "{findings:?}");

        let without = whole(vec![file("init", b"")]);
        let findings = booted_image("x", &without, &[], "", None);
        assert_eq!(findings[0].severity, Severity::Problem);
        assert!(findings[0].text.contains("no /usr/bin/vfio-bind"));
        let binary_only = whole(vec![file("usr/bin/vfio-bind", b"")]);
        assert!(booted_image("x", &binary_only, &[], "", None)[0]
            .text
            .contains("no hook"));
    }

    /// Every hook copies only /etc/cmdline.d/vfio-bind.conf: a rule in another fragment
    /// never reaches the image, so "rebuild it" would never clear the finding.
    #[test]
    fn a_rule_in_a_fragment_no_hook_copies_is_told_to_move() {
        let image = whole(vec![
            file("usr/bin/vfio-bind", b""),
            file("hooks/vfio-bind", b""),
            file("etc/cmdline.d/vfio-bind.conf", b"vfio.bind=1002:73ff@07:00"),
        ]);
        let host = [
            fragment("10-gpu.conf", b"vfio.bind=1002:ab28@07:00.1,@08:00\n"),
            fragment("vfio-bind.conf", b"vfio.bind=1002:73ff@07:00\n"),
        ];
        let findings = booted_image(
            "/boot/initramfs-linux.img",
            &image,
            &host,
            "root=/dev/sda2",
            None,
        );
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert_eq!(findings[1].severity, Severity::Problem);
        assert_eq!(findings[1].text, "the rules 1002:ab28@0000:07:00.1, @0000:08:00 are in /etc/cmdline.d/10-gpu.conf, which no hook copies into the initramfs, and not on the kernel command line: nothing applies them at boot");
        assert_eq!(findings[1].fix.as_deref(), Some("move them to /etc/cmdline.d/vfio-bind.conf, which every hook copies, then rebuild the image (mkinitcpio -P, dracut -f, or update-initramfs -u)"));
        // A unified kernel image from mkinitcpio carries every fragment in its .cmdline,
        // so on such a boot they are on the kernel command line.
        let findings = booted_image(
            "/efi/EFI/Linux/arch-linux.efi (its .initrd)",
            &image,
            &host,
            "root=/dev/sda2 vfio.bind=1002:ab28@07:00.1,@08:00 vfio.bind=1002:73ff@07:00",
            Some("/efi/EFI/Linux/arch-linux.efi"),
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
    }

    /// A part of an image shows what is there, never what is missing.
    #[test]
    fn an_image_read_in_part_is_not_judged_on_what_the_part_lacks() {
        let part = Image {
            files: vec![file("kernel/x86/microcode/AuthenticAMD.bin", b"")],
            unread: Some(crate::doctor::image::Unread::TooLarge(1 << 30)),
        };
        let host = [fragment("vfio-bind.conf", b"vfio.bind=@07:00")];
        let findings = booted_image("/boot/initramfs-linux.img", &part, &host, "", None);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Warning);
        assert_eq!(findings[0].text, "the booted image /boot/initramfs-linux.img was read only in part (too large to read: it unpacks to more than 1024 MiB), so what that part lacks is not judged");
    }

    #[test]
    fn a_unified_kernel_image_says_where_rules_belong() {
        let uki = UnifiedImage {
            path: "/efi/EFI/Linux/arch-linux.efi".into(),
            embedded: Some("root=/dev/sda2 rw".into()),
        };
        let findings = unified_image(
            &uki,
            "root=/dev/sda2 rw\n",
            Some("root=/dev/sda2 rw vfio.bind=@07:00"),
        );
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings[0].text.contains("edits at the boot menu"));
        assert!(findings[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("/etc/kernel/cmdline"));
        assert_eq!(findings[1].severity, Severity::Problem);
        assert!(findings[1].text.contains(
            "@0000:07:00 is in /etc/kernel/cmdline but not in the command line embedded"
        ));

        let current = unified_image(
            &uki,
            "root=/dev/sda2 rw vfio.bind=@07:00",
            Some("root=/dev/sda2 rw"),
        );
        assert!(current.is_empty(), "{current:?}");
        let bare = UnifiedImage {
            embedded: None,
            ..uki
        };
        assert_eq!(unified_image(&bare, "x", None)[0].severity, Severity::Ok);
    }
}
