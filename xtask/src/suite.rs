//! `cargo xtask test`: the whole test suite from a fresh clone, by one command. It installs
//! what the tests need (the Debian packages of [`setup::TESTS`] and of the VM test, as root
//! on Debian or Ubuntu; the rustup pieces of [`build::missing_rustup_pieces`]), then runs
//! `cargo test --workspace` and `cargo xtask vm-test`. `.ci/run` calls it too, so the
//! README's command and CI cannot drift.

use std::process::Command;

use anyhow::bail;
use argh::FromArgs;

use crate::build;
use crate::setup::{self, Need};
use crate::util::{project_root, run_checked, TaskResult};

/// install what the tests need, then run cargo test --workspace and the VM test
#[derive(FromArgs)]
#[argh(subcommand, name = "test")]
pub struct TestArgs {
    /// say what would be installed and run, and do nothing
    #[argh(switch)]
    dry_run: bool,
    /// leave out the VM test (which needs root): install what cargo test needs and run it
    #[argh(switch)]
    no_vm: bool,
}

/// What the run needs from the host: the tests', then the VM test's unless it is left out,
/// each once.
fn needs(with_vm: bool) -> Vec<Need> {
    let mut needs = setup::TESTS.to_vec();
    if with_vm {
        for need in crate::vm::host_needs() {
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
    }
    needs
}

/// The commands the run is made of, after the setup, as a user would type them.
fn commands(with_vm: bool) -> Vec<&'static str> {
    let mut commands = vec!["cargo test --workspace"];
    if with_vm {
        commands.push("cargo xtask vm-test");
    }
    commands
}

/// What a dry run prints: the packages to install, the rustup pieces to add, the commands.
fn plan(missing: &[Need], rustup: &[Vec<&str>], commands: &[&str]) -> String {
    let mut lines = vec!["cargo xtask test would:".to_string()];
    if missing.is_empty() {
        lines.push("  install nothing: every package the tests need is there".into());
    } else {
        let names: Vec<&str> = missing.iter().map(Need::name).collect();
        lines.push(format!(
            "  install (missing {}): {}",
            names.join(", "),
            setup::apt_command(&setup::packages(missing))
        ));
    }
    for piece in rustup {
        lines.push(format!("  run: rustup {}", piece.join(" ")));
    }
    for command in commands {
        lines.push(format!("  run: {command}"));
    }
    lines.join("\n")
}

pub fn run(args: TestArgs) -> TaskResult {
    let with_vm = !args.no_vm;
    let needs = needs(with_vm);
    let rustup = build::missing_rustup_pieces();
    if args.dry_run {
        println!(
            "{}",
            plan(&setup::missing(&needs), &rustup, &commands(with_vm))
        );
        return Ok(());
    }
    if with_vm && !setup::is_root() {
        bail!(
            "the VM test needs root (it builds images in a private mount namespace): run `sudo cargo xtask test`, \
             or `cargo xtask test --no-vm` for the rest"
        );
    }
    setup::ensure("cargo xtask test", &needs)?;
    for piece in &rustup {
        eprintln!("test: running rustup {}", piece.join(" "));
        // A piece that cannot be added costs size, not tests: cargo xtask build falls back.
        if let Err(error) = run_checked(
            Command::new("rustup")
                .args(piece)
                .current_dir(project_root()),
        ) {
            eprintln!("test: {error:#}; going on without it");
        }
    }
    let root = project_root();
    println!("test: cargo test --workspace");
    run_checked(
        Command::new("cargo")
            .args(["test", "--workspace"])
            .current_dir(&root),
    )?;
    if with_vm {
        println!("test: cargo xtask vm-test");
        // Through cargo, not this process's own file: `cargo test --workspace` has just
        // rebuilt the xtask binary, and the file this process started from is gone.
        run_checked(
            Command::new("cargo")
                .args(["xtask", "vm-test"])
                .current_dir(&root),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_is_the_two_readme_commands() {
        assert_eq!(
            commands(true),
            ["cargo test --workspace", "cargo xtask vm-test"]
        );
        assert_eq!(commands(false), ["cargo test --workspace"]);
    }

    #[test]
    fn the_vm_test_adds_its_own_needs() {
        let without = needs(false);
        let with = needs(true);
        assert_eq!(without, setup::TESTS);
        assert!(with.len() > without.len());
        assert!(with.iter().any(|need| need.package == "qemu-system-x86"));
        // busybox: both the hook tests and the VM test's images want it; named once.
        assert_eq!(
            with.iter().filter(|need| need.name() == "busybox").count(),
            1
        );
    }

    #[test]
    fn a_dry_run_names_what_it_would_install_and_run() {
        let missing = [
            Need::program("zsh", "zsh"),
            Need::file(
                "/usr/share/bash-completion/bash_completion",
                "bash-completion",
            ),
        ];
        let rustup = [vec!["target", "add", "x86_64-unknown-linux-musl"]];
        assert_eq!(
            plan(&missing, &rustup, &commands(true)),
            "cargo xtask test would:\n\
             \x20 install (missing zsh, /usr/share/bash-completion/bash_completion): apt-get install --no-install-recommends zsh bash-completion\n\
             \x20 run: rustup target add x86_64-unknown-linux-musl\n\
             \x20 run: cargo test --workspace\n\
             \x20 run: cargo xtask vm-test"
        );
        assert!(plan(&[], &[], &commands(false)).contains("install nothing"));
    }
}
