//! `cargo xtask install`: the binary, the man page, and every hook file at the paths each
//! generator reads.
//!
//! [`FILES`] is the one list of what is installed where; [`install_tree`] installs it under
//! a staging root, for packaging and for the VM test, which builds real images from such a
//! tree by pointing the hooks' `VFIO_BIND_ROOT` at it (with the default prefix `/usr`).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use argh::FromArgs;

use crate::util::{project_root, TaskResult};

/// install the binary and the initramfs hooks into a staging directory
#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
pub struct InstallArgs {
    /// the staging root to install into (required)
    #[argh(option)]
    pub destdir: std::path::PathBuf,
    /// the installation prefix (default /usr)
    #[argh(option, default = "String::from(\"/usr\")")]
    pub prefix: String,
}

/// Where an installed file comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The release binary [`install_tree`] is given.
    Binary,
    /// A file of the project, relative to its root.
    Project(&'static str),
}

/// One installed file: its source, its path relative to the prefix, and its mode.
#[derive(Clone, Copy, Debug)]
pub struct InstallFile {
    pub source: Source,
    pub destination: &'static str,
    pub mode: u32,
}

const fn file(source: Source, destination: &'static str, mode: u32) -> InstallFile {
    InstallFile {
        source,
        destination,
        mode,
    }
}

/// Everything `install` puts under PREFIX, and nothing else.
///
/// The unit goes to `lib/vfio-bind/`, outside every systemd unit directory: the host's own
/// systemd must never see it; the hooks copy it into the images. mkinitcpio sources its
/// hook files (0644, as its own are); dracut and initramfs-tools run theirs (0755). The
/// init-top script's name makes initramfs-tools run it before udev's (see the script).
/// The completions go where each shell's own package looks for those of other packages
/// (bash-completion loads on demand; zsh's site-functions is in $fpath on Arch and Fedora,
/// Debian's package moves it to vendor-completions).
pub const FILES: &[InstallFile] = &[
    file(Source::Binary, "bin/vfio-bind", 0o755),
    file(
        Source::Project("mkinitcpio/install/vfio-bind"),
        "lib/initcpio/install/vfio-bind",
        0o644,
    ),
    file(
        Source::Project("mkinitcpio/hooks/vfio-bind"),
        "lib/initcpio/hooks/vfio-bind",
        0o644,
    ),
    file(
        Source::Project("dracut/90vfio-bind/module-setup.sh"),
        "lib/dracut/modules.d/90vfio-bind/module-setup.sh",
        0o755,
    ),
    file(
        Source::Project("dracut/90vfio-bind/vfio-bind.sh"),
        "lib/dracut/modules.d/90vfio-bind/vfio-bind.sh",
        0o755,
    ),
    file(
        Source::Project("initramfs-tools/hooks/vfio-bind"),
        "share/initramfs-tools/hooks/vfio-bind",
        0o755,
    ),
    file(
        Source::Project("initramfs-tools/scripts/init-top/00-vfio-bind"),
        "share/initramfs-tools/scripts/init-top/00-vfio-bind",
        0o755,
    ),
    file(
        Source::Project("systemd/vfio-bind.service"),
        "lib/vfio-bind/vfio-bind.service",
        0o644,
    ),
    file(
        Source::Project("man/vfio-bind.8"),
        "share/man/man8/vfio-bind.8",
        0o644,
    ),
    file(
        Source::Project("completions/vfio-bind.bash"),
        "share/bash-completion/completions/vfio-bind",
        0o644,
    ),
    file(
        Source::Project("completions/_vfio-bind"),
        "share/zsh/site-functions/_vfio-bind",
        0o644,
    ),
    file(
        Source::Project("completions/vfio-bind.fish"),
        "share/fish/vendor_completions.d/vfio-bind.fish",
        0o644,
    ),
];

pub fn run(args: InstallArgs) -> TaskResult {
    // Check the arguments before a release build that takes a while.
    staging_prefix(&args.destdir, &args.prefix)?;
    let binary = crate::build::build_static_binary()?;
    let installed = install_tree(&args.destdir, &args.prefix, &binary)?;
    for path in &installed {
        println!("{}", path.display());
    }
    if args.prefix.trim_end_matches('/') != "/usr" {
        eprintln!(
            "xtask: note: mkinitcpio, dracut and initramfs-tools look under /usr only, and the hooks \
             read /usr/bin/vfio-bind and /usr/lib/vfio-bind/vfio-bind.service: a prefix other than /usr \
             is only useful for staging"
        );
    }
    Ok(())
}

