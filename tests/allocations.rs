//! The apply path's heap use does not grow with the number of devices or rules.
//!
//! A counting global allocator counts the allocations made while `apply` runs (the real
//! logger, the real sysfs writer, no simulated kernel) on a small and a large fixture, with
//! one rule and with many, with path rules, and on a UEFI boot display whose BAR holds a
//! firmware framebuffer to let go and take back. The counts must be equal, and nought.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use log::LevelFilter;
use sysfs_fixture::{Function, SysfsTree, CLASS_AUDIO, CLASS_BRIDGE, CLASS_VGA};
use vfio_bind::boot::apply::apply;
use vfio_bind::boot::kernel::RunningKernel;
use vfio_bind::boot::kmsg::{self, Destination};
use vfio_bind::boot::sources::{gather, RuleSources};
use vfio_bind::boot::watchdog::Reporting;
use vfio_bind::machine::sysfs::Sysfs;

struct CountingAllocator;

thread_local! {
    /// Allocations on this thread while counting is on; `None` while it is off. Per thread,
    /// so that tests running in parallel do not count each other's fixture building.
    static ALLOCATIONS: Cell<Option<usize>> = const { Cell::new(None) };
}

fn count_one() {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get().map(|n| n + 1)));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(pointer, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// `cards` GPUs with an audio function each, every card behind its own bridge and in its
/// own IOMMU group, vfio-pci registered (as after an earlier load).
fn machine_with_cards(cards: usize) -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    tree.add_driver("vfio-pci").unwrap();
    for card in 0..cards {
        // 255 cards per PCI domain: the root ports on bus 0, each card on a bus of its own.
        let (domain, index) = (card / 255, card % 255);
        let bridge = format!("{domain:04x}:00:{:02x}.{}", index / 8, index % 8);
        let bus = index + 1;
        let group = card as u32 * 2;
        tree.add(Function::new(&bridge, 0x8086, 0x1901, CLASS_BRIDGE).group(group + 1))
            .unwrap();
        tree.add(
            Function::new(
                &format!("{domain:04x}:{bus:02x}:00.0"),
                0x1002,
                0x73ff,
                CLASS_VGA,
            )
            .group(group)
            .driver("amdgpu")
            .behind(&bridge),
        )
        .unwrap()
        .add(
            Function::new(
                &format!("{domain:04x}:{bus:02x}:00.1"),
                0x1002,
                0xab28,
                CLASS_AUDIO,
            )
            .group(group)
            .driver("snd_hda_intel")
            .behind(&bridge),
        )
        .unwrap();
    }
    tree
}

/// Allocations made by one apply run on `tree` with `cmdline`.
fn allocations_during_apply(tree: &SysfsTree, cmdline: &str) -> usize {
    kmsg::init(Destination::Stderr, LevelFilter::Info);
    let mut sysfs = Sysfs::new(tree.root()).unwrap();
    if tree.iomem_path().exists() {
        sysfs = sysfs.with_iomem(&tree.iomem_path()).unwrap();
    }
    let fragments = tree.root().join("no-cmdline.d");
    // The kernel the supervisor hands the work: its notes must not allocate either.
    let mut kernel = Reporting(RunningKernel {
        modules_allowed: false,
        deadline: None,
    });
    let started = Instant::now();
    ALLOCATIONS.with(|count| count.set(Some(0)));
    let sources = RuleSources {
        cmdline: Some(cmdline.as_bytes()),
        fragment_dir: &fragments,
    };
    let gathered = gather(&sources, &mut |_, _| {});
    let status = apply(&sysfs, &gathered, &mut kernel, started, None);
    let allocations = ALLOCATIONS.with(|count| count.take()).unwrap();
    // No kernel binds on a fixture, so apply gives the card back and fails: that path runs
    // every step (override, unbind, probe, read-back, release) and is the costlier one.
    assert_eq!(status, 1);
    allocations
}

#[test]
fn apply_allocates_the_same_for_8_and_1024_functions() {
    let small = machine_with_cards(4);
    let large = machine_with_cards(512);
    let rule = "vfio.bind=1002:73ff@0000:02:00";
    let on_small = allocations_during_apply(&small, rule);
    let on_large = allocations_during_apply(&large, rule);
    assert_eq!(on_small, on_large, "allocations grew with the device count");
    // Stronger than the promise, and true today: apply itself does not allocate at all.
    assert_eq!(on_large, 0, "apply allocated");
}

#[test]
fn apply_allocates_the_same_for_1_and_24_rules() {
    let tree = machine_with_cards(32);
    let one = allocations_during_apply(&tree, "vfio.bind=1002:73ff@0000:02:00");
    let many: Vec<String> = (1..=24)
        .map(|bus| format!("1002:73ff@0000:{bus:02x}:00"))
        .collect();
    let many = allocations_during_apply(&tree, &format!("vfio.bind={}", many.join(",")));
    assert_eq!(one, many, "allocations grew with the rule count");
}

#[test]
fn path_rules_are_resolved_without_allocating() {
    let tree = machine_with_cards(512);
    // Card 1 sits behind root port 0000:00:00.1 on bus 02; the second rule's hop is missing.
    let rules = "vfio.bind=1002:73ff@0000:00:00.1/00,@0000:00:00.2/07.0,1002:73ff:1002:0e3a";
    assert_eq!(allocations_during_apply(&tree, rules), 0, "apply allocated");
}

/// The boot display of [`uefi_boot_display`], the rule that takes it, and its BAR0.
const EFIFB_CARD_RULE: &str = "vfio.bind=1234:1111@00:02.0";
const BAR0: &str = "  80000000-80ffffff : 0000:00:02.0";

/// The boot display (class 0x0380) on no driver, efifb in its BAR0, and a few hundred
/// other iomem lines, as on a real machine.
fn uefi_boot_display(with_efifb: bool) -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    tree.add_driver("vfio-pci").unwrap();
    tree.add(Function::new("0000:00:02.0", 0x1234, 0x1111, 0x038000).group(1))
        .unwrap();
    let mut iomem = String::new();
    for line in 0..300u64 {
        iomem.push_str(&format!(
            "{:08x}-{:08x} : System RAM\n",
            line << 20,
            (line << 20) + 0xfffff
        ));
    }
    iomem.push_str(&format!("80000000-afffffff : PCI Bus 0000:00\n{BAR0}\n"));
    tree.set_iomem(&iomem).unwrap();
    if with_efifb {
        tree.add_platform_framebuffer(
            "efi-framebuffer.0",
            Some("efi-framebuffer"),
            BAR0,
            "    80000000-802fffff : efifb",
        )
        .unwrap();
    }
    tree
}

#[test]
fn letting_go_of_efifb_and_taking_it_back_allocates_nothing() {
    let with = uefi_boot_display(true);
    let without = uefi_boot_display(false);
    let on_with = allocations_during_apply(&with, EFIFB_CARD_RULE);
    // The real writer wrote the unbind, then the bind of the give-back, to the fixture.
    assert_eq!(
        with.read("bus/platform/drivers/efi-framebuffer/bind"),
        "efi-framebuffer.0"
    );
    assert_eq!(on_with, allocations_during_apply(&without, EFIFB_CARD_RULE));
    assert_eq!(on_with, 0, "apply allocated");
    // No kernel binds on a fixture: apply gave the card back, and the framebuffer too.
}
