//! The Arch package, built by the real makepkg (Debian packages pacman's makepkg 6.0.2 as
//! `makepkg`) and read back with `bsdtar`, as pacman would read it.
//!
//! makepkg refuses to run as root, and the PKGBUILD's `build()` and `package()` run
//! `cargo xtask` in the checkout it lives in. So the checkout (without `target/` and `.git`)
//! is copied into a build directory, where makepkg writes its `src/`, `pkg/` and the package
//! beside the PKGBUILD, and compiles into the copy's `target/` (kept in
//! `target/packages/arch-cargo-target` from one run to the next). The copy is in
//! `target/packages/arch/checkout`; as an ordinary user makepkg runs there, with the user's
//! own toolchain. As root (CI) it runs as `nobody`, owner of the build directory, in a
//! private mount namespace where the build directory, the kept `target/`, the toolchain
//! rustc uses here (its sysroot) and the cargo registry are bind-mounted into a private
//! /tmp (they may sit under /root, which `nobody` cannot enter; see [`as_build_user`]);
//! cargo runs offline from that registry, whose crates the root build has just fetched.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::{fresh_dir, symbolic_mode};
use crate::util::{create_dir_all, find_program, project_root, run_checked, TaskResult};

/// The user makepkg runs as when the xtask runs as root: it exists on every distribution
/// and owns no file of its own.
const BUILD_USER: &str = "nobody";

/// Members of every pacman package that are its metadata, not files it installs.
const METADATA: &[&str] = &[".PKGINFO", ".BUILDINFO", ".MTREE", ".INSTALL", ".CHANGELOG"];

