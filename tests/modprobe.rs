//! Bounded modprobe: a modprobe that does not finish in its limit is killed and reported,
//! and apply gives the cards back instead of leaving them overridden with no driver.
//! Scripts stand in for modprobe; each test has its own deadline, so a runner that waits
//! for ever fails the test instead of hanging the suite.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use sysfs_fixture::*;
use vfio_bind::boot::apply::apply;
use vfio_bind::boot::kernel::Kernel;
use vfio_bind::boot::modprobe;
use vfio_bind::boot::modprobe::ModuleError;
use vfio_bind::boot::sources::{gather, log_problem, RuleSources};
use vfio_bind::machine::sysfs::{Attribute, Sysfs};

/// A stand-in modprobe in its own directory: `body` is run by sh, with `$DIR` its directory.
struct Script {
    dir: PathBuf,
    path: PathBuf,
}

impl Script {
    fn new(name: &str, body: &str) -> Script {
        let dir =
            std::env::temp_dir().join(format!("vfio-bind-modprobe-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("modprobe");
        std::fs::write(
            &path,
            format!("#!/bin/sh\nDIR='{}'\n{body}\n", dir.display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Script { dir, path }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `task` on a thread and fails the test if it takes longer than `deadline`.
fn within<T: Send + 'static>(deadline: Duration, task: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(task());
    });
    receiver
        .recv_timeout(deadline)
        .unwrap_or_else(|_| panic!("still running after {deadline:?}: the wait is not bounded"))
}

/// The tests write a script and then run it: one at a time, so that no test forks while
/// another holds its new script open for writing (exec would then fail with ETXTBSY).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the process is still there after up to 2 s: a killed one may take a moment to
/// be gone on a loaded machine, one left running is still there.
fn still_running_after_a_while(pid: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if !process_alive(pid) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn process_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn a_modprobe_that_hangs_is_killed_at_its_limit() {
    let _alone = one_at_a_time();
    let script = Script::new("hangs", "echo $$ > \"$DIR/pid\"\nexec sleep 60");
    let program = script.path.clone();
    let started = Instant::now();
    let result = within(Duration::from_secs(5), move || {
        modprobe::run(&program, "vfio_iommu_type1", Duration::from_millis(300))
    });
    let took = started.elapsed();
    assert_eq!(
        result,
        Err(ModuleError::TimedOut(Duration::from_millis(300)))
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    assert!(
        !still_running_after_a_while(&script.read("pid")),
        "the modprobe was left running"
    );
}

#[test]
fn a_modprobe_that_finishes_reports_its_status() {
    let _alone = one_at_a_time();
    let works = Script::new("works", "echo \"$1\" >> \"$DIR/modules\"");
    assert_eq!(
        modprobe::run(&works.path, "vfio-pci", Duration::from_secs(5)),
        Ok(())
    );
    assert_eq!(works.read("modules"), "vfio-pci\n");
    let fails = Script::new("fails", "exit 3");
    assert_eq!(
        modprobe::run(&fails.path, "vfio-pci", Duration::from_secs(5)),
        Err(ModuleError::Failed(Some(3)))
    );
    assert_eq!(
        modprobe::run(
            Path::new("/nonexistent/modprobe"),
            "vfio-pci",
            Duration::from_secs(5)
        ),
        Err(ModuleError::NoModprobe)
    );
}

/// The real kernel's part on a fixture tree (files written as they are), with a stand-in
/// modprobe run by the real runner.
struct ScriptedModprobe {
    program: PathBuf,
    limit: Duration,
}

impl Kernel for ScriptedModprobe {
    fn write(&mut self, sysfs: &Sysfs, attribute: Attribute, value: &str) -> Result<(), Errno> {
        sysfs.write(attribute, value)
    }

    fn load_module(&mut self, module: &str) -> Result<(), ModuleError> {
        modprobe::run(&self.program, module, self.limit)
    }

    fn may_load_modules(&self) -> bool {
        true
    }
}

#[test]
fn apply_gives_the_cards_back_when_modprobe_hangs_and_tries_no_further_module() {
    let _alone = one_at_a_time();
    let script = Script::new(
        "hangs-in-apply",
        "echo \"$1\" >> \"$DIR/modules\"\nexec sleep 60",
    );
    let program = script.path.clone();
    let (status, log, overrides) = within(Duration::from_secs(5), move || {
        // vfio-pci is not registered in host_and_guest_share_audio_ids: apply must load it.
        let tree = host_and_guest_share_audio_ids().unwrap();
        common::capture_log();
        let sysfs = Sysfs::new(tree.root()).unwrap();
        let no_fragments = tree.root().join("no-cmdline.d");
        let gathered = gather(
            &RuleSources {
                cmdline: Some(b"vfio.bind=1002:73ff@07:00"),
                fragment_dir: &no_fragments,
            },
            &mut log_problem,
        );
        let mut kernel = ScriptedModprobe {
            program,
            limit: Duration::from_millis(300),
        };
        let status = apply(&sysfs, &gathered, &mut kernel, Instant::now(), None);
        let overrides = [
            tree.override_of("0000:07:00.0"),
            tree.override_of("0000:07:00.1"),
        ];
        (status, common::captured(), overrides)
    });
    assert_eq!(status, 1, "{log:?}");
    assert_eq!(
        log[0],
        "err: modprobe vfio_iommu_type1 did not finish in 0.3 s; killed"
    );
    // Only the first module was tried: a second would hang as long.
    assert_eq!(script.read("modules"), "vfio_iommu_type1\n");
    // Given back: both overrides cleared, so their own drivers can take them.
    assert_eq!(overrides, ["", ""]);
    assert!(
        log.iter()
            .any(|line| line.contains("not applied") && line.contains("given back")),
        "{log:?}"
    );
}
