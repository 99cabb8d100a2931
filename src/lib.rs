//! vfio-bind: hands chosen PCI functions to vfio-pci at early boot, by address.
//!
//! The rule: pure modules decide, I/O modules read and write. A pure module imports only
//! other pure modules (check with `grep -n "^use crate" src/*.rs`), so everything that
//! decides can be tested without a kernel.
//!
//! Pure, no I/O:
//! - `address`: PCI addresses, slots, device ids and paths, parsed and printed.
//! - `function`: what one PCI function is (address, ids, class, drivers).
//! - `rule`: one binding rule (`1002:73ff@07:00`), parsed and printed.
//! - `cmdline`: kernel command-line parameters, split as the kernel splits them.
//! - `ruleset`: the rules of one run, kept in order without duplicates, each loss reported.
//! - `plan`: which functions the rules select, and what is done with each.
//! - `iomem`: the `/proc/iomem` tree, parsed: who claims a card's memory.
//! - `doctor`: the passthrough checks behind `check`, judged from what `host` read.
//! - `guard`: which functions the host itself needs (its mounts, swap, default routes,
//!   only console), judged from what `host_usage` read.
//! - `image`: an initramfs image's format and contents, from its bytes.
//! - `json`: the JSON string escaping the `--json` outputs use.
//! - `exit`: the exit statuses.
//! - `seconds`: a duration as people write it, for the lines that name one.
//!
//! I/O:
//! - `sysfs`: reading and writing attributes under a sysfs root, heap-free.
//! - `topology`: following a path rule through `/sys/devices` to the device it names.
//! - `sources`: gathering rules from the kernel command line and `/etc/cmdline.d`.
//! - `modprobe`: loading vfio-pci, bounded in time.
//! - `kernel`: the writes and module loads the boot path asks of the kernel, behind a trait.
//! - `apply`: scanning, planning and binding: the boot path.
//! - `bootfb`: letting a firmware framebuffer go from a card, and taking it back.
//! - `kmsg`: the logger, to `/dev/kmsg` or stderr.
//! - `lock`: the lock that keeps two binders apart.
//! - `watchdog`: the supervisor, a layer above the boot path: it hands the work a kernel
//!   that notes each step, ends every run in time or when told to stop, and gives back
//!   what a stopped worker left.
//!
//! One direction, no circle: `sources` and `plan` feed `apply` (with `bootfb`, through
//! `kernel` and `modprobe`); `watchdog` runs around it and imports it not.
//! - `host`: reading what the host checks need (sysfs, the kernel's config, images).
//! - `host_usage`: reading what the host is using (mounts, swaps, routes, displays) for `guard`.
//! - `report`: the commands for people: `list`, `rule` and `check`, plain or `--json`.
//! - `pciids`: vendor and device names from `pci.ids`, for the listings.

pub mod address;
pub mod apply;
pub mod bootfb;
pub mod cmdline;
pub mod doctor;
pub mod exit;
pub mod function;
pub mod guard;
pub mod host;
pub mod host_usage;
pub mod image;
pub mod iomem;
pub mod json;
pub mod kernel;
pub mod kmsg;
pub mod lock;
pub mod modprobe;
pub mod pciids;
pub mod plan;
pub mod report;
pub mod rule;
pub mod ruleset;
pub mod seconds;
pub mod sources;
pub mod sysfs;
pub mod topology;
pub mod watchdog;
