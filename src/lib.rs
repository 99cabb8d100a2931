//! vfio-bind: hands chosen PCI functions to vfio-pci at early boot, by address.
//!
//! The tree shows the boot path. Four folders, imports running one way, from the top down:
//! `doctor` → `boot` → `machine` → `rules`. A folder imports only itself and the folders
//! after it in that line; its `mod.rs` says so in its first lines.
//!
//! The rule inside the folders: pure modules decide, I/O modules read and write. A pure module
//! says `Pure:` in its first comment and imports only pure modules, so everything that decides
//! can be tested without a kernel. One command checks both rules, and that no modules import
//! each other in a circle: `cargo test --test layering`.
//!
//! - `rules/`: what a user writes, and its grammar.
//!   - `address` (pure): PCI addresses, slots, device ids and paths, parsed and printed.
//!   - `rule` (pure): one binding rule (`1002:73ff@07:00`), parsed and printed.
//!   - `cmdline` (pure): kernel command-line parameters, split as the kernel splits them.
//!   - `ruleset` (pure): the rules of one run, kept in order without duplicates, each loss
//!     reported.
//! - `machine/`: the machine as the kernel shows it.
//!   - `function` (pure): what one PCI function is (address, ids, class, drivers).
//!   - `iomem` (pure): the `/proc/iomem` tree, parsed: who claims a card's memory.
//!   - `guard` (pure): which functions the host itself needs (its mounts, swap, default
//!     routes, only console), judged from what `host_usage` read.
//!   - `order` (pure): sorting in few bytes of binary, for the lists every layer sorts.
//!   - `sysfs` (I/O): reading and writing attributes under a sysfs root, heap-free.
//!   - `host_usage` (I/O): reading what the host is using (mounts, swaps, routes, displays)
//!     for `guard`.
//! - `boot/`: the boot path, and the supervisor above it.
//!   - `plan` (pure): which functions the rules select, and what is done with each.
//!   - `seconds` (pure): a duration as people write it, for the lines that name one.
//!   - `exit` (pure): the exit statuses.
//!   - `sources` (I/O): gathering rules from the kernel command line and `/etc/cmdline.d`.
//!   - `topology` (I/O): following a path rule through `/sys/devices` to the device it names.
//!   - `modprobe` (I/O): loading vfio-pci, bounded in time.
//!   - `kernel` (I/O): the writes and module loads the boot path asks of the kernel, behind a
//!     trait.
//!   - `apply` (I/O): scanning, planning and binding: the boot path.
//!   - `bootfb` (I/O): letting a firmware framebuffer go from a card, and taking it back.
//!   - `kmsg` (I/O): the logger, to `/dev/kmsg` or stderr.
//!   - `lock` (I/O): the lock that keeps two binders apart.
//!   - `watchdog` (I/O): the supervisor, a layer above the boot path: it hands the work a
//!     kernel that notes each step, ends every run in time or when told to stop, and gives
//!     back what a stopped worker left. Nothing else in `boot` imports it.
//! - `doctor/`: what serves a person on a running host.
//!   - `checks` (pure): the passthrough checks behind `check`, judged from what `host` read.
//!   - `image` (pure): an initramfs image's format and contents, from its bytes.
//!   - `json` (pure): the JSON string escaping the `--json` outputs use.
//!   - `host` (I/O): reading what the host checks need (sysfs, the kernel's config, images).
//!   - `pciids` (I/O): vendor and device names from `pci.ids`, for the listings.
//!   - `report` (I/O): the commands for people: `list`, `rule` and `check`, plain or
//!     `--json`.

pub mod boot;
pub mod doctor;
pub mod machine;
pub mod rules;
