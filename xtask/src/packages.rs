//! `cargo xtask check-packages`: the Arch and RPM packages ship exactly what
//! `cargo xtask install` installs, with the same modes.
//!
//! Both are built for real: the PKGBUILD's `build()` and `package()` run in bash as makepkg
//! runs them (makepkg itself is not installable here), and the spec goes through
//! `rpmbuild -bb --build-in-place`. What each produced is compared with a reference tree
//! made by [`install_tree`].

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use argh::FromArgs;

use crate::install::install_tree;
use crate::util::{project_root, run_checked, TaskResult};

/// build the Arch and RPM packages and check they ship exactly the install tree
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
    walk(root, root, &mut found)
        .map_err(|error| format!("cannot list {}: {error}", root.display()))?;
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
    Err(format!(
        "{package} differs from cargo xtask install:\n{}",
        differences.join("\n")
    ))
}

fn fresh_dir(path: &Path) -> TaskResult<PathBuf> {
    let _ = fs::remove_dir_all(path);
    fs::create_dir_all(path)
        .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Runs the PKGBUILD's `build` and `package` in bash with makepkg's variables.
fn arch_package(root: &Path, work: &Path) -> TaskResult<PathBuf> {
    let pkgdir = fresh_dir(&work.join("arch-pkg"))?;
    let srcdir = fresh_dir(&work.join("arch-src"))?;
    let startdir = root.join("packaging/arch");
    run_checked(
        Command::new("bash")
            .args(["-euc", "source ./PKGBUILD; build; package"])
            .current_dir(&startdir)
            .env("startdir", &startdir)
            .env("srcdir", &srcdir)
            .env("pkgdir", &pkgdir),
    )?;
    Ok(pkgdir)
}

/// Builds the RPM in place and lists its files as `path -> mode` (man pages decompressed
/// names: rpmbuild gzips them).
fn rpm_files(root: &Path, work: &Path) -> TaskResult<BTreeMap<String, String>> {
    if Command::new("rpmbuild").arg("--version").output().is_err() {
        return Err("rpmbuild is missing: apt-get install rpm".into());
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
        .map_err(|error| format!("rpmbuild made no x86_64 package: {error}"))?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    let [rpm] = rpms.as_slice() else {
        return Err(format!("expected one RPM, found {rpms:?}"));
    };
    let output = Command::new("rpm")
        .args([
            "-qp",
            "--queryformat",
            "[%{FILEMODES:octal} %{FILENAMES}\\n]",
        ])
        .arg(rpm)
        .output()
        .map_err(|error| format!("cannot run rpm: {error}"))?;
    let mut files = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((mode, path)) = line.split_once(' ') else {
            continue;
        };
        let mode = u32::from_str_radix(mode, 8).map_err(|_| format!("odd rpm line {line:?}"))?;
        // Directories owned with %dir are not files of the install tree.
        if mode & 0o170000 == 0o040000 {
            continue;
        }
        let path = path.trim_start_matches('/').trim_end_matches(".gz");
        files.insert(path.to_string(), format!("{:o}", mode & 0o7777));
    }
    Ok(files)
}

pub fn run(_args: CheckPackagesArgs) -> TaskResult {
    let root = project_root();
    let work = root.join("target/packages");
    let binary = crate::build::build_static_binary()?;
    let reference = fresh_dir(&work.join("reference"))?;
    install_tree(&reference, "/usr", &binary)?;
    let expected = files_with_modes(&reference)?;

    let pkgdir = arch_package(&root, &work)?;
    compare("PKGBUILD", &expected, &files_with_modes(&pkgdir)?)?;
    compare("RPM spec", &expected, &rpm_files(&root, &work)?)?;
    Ok(())
}
