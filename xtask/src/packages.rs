//! `cargo xtask check-packages`: the Arch, RPM and Debian packages ship exactly what
//! `cargo xtask install` installs, with the same modes.
//!
//! All are built for real: the PKGBUILD by makepkg (as an unprivileged user, see
//! [`arch`]), the spec by `rpmbuild -bb --build-in-place`, and `packaging/debian` by
//! `dpkg-buildpackage -b`. Each package is read back with its format's tool (`bsdtar`,
//! `rpm -qp`, `dpkg-deb`) and compared with a reference tree made by [`install_tree`], after
//! undoing what each distribution's conventions change (man pages gzipped; for Debian
//! [`debian_view`], for Arch [`arch::arch_view`]). The
//! Debian package is also installed and removed with dpkg in an empty root, where both must
//! trigger update-initramfs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context};
use argh::FromArgs;

use crate::install::install_tree;
use crate::util::{create_dir_all, project_root, run_checked, TaskResult};

mod arch;

/// build the Arch, RPM and Debian packages and check they ship exactly the install tree
#[derive(FromArgs)]
#[argh(subcommand, name = "check-packages")]
pub struct CheckPackagesArgs {}

/// Every file below `root` with its permission bits, as `usr/bin/vfio-bind -> 755`.
fn files_with_modes(root: &Path) -> TaskResult<BTreeMap<String, String>> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeMap<String, String>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let metadata = fs::symlink_metadata(&path)?;
            if metadata.is_dir() {
                walk(root, &path, found)?;
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("below root")
                    .display()
                    .to_string();
                found.insert(
                    relative,
                    format!("{:o}", metadata.permissions().mode() & 0o7777),
                );
            }
        }
        Ok(())
    }
    let mut found = BTreeMap::new();
    walk(root, root, &mut found).with_context(|| format!("cannot list {}", root.display()))?;
    Ok(found)
}

fn compare(
    package: &str,
    expected: &BTreeMap<String, String>,
    found: &BTreeMap<String, String>,
) -> TaskResult {
    if expected == found {
        println!(
            "{package}: {} files, the same as cargo xtask install",
            found.len()
        );
        return Ok(());
    }
    let mut differences = Vec::new();
    for (path, mode) in expected {
        match found.get(path) {
            None => differences.push(format!("  missing: {path}")),
            Some(other) if other != mode => {
                differences.push(format!("  mode of {path}: {other}, expected {mode}"))
            }
            Some(_) => {}
        }
    }
    for path in found.keys().filter(|path| !expected.contains_key(*path)) {
        differences.push(format!("  extra: {path}"));
    }
    Err(anyhow!(
        "{package} differs from cargo xtask install:\n{}",
        differences.join("\n")
    ))
}

fn fresh_dir(path: &Path) -> TaskResult<PathBuf> {
    let _ = fs::remove_dir_all(path);
    create_dir_all(path)?;
    Ok(path.to_path_buf())
}

/// Builds the RPM in place and lists its files as `path -> mode` (man pages decompressed
/// names: rpmbuild gzips them).
fn rpm_files(root: &Path, work: &Path) -> TaskResult<BTreeMap<String, String>> {
    if Command::new("rpmbuild").arg("--version").output().is_err() {
        bail!("rpmbuild is missing: apt-get install rpm");
    }
    let topdir = fresh_dir(&work.join("rpm"))?;
    run_checked(
        Command::new("rpmbuild")
            .args(["-bb", "--build-in-place", "--nodeps", "--quiet", "--define"])
            .arg(format!("_topdir {}", topdir.display()))
            .arg("packaging/rpm/vfio-bind.spec")
            .current_dir(root),
    )?;
    let rpms: Vec<PathBuf> = fs::read_dir(topdir.join("RPMS/x86_64"))
        .context("rpmbuild made no x86_64 package")?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    let [rpm] = rpms.as_slice() else {
        bail!("expected one RPM, found {rpms:?}");
    };
    let output = Command::new("rpm")
        .args([
            "-qp",
            "--queryformat",
            "[%{FILEMODES:octal} %{FILENAMES}\\n]",
        ])
        .arg(rpm)
        .output()
        .context("cannot run rpm")?;
    let mut files = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((mode, path)) = line.split_once(' ') else {
            continue;
        };
        let mode =
            u32::from_str_radix(mode, 8).with_context(|| format!("odd rpm line {line:?}"))?;
        // Directories owned with %dir are not files of the install tree.
        if mode & 0o170000 == 0o040000 {
            continue;
        }
        let path = path.trim_start_matches('/').trim_end_matches(".gz");
        files.insert(path.to_string(), format!("{:o}", mode & 0o7777));
    }
    Ok(files)
}