/// `destdir` joined with `prefix`, which must be absolute and free of `..`.
fn staging_prefix(destdir: &Path, prefix: &str) -> TaskResult<PathBuf> {
    let prefix_path = Path::new(prefix);
    if !prefix_path.is_absolute() {
        bail!("--prefix must be an absolute path, not {prefix:?}");
    }
    let mut staged = destdir.to_path_buf();
    for component in prefix_path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => staged.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                bail!("--prefix must not contain '..': {prefix:?}")
            }
        }
    }
    Ok(staged)
}

/// Installs [`FILES`] under `destdir` + `prefix`, `binary` being the release binary, and
/// returns the installed paths in the order of [`FILES`]. Files already there are replaced;
/// nothing else under `destdir` is touched. Directories are created 0755.
pub fn install_tree(destdir: &Path, prefix: &str, binary: &Path) -> TaskResult<Vec<PathBuf>> {
    let staged = staging_prefix(destdir, prefix)?;
    let root = project_root();
    let mut installed = Vec::with_capacity(FILES.len());
    for entry in FILES {
        let source = match entry.source {
            Source::Binary => binary.to_path_buf(),
            Source::Project(relative) => root.join(relative),
        };
        let destination = staged.join(entry.destination);
        install_file(&source, &destination, entry.mode)?;
        installed.push(destination);
    }
    Ok(installed)
}

