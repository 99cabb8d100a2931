//! Bounded time: whatever blocks (a sysfs write that never returns, a held lock), `apply`,
//! `bind` and `release` end by their `--timeout`, say in one line what they gave up on and
//! what they left, and exit non-zero. Run through the real binary; each run has its own
//! kill deadline, so a binder that does hang fails the test instead of hanging the suite.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sysfs_fixture::*;

/// How long past its own `--timeout` a run may take before the test calls it hung.
const SLACK: Duration = Duration::from_secs(3);

struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the binary and kills it if it is still running `timeout + SLACK` later. stderr
/// goes to a file, not a pipe: a pipe would be read until every holder (a worker left
/// running) closes it, which is the very hang under test.
fn run_bounded(arguments: &[&str], timeout: Duration) -> Run {
    let log = tempfile_path("stderr");
    let out = tempfile_path("stdout");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("the binary runs");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > timeout + SLACK {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "vfio-bind {arguments:?} still ran {:?} after its {timeout:?} timeout; stderr: {}",
                SLACK,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let stdout = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&out);
    Run {
        status: status.code(),
        stdout,
        stderr,
        took,
    }
}

fn tempfile_path(what: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "vfio-bind-bounded-{}-{}-{what}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Replaces a fixture file by a FIFO nobody reads: opening it for writing (or one nobody
/// writes, for reading) blocks until a signal ends the process.
fn make_fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Whether some process still runs with `needle` among its arguments (a worker left
/// behind would: it is a fork of the binder, with the same command line).
fn process_running_with(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // A zombie (state Z) is gone but for its exit status.
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        !zombie
            && cmdline
                .split(|byte| *byte == 0)
                .any(|argument| argument == needle.as_bytes())
    })
}

/// A GPU on amdgpu in IOMMU group 5, with vfio-pci registered, as at runtime.
fn card_on_amdgpu() -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    tree.add_driver("vfio-pci").unwrap();
    tree.add(
        Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA)
            .group(5)
            .driver("amdgpu"),
    )
    .unwrap();
    tree
}

fn apply_arguments<'a>(tree: &'a SysfsTree, timeout: &'a str) -> Vec<&'a str> {
    vec![
        "apply",
        "--sysfs",
        tree.root().to_str().unwrap(),
        "--cmdline-dir",
        "/nonexistent",
        "--cmdline",
        "vfio.bind=1002:73ff@07:00",
        "--timeout",
        timeout,
    ]
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

#[test]
fn an_unbind_that_never_returns_ends_apply_at_its_timeout_with_one_line() {
    let tree = card_on_amdgpu();
    make_fifo(&tree.root().join("bus/pci/drivers/amdgpu/unbind"));
    let run = run_bounded(&apply_arguments(&tree, "2"), Duration::from_secs(2));
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(
        // The worker has 1.5 s of the 2: the last quarter is kept for giving cards back.
        run.took >= Duration::from_millis(1400) && run.took < Duration::from_secs(4),
        "took {:?}",
        run.took
    );
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "only the give-up line: {}",
        run.stderr
    );
    assert_eq!(
        run.stderr,
        "vfio-bind: gave up after 1.5 s: writing 0000:07:00.0 to bus/pci/devices/0000:07:00.0/driver/unbind \
         did not finish; the worker was killed there; driver_override may still be set on 0000:07:00.0 \
         (run vfio-bind check; vfio-bind release gives them back)\n"
    );
    // What the line says is what the tree shows: overridden, still on amdgpu.
    assert_eq!(tree.override_of("0000:07:00.0"), "vfio-pci");
    assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("amdgpu"));
    assert!(
        !process_running_with(tree.root().to_str().unwrap()),
        "the worker was left running"
    );
}