/// Builds packaging/arch/PKGBUILD with makepkg and returns its files as the install tree
/// would have them ([`arch_view`]), after checking its `.PKGINFO` ([`check_pkginfo`]).
pub fn arch_files(work: &Path, crate_version: &str) -> TaskResult<BTreeMap<String, String>> {
    let makepkg = find_program("makepkg").context(
        "makepkg is missing: apt-get install makepkg (pacman's makepkg, as Debian packages it)",
    )?;
    let bsdtar =
        find_program("bsdtar").context("bsdtar is missing: apt-get install libarchive-tools")?;
    let dir = fresh_dir(&work.join("arch"))?;
    let checkout = dir.join("checkout");
    copy_checkout(&project_root(), &checkout)?;
    // The copy's target/ outlives it, so that the next run compiles only what changed.
    let cargo_target = work.join("arch-cargo-target");
    create_dir_all(&cargo_target)?;
    let startdir = checkout.join("packaging/arch");
    let mut command = Command::new(&makepkg);
    // --nodeps: the dependencies are Arch packages, and this host has no pacman database.
    command.args(["--nodeps", "--noconfirm", "--nocolor"]);
    if nix::unistd::Uid::effective().is_root() {
        as_build_user(&mut command, &dir, &cargo_target)?;
    } else {
        std::os::unix::fs::symlink(&cargo_target, checkout.join("target"))
            .context("cannot link the copy's target directory")?;
        command.current_dir(&startdir);
    }
    run_checked(&mut command).context("makepkg failed")?;
    let packages: Vec<PathBuf> = std::fs::read_dir(&startdir)
        .with_context(|| format!("cannot list {}", startdir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().contains(".pkg.tar"))
        })
        .collect();
    let [package] = packages.as_slice() else {
        bail!("expected one package from makepkg, found {packages:?}");
    };
    let read = |arguments: &[&std::ffi::OsStr]| -> TaskResult<String> {
        let output = Command::new(&bsdtar)
            .args(arguments)
            .output()
            .context("cannot run bsdtar")?;
        if !output.status.success() {
            bail!(
                "bsdtar {arguments:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let pkginfo = read(&["-xOf".as_ref(), package.as_os_str(), ".PKGINFO".as_ref()])?;
    check_pkginfo(&pkginfo, crate_version)?;
    arch_view(&read(&["-tvf".as_ref(), package.as_os_str()])?)
}

/// Copies the checkout at `root` into `copy`, all but `target/` and `.git`.
fn copy_checkout(root: &Path, copy: &Path) -> TaskResult {
    create_dir_all(copy)?;
    let entries =
        std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?;
    let mut command = Command::new("cp");
    command.arg("-a");
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name != "target" && name != ".git" {
            command.arg(entry.path());
        }
    }
    run_checked(command.arg(copy))
}

/// Where the build directory appears to [`BUILD_USER`]: in a private /tmp of its own mount
/// namespace, at the same path every run, so that cargo's fingerprints (absolute paths)
/// match and the kept target/ is reused.
const BUILD_MOUNT: &str = "/tmp/vfio-bind-makepkg";

/// Makes `command` run makepkg as [`BUILD_USER`] in a private mount namespace, in the copy
/// of the checkout in `dir`: `dir` is bind-mounted at [`BUILD_MOUNT`] in a private /tmp, and
/// below it `cargo_target` as the copy's target/, the toolchain rustc uses here (its
/// sysroot) and the cargo registry; the environment is its own: a home in `dir`, the
/// toolchain's `bin` first in PATH, cargo offline. `nobody` reaches all of them through
/// the mounts, without entering the directories above them (/root, say).
fn as_build_user(command: &mut Command, dir: &Path, cargo_target: &Path) -> TaskResult {
    use crate::util::enter_private_mount_namespace;
    use nix::fcntl::{open, OFlag};
    use nix::mount::{mount, MsFlags};
    use nix::sys::stat::Mode;
    use nix::unistd::{chdir, mkdir, setgid, setgroups, setuid, User};
    use std::ffi::CStr;

    let user = User::from_name(BUILD_USER)
        .ok()
        .flatten()
        .with_context(|| {
            format!("no user {BUILD_USER} to run makepkg as (makepkg refuses root)")
        })?;
    let mounted = Path::new(BUILD_MOUNT);
    // (source on the host, path below dir where it is mounted)
    let mut binds = vec![
        (cargo_target.to_path_buf(), "checkout/target"),
        (rustc_sysroot()?, "toolchain"),
    ];
    let root_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    for (cache, below) in [
        ("registry", "cargo-home/registry"),
        ("git", "cargo-home/git"),
    ] {
        if root_cargo_home.join(cache).is_dir() {
            binds.push((root_cargo_home.join(cache), below));
        }
    }
    for (_, below) in &binds {
        create_dir_all(&dir.join(below))?;
    }
    create_dir_all(&dir.join("home"))?;
    let owner = format!("{}:{}", user.uid, user.gid);
    for path in [dir, cargo_target] {
        run_checked(Command::new("chown").args(["-R", &owner]).arg(path))?;
    }
    // Every string is made before the fork: between fork and exec nothing may allocate.
    let cstring = |path: &Path| {
        CString::new(path.as_os_str().as_bytes()).context("a path contains a NUL byte")
    };
    let build_mount = cstring(mounted)?;
    let mut mounts = vec![(cstring(dir)?, build_mount.clone(), MsFlags::MS_BIND)];
    for (source, below) in &binds {
        mounts.push((
            cstring(source)?,
            cstring(&mounted.join(below))?,
            MsFlags::MS_BIND | MsFlags::MS_REC,
        ));
    }
    let startdir = cstring(&mounted.join("checkout/packaging/arch"))?;
    command
        .env_clear()
        .env("HOME", mounted.join("home"))
        .env(
            "PATH",
            format!("{BUILD_MOUNT}/toolchain/bin:/usr/local/bin:/usr/bin:/bin"),
        )
        .env("CARGO_HOME", mounted.join("cargo-home"))
        .env("CARGO_NET_OFFLINE", "true")
        .env("LANG", "C.UTF-8")
        // makepkg lists the host's pacman packages in .BUILDINFO; this host has no pacman
        // database, and pacman would print an error for it.
        .env("PACMAN", "true");
    const NONE: Option<&CStr> = None;
    let (uid, gid) = (user.uid, user.gid);
    // SAFETY of the closure: between fork and exec it only makes system calls with
    // strings allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            enter_private_mount_namespace()?;
            // Each source is opened before the private /tmp hides what is below /tmp (a
            // checkout there), then mounted from /proc/self/fd/N.
            let mut sources = [const { None }; 8];
            if mounts.len() > sources.len() {
                return Err(std::io::Error::other("too many mounts"));
            }
            for (slot, (source, _, _)) in sources.iter_mut().zip(&mounts) {
                *slot = Some(open(
                    source.as_c_str(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?);
            }
            mount(
                Some(c"tmpfs"),
                c"/tmp",
                Some(c"tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(c"mode=1777"),
            )?;
            mkdir(build_mount.as_c_str(), Mode::from_bits_truncate(0o755))?;
            for (source, (_, target, flags)) in sources.iter().flatten().zip(&mounts) {
                let mut buffer = [0u8; 32];
                mount(
                    Some(fd_path(source.as_raw_fd(), &mut buffer)),
                    target.as_c_str(),
                    NONE,
                    *flags,
                    NONE,
                )?;
            }
            chdir(startdir.as_c_str())?;
            setgroups(&[])?;
            setgid(gid)?;
            setuid(uid)?;
            Ok(())
        });
    }
    Ok(())
}

/// `/proc/self/fd/FD` as a C string written into `buffer`, without allocating (it is made
/// between fork and exec).
fn fd_path(fd: std::os::fd::RawFd, buffer: &mut [u8; 32]) -> &std::ffi::CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buffer[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut count = 0;
    let mut rest = fd.unsigned_abs();
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for index in 0..count {
        buffer[PREFIX.len() + index] = digits[count - 1 - index];
    }
    buffer[PREFIX.len() + count] = 0;
    std::ffi::CStr::from_bytes_until_nul(buffer).unwrap_or(c"/proc/self/fd")
}

/// The sysroot of the toolchain rustc is here (rust-toolchain.toml's, through rustup).
fn rustc_sysroot() -> TaskResult<PathBuf> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(project_root())
        .output()
        .context("cannot run rustc")?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || sysroot.is_empty() {
        bail!("rustc --print sysroot failed");
    }
    Ok(PathBuf::from(sysroot))
}

