//! Developer tasks for vfio-bind: `cargo xtask <task>`.
//!
//! Each task lives in its own module; this file only dispatches.

mod bench;
mod build;
mod install;
mod packages;
mod setup;
mod suite;
mod util;
mod vm;

use argh::FromArgs;

/// vfio-bind developer tasks.
#[derive(FromArgs)]
struct Xtask {
    #[argh(subcommand)]
    task: Task,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Task {
    Build(build::BuildArgs),
    Install(install::InstallArgs),
    VmTest(vm::VmTestArgs),
    VmRun(vm::VmRunArgs),
    Bench(bench::BenchArgs),
    CheckPackages(packages::CheckPackagesArgs),
    Test(suite::TestArgs),
}

fn main() {
    let xtask: Xtask = argh::from_env();
    let result = match xtask.task {
        Task::Build(args) => build::run(args),
        Task::Install(args) => install::run(args),
        Task::VmTest(args) => vm::run_tests(args),
        Task::VmRun(args) => vm::run_one(args),
        Task::Bench(args) => bench::run(args),
        Task::CheckPackages(args) => packages::run(args),
        Task::Test(args) => suite::run(args),
    };
    if let Err(error) = result {
        eprintln!("xtask: {error:#}");
        std::process::exit(1);
    }
}
