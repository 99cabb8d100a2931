//! Letting go of a boot framebuffer keeps the apply path heap-free: apply on a UEFI boot
//! display whose BAR holds efifb allocates nothing, as on a machine without one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use log::LevelFilter;
use sysfs_fixture::{Function, SysfsTree};
use vfio_bind::apply::{apply, RunningKernel};
use vfio_bind::kmsg::{self, Destination};
use vfio_bind::sources::{gather, RuleSources};
use vfio_bind::sysfs::Sysfs;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<Option<usize>> = const { Cell::new(None) };
}

fn count_one() {
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

fn allocations_during_apply(tree: &SysfsTree) -> usize {
    kmsg::init(Destination::Stderr, LevelFilter::Info);
    let sysfs = Sysfs::new(tree.root())
        .unwrap()
        .with_iomem(&tree.iomem_path())
        .unwrap();
    let fragments = tree.root().join("no-cmdline.d");
    let mut kernel = RunningKernel {
        modules_allowed: false,
    };
    let started = Instant::now();
    ALLOCATIONS.with(|count| count.set(Some(0)));
    let sources = RuleSources {
        cmdline: Some(b"vfio.bind=1234:1111@00:02.0"),
        fragment_dir: &fragments,
    };
    let gathered = gather(&sources, &mut |_, _| {});
    let status = apply(&sysfs, &gathered, &mut kernel, started, None);
    let allocations = ALLOCATIONS.with(|count| count.take()).unwrap();
    // No kernel binds on a fixture: apply gives the card back, and the framebuffer too.
    assert_eq!(status, 1);
    allocations
}

#[test]
fn letting_go_of_efifb_and_taking_it_back_allocates_nothing() {
    let with = uefi_boot_display(true);
    let without = uefi_boot_display(false);
    let on_with = allocations_during_apply(&with);
    // The real writer wrote the unbind, then the bind of the give-back, to the fixture.
    assert_eq!(
        with.read("bus/platform/drivers/efi-framebuffer/bind"),
        "efi-framebuffer.0"
    );
    assert_eq!(on_with, allocations_during_apply(&without));
    assert_eq!(on_with, 0, "apply allocated");
}
