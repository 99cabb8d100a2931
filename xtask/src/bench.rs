//! `cargo xtask bench`: vfio-bind apply against synthetic sysfs trees, beside the shell way.

use argh::FromArgs;

use crate::util::TaskResult;

/// time vfio-bind apply on synthetic sysfs trees beside a shell implementation
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> TaskResult {
    Err("bench is not written yet".into())
}
