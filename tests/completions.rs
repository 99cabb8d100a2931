//! The shell completions in `completions/`, run in the shells themselves: what a user is
//! offered after pressing Tab. bash (with bash-completion), zsh and fish must be installed:
//! a missing one fails the test instead of skipping it (`apt-get install bash-completion zsh
//! fish`).
//!
//! bash: `tests/completions/bash-complete.bash` calls the function `complete -p vfio-bind`
//! names with COMP_WORDS split as readline splits them. zsh:
//! `tests/completions/zsh-complete.zsh` types the line into an interactive zsh through
//! zsh/zpty and records what compadd was given. fish: `complete -C LINE`, fish's own way.
//!
//! The subcommands and options offered are compared with the binary's own `--help`, so a new
//! option without its completion fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sysfs_fixture::*;

const BINARY: &str = env!("CARGO_BIN_EXE_vfio-bind");

#[derive(Clone, Copy, Debug)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

fn project(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("these tests need `{program}` in PATH: install {package}"))
}

/// What `shell` offers when Tab is pressed at the end of `line`, each candidate as the word
/// it completes to (fish's descriptions dropped).
fn complete(shell: Shell, line: &str) -> BTreeSet<String> {
    run_completion(shell, line)
        .lines()
        .filter(|candidate| !candidate.is_empty() && !candidate.starts_with("BUFFER:"))
        .map(|candidate| candidate.split('\t').next().unwrap_or_default().to_string())
        .collect()
}

/// The command line as zsh leaves it after Tab at the end of `line`.
fn zsh_buffer(line: &str) -> String {
    let output = run_completion(Shell::Zsh, line);
    output
        .lines()
        .find_map(|line| line.strip_prefix("BUFFER:"))
        .unwrap_or_else(|| panic!("no BUFFER: line in {output:?}"))
        .to_string()
}