#[test]
fn after_giving_up_the_functions_it_left_overridden_are_given_back_but_the_stuck_one() {
    // 07:00.0 was overridden and unbound; the unbind of 07:00.1 never returns. 07:00.0
    // must not stay overridden (with no driver, on a real kernel): the supervisor gives it
    // back, and says where it ended as read back (no kernel unbinds in a fixture, so the
    // driver link still names amdgpu). 07:00.1 is left alone: a write to it would wait on
    // the same device lock.
    let tree = card_whose_audio_unbind_hangs();
    let run = run_bounded(&apply_arguments(&tree, "2"), Duration::from_secs(2));
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "vfio-bind: gave up after 1.5 s: writing 0000:07:00.1 to bus/pci/devices/0000:07:00.1/driver/unbind \
         did not finish; the worker was killed there; gave back 0000:07:00.0 (on amdgpu); \
         driver_override may still be set on 0000:07:00.1 (run vfio-bind check; vfio-bind release gives them back)\n"
    );
    assert_eq!(tree.override_of("0000:07:00.0"), "");
    assert_eq!(tree.read("bus/pci/drivers_probe"), "0000:07:00.0");
    assert_eq!(tree.override_of("0000:07:00.1"), "vfio-pci");
    assert!(run.took < Duration::from_secs(3), "took {:?}", run.took);
}

#[test]
fn bind_gives_up_the_same_way() {
    let tree = card_on_amdgpu();
    make_fifo(&tree.root().join("bus/pci/drivers/amdgpu/unbind"));
    let root = tree.root().to_str().unwrap();
    let run = run_bounded(
        &["bind", "1002:73ff@07:00", "--sysfs", root, "--timeout", "2"],
        Duration::from_secs(2),
    );
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(
        last_line(&run.stderr).starts_with(
            "vfio-bind: gave up after 1.5 s: writing 0000:07:00.0 to bus/pci/devices/0000:07:00.0/driver/unbind did not finish"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn release_gives_up_on_an_unbind_from_vfio_pci_that_never_returns() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(
        Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA)
            .group(5)
            .driver("vfio-pci"),
    )
    .unwrap();
    std::fs::write(
        tree.attribute("0000:07:00.0", "driver_override"),
        "vfio-pci\n",
    )
    .unwrap();
    make_fifo(&tree.root().join("bus/pci/drivers/vfio-pci/unbind"));
    let root = tree.root().to_str().unwrap();
    let run = run_bounded(
        &[
            "release",
            "1002:73ff@07:00",
            "--sysfs",
            root,
            "--timeout",
            "2",
        ],
        Duration::from_secs(2),
    );
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    // The override was cleared before the unbind hung: the line says none is left set.
    assert_eq!(
        run.stderr,
        "vfio-bind: gave up after 1.5 s: writing 0000:07:00.0 to bus/pci/devices/0000:07:00.0/driver/unbind \
         did not finish; the worker was killed there; no driver_override was left set\n"
    );
    assert_eq!(tree.override_of("0000:07:00.0"), "");
}

#[test]
fn a_read_that_never_returns_is_named_as_reading_and_nothing_was_changed() {
    let tree = card_on_amdgpu();
    make_fifo(&tree.attribute("0000:07:00.0", "vendor"));
    let run = run_bounded(&apply_arguments(&tree, "2"), Duration::from_secs(2));
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "vfio-bind: gave up after 1.5 s: reading the rules and the PCI devices did not finish; \
         the worker was killed there; no driver_override was left set\n"
    );
    assert_eq!(tree.override_of("0000:07:00.0"), "(null)");
}

#[test]
fn a_worker_that_ends_in_time_gives_its_own_status_and_lines() {
    // The supervisor is invisible when nothing blocks: same lines, same exit status.
    let tree = card_on_amdgpu();
    let run = run_bounded(&apply_arguments(&tree, "5"), Duration::from_secs(5));
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("vfio-bind: 1002:73ff@0000:07:00 not applied: 0000:07:00.0 is on amdgpu"),
        "{}",
        run.stderr
    );
    assert!(last_line(&run.stderr).starts_with("vfio-bind: 0 of 1 rules applied"));
    assert!(run.took < Duration::from_secs(2), "took {:?}", run.took);
}