/// The `key = value` lines of a `.PKGINFO`.
fn pkginfo_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(" = ").or_else(|| {
                // makepkg writes `url = ` with nothing after it when url is empty.
                line.strip_suffix(" =").map(|name| (name, ""))
            })?;
            (name == key).then_some(value)
        })
        .collect()
}

/// Checks what pacman reads from `.PKGINFO`: the package's name, its version (the crate's,
/// with a release), its architecture and licence.
fn check_pkginfo(text: &str, crate_version: &str) -> TaskResult {
    let one = |key: &str| -> TaskResult<&str> {
        match pkginfo_values(text, key).as_slice() {
            [value] => Ok(*value),
            values => bail!("the package's .PKGINFO has {values:?} for {key}:\n{text}"),
        }
    };
    if one("pkgname")? != "vfio-bind" {
        bail!("the package is not named vfio-bind:\n{text}");
    }
    let pkgver = one("pkgver")?;
    let release = pkgver
        .strip_prefix(crate_version)
        .and_then(|rest| rest.strip_prefix('-'));
    if release.is_none_or(str::is_empty) {
        bail!("the package's version is {pkgver}, not {crate_version}-RELEASE (Cargo.toml says {crate_version})");
    }
    if one("arch")? != "x86_64" {
        bail!("the package is not for x86_64:\n{text}");
    }
    if one("license")?.is_empty() {
        bail!("the package names no licence:\n{text}");
    }
    Ok(())
}