/// Files only the Debian package has, as policy wants them, with their modes.
const DEBIAN_ONLY: &[(&str, &str)] = &[
    ("usr/share/doc/vfio-bind/copyright", "644"),
    ("usr/share/doc/vfio-bind/changelog.Debian.gz", "644"),
];

/// Paths the Debian package moves, and where the install tree has them: Debian's zsh reads
/// vendor-completions, not site-functions.
const DEBIAN_MOVED: &[(&str, &str)] = &[(
    "usr/share/zsh/vendor-completions/_vfio-bind",
    "usr/share/zsh/site-functions/_vfio-bind",
)];

/// The permission bits of an `ls -l`/`tar -tv` mode such as `-rwxr-xr-x`.
fn symbolic_mode(text: &str) -> Option<u32> {
    let bits: Vec<char> = text.chars().collect();
    if bits.len() != 10 {
        return None;
    }
    let mut mode = 0;
    for (index, &bit) in bits[1..].iter().enumerate() {
        let shift = 8 - index as u32;
        let (set, special) = match (index % 3, bit) {
            (_, '-') => (false, false),
            (0, 'r') | (1, 'w') | (2, 'x') => (true, false),
            (2, 's') if index < 6 => (true, true),
            (2, 'S') if index < 6 => (false, true),
            (2, 't') if index == 8 => (true, true),
            (2, 'T') if index == 8 => (false, true),
            _ => return None,
        };
        if set {
            mode |= 1 << shift;
        }
        if special {
            // setuid (owner x), setgid (group x), sticky (other x).
            mode |= 0o1000 << (2 - index / 3);
        }
    }
    Some(mode)
}

/// The Debian package's files (`dpkg-deb --contents` output) as the install tree would
/// have them: every entry owned by root, the [`DEBIAN_ONLY`] files present with their
/// modes and then left out, [`DEBIAN_MOVED`] moved back, man pages gzipped and `.gz`
/// dropped.
fn debian_view(contents: &str) -> TaskResult<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for line in contents.lines().filter(|line| !line.trim().is_empty()) {
        // -rwxr-xr-x root/root    235184 2026-12-03 16:30 ./usr/bin/vfio-bind
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [permissions, owner, _size, _date, _time, path] = fields.as_slice() else {
            bail!("odd dpkg-deb --contents line {line:?}");
        };
        if *owner != "root/root" {
            bail!("{path} is owned by {owner}, not root/root");
        }
        if permissions.starts_with('d') {
            continue;
        }
        if !permissions.starts_with('-') {
            bail!("{path} is not a regular file: {line:?}");
        }
        let mode = symbolic_mode(permissions).with_context(|| format!("odd mode in {line:?}"))?;
        files.insert(
            path.trim_start_matches("./").to_string(),
            format!("{mode:o}"),
        );
    }
    for (path, mode) in DEBIAN_ONLY {
        match files.remove(*path) {
            Some(found) if found == *mode => {}
            Some(found) => bail!("mode of {path}: {found}, expected {mode}"),
            None => bail!("the Debian package has no {path}"),
        }
    }
    for (debian, installed) in DEBIAN_MOVED {
        let mode = files
            .remove(*debian)
            .with_context(|| format!("the Debian package has no {debian}"))?;
        files.insert(installed.to_string(), mode);
    }
    files
        .into_iter()
        .map(|(path, mode)| {
            if !path.starts_with("usr/share/man/") {
                return Ok((path, mode));
            }
            match path.strip_suffix(".gz") {
                Some(page) => Ok((page.to_string(), mode)),
                None => Err(anyhow!("{path} is not gzipped, as Debian policy wants")),
            }
        })
        .collect()
}