#[test]
fn with_no_rule_apply_says_nothing_and_exits_0_as_before() {
    // The boot's usual case when the image has no rule: supervisor and lock add nothing.
    let tree = card_on_amdgpu();
    let root = tree.root().to_str().unwrap();
    let run = run_bounded(
        &[
            "apply",
            "--sysfs",
            root,
            "--cmdline-dir",
            "/nonexistent",
            "--cmdline",
            "quiet",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert_eq!(run.stdout, "");
}

#[test]
fn dry_run_takes_no_lock_and_its_plan_comes_through_the_supervisor() {
    let tree = card_on_amdgpu();
    let _lock = hold_lock(&tree);
    let mut arguments = apply_arguments(&tree, "2");
    arguments.push("--dry-run");
    let run = run_bounded(&arguments, Duration::from_secs(2));
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "1002:73ff@0000:07:00: would hand to vfio-pci: 0000:07:00.0 (1002:73ff, now on amdgpu)\n"
    );
    assert!(run.took < Duration::from_secs(1), "took {:?}", run.took);
}

#[test]
fn a_timeout_out_of_range_is_a_bad_argument() {
    for timeout in ["0", "3601"] {
        let tree = card_on_amdgpu();
        let run = run_bounded(&apply_arguments(&tree, timeout), Duration::from_secs(1));
        assert_eq!(run.status, Some(2), "{}", run.stderr);
        assert_eq!(
            run.stderr,
            "vfio-bind: --timeout must be 1 to 3600 seconds\n"
        );
        assert_eq!(tree.override_of("0000:07:00.0"), "(null)");
    }
}

/// Holds the binders' lock of `tree` as another binder would, until dropped.
fn hold_lock(tree: &SysfsTree) -> File {
    let file = File::create(tree.root().join("vfio-bind.lock")).unwrap();
    // SAFETY: flock on a descriptor `file` owns.
    let result = unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX) };
    assert_eq!(result, 0);
    file
}

#[test]
fn a_held_lock_makes_apply_give_up_in_bounded_time_touching_nothing_then_proceed() {
    let tree = card_on_amdgpu();
    let lock = hold_lock(&tree);
    let run = run_bounded(&apply_arguments(&tree, "1"), Duration::from_secs(1));
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "vfio-bind: another vfio-bind held {}/vfio-bind.lock for 1 s; gave up, nothing was touched\n",
            tree.root().display()
        )
    );
    assert!(run.took < Duration::from_secs(3), "took {:?}", run.took);
    assert_eq!(tree.override_of("0000:07:00.0"), "(null)");
    assert_eq!(tree.read("bus/pci/drivers/amdgpu/unbind"), "");
    assert_eq!(tree.read("bus/pci/drivers_probe"), "");

    drop(lock);
    let run = run_bounded(&apply_arguments(&tree, "5"), Duration::from_secs(5));
    // It worked this time: the unbind was written (no kernel reacts to it in a fixture, so
    // the card is given back and the rule fails, as in every fixture run).
    assert_eq!(tree.read("bus/pci/drivers/amdgpu/unbind"), "0000:07:00.0");
    assert!(
        !run.stderr.contains("vfio-bind.lock"),
        "no word of the lock: {}",
        run.stderr
    );
}

