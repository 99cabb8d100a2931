//! `cargo xtask vm-test` and `cargo xtask vm-run`: real initramfs images booted in QEMU.

use argh::FromArgs;

use crate::util::TaskResult;

/// boot every initramfs image in QEMU and check what the guest kernel bound
#[derive(FromArgs)]
#[argh(subcommand, name = "vm-test")]
pub struct VmTestArgs {}

/// boot one image with your own command line and devices and print what bound
#[derive(FromArgs)]
#[argh(subcommand, name = "vm-run")]
pub struct VmRunArgs {}

pub fn run_tests(_args: VmTestArgs) -> TaskResult {
    Err("vm-test is not written yet".into())
}

pub fn run_one(_args: VmRunArgs) -> TaskResult {
    Err("vm-run is not written yet".into())
}