/// Builds the Debian package with `dpkg-buildpackage -b` from a copy of `packaging/debian`
/// in `work` (so nothing is written beside the checkout) and returns the .deb's path.
/// `run` runs each command (to show or capture its output).
pub fn build_debian(work: &Path, run: &dyn Fn(&mut Command) -> TaskResult) -> TaskResult<PathBuf> {
    if Command::new("dpkg-buildpackage")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("dpkg-buildpackage is missing: apt-get install dpkg-dev");
    }
    let root = project_root();
    let source = fresh_dir(&work.join("src"))?;
    run(Command::new("cp")
        .arg("-R")
        .arg(root.join("packaging/debian"))
        .arg(source.join("debian")))?;
    run(Command::new("dpkg-buildpackage")
        .args(["-b", "-us", "-uc"])
        .current_dir(&source)
        .env("VFIO_BIND_CHECKOUT", &root))?;
    let version = debian_version()?;
    let deb = work.join(format!("vfio-bind_{version}_amd64.deb"));
    if !deb.is_file() {
        bail!("dpkg-buildpackage did not write {}", deb.display());
    }
    Ok(deb)
}

/// The version of the newest entry of packaging/debian/changelog, e.g. `0.1.0-1`.
fn debian_version() -> TaskResult<String> {
    let path = project_root().join("packaging/debian/changelog");
    let changelog =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    changelog
        .lines()
        .next()
        .and_then(|line| line.split_once('(')?.1.split_once(')'))
        .map(|(version, _)| version.to_string())
        .with_context(|| format!("no version in the first line of {}", path.display()))
}

/// The `version` of the vfio-bind crate (Cargo.toml).
fn crate_version() -> TaskResult<String> {
    let path = project_root().join("Cargo.toml");
    let manifest =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_string)
        .with_context(|| format!("no version in {}", path.display()))
}