#[test]
fn release_waits_for_a_binder_still_working_then_gives_up() {
    // The first binder hangs in an unbind, holding the lock for its 4 s; the second one,
    // a libvirt release hook, must not undo its work meanwhile: it waits, then gives up.
    let tree = card_on_amdgpu();
    make_fifo(&tree.root().join("bus/pci/drivers/amdgpu/unbind"));
    let root = tree.root().to_str().unwrap().to_string();
    let first = {
        let arguments: Vec<String> = apply_arguments(&tree, "4")
            .into_iter()
            .map(String::from)
            .collect();
        std::thread::spawn(move || {
            let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
            run_bounded(&arguments, Duration::from_secs(4))
        })
    };
    // Until the first one has overridden the card, it has not got that far yet.
    let waiting = Instant::now();
    while tree.override_of("0000:07:00.0") != "vfio-pci" {
        assert!(
            waiting.elapsed() < Duration::from_secs(2),
            "apply never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = run_bounded(
        &[
            "release",
            "1002:73ff@07:00",
            "--sysfs",
            &root,
            "--timeout",
            "1",
        ],
        Duration::from_secs(1),
    );
    assert_eq!(second.status, Some(1), "{}", second.stderr);
    assert!(
        second.stderr.contains("another vfio-bind held"),
        "{}",
        second.stderr
    );
    // Not undone: the override the first binder wrote is still there.
    assert_eq!(tree.override_of("0000:07:00.0"), "vfio-pci");
    let first = first.join().unwrap();
    assert!(
        first.stderr.contains("gave up after 3 s"),
        "{}",
        first.stderr
    );

    // The first binder gave up and its worker is gone: the lock is free again at once.
    let third = run_bounded(
        &[
            "release",
            "1002:73ff@07:00",
            "--sysfs",
            &root,
            "--timeout",
            "5",
        ],
        Duration::from_secs(5),
    );
    assert!(
        !third.stderr.contains("another vfio-bind held"),
        "{}",
        third.stderr
    );
    assert_eq!(tree.override_of("0000:07:00.0"), "");
}

#[test]
fn without_a_writable_place_for_the_lock_the_binder_works_and_says_so() {
    let root = "/nonexistent-sysfs-root";
    let run = run_bounded(
        &[
            "apply",
            "--sysfs",
            root,
            "--cmdline-dir",
            "/nonexistent",
            "--cmdline",
            "vfio.bind=1002:73ff@07:00",
        ],
        Duration::from_secs(10),
    );
    assert!(
        run.stderr.starts_with(
            "vfio-bind: cannot open the lock /nonexistent-sysfs-root/vfio-bind.lock (No such file or directory); working without it\n"
        ),
        "{}",
        run.stderr
    );
    // It went on to the work itself, which found no IOMMU there.
    assert!(run.stderr.contains("the IOMMU is off"), "{}", run.stderr);
}

/// Starts the binary, as `run_bounded` does, without waiting for it: its stderr and stdout
/// go to files, read by [`finish`].
struct Started {
    child: std::process::Child,
    log: std::path::PathBuf,
    out: std::path::PathBuf,
    started: Instant,
}

fn start(arguments: &[&str], own_process_group: bool) -> Started {
    use std::os::unix::process::CommandExt;
    let log = tempfile_path("stderr");
    let out = tempfile_path("stdout");
    let mut command = Command::new(env!("CARGO_BIN_EXE_vfio-bind"));
    command
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&log).unwrap());
    if own_process_group {
        // As a shell's foreground job: Ctrl-C sends SIGINT to every process of the group.
        command.process_group(0);
    }
    Started {
        child: command.spawn().expect("the binary runs"),
        log,
        out,
        started: Instant::now(),
    }
}