/// The completion driver's output for `line` (see the module's comment).
fn run_completion(shell: Shell, line: &str) -> String {
    let mut command = match shell {
        Shell::Bash => {
            assert!(
                Path::new("/usr/share/bash-completion/bash_completion").is_file(),
                "these tests need bash-completion: apt-get install bash-completion"
            );
            let mut command = Command::new(require("bash", "bash"));
            command
                .arg(project("tests/completions/bash-complete.bash"))
                .arg(project("completions/vfio-bind.bash"));
            command
        }
        Shell::Zsh => {
            let mut command = Command::new(require("zsh", "zsh"));
            command
                .arg("-f")
                .arg(project("tests/completions/zsh-complete.zsh"))
                .arg(project("completions"));
            command
        }
        Shell::Fish => {
            let mut command = Command::new(require("fish", "fish"));
            command.args(["--no-config", "-c"]).arg(format!(
                "source {} && complete -C \"$argv[1]\"",
                project("completions/vfio-bind.fish").display()
            ));
            command
        }
    };
    let output = command
        .arg(line)
        .env("TMPDIR", std::env::temp_dir())
        .output()
        .unwrap_or_else(|error| panic!("{shell:?} does not run: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{shell:?} completing {line:?}: {}\n{stderr}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn set(words: &[&str]) -> BTreeSet<String> {
    words.iter().map(|word| word.to_string()).collect()
}

/// The words of a `--help` section ("Commands:", "Options:"): the first word of each line
/// indented by two spaces, until the next blank line.
fn help_section(arguments: &[&str], section: &str) -> BTreeSet<String> {
    let output = Command::new(BINARY).args(arguments).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let start = help
        .find(&format!("\n{section}\n"))
        .unwrap_or_else(|| panic!("no {section} in {arguments:?}:\n{help}"));
    help[start + section.len() + 2..]
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .map(|line| {
            line.split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(',')
                .to_string()
        })
        .collect()
}

#[test]
fn every_shell_offers_the_subcommands_of_help() {
    let subcommands = help_section(&["--help"], "Commands:");
    assert!(subcommands.contains("release"), "{subcommands:?}");
    for shell in SHELLS {
        let offered: BTreeSet<String> = complete(shell, "vfio-bind ")
            .into_iter()
            // bash also offers argh's `help` and `--help`, as words the binary takes.
            .filter(|word| word != "help" && word != "--help")
            .collect();
        assert_eq!(offered, subcommands, "{shell:?}");
        assert_eq!(
            complete(shell, "vfio-bind re"),
            set(&["release"]),
            "{shell:?}"
        );
    }
}

#[test]
fn every_shell_offers_the_options_of_each_subcommand() {
    for subcommand in help_section(&["--help"], "Commands:") {
        let mut options = help_section(&[&subcommand, "--help"], "Options:");
        options.retain(|option| option.starts_with("--"));
        for shell in SHELLS {
            let mut offered = complete(shell, &format!("vfio-bind {subcommand} --"));
            // `--json` of list and check (issue 13) lands on another branch: offered already.
            if !options.contains("--json") && matches!(subcommand.as_str(), "list" | "check") {
                assert!(offered.remove("--json"), "{shell:?} {subcommand}");
            }
            assert_eq!(offered, options, "{shell:?} {subcommand}");
        }
    }
    for shell in SHELLS {
        assert_eq!(
            complete(shell, "vfio-bind apply --dr"),
            set(&["--dry-run"]),
            "{shell:?}"
        );
    }
}

#[test]
fn zsh_completes_an_option_to_a_word_of_its_own() {
    // argh refuses `--sysfs=DIR`: the value must be the next word.
    let refused = Command::new(BINARY)
        .args(["rule", "--sysfs=/nonexistent", "07:00"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(zsh_buffer("vfio-bind rule --sy"), "vfio-bind rule --sysfs ");
    assert_eq!(
        zsh_buffer("vfio-bind apply --cmdline-d"),
        "vfio-bind apply --cmdline-dir "
    );
    assert_eq!(zsh_buffer("vfio-bind li"), "vfio-bind list ");
}

#[test]
fn rule_is_offered_the_slots_and_functions_of_the_machine_but_no_bridge() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let root = tree.root().display().to_string();
    let everything = set(&[
        "0000:00:00",
        "0000:00:00.0",
        "0000:03:00",
        "0000:03:00.0",
        "0000:03:00.1",
        "0000:07:00",
        "0000:07:00.0",
        "0000:07:00.1",
    ]);
    for shell in SHELLS {
        assert_eq!(
            complete(shell, &format!("vfio-bind rule --sysfs {root} ")),
            everything,
            "{shell:?}"
        );
        assert_eq!(
            complete(shell, &format!("vfio-bind rule --sysfs {root} 0000:07")),
            set(&["0000:07:00", "0000:07:00.0", "0000:07:00.1"]),
            "{shell:?}"
        );
    }
    // What is offered is what `rule` takes.
    for address in &everything {
        let status = Command::new(BINARY)
            .args(["rule", address, "--sysfs", &root])
            .output()
            .unwrap()
            .status;
        assert!(status.success(), "vfio-bind rule {address}: {status}");
    }
}

#[test]
fn bind_and_release_are_offered_guarded_rules_that_select_what_they_name() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let root = tree.root().display().to_string();
    for shell in SHELLS {
        for subcommand in ["bind", "release"] {
            let offered = complete(shell, &format!("vfio-bind {subcommand} --sysfs {root} "));
            assert_eq!(
                offered,
                set(&[
                    "1022:14d8@0000:00:00",
                    "1022:14d8@0000:00:00.0",
                    "1002:73df@0000:03:00",
                    "1002:73df@0000:03:00.0",
                    "1002:ab28@0000:03:00.1",
                    "1002:73ff@0000:07:00",
                    "1002:73ff@0000:07:00.0",
                    "1002:ab28@0000:07:00.1",
                ]),
                "{shell:?} {subcommand}"
            );
            // The audio IDs both cards share: the address tells them apart.
            assert_eq!(
                complete(
                    shell,
                    &format!("vfio-bind {subcommand} --sysfs {root} 1002:73ff@0000:07:00 1002:ab")
                ),
                set(&["1002:ab28@0000:03:00.1", "1002:ab28@0000:07:00.1"]),
                "{shell:?} {subcommand}"
            );
        }
    }
    // Each rule offered selects exactly the functions it names.
    let plan = |rule: &str| {
        let output = Command::new(BINARY)
            .args(["apply", "--dry-run", "--sysfs", &root, "--cmdline-dir"])
            .arg("/nonexistent")
            .args(["--cmdline", &format!("vfio.bind={rule}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let card = plan("1002:73ff@0000:07:00");
    assert!(
        card.contains("0000:07:00.0") && card.contains("0000:07:00.1"),
        "{card}"
    );
    assert!(!card.contains("0000:03:00"), "{card}");
    let audio = plan("1002:ab28@0000:07:00.1");
    assert!(audio.contains("0000:07:00.1"), "{audio}");
    assert!(
        !audio.contains("0000:07:00.0") && !audio.contains("0000:03:00"),
        "{audio}"
    );
}

#[test]
fn a_machine_without_pci_devices_is_offered_no_address() {
    let tree = SysfsTree::new().unwrap();
    let root = tree.root().display().to_string();
    for shell in SHELLS {
        for subcommand in ["rule", "bind", "release"] {
            assert_eq!(
                complete(shell, &format!("vfio-bind {subcommand} --sysfs {root} ")),
                BTreeSet::new(),
                "{shell:?} {subcommand}"
            );
        }
    }
}

#[test]
fn the_bash_completion_is_registered_for_vfio_bind() {
    let output = Command::new(require("bash", "bash"))
        .arg("-c")
        .arg("source \"$1\" && complete -p vfio-bind")
        .arg("bash")
        .arg(project("completions/vfio-bind.bash"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "complete -F _vfio_bind vfio-bind"
    );
}