/// Builds the Debian package and checks what only dpkg-deb shows: the control fields and
/// the trigger that rebuilds the initramfs. Returns its files as [`debian_view`] has them.
fn debian_files(work: &Path) -> TaskResult<BTreeMap<String, String>> {
    let deb = build_debian(&fresh_dir(&work.join("debian"))?, &|command| {
        run_checked(command)
    })?;
    // `dpkg-deb OPTION DEB [MEMBER]`: a control field list, a control file, the contents.
    let query = |option: &str, member: Option<&str>| -> TaskResult<String> {
        let output = Command::new("dpkg-deb")
            .arg(option)
            .arg(&deb)
            .args(member)
            .output()
            .context("cannot run dpkg-deb")?;
        if !output.status.success() {
            bail!(
                "dpkg-deb {option} {} failed: {}",
                deb.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let upstream = crate_version()?;
    let fields = query("--field", None)?;
    for expected in [
        "Package: vfio-bind".to_string(),
        "Architecture: amd64".to_string(),
        format!("Version: {upstream}-"),
    ] {
        if !fields.lines().any(|line| line.starts_with(&expected)) {
            bail!(
                "the Debian package's control has no {expected:?} (Cargo.toml says version {upstream}):\n{fields}"
            );
        }
    }
    let triggers = query("--info", Some("triggers"))?;
    if !triggers
        .lines()
        .any(|line| line.trim() == "activate-noawait update-initramfs")
    {
        bail!("the Debian package does not activate update-initramfs (its triggers: {triggers:?})");
    }
    installs_and_triggers_the_initramfs(work, &deb)?;
    debian_view(&query("--contents", None)?)
}

/// Writes `text` to `path` with `mode`.
fn write_file(path: &Path, text: &str, mode: u32) -> TaskResult {
    fs::write(path, text)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Builds, in `dir`, a package that declares interest in `update-initramfs` as
/// initramfs-tools does, and whose postinst appends each trigger it gets to `marker`.
fn initramfs_tools_stand_in(dir: &Path, marker: &Path) -> TaskResult<PathBuf> {
    let stand_in = dir.join("initramfs-tools-stand-in");
    let control = stand_in.join("DEBIAN");
    create_dir_all(&control)?;
    write_file(
        &control.join("control"),
        "Package: initramfs-tools-stand-in\nVersion: 1\nArchitecture: all\n\
         Maintainer: vfio-bind check-packages <check@invalid>\n\
         Description: is interested in update-initramfs, as initramfs-tools is\n",
        0o644,
    )?;
    write_file(
        &control.join("triggers"),
        "interest-await update-initramfs\n",
        0o644,
    )?;
    write_file(
        &control.join("postinst"),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = triggered ]; then echo \"$2\" >>'{}'; fi\nexit 0\n",
            marker.display()
        ),
        0o755,
    )?;
    let stand_in_deb = dir.join("initramfs-tools-stand-in.deb");
    run_checked(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&stand_in)
            .arg(&stand_in_deb)
            .stdout(std::process::Stdio::null()),
    )?;
    Ok(stand_in_deb)
}

/// Installs and removes the package with dpkg in an empty root, beside a stand-in for
/// initramfs-tools that declares interest in `update-initramfs` as the real one does, and
/// checks that both steps had it rebuild the image (its postinst called `triggered`).
/// Maintainer scripts run outside the root (`--force-script-chrootless`), so the root needs
/// no shell.
fn installs_and_triggers_the_initramfs(work: &Path, deb: &Path) -> TaskResult {
    let dir = fresh_dir(&work.join("debian-install"))?;
    let root = dir.join("root");
    let marker = dir.join("triggered");
    create_dir_all(&root.join("var/lib/dpkg/info"))?;
    create_dir_all(&root.join("var/lib/dpkg/updates"))?;
    write_file(&root.join("var/lib/dpkg/status"), "", 0o644)?;
    let stand_in_deb = initramfs_tools_stand_in(&dir, &marker)?;
    let dpkg = |arguments: &[&std::ffi::OsStr]| {
        run_checked(
            Command::new("dpkg")
                .arg(format!("--root={}", root.display()))
                .args([
                    "--force-not-root",
                    "--force-script-chrootless",
                    "--log=/dev/null",
                ])
                .args(arguments)
                .stdout(std::process::Stdio::null()),
        )
    };
    let triggered = || fs::read_to_string(&marker).unwrap_or_default();
    dpkg(&["-i".as_ref(), stand_in_deb.as_os_str()])?;
    dpkg(&["-i".as_ref(), deb.as_os_str()])?;
    if triggered() != "update-initramfs\n" {
        bail!(
            "installing the Debian package did not trigger update-initramfs once (the stand-in saw {:?})",
            triggered()
        );
    }
    if !root.join("usr/bin/vfio-bind").is_file() {
        bail!("dpkg -i did not install usr/bin/vfio-bind");
    }
    dpkg(&["-r".as_ref(), "vfio-bind".as_ref()])?;
    if triggered() != "update-initramfs\nupdate-initramfs\n" {
        bail!(
            "removing the Debian package did not trigger update-initramfs (the stand-in saw {:?})",
            triggered()
        );
    }
    if root.join("usr/bin/vfio-bind").exists() {
        bail!("dpkg -r left usr/bin/vfio-bind behind");
    }
    println!(
        "Debian package: installs and removes with dpkg, each time triggering update-initramfs"
    );
    Ok(())
}

pub fn run(_args: CheckPackagesArgs) -> TaskResult {
    crate::setup::ensure("check-packages", crate::setup::CHECK_PACKAGES)?;
    let root = project_root();
    let work = root.join("target/packages");
    let binary = crate::build::build_static_binary()?;
    let reference = fresh_dir(&work.join("reference"))?;
    install_tree(&reference, "/usr", &binary)?;
    let expected = files_with_modes(&reference)?;

    compare(
        "PKGBUILD (makepkg)",
        &expected,
        &arch::arch_files(&work, &crate_version()?)?,
    )?;
    compare("RPM spec", &expected, &rpm_files(&root, &work)?)?;
    compare("Debian package", &expected, &debian_files(&work)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTENTS: &str = "\
drwxr-xr-x root/root         0 2026-12-03 16:30 ./
drwxr-xr-x root/root         0 2026-12-03 16:30 ./usr/bin/
-rwxr-xr-x root/root    235184 2026-12-03 16:30 ./usr/bin/vfio-bind
-rw-r--r-- root/root       270 2026-12-03 16:30 ./usr/share/doc/vfio-bind/changelog.Debian.gz
-rw-r--r-- root/root      1595 2026-12-03 16:30 ./usr/share/doc/vfio-bind/copyright
-rw-r--r-- root/root      2592 2026-12-03 16:30 ./usr/share/man/man8/vfio-bind.8.gz
-rw-r--r-- root/root      3568 2026-12-03 16:30 ./usr/share/zsh/vendor-completions/_vfio-bind
";

    #[test]
    fn the_debian_view_undoes_debian_conventions_only() {
        let view = debian_view(CONTENTS).unwrap();
        let expected: BTreeMap<String, String> = [
            ("usr/bin/vfio-bind", "755"),
            ("usr/share/man/man8/vfio-bind.8", "644"),
            ("usr/share/zsh/site-functions/_vfio-bind", "644"),
        ]
        .iter()
        .map(|(path, mode)| (path.to_string(), mode.to_string()))
        .collect();
        assert_eq!(view, expected);
    }

    #[test]
    fn the_debian_view_refuses_what_a_debian_package_must_not_be() {
        let cases = [
            (
                CONTENTS.replace("./usr/share/doc/vfio-bind/copyright", "./x"),
                "copyright",
            ),
            (
                CONTENTS.replace(
                    "-rw-r--r-- root/root      1595",
                    "-rw------- root/root      1595",
                ),
                "mode of usr/share/doc/vfio-bind/copyright: 600",
            ),
            (
                CONTENTS.replace(
                    "-rwxr-xr-x root/root    235184",
                    "-rwxr-xr-x build/build 235184",
                ),
                "owned by build/build",
            ),
            (
                CONTENTS.replace("vendor-completions", "site-functions"),
                "vendor-completions",
            ),
            (
                CONTENTS.replace(
                    "-rwxr-xr-x root/root    235184",
                    "lrwxrwxrwx root/root    235184",
                ),
                "not a regular file",
            ),
        ];
        for (contents, reason) in cases {
            let error = format!("{:#}", debian_view(&contents).unwrap_err());
            assert!(error.contains(reason), "{reason}: {error}");
        }
    }

    #[test]
    fn symbolic_modes_read_as_octal() {
        assert_eq!(symbolic_mode("-rwxr-xr-x"), Some(0o755));
        assert_eq!(symbolic_mode("-rw-r--r--"), Some(0o644));
        assert_eq!(symbolic_mode("-rwsr-xr-x"), Some(0o4755));
        assert_eq!(symbolic_mode("-rwxr-Sr-T"), Some(0o3744));
        assert_eq!(symbolic_mode("-rwxr-xr-"), None);
        assert_eq!(symbolic_mode("-rwxq-xr-x"), None);
    }

    #[test]
    fn the_debian_version_follows_the_crate() {
        let debian = debian_version().unwrap();
        assert_eq!(
            debian
                .split_once('-')
                .map(|(upstream, _)| upstream.to_string()),
            Some(crate_version().unwrap())
        );
    }
}
