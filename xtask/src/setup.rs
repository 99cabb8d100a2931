//! What the tasks need from the host, and getting it. Each task lists its needs (a program
//! on PATH or a file, and the Debian package that ships it); [`ensure`] installs the
//! missing ones with apt-get as root on Debian or Ubuntu, and elsewhere fails with one line
//! that names them and the command that installs them. To add a need, add a line to the
//! task's list: [`TESTS`] here, [`CHECK_PACKAGES`] here, the VM test's in `vm/host.rs`.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

use crate::util::{find_program, TaskResult};

/// How to tell that a need is met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A program found on PATH or in the sbin directories ([`find_program`]).
    Program(&'static str),
    /// A file at this absolute path.
    File(&'static str),
}

/// Something a task needs from the host, and the Debian package that ships it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub probe: Probe,
    pub package: &'static str,
}

impl Need {
    pub const fn program(program: &'static str, package: &'static str) -> Need {
        Need {
            probe: Probe::Program(program),
            package,
        }
    }

    pub const fn file(path: &'static str, package: &'static str) -> Need {
        Need {
            probe: Probe::File(path),
            package,
        }
    }

    /// What is looked for, as the messages name it.
    pub fn name(&self) -> &'static str {
        match self.probe {
            Probe::Program(name) | Probe::File(name) => name,
        }
    }

    fn is_met(&self) -> bool {
        match self.probe {
            Probe::Program(program) => find_program(program).is_some(),
            Probe::File(path) => Path::new(path).exists(),
        }
    }
}

/// What `cargo test --workspace` runs besides the binary: the hooks in the shells that run
/// them at boot, the completions in their shells, shellcheck on every shell file.
pub const TESTS: &[Need] = &[
    Need::program("busybox", "busybox-static"),
    Need::file("/usr/lib/klibc/bin/sh", "klibc-utils"),
    Need::program("dash", "dash"),
    Need::program("zsh", "zsh"),
    Need::program("fish", "fish"),
    Need::file(
        "/usr/share/bash-completion/bash_completion",
        "bash-completion",
    ),
    Need::program("shellcheck", "shellcheck"),
    Need::program("unshare", "util-linux"),
    Need::program("gzip", "gzip"),
    Need::program("zstd", "zstd"),
    Need::program("xz", "xz-utils"),
];

/// What `cargo xtask check-packages` builds and reads the three packages with.
pub const CHECK_PACKAGES: &[Need] = &[
    Need::program("rpmbuild", "rpm"),
    Need::program("dpkg-buildpackage", "dpkg-dev"),
    Need::program("dpkg-deb", "dpkg"),
    Need::program("makepkg", "makepkg"),
    Need::program("fakeroot", "fakeroot"),
    Need::program("bsdtar", "libarchive-tools"),
];

/// The needs of `needs` that this host lacks.
pub fn missing(needs: &[Need]) -> Vec<Need> {
    needs
        .iter()
        .filter(|need| !need.is_met())
        .copied()
        .collect()
}

/// The packages that ship `needs`, each once, in order.
pub fn packages(needs: &[Need]) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for need in needs {
        if !packages.contains(&need.package) {
            packages.push(need.package);
        }
    }
    packages
}

/// The apt-get command line that installs `packages`.
pub fn apt_command(packages: &[&str]) -> String {
    format!(
        "apt-get install --no-install-recommends {}",
        packages.join(" ")
    )
}

/// The one line a host that cannot install gets: what `task` lacks and how to install it.
pub fn missing_line(task: &str, missing: &[Need], root: bool, debian: bool) -> String {
    let names: Vec<&str> = missing.iter().map(Need::name).collect();
    let command = apt_command(&packages(missing));
    let how = match (debian, root) {
        (true, false) => format!("install them with: sudo {command}"),
        (true, true) => format!("install them with: {command}"),
        (false, _) => format!("install them (on Debian or Ubuntu: {command})"),
    };
    format!("{task} needs {}: {how}", names.join(", "))
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

pub fn is_debian_like() -> bool {
    Path::new("/etc/debian_version").exists()
}

/// Makes sure the host has what `task` needs: as root on Debian or Ubuntu, installs the
/// missing packages with apt-get (saying so); elsewhere fails with [`missing_line`].
pub fn ensure(task: &str, needs: &[Need]) -> TaskResult {
    ensure_on(task, needs, is_root(), is_debian_like())
}

/// [`ensure`] on a host that is (or not) root and (or not) Debian-like.
fn ensure_on(task: &str, needs: &[Need], root: bool, debian: bool) -> TaskResult {
    let missing = missing(needs);
    if missing.is_empty() {
        return Ok(());
    }
    if !(root && debian) {
        bail!("{}", missing_line(task, &missing, root, debian));
    }
    let packages = packages(&missing);
    let names: Vec<&str> = missing.iter().map(Need::name).collect();
    eprintln!(
        "{task}: missing {}; running: apt-get update && {}",
        names.join(", "),
        apt_command(&packages)
    );
    let update = Command::new("apt-get").args(["update", "-qq"]).status();
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    let ran = matches!(update, Ok(status) if status.success())
        && matches!(install, Ok(status) if status.success());
    let still = self::missing(&missing);
    if ran && still.is_empty() {
        return Ok(());
    }
    bail!(
        "could not install what {task} needs; {}",
        missing_line(task, &still, root, debian)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEEDS: &[Need] = &[
        Need::program("sh", "dash"),
        Need::program("no-such-program-anywhere", "nothing-ships-it"),
        Need::file("/no/such/file", "nothing-ships-it"),
        Need::file("/", "base-files"),
        Need::program("another-missing-program", "other-package"),
    ];

    #[test]
    fn missing_needs_are_found_by_program_and_by_file() {
        assert_eq!(
            missing(NEEDS),
            [NEEDS[1], NEEDS[2], NEEDS[4]],
            "sh and / are on every host"
        );
    }

    #[test]
    fn each_package_is_installed_once() {
        assert_eq!(
            packages(&missing(NEEDS)),
            ["nothing-ships-it", "other-package"]
        );
    }

    #[test]
    fn a_host_that_cannot_install_gets_one_line() {
        let missing = missing(NEEDS);
        let line = missing_line("test", &missing, false, true);
        assert_eq!(
            line,
            "test needs no-such-program-anywhere, /no/such/file, another-missing-program: \
             install them with: sudo apt-get install --no-install-recommends nothing-ships-it other-package"
        );
        assert!(!line.contains('\n'));
        assert!(missing_line("test", &missing, true, false)
            .ends_with(": install them (on Debian or Ubuntu: apt-get install --no-install-recommends nothing-ships-it other-package)"));
    }

    /// What `main` prints for a host that cannot install: one line, before any test runs.
    #[test]
    fn without_root_or_debian_nothing_is_installed_and_one_line_says_what_to() {
        for (root, debian) in [(false, true), (true, false), (false, false)] {
            let error = format!("{:#}", ensure_on("test", NEEDS, root, debian).unwrap_err());
            assert_eq!(error, missing_line("test", &missing(NEEDS), root, debian));
            assert!(!error.contains('\n'), "{error}");
        }
        assert!(ensure_on("test", &NEEDS[..1], false, false).is_ok());
    }
}