/// The package's files (`bsdtar -tvf` output) as the install tree would have them: every
/// entry owned by root, the metadata members present and then left out, man pages gzipped
/// (makepkg's `zipman`, Arch's convention) and `.gz` dropped.
fn arch_view(listing: &str) -> TaskResult<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let mut metadata = Vec::new();
    for line in listing.lines().filter(|line| !line.trim().is_empty()) {
        // -rwxr-xr-x  0 root   root   704632 Dec  5 10:05 usr/bin/vfio-bind
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [permissions, _links, owner, group, _size, _month, _day, _time, path] =
            fields.as_slice()
        else {
            bail!("odd bsdtar -tv line {line:?}");
        };
        if (*owner, *group) != ("root", "root") {
            bail!("{path} is owned by {owner}:{group}, not root:root");
        }
        if METADATA.contains(path) {
            metadata.push(*path);
            continue;
        }
        if permissions.starts_with('d') {
            continue;
        }
        if !permissions.starts_with('-') {
            bail!("{path} is not a regular file: {line:?}");
        }
        let mode = symbolic_mode(permissions).with_context(|| format!("odd mode in {line:?}"))?;
        let path = match path.strip_prefix("usr/share/man/") {
            Some(_) => path
                .strip_suffix(".gz")
                .with_context(|| format!("{path} is not gzipped, as makepkg's zipman does"))?,
            None => path,
        };
        files.insert(path.to_string(), format!("{mode:o}"));
    }
    for member in [".PKGINFO", ".MTREE"] {
        if !metadata.contains(&member) {
            bail!("the package has no {member}, which pacman reads");
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
-rw-r--r--  0 root   root      605 Dec  5 10:05 .BUILDINFO
-rw-r--r--  0 root   root     1357 Dec  5 10:05 .MTREE
-rw-r--r--  0 root   root      442 Dec  5 10:05 .PKGINFO
drwxr-xr-x  0 root   root        0 Dec  5 10:05 usr/
drwxr-xr-x  0 root   root        0 Dec  5 10:05 usr/bin/
-rwxr-xr-x  0 root   root   704632 Dec  5 10:05 usr/bin/vfio-bind
-rw-r--r--  0 root   root     1698 Dec  5 10:05 usr/lib/initcpio/hooks/vfio-bind
-rw-r--r--  0 root   root     6277 Dec  5 10:05 usr/share/man/man8/vfio-bind.8.gz
";

    const PKGINFO: &str = "\
# Generated by makepkg 6.0.2
# using fakeroot version 1.31
pkgname = vfio-bind
pkgbase = vfio-bind
pkgver = 0.1.0-1
pkgdesc = Hand chosen PCI functions to vfio-pci by address at early boot
url = 
builddate = 1796465115
packager = Unknown Packager
size = 740718
arch = x86_64
license = MIT OR Apache-2.0
makedepend = cargo
";

    #[test]
    fn the_arch_view_keeps_the_files_with_their_modes() {
        let view = arch_view(LISTING).unwrap();
        let expected: BTreeMap<String, String> = [
            ("usr/bin/vfio-bind", "755"),
            ("usr/lib/initcpio/hooks/vfio-bind", "644"),
            ("usr/share/man/man8/vfio-bind.8", "644"),
        ]
        .iter()
        .map(|(path, mode)| (path.to_string(), mode.to_string()))
        .collect();
        assert_eq!(view, expected);
    }

    #[test]
    fn the_arch_view_refuses_what_a_pacman_package_must_not_be() {
        let cases = [
            (
                LISTING.replace("root   root   704632", "nobody nogroup 704632"),
                "owned by nobody:nogroup",
            ),
            (LISTING.replace(".PKGINFO", "PKGINFO"), "no .PKGINFO"),
            (
                LISTING.replace("vfio-bind.8.gz", "vfio-bind.8"),
                "not gzipped",
            ),
            (
                LISTING.replace(
                    "-rwxr-xr-x  0 root   root   704632",
                    "lrwxrwxrwx  0 root   root   704632",
                ),
                "not a regular file",
            ),
            (
                LISTING.replace("10:05 usr/bin/vfio-bind", "10:05"),
                "odd bsdtar",
            ),
        ];
        for (listing, reason) in cases {
            let error = format!("{:#}", arch_view(&listing).unwrap_err());
            assert!(error.contains(reason), "{reason}: {error}");
        }
    }

    #[test]
    fn the_pkginfo_names_the_crate_version_arch_and_licence() {
        check_pkginfo(PKGINFO, "0.1.0").unwrap();
        let cases = [
            (
                PKGINFO.replace("pkgver = 0.1.0-1", "pkgver = 0.2.0-1"),
                "not 0.1.0-RELEASE",
            ),
            (
                PKGINFO.replace("pkgver = 0.1.0-1", "pkgver = 0.1.0"),
                "not 0.1.0-RELEASE",
            ),
            (
                PKGINFO.replace("arch = x86_64", "arch = any"),
                "not for x86_64",
            ),
            (
                PKGINFO.replace("license = MIT OR Apache-2.0\n", ""),
                "[] for license",
            ),
            (
                PKGINFO.replace("pkgname = vfio-bind", "pkgname = other"),
                "not named",
            ),
        ];
        for (text, reason) in cases {
            let error = format!("{:#}", check_pkginfo(&text, "0.1.0").unwrap_err());
            assert!(error.contains(reason), "{reason}: {error}");
        }
    }

    #[test]
    fn fd_paths_are_written_without_allocating() {
        let mut buffer = [0u8; 32];
        assert_eq!(fd_path(3, &mut buffer), c"/proc/self/fd/3");
        assert_eq!(fd_path(0, &mut buffer), c"/proc/self/fd/0");
        assert_eq!(
            fd_path(1234567890, &mut buffer),
            c"/proc/self/fd/1234567890"
        );
    }

    #[test]
    fn an_empty_pkginfo_value_reads_as_empty() {
        assert_eq!(pkginfo_values("url = \nurl =\n", "url"), ["", ""]);
        assert_eq!(pkginfo_values(PKGINFO, "makedepend"), ["cargo"]);
    }
}
