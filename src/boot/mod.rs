//! The boot path: rules gathered and planned, path rules resolved, functions handed to vfio-pci
//! through the kernel, and the supervisor (`watchdog`) above them. It may import `rules` and
//! `machine`, never `doctor`; inside it, nothing imports `watchdog`. Only `doctor` imports it.

pub mod apply;
pub mod bootfb;
pub mod exit;
pub mod kernel;
pub mod kmsg;
pub mod lock;
pub mod modprobe;
pub mod plan;
pub mod seconds;
pub mod sources;
pub mod topology;
pub mod watchdog;
