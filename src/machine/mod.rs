//! The machine as the kernel shows it: PCI functions read from sysfs, the iomem tree, and what
//! the host itself uses (its mounts, swap, routes and console), read and judged.
//! It may import `rules` only; `rules` must not import it, `boot` and `doctor` may.

pub mod function;
pub mod guard;
pub mod host_usage;
pub mod iomem;
pub mod order;
pub mod sysfs;