/// Waits (at most `limit`) for a started run to end.
fn finish(mut started: Started, limit: Duration) -> Run {
    let status = loop {
        if let Some(status) = started.child.try_wait().unwrap() {
            break status;
        }
        if started.started.elapsed() > limit {
            let _ = started.child.kill();
            let _ = started.child.wait();
            panic!(
                "vfio-bind still ran after {limit:?}; stderr: {}",
                std::fs::read_to_string(&started.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let run = Run {
        status: status.code(),
        stdout: std::fs::read_to_string(&started.out).unwrap(),
        stderr: std::fs::read_to_string(&started.log).unwrap(),
        took: started.started.elapsed(),
    };
    let _ = std::fs::remove_file(&started.log);
    let _ = std::fs::remove_file(&started.out);
    run
}

/// Waits until a function's override reads `value` (the worker got that far).
fn wait_for_override(tree: &SysfsTree, address: &str, value: &str) {
    let waiting = Instant::now();
    while tree.override_of(address) != value {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "apply never wrote {value} to {address}'s override"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The GPU of `card_on_amdgpu` and its audio function, whose unbind never returns.
fn card_whose_audio_unbind_hangs() -> SysfsTree {
    let mut tree = card_on_amdgpu();
    tree.add(
        Function::new("0000:07:00.1", 0x1002, 0xab28, CLASS_AUDIO)
            .group(5)
            .driver("snd_hda_intel"),
    )
    .unwrap();
    make_fifo(&tree.root().join("bus/pci/drivers/snd_hda_intel/unbind"));
    tree
}

#[test]
fn a_stop_signal_to_the_supervisor_gives_back_what_the_worker_left_and_exits_1() {
    // systemd's SIGTERM at a start timeout, libvirt killing a slow hook, a hangup, Ctrl-C
    // (SIGINT to the whole process group, the worker included): each comes while the
    // worker is stuck between "override written" and "probed". Was: the supervisor died
    // of it (exit 143), nothing given back, nothing said.
    for (signal, to_group) in [
        (nix::sys::signal::Signal::SIGTERM, false),
        (nix::sys::signal::Signal::SIGHUP, false),
        (nix::sys::signal::Signal::SIGINT, true),
    ] {
        let tree = card_whose_audio_unbind_hangs();
        let started = start(&apply_arguments(&tree, "10"), to_group);
        let pid = nix::unistd::Pid::from_raw(started.child.id() as i32);
        // The worker has overridden both functions and is stuck in the audio's unbind.
        wait_for_override(&tree, "0000:07:00.1", "vfio-pci");
        std::thread::sleep(Duration::from_millis(100));
        let target = if to_group {
            nix::unistd::Pid::from_raw(-pid.as_raw())
        } else {
            pid
        };
        nix::sys::signal::kill(target, signal).unwrap();
        let run = finish(started, Duration::from_secs(5));
        assert_eq!(run.status, Some(1), "{signal}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{signal}: {}", run.stderr);
        let (before, after) = run
            .stderr
            .split_once(" s while ")
            .unwrap_or_else(|| panic!("{signal}: {}", run.stderr));
        assert!(
            before.starts_with(&format!("vfio-bind: stopped by {} after ", signal.as_str())),
            "{}",
            run.stderr
        );
        assert_eq!(
            after,
            "writing 0000:07:00.1 to bus/pci/devices/0000:07:00.1/driver/unbind; the worker was killed there; \
             gave back 0000:07:00.0 (on amdgpu); driver_override may still be set on 0000:07:00.1 \
             (run vfio-bind check; vfio-bind release gives them back)\n"
        );
        // What the line says is what the tree shows.
        assert_eq!(tree.override_of("0000:07:00.0"), "", "{signal}");
        assert_eq!(tree.read("bus/pci/drivers_probe"), "0000:07:00.0");
        assert_eq!(tree.override_of("0000:07:00.1"), "vfio-pci");
        assert!(run.took < Duration::from_secs(3), "took {:?}", run.took);
        assert!(
            all_gone_with(tree.root().to_str().unwrap()),
            "{signal}: a worker was left running"
        );
    }
}

/// Whether every process with `needle` among its arguments is gone within a second: a
/// worker killed (SIGKILL) goes as soon as the machine runs it, which on a loaded machine
/// can be a moment after its supervisor exits.
fn all_gone_with(needle: &str) -> bool {
    let waiting = Instant::now();
    while process_running_with(needle) {
        if waiting.elapsed() > Duration::from_secs(1) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// How many processes have `path` open (a worker that kept the lock would).
fn processes_holding(path: &Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            std::fs::read_dir(entry.path().join("fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
            })
        })
        .count()
}

#[test]
fn a_give_back_that_is_stuck_itself_holds_no_lock_and_is_not_called_done() {
    // The audio's unbind hangs, so the worker is killed; then the give-back of the GPU
    // function hangs in its probe. The give-back worker must not hold the lock (stuck in
    // the kernel, it would outlive its supervisor and keep every later binder out), and the
    // line must not say the GPU function was given back: its override was cleared, its
    // probe never returned. Was: the lock inherited, and "gave back 0000:07:00.0 (override
    // cleared)".
    let tree = card_whose_audio_unbind_hangs();
    make_fifo(&tree.root().join("bus/pci/drivers_probe"));
    let lock = tree.root().join("vfio-bind.lock");
    let started = start(&apply_arguments(&tree, "4"), false);
    // The worker is killed at 3 s; the give-back runs from then until 4 s.
    let mut most_holders = 0;
    while started.started.elapsed() < Duration::from_millis(3900) {
        if started.started.elapsed() > Duration::from_millis(3200) {
            most_holders = most_holders.max(processes_holding(&lock));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = finish(started, Duration::from_secs(7));
    assert_eq!(most_holders, 1, "only the supervisor may hold the lock");
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "vfio-bind: gave up after 3 s: writing 0000:07:00.1 to bus/pci/devices/0000:07:00.1/driver/unbind \
         did not finish; the worker was killed there; cleared the override of 0000:07:00.0, but its probe \
         did not finish, so it may have no driver; driver_override may still be set on 0000:07:00.1 \
         (run vfio-bind check; vfio-bind release gives them back)\n"
    );
    assert_eq!(tree.override_of("0000:07:00.0"), "");
    assert!(all_gone_with(tree.root().to_str().unwrap()));
}

/// The boot display 00:02.0 (a bochs-display, class 0x0380, no driver yet as at boot) with
/// efifb in its BAR, and a NIC 00:04.0 on e1000e; vfio-pci registered.
fn boot_display_and_nic() -> SysfsTree {
    const BAR0: &str = "  80000000-80ffffff : 0000:00:02.0";
    const EFIFB: &str = "    80000000-802fffff : efifb";
    let mut tree = SysfsTree::new().unwrap();
    tree.add_driver("vfio-pci").unwrap();
    tree.add(Function::new("0000:00:02.0", 0x1234, 0x1111, 0x038000).group(1))
        .unwrap();
    tree.add(
        Function::new("0000:00:04.0", 0x8086, 0x10d3, 0x020000)
            .group(2)
            .driver("e1000e"),
    )
    .unwrap();
    tree.set_iomem(&format!(
        "80000000-afffffff : PCI Bus 0000:00\n{BAR0}\n\x20 81000000-81000fff : 0000:00:04.0\n"
    ))
    .unwrap();
    tree.add_platform_framebuffer("efi-framebuffer.0", Some("efi-framebuffer"), BAR0, EFIFB)
        .unwrap();
    tree
}

/// `apply` of `rules` on [`boot_display_and_nic`] with its iomem and a 2 s timeout, while a
/// write to `hanging` (a path in the fixture) never finishes.
fn apply_with_iomem_hanging_at(hanging: &str, rules: &str) -> (SysfsTree, Run) {
    let tree = boot_display_and_nic();
    make_fifo(&tree.root().join(hanging));
    let iomem = tree.iomem_path();
    let run = run_bounded(
        &[
            "apply",
            "--sysfs",
            tree.root().to_str().unwrap(),
            "--iomem",
            iomem.to_str().unwrap(),
            "--cmdline-dir",
            "/nonexistent",
            "--cmdline",
            rules,
            "--timeout",
            "2",
        ],
        Duration::from_secs(2),
    );
    (tree, run)
}

#[test]
fn after_a_give_up_the_framebuffer_let_go_is_taken_back() {
    // efifb is let go from the boot display, then the NIC's unbind hangs. Once the display
    // is given back, its console must be too. Was: efifb left unbound, the console dark,
    // and the line silent about it.
    let (tree, run) = apply_with_iomem_hanging_at(
        "bus/pci/drivers/e1000e/unbind",
        "vfio.bind=1234:1111@00:02,8086:10d3@00:04",
    );
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.ends_with(
            "vfio-bind: gave up after 1.5 s: writing 0000:00:04.0 to bus/pci/devices/0000:00:04.0/driver/unbind \
             did not finish; the worker was killed there; gave back 0000:00:02.0 (no driver took it); \
             driver_override may still be set on 0000:00:04.0 (run vfio-bind check; vfio-bind release gives them back); \
             the console was given back (efi-framebuffer.0)\n"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        tree.read("bus/platform/drivers/efi-framebuffer/unbind"),
        "efi-framebuffer.0"
    );
    assert_eq!(
        tree.read("bus/platform/drivers/efi-framebuffer/bind"),
        "efi-framebuffer.0"
    );
    assert_eq!(tree.override_of("0000:00:02.0"), "");
}

#[test]
fn after_a_give_up_on_the_display_itself_the_framebuffer_let_go_is_named() {
    // The probe of the boot display itself hangs: its BAR is in flux, so efifb is not put
    // back into it, and the line says the console is still let go.
    let (tree, run) =
        apply_with_iomem_hanging_at("bus/pci/drivers_probe", "vfio.bind=1234:1111@00:02");
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.ends_with(
            "vfio-bind: gave up after 1.5 s: writing 0000:00:02.0 to bus/pci/drivers_probe did not finish; \
             the worker was killed there; driver_override may still be set on 0000:00:02.0 \
             (run vfio-bind check; vfio-bind release gives them back); \
             the console is still let go (efi-framebuffer.0): vfio-bind release gives it back\n"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(tree.read("bus/platform/drivers/efi-framebuffer/bind"), "");
}

#[test]
fn after_a_give_up_at_runtime_the_framebuffer_console_let_go_is_taken_back() {
    // `bind` at runtime: the card's driver shows the console (fb0), so the framebuffer
    // console vtcon1 is let go first; then the audio function's unbind hangs. The display
    // function is given back, and its console with it. Was: vtcon1 left unbound (the
    // host's console dark) and the line silent about it.
    let mut tree = SysfsTree::new().unwrap();
    tree.add_driver("vfio-pci").unwrap();
    tree.add(
        Function::new("0000:00:02.0", 0x1234, 0x1111, 0x038000)
            .group(1)
            .driver("bochs-drm"),
    )
    .unwrap();
    tree.add(
        Function::new("0000:00:02.1", 0x8086, 0x293e, CLASS_AUDIO)
            .group(1)
            .driver("snd_hda_intel"),
    )
    .unwrap();
    tree.add_graphics_framebuffer(0, "0000:00:02.0")
        .unwrap()
        .add_vtconsole(0, "(S) dummy device", false)
        .unwrap()
        .add_vtconsole(1, "(M) frame buffer device", true)
        .unwrap();
    make_fifo(&tree.root().join("bus/pci/drivers/snd_hda_intel/unbind"));
    let root = tree.root().to_str().unwrap();
    let run = run_bounded(
        &["bind", "@00:02", "--sysfs", root, "--timeout", "2"],
        Duration::from_secs(2),
    );
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.ends_with(
            "vfio-bind: gave up after 1.5 s: writing 0000:00:02.1 to bus/pci/devices/0000:00:02.1/driver/unbind \
             did not finish; the worker was killed there; gave back 0000:00:02.0 (on bochs-drm); \
             driver_override may still be set on 0000:00:02.1 (run vfio-bind check; vfio-bind release gives them back); \
             the console was given back (vtcon1)\n"
        ),
        "{}",
        run.stderr
    );
    // The worker wrote 0 there, the give-back 1 (no kernel rebinds in a fixture).
    assert!(tree.vtconsole_bound(1));
    assert_eq!(tree.override_of("0000:00:02.0"), "");
}

/// The worker (the supervisor's child) of a started run.
fn worker_of(supervisor: u32) -> nix::unistd::Pid {
    let waiting = Instant::now();
    loop {
        let child = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .find_map(|entry| {
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // pid (comm) state ppid ...
                let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
                let parent: u32 = fields.nth(1)?.parse().ok()?;
                (parent == supervisor).then(|| entry.file_name().to_str()?.parse().ok())?
            });
        if let Some(pid) = child {
            return nix::unistd::Pid::from_raw(pid);
        }
        assert!(waiting.elapsed() < Duration::from_secs(5), "no worker");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_worker_that_dies_of_a_signal_has_what_it_left_given_back() {
    // A panic (panic=abort: SIGABRT), a crash or the OOM killer ends the worker between
    // "override written" and "probed". The supervisor gives back what it left, as after
    // its own kill. Was: one line, and both functions left overridden with no driver.
    // SIGKILL as from the OOM killer; SIGUSR1 ends it as an abort would, without a core
    // dump (std handles SIGSEGV itself, and SIGABRT would leave a core file where allowed).
    for signal in [
        nix::sys::signal::Signal::SIGKILL,
        nix::sys::signal::Signal::SIGUSR1,
    ] {
        let tree = card_whose_audio_unbind_hangs();
        let started = start(&apply_arguments(&tree, "10"), false);
        wait_for_override(&tree, "0000:07:00.1", "vfio-pci");
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(worker_of(started.child.id()), signal).unwrap();
        let run = finish(started, Duration::from_secs(5));
        assert_eq!(run.status, Some(1), "{signal}: {}", run.stderr);
        assert_eq!(
            run.stderr,
            format!(
                "vfio-bind: the worker died of {} while writing 0000:07:00.1 to \
                 bus/pci/devices/0000:07:00.1/driver/unbind; gave back 0000:07:00.0 (on amdgpu); \
                 driver_override may still be set on 0000:07:00.1 \
                 (run vfio-bind check; vfio-bind release gives them back)\n",
                signal.as_str()
            )
        );
        assert_eq!(tree.override_of("0000:07:00.0"), "", "{signal}");
        assert_eq!(tree.read("bus/pci/drivers_probe"), "0000:07:00.0");
        assert!(run.took < Duration::from_secs(3), "took {:?}", run.took);
        assert!(all_gone_with(tree.root().to_str().unwrap()));
    }
}

/// A pipe already full, whose reader reads nothing (until the test lets it).
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let flags = |flags| nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
    flags(nix::fcntl::OFlag::O_NONBLOCK);
    while nix::unistd::write(&writer, &[b'.'; 4096]).is_ok() {}
    flags(nix::fcntl::OFlag::empty());
    (reader, writer)
}

#[test]
fn output_nobody_reads_is_dropped_at_the_timeout_and_said_so() {
    // The plan goes to a stdout nobody reads (a hook's caller that waits for the exit
    // first, a terminal under Ctrl-S). The binder must still end by its timeout, and say
    // the output was not written. Was: the supervisor blocked copying it, for ever.
    let tree = card_on_amdgpu();
    let (_reader, writer) = full_pipe();
    let mut arguments = apply_arguments(&tree, "1");
    arguments.push("--dry-run");
    let log = tempfile_path("stderr");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(&arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(1) + SLACK {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still ran {:?} after its 1 s timeout", SLACK);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("vfio-bind: cannot write the output: "),
        "{stderr}"
    );
}

#[test]
fn a_caller_that_reads_no_output_does_not_hold_up_the_give_back() {
    // The binder's stderr is a pipe nobody reads (a stalled journald stream, a terminal
    // under Ctrl-S), already full. The worker wrote a line, then the NIC's unbind hangs.
    // The display must be given back by the timeout, whether or not the output can be
    // copied. Was: the supervisor blocked copying the worker's line, before the give-back.
    use std::io::Read;
    let tree = boot_display_and_nic();
    make_fifo(&tree.root().join("bus/pci/drivers/e1000e/unbind"));
    let (reader, writer) = full_pipe();
    let iomem = tree.iomem_path();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args([
            "apply",
            "--sysfs",
            tree.root().to_str().unwrap(),
            "--iomem",
            iomem.to_str().unwrap(),
            "--cmdline-dir",
            "/nonexistent",
            "--cmdline",
            "vfio.bind=1234:1111@00:02,8086:10d3@00:04",
            "--timeout",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer))
        .spawn()
        .unwrap();
    let given_back = loop {
        if tree.override_of("0000:00:02.0").is_empty() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(2) + SLACK {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Now read the output, so that the binder can end either way.
    let mut output = Vec::new();
    let mut reader = File::from(reader);
    let _ = reader.read_to_end(&mut output);
    let status = child.wait().unwrap();
    let output = String::from_utf8_lossy(&output);
    assert!(
        given_back,
        "not given back by the timeout: {}",
        output.trim_start_matches('.')
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.ends_with("the console was given back (efi-framebuffer.0)\n"),
        "{output}"
    );
    assert!(all_gone_with(tree.root().to_str().unwrap()));
}