/// Copies `source` to `destination` with exactly `mode`, through a temporary file renamed
/// into place, so a reader never sees half a file or the wrong mode.
fn install_file(source: &Path, destination: &Path, mode: u32) -> TaskResult {
    let parent = destination
        .parent()
        .with_context(|| format!("{} has no parent directory", destination.display()))?;
    create_dirs(parent)?;
    let name = destination
        .file_name()
        .with_context(|| format!("{} has no file name", destination.display()))?;
    let temporary = parent.join(format!(".{}.xtask-install", name.to_string_lossy()));
    let result = fs::copy(source, &temporary)
        .with_context(|| {
            format!(
                "cannot copy {} to {}",
                source.display(),
                temporary.display()
            )
        })
        .and_then(|_| {
            fs::set_permissions(&temporary, fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the mode of {}", temporary.display()))
        })
        .and_then(|()| {
            fs::rename(&temporary, destination)
                .with_context(|| format!("cannot move {} into place", destination.display()))
        });
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Creates `dir` and its missing parents with mode 0755 (whatever the umask).
fn create_dirs(dir: &Path) -> TaskResult {
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => return Ok(()),
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("cannot read {}", dir.display())))
        }
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another process made it meanwhile.
        Err(error) if error.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(error) => {
            return Err(
                anyhow::Error::new(error).context(format!("cannot create {}", dir.display()))
            )
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A directory of its own for one test, removed when dropped.
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = tempfile::Builder::new()
                .prefix(&format!("vfio-bind-xtask-install-{name}-"))
                .tempdir()
                .unwrap();
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    /// Every file and directory under `root`: relative path -> mode (and "/" for dirs).
    fn tree(root: &Path) -> BTreeMap<String, String> {
        fn walk(root: &Path, dir: &Path, found: &mut BTreeMap<String, String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let metadata = fs::symlink_metadata(&path).unwrap();
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                let mode = metadata.permissions().mode() & 0o7777;
                if metadata.is_dir() {
                    found.insert(format!("{relative}/"), format!("{mode:o}"));
                    walk(root, &path, found);
                } else {
                    assert!(metadata.is_file(), "{relative} is not a regular file");
                    found.insert(relative, format!("{mode:o}"));
                }
            }
        }
        let mut found = BTreeMap::new();
        walk(root, root, &mut found);
        found
    }

    fn fake_binary(scratch: &Scratch) -> PathBuf {
        let binary = scratch.path().join("built/vfio-bind");
        fs::create_dir_all(binary.parent().unwrap()).unwrap();
        fs::write(&binary, b"\x7fELF fake").unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o700)).unwrap();
        binary
    }

    const EXPECTED: &[(&str, &str)] = &[
        ("usr/", "755"),
        ("usr/bin/", "755"),
        ("usr/bin/vfio-bind", "755"),
        ("usr/lib/", "755"),
        ("usr/lib/dracut/", "755"),
        ("usr/lib/dracut/modules.d/", "755"),
        ("usr/lib/dracut/modules.d/90vfio-bind/", "755"),
        (
            "usr/lib/dracut/modules.d/90vfio-bind/module-setup.sh",
            "755",
        ),
        ("usr/lib/dracut/modules.d/90vfio-bind/vfio-bind.sh", "755"),
        ("usr/lib/initcpio/", "755"),
        ("usr/lib/initcpio/hooks/", "755"),
        ("usr/lib/initcpio/hooks/vfio-bind", "644"),
        ("usr/lib/initcpio/install/", "755"),
        ("usr/lib/initcpio/install/vfio-bind", "644"),
        ("usr/lib/vfio-bind/", "755"),
        ("usr/lib/vfio-bind/vfio-bind.service", "644"),
        ("usr/share/", "755"),
        ("usr/share/bash-completion/", "755"),
        ("usr/share/bash-completion/completions/", "755"),
        ("usr/share/bash-completion/completions/vfio-bind", "644"),
        ("usr/share/fish/", "755"),
        ("usr/share/fish/vendor_completions.d/", "755"),
        ("usr/share/fish/vendor_completions.d/vfio-bind.fish", "644"),
        ("usr/share/initramfs-tools/", "755"),
        ("usr/share/initramfs-tools/hooks/", "755"),
        ("usr/share/initramfs-tools/hooks/vfio-bind", "755"),
        ("usr/share/initramfs-tools/scripts/", "755"),
        ("usr/share/initramfs-tools/scripts/init-top/", "755"),
        ("usr/share/man/", "755"),
        ("usr/share/man/man8/", "755"),
        ("usr/share/man/man8/vfio-bind.8", "644"),
        ("usr/share/zsh/", "755"),
        ("usr/share/zsh/site-functions/", "755"),
        ("usr/share/zsh/site-functions/_vfio-bind", "644"),
        (
            "usr/share/initramfs-tools/scripts/init-top/00-vfio-bind",
            "755",
        ),
    ];

    fn expected() -> BTreeMap<String, String> {
        EXPECTED
            .iter()
            .map(|(path, mode)| (path.to_string(), mode.to_string()))
            .collect()
    }

    #[test]
    fn installs_exactly_the_listed_files_with_their_modes() {
        let scratch = Scratch::new("exact");
        let binary = fake_binary(&scratch);
        let destdir = scratch.path().join("dest");
        let installed = install_tree(&destdir, "/usr", &binary).unwrap();

        assert_eq!(tree(&destdir), expected());
        assert_eq!(installed.len(), FILES.len());
        assert!(installed.iter().all(|path| path.starts_with(&destdir)));

        // Contents are the sources'.
        assert_eq!(
            fs::read(destdir.join("usr/bin/vfio-bind")).unwrap(),
            b"\x7fELF fake"
        );
        for entry in FILES {
            if let Source::Project(relative) = entry.source {
                assert_eq!(
                    fs::read(destdir.join("usr").join(entry.destination)).unwrap(),
                    fs::read(project_root().join(relative)).unwrap(),
                    "{relative}"
                );
            }
        }
    }

    #[test]
    fn reinstalling_replaces_files_and_fixes_their_modes() {
        let scratch = Scratch::new("again");
        let binary = fake_binary(&scratch);
        let destdir = scratch.path().join("dest");
        install_tree(&destdir, "/usr", &binary).unwrap();
        let hook = destdir.join("usr/lib/initcpio/hooks/vfio-bind");
        fs::write(&hook, "stale").unwrap();
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o600)).unwrap();

        install_tree(&destdir, "/usr/", &binary).unwrap();
        assert_eq!(tree(&destdir), expected());
        assert_ne!(fs::read_to_string(&hook).unwrap(), "stale");
    }

    #[test]
    fn the_unit_is_never_in_a_systemd_directory() {
        for entry in FILES {
            assert!(
                !entry.destination.contains("systemd/"),
                "{}",
                entry.destination
            );
        }
    }

    #[test]
    fn other_prefixes_move_the_whole_tree() {
        let scratch = Scratch::new("prefix");
        let binary = fake_binary(&scratch);
        let destdir = scratch.path().join("dest");
        install_tree(&destdir, "/opt/vb", &binary).unwrap();
        let found = tree(&destdir);
        assert!(found.contains_key("opt/vb/bin/vfio-bind"));
        assert!(found.contains_key("opt/vb/lib/vfio-bind/vfio-bind.service"));
        assert_eq!(
            found.keys().filter(|path| !path.ends_with('/')).count(),
            FILES.len()
        );
    }

    #[test]
    fn bad_prefixes_are_refused_before_anything_is_written() {
        let scratch = Scratch::new("bad");
        let binary = fake_binary(&scratch);
        let destdir = scratch.path().join("dest");
        for prefix in ["usr", "/usr/../etc", ""] {
            assert!(
                install_tree(&destdir, prefix, &binary).is_err(),
                "{prefix:?}"
            );
        }
        assert!(!destdir.exists());
    }

    #[test]
    fn a_missing_binary_is_an_error_naming_it() {
        let scratch = Scratch::new("nobinary");
        let error = install_tree(
            &scratch.path().join("dest"),
            "/usr",
            &scratch.path().join("not-built"),
        )
        .unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("not-built"), "{error}");
    }
}
