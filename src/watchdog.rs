//! The watchdog: `apply`, `bind` and `release` end within a bounded time, whatever blocks.
//!
//! A write to a sysfs attribute, an unbind or a `modprobe` can block for ever, and a thread
//! in uninterruptible sleep can be neither killed nor waited out: it keeps its process alive
//! even after the main thread returns. So the work runs in a forked worker, and this process
//! only supervises it: the worker reports each step it starts (and each that returns)
//! through a pipe (fixed-size records, written without touching the heap), and the
//! supervisor waits, until a deadline, for the pipe's end, which comes when the worker
//! exits. When the worker ends in time, the supervisor exits with its status. When it does
//! not, the supervisor kills it (SIGKILL), has a second bounded worker give back the
//! functions it left overridden (all but the one it is stuck on), logs one line naming the
//! step that did not return, what was given back and what may still be set, and exits 1.
//! A worker stuck in the kernel dies as soon as the call returns, and does nothing after it.
//!
//! The worker's stdout and stderr are pipes the supervisor copies to its own: a stuck
//! worker must not keep the caller's output open either, or a caller that reads it to the
//! end (libvirt reads a hook's output) would wait as long as the worker does.
//!
//! Kernel log budget: the logger (`kmsg`) is set up before the fork, so both processes write
//! through the same /dev/kmsg open file, whose rate limit they share. The worker writes at
//! most [`crate::kmsg::KMSG_RECORD_BUDGET`] records plus its summary; the supervisor writes
//! at most one line after the fork, and only when the worker did not end by itself.

use core::fmt::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::Level;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::address::PciAddress;
use crate::exit::{EXIT_GAVE_UP, EXIT_LOCKED};
use crate::kmsg;
use crate::lock;
use crate::plan::MAX_TARGETS;
use crate::sysfs::{Attribute, Sysfs};

/// How long `apply`, `bind` and `release` may take in all (the lock wait included) unless
/// `--timeout` says otherwise: far below the 30 s an init system would wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of `--timeout` kept for giving back, after a kill, what the worker left.
pub const GIVE_BACK_LIMIT: Duration = Duration::from_secs(2);

/// The part of `timeout` kept for giving back after a kill: a quarter, at most
/// [`GIVE_BACK_LIMIT`]; the worker has the rest.
pub fn give_back_share(timeout: Duration) -> Duration {
    (timeout / 4).min(GIVE_BACK_LIMIT)
}

/// Time kept back from a bounded sub-step (a `modprobe`) for giving the cards back after
/// it failed, so that the give-back itself is never what the watchdog cuts short.
pub const GIVE_BACK_RESERVE: Duration = Duration::from_secs(1);
/// One progress record: fixed size, far below `PIPE_BUF`, so each `write()` is atomic.
const RECORD_SIZE: usize = 128;
const HEADER_SIZE: usize = 10;
const TEXT_CAPACITY: usize = RECORD_SIZE - HEADER_SIZE;
const KIND_STEP: u8 = 1;
/// The step reported last has returned.
const KIND_DONE: u8 = 2;
/// What a step does to a function's `driver_override`.
const OVERRIDE_UNCHANGED: u8 = 0;
const OVERRIDE_SET: u8 = 1;
const OVERRIDE_CLEARED: u8 = 2;
/// The step works on a function without changing its override (an unbind, a probe).
const OVERRIDE_UNCHANGED_AT: u8 = 3;

/// The progress pipe's size asked for: 8192 records, far more than the longest run writes
/// (64 functions, a few writes each, two records a write). The unprivileged maximum.
const PROGRESS_PIPE_SIZE: nix::libc::c_int = 1 << 20;
/// How often the supervisor empties the progress pipe while the worker runs.
const PROGRESS_READ_INTERVAL: Duration = Duration::from_millis(100);
/// What the worker is doing once a step has returned and before it reports the next one.
const AFTER_A_STEP: &str = "reading sysfs after ";
/// The step the supervisor names if the worker never reported one.
const FIRST_STEP: &str = "reading the rules and the PCI devices";

/// The worker's end of the progress pipe; -1 when unsupervised (then `step` does nothing).
static REPORTER: AtomicI32 = AtomicI32::new(-1);
/// When the whole run must be over; set before the fork, so the worker knows it too.
static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

/// Reports the step the worker starts now (e.g. `format_args!("unbinding {addr}")`), so
/// that if it never returns the supervisor can say what it gave up on. A few hundred
/// nanoseconds and no heap when supervised; nothing at all otherwise.
pub fn step(what: fmt::Arguments<'_>) {
    report(OVERRIDE_UNCHANGED, None, what);
}

/// Reports a sysfs write about to be made; overrides are tracked, so that a give-up can
/// name the functions left overridden.
pub fn writing(attribute: Attribute, value: &str) {
    let value = value.trim_end();
    match attribute {
        Attribute::DriverOverride(address) if value.is_empty() => report(
            OVERRIDE_CLEARED,
            Some(address),
            format_args!("clearing {attribute}"),
        ),
        Attribute::DriverOverride(address) => report(
            OVERRIDE_SET,
            Some(address),
            format_args!("writing {value} to {attribute}"),
        ),
        Attribute::Unbind(address) => report(
            OVERRIDE_UNCHANGED_AT,
            Some(address),
            format_args!("writing {value} to {attribute}"),
        ),
        Attribute::DriversProbe => report(
            OVERRIDE_UNCHANGED_AT,
            value.parse().ok(),
            format_args!("writing {value} to {attribute}"),
        ),
        Attribute::PlatformUnbind(_) | Attribute::PlatformBind(_) | Attribute::VtconsoleBind(_) => {
            report(
                OVERRIDE_UNCHANGED,
                None,
                format_args!("writing {value} to {attribute}"),
            )
        }
    }
}

/// Reports that the step reported last (a write, a modprobe) has returned, so that a hang
/// in what follows (reading sysfs) is not blamed on it.
pub fn done() {
    send(&{
        let mut record = [0u8; RECORD_SIZE];
        record[0] = KIND_DONE;
        record
    });
}

/// `limit`, cut down to what is left of the run's time minus [`GIVE_BACK_RESERVE`] when
/// running under the watchdog.
pub fn within(limit: Duration) -> Duration {
    let deadline = *DEADLINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match deadline {
        Some(deadline) => limit.min(
            deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(GIVE_BACK_RESERVE),
        ),
        None => limit,
    }
}

fn report(change: u8, address: Option<PciAddress>, what: fmt::Arguments<'_>) {
    if REPORTER.load(Ordering::Relaxed) < 0 {
        return;
    }
    let mut record = [0u8; RECORD_SIZE];
    record[0] = KIND_STEP;
    if let Some(address) = address {
        record[1] = change;
        record[2..6].copy_from_slice(&address.domain().to_le_bytes());
        record[6] = address.bus();
        record[7] = address.slot();
        record[8] = address.function();
    }
    let mut text = Truncating {
        buffer: &mut record[HEADER_SIZE..],
        length: 0,
    };
    let _ = text.write_fmt(what);
    record[9] = text.length as u8;
    send(&record);
}

fn send(record: &[u8; RECORD_SIZE]) {
    let fd = REPORTER.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: REPORTER holds the write end of the progress pipe, which the worker keeps
    // open for its whole life (it is only ever set in the worker, and never closed there).
    let pipe = unsafe { BorrowedFd::borrow_raw(fd) };
    // Non-blocking: a full pipe loses a step rather than stalling the work.
    let _ = nix::unistd::write(pipe, record);
}

/// Writes what fits of a formatted text into a byte buffer, cutting at a character boundary.
struct Truncating<'b> {
    buffer: &'b mut [u8],
    length: usize,
}

impl fmt::Write for Truncating<'_> {
    fn write_str(&mut self, part: &str) -> fmt::Result {
        for character in part.chars() {
            let mut encoded = [0u8; 4];
            let bytes = character.encode_utf8(&mut encoded).as_bytes();
            if self.length + bytes.len() > self.buffer.len() {
                break;
            }
            self.buffer[self.length..self.length + bytes.len()].copy_from_slice(bytes);
            self.length += bytes.len();
        }
        Ok(())
    }
}

/// Runs `work` under the binders' lock (when it `writes`) and the watchdog: it ends within
/// `timeout` of `started` whatever blocks. What `apply`, `bind` and `release` run in.
pub fn bounded(
    sysfs: &Sysfs,
    writes: bool,
    started: Instant,
    timeout: Duration,
    work: &mut dyn FnMut() -> u8,
) -> u8 {
    let held = match lock::path_for(sysfs) {
        Ok(path) if writes => match lock::acquire(&path, lock::LOCK_WAIT.min(timeout)) {
            Ok(held) => Some(held),
            Err(lock::NoLock::Busy { waited }) => {
                kmsg::log_summary(
                    Level::Error,
                    format_args!(
                        "another vfio-bind held {path} for {} s; gave up, nothing was touched",
                        Seconds(waited)
                    ),
                );
                return EXIT_LOCKED;
            }
            Err(lock::NoLock::Unavailable(errno)) => {
                log::info!(
                    "cannot open the lock {path} ({}); working without it",
                    errno.desc()
                );
                None
            }
        },
        _ => None,
    };
    let mut give_back = |address| {
        let mut kernel = crate::apply::RunningKernel {
            modules_allowed: false,
        };
        // Its writes report their steps: what it achieved shows in the give-up line.
        let _ = crate::apply::release(sysfs, &mut kernel, address);
    };
    match fork_supervised(started, timeout, &mut give_back) {
        Side::Worker => {
            if let Some(held) = held {
                held.leave_to_supervisor();
            }
            work()
        }
        // The lock is let go only now, when the worker is over or given up on.
        Side::Ended(status) => {
            drop(held);
            status
        }
    }
}

/// Which side of the fork [`fork_supervised`] returned on.
#[derive(Debug, PartialEq, Eq)]
pub enum Side {
    /// This is the worker (or, when no pipe or fork could be had, the one process, working
    /// unsupervised: the binder does not refuse to work for want of a watchdog). Do the
    /// work and exit with its status.
    Worker,
    /// This is the supervisor, and the worker is over: exit with this status.
    Ended(u8),
}

/// Forks a worker and supervises it until it ends or its part of `timeout` (all but
/// [`give_back_share`]) has passed since `started`. Then it is killed, the functions it
/// left overridden are handed to `give_back` in a second worker, bounded by the rest of
/// `timeout`, one line is logged, and the status is 1. Returns [`Side::Worker`] in the
/// worker, and [`Side::Ended`] in the supervisor once the worker is over.
pub fn fork_supervised(
    started: Instant,
    timeout: Duration,
    give_back: &mut dyn FnMut(PciAddress),
) -> Side {
    let end = started + timeout;
    let deadline = end - give_back_share(timeout);
    *DEADLINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(deadline);
    let Ok(pipes) = Pipes::new() else {
        return Side::Worker;
    };
    let supervisor = nix::unistd::getpid();
    // SAFETY: the process is single-threaded here (the binder starts no thread), so the
    // child may run any code, allocating included.
    match unsafe { fork() } {
        Err(_) => Side::Worker,
        Ok(ForkResult::Child) => {
            pipes.become_worker(supervisor);
            Side::Worker
        }
        Ok(ForkResult::Parent { child }) => {
            let mut watch = Watch::default();
            if let Some(status) = pipes.supervise(child, deadline, &mut watch) {
                return Side::Ended(status);
            }
            let stuck = watch.current.clone();
            give_back_after_kill(&mut watch, end, give_back);
            watch.give_up(deadline - started, &stuck);
            Side::Ended(EXIT_GAVE_UP)
        }
    }
}

/// The three pipes between supervisor and worker: progress, stdout, stderr; each is
/// (read end, write end).
struct Pipes {
    progress: (OwnedFd, OwnedFd),
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
}

impl Pipes {
    fn new() -> Result<Self, Errno> {
        // Close-on-exec: a modprobe the worker starts must not hold the progress pipe, whose
        // end of file tells the supervisor the worker is gone. Non-blocking: the worker never
        // waits to report a step, and the supervisor never waits on a read.
        let flags = OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let progress = nix::unistd::pipe2(flags)?;
        // Room for every step of the longest run, so the supervisor need not read as the
        // worker writes (each read would be a wake-up competing with the work for a CPU).
        // Without it, the default 64 KiB holds 512 records, more than a usual run reports.
        let _ = nix::fcntl::fcntl(
            &progress.1,
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(PROGRESS_PIPE_SIZE),
        );
        Ok(Pipes {
            progress,
            stdout: nix::unistd::pipe2(flags)?,
            stderr: nix::unistd::pipe2(flags)?,
        })
    }

    fn become_worker(self, supervisor: Pid) {
        // Die with the supervisor, whatever ends it (a signal from the init system).
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and nothing else.
        unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) };
        if nix::unistd::getppid() != supervisor {
            // The supervisor ended before the line above took effect.
            std::process::exit(i32::from(EXIT_GAVE_UP));
        }
        let Pipes {
            progress: (progress_reader, reporter),
            stdout: (stdout_reader, stdout_writer),
            stderr: (stderr_reader, stderr_writer),
        } = self;
        drop((progress_reader, stdout_reader, stderr_reader));
        // O_NONBLOCK belongs to the open pipe end, which fds 1 and 2 now share: output
        // blocks again (the supervisor drains it), so no line is lost to a full pipe.
        let _ = set_blocking(&stdout_writer);
        let _ = set_blocking(&stderr_writer);
        let _ = nix::unistd::dup2_stdout(&stdout_writer);
        let _ = nix::unistd::dup2_stderr(&stderr_writer);
        // Kept open (leaked) for the worker's whole life; `step` writes to it.
        REPORTER.store(into_raw(reporter), Ordering::Relaxed);
    }

    /// The worker's status, or `None` when it was given up on and killed; `watch` then
    /// holds what was seen of it.
    fn supervise(self, worker: Pid, deadline: Instant, watch: &mut Watch) -> Option<u8> {
        let Pipes {
            progress: (progress, progress_writer),
            stdout: (stdout, stdout_writer),
            stderr: (stderr, stderr_writer),
        } = self;
        // Only the worker may hold the write ends, or no end of file would ever come.
        drop((progress_writer, stdout_writer, stderr_writer));
        let mut output_open = [true, true];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // An output pipe at end of file is left out: poll would report it hung up at
            // once, every time.
            let mut fds: heapless::Vec<PollFd<'_>, 3> = heapless::Vec::new();
            // Progress wakes the supervisor only at its end (POLLHUP, reported unasked): the
            // records wait in the pipe, read at each wake-up and at least every
            // PROGRESS_READ_INTERVAL.
            let _ = fds.push(PollFd::new(progress.as_fd(), PollFlags::empty()));
            for (open, pipe) in output_open.iter().zip([&stdout, &stderr]) {
                if *open {
                    let _ = fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                }
            }
            let wait = left.min(PROGRESS_READ_INTERVAL);
            let millis = i32::try_from(wait.as_millis().max(1)).unwrap_or(i32::MAX);
            let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
            drop(fds);
            let progress_open = watch.read_progress(&progress);
            output_open[0] = output_open[0] && relay_stdout(&stdout);
            output_open[1] =
                output_open[1] && relay(&stderr, &mut std::io::stderr().lock(), &mut None);
            if !progress_open {
                // End of file on the progress pipe: the worker has exited (only it held it).
                // A modprobe it started may still hold the output pipes: not waited for.
                if let Some(status) = reap(worker, deadline) {
                    drain(&stdout, &stderr);
                    return Some(watch.outcome(status));
                }
                break;
            }
        }
        let _ = kill(worker, Signal::SIGKILL);
        // The records written since the last wake-up name the step it was really in.
        watch.read_progress(&progress);
        drain(&stdout, &stderr);
        None
    }
}

/// The functions the killed worker left overridden, but the one it was stuck on (a write
/// to that function would wait for the same device lock); clears the worker's current
/// step, which is over now.
fn left_overridden(watch: &mut Watch) -> heapless::Vec<PciAddress, MAX_TARGETS> {
    let stuck_on = watch
        .step_running
        .then_some(watch.current_address)
        .flatten();
    // A clear that never returned may not have happened: count that override as set.
    if let Some(address) = watch
        .step_running
        .then_some(watch.current_function)
        .flatten()
    {
        if let Some(entry) = watch
            .overrides
            .iter_mut()
            .find(|(known, _)| *known == address)
        {
            entry.1 = true;
        }
    }
    let mut targets: heapless::Vec<PciAddress, MAX_TARGETS> = heapless::Vec::new();
    for (address, set) in &watch.overrides {
        if *set && Some(*address) != stuck_on {
            let _ = targets.push(*address);
        }
    }
    watch.step_running = false;
    watch.current_function = None;
    watch.current_address = None;
    targets
}

/// After a kill: gives back, in a second bounded worker, every function whose override
/// the killed worker set and did not clear, but the one it was stuck on (a write to that
/// function would wait for the same device lock). Its writes report steps like the
/// worker's, so `watch` ends up knowing what was given back.
fn give_back_after_kill(
    watch: &mut Watch,
    deadline: Instant,
    give_back: &mut dyn FnMut(PciAddress),
) {
    let targets = left_overridden(watch);
    if targets.is_empty() || Instant::now() >= deadline {
        return;
    }
    let Ok((progress, reporter)) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) else {
        return;
    };
    let supervisor = nix::unistd::getpid();
    // SAFETY: single-threaded, as for the first fork.
    match unsafe { fork() } {
        Err(_) => {}
        Ok(ForkResult::Child) => {
            // SAFETY: as in `become_worker`.
            unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) };
            if nix::unistd::getppid() == supervisor {
                drop(progress);
                // It writes nothing, and must not hold the caller's output if it gets stuck.
                if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                    let _ = nix::unistd::dup2_stdout(&null);
                    let _ = nix::unistd::dup2_stderr(&null);
                }
                REPORTER.store(into_raw(reporter), Ordering::Relaxed);
                for address in &targets {
                    give_back(*address);
                }
            }
            // SAFETY: ends this forked child at once; nothing of the supervisor's state
            // (buffered output above all) is run or flushed twice.
            unsafe { nix::libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(reporter);
            watch.given_back = targets;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = kill(child, Signal::SIGKILL);
                    break;
                }
                let millis = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
                let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(progress.as_fd(), PollFlags::empty())];
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(_) => break,
                }
                if !watch.read_progress(&progress) {
                    let _ = reap(child, deadline);
                    break;
                }
            }
            watch.read_progress(&progress);
        }
    }
}

fn set_blocking(fd: &OwnedFd) -> Result<(), Errno> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map(drop)
}

fn into_raw(fd: OwnedFd) -> RawFd {
    let raw = fd.as_raw_fd();
    core::mem::forget(fd);
    raw
}

/// The first error writing the worker's stdout to ours (an errno; 0: none): the worker's
/// own writes went to a pipe and succeeded, so only the supervisor can see that the output
/// did not arrive (`apply --dry-run > /dev/full`). See [`relayed_output_error`].
static RELAYED_OUTPUT_ERROR: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(0);

/// The error the supervisor met copying the worker's stdout to its own, if any.
pub fn relayed_output_error() -> Option<std::io::Error> {
    match RELAYED_OUTPUT_ERROR.load(core::sync::atomic::Ordering::Relaxed) {
        0 => None,
        code => Some(std::io::Error::from_raw_os_error(code)),
    }
}

/// Copies what the worker wrote on its stdout pipe to ours, keeping the first error.
fn relay_stdout(from: &OwnedFd) -> bool {
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    let open = relay(from, &mut out, &mut failed);
    let flushed = std::io::Write::flush(&mut out);
    if let Some(code) = failed.or_else(|| flushed.err().and_then(|e| e.raw_os_error())) {
        let _ = RELAYED_OUTPUT_ERROR.compare_exchange(
            0,
            code,
            core::sync::atomic::Ordering::Relaxed,
            core::sync::atomic::Ordering::Relaxed,
        );
    }
    open
}

/// Copies what the worker wrote on one of its output pipes to ours. `false` at end of file.
/// The first write error's errno goes to `failed`.
fn relay(from: &OwnedFd, to: &mut dyn std::io::Write, failed: &mut Option<i32>) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        match nix::unistd::read(from, &mut buffer) {
            Ok(0) => return false,
            Ok(length) => {
                if let Err(error) = to.write_all(&buffer[..length]) {
                    failed.get_or_insert(error.raw_os_error().unwrap_or(libc_eio()));
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

fn drain(stdout: &OwnedFd, stderr: &OwnedFd) {
    relay_stdout(stdout);
    relay(stderr, &mut std::io::stderr().lock(), &mut None);
}

fn libc_eio() -> i32 {
    Errno::EIO as i32
}

/// Waits for the exited worker's status, but never past the deadline.
fn reap(worker: Pid, deadline: Instant) -> Option<WaitStatus> {
    loop {
        match waitpid(worker, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(status) => return Some(status),
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the supervisor knows of the worker's progress.
struct Watch {
    /// The step the worker started last, which it may still be in.
    current: heapless::String<TEXT_CAPACITY>,
    /// Whether the worker is still in the step `current` names (no "done" came for it).
    step_running: bool,
    /// The function the running step changes the override of, if it does.
    current_function: Option<PciAddress>,
    /// The function the running step works on, if it names one.
    current_address: Option<PciAddress>,
    /// The functions the supervisor had given back after the kill (their overrides set
    /// then): which of them are no longer set shows in `overrides`.
    given_back: heapless::Vec<PciAddress, MAX_TARGETS>,
    /// Each function whose override a step set or cleared, with whether the last such step
    /// set it.
    overrides: heapless::Vec<(PciAddress, bool), MAX_TARGETS>,
}

impl Default for Watch {
    fn default() -> Self {
        let mut current = heapless::String::new();
        let _ = current.push_str(FIRST_STEP);
        Watch {
            current,
            step_running: false,
            current_function: None,
            current_address: None,
            given_back: heapless::Vec::new(),
            overrides: heapless::Vec::new(),
        }
    }
}

impl Watch {
    /// Reads every record waiting; `false` at end of file.
    fn read_progress(&mut self, progress: &OwnedFd) -> bool {
        let mut record = [0u8; RECORD_SIZE];
        loop {
            match nix::unistd::read(progress, &mut record) {
                Ok(0) => return false,
                Ok(RECORD_SIZE) => self.take(&record),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return true,
            }
        }
    }

    fn take(&mut self, record: &[u8; RECORD_SIZE]) {
        if record[0] == KIND_DONE && self.step_running {
            self.step_running = false;
            self.current_function = None;
            self.current_address = None;
            let mut after: heapless::String<TEXT_CAPACITY> = heapless::String::new();
            let _ = after.push_str(AFTER_A_STEP);
            for character in self.current.chars() {
                if after.push(character).is_err() {
                    break;
                }
            }
            self.current = after;
            return;
        }
        if record[0] != KIND_STEP {
            return;
        }
        self.step_running = true;
        let length = usize::from(record[9]).min(TEXT_CAPACITY);
        let text = &record[HEADER_SIZE..HEADER_SIZE + length];
        self.current.clear();
        let _ = self
            .current
            .push_str(core::str::from_utf8(text).unwrap_or("an unnamed step"));
        self.current_function = None;
        self.current_address = None;
        let change = record[1];
        if change == OVERRIDE_UNCHANGED {
            return;
        }
        // Written by `report` from a valid address; a record that does not hold one names
        // no function.
        let Some(address) = PciAddress::new(
            u32::from_le_bytes([record[2], record[3], record[4], record[5]]),
            record[6],
            record[7],
            record[8],
        ) else {
            return;
        };
        self.current_address = Some(address);
        if change == OVERRIDE_UNCHANGED_AT {
            return;
        }
        self.current_function = Some(address);
        let set = change == OVERRIDE_SET;
        match self
            .overrides
            .iter_mut()
            .find(|(known, _)| *known == address)
        {
            Some(entry) => entry.1 = set,
            None => {
                let _ = self.overrides.push((address, set));
            }
        }
    }

    /// The worker's exit status, with one line if it died of a signal.
    fn outcome(&self, status: WaitStatus) -> u8 {
        match status {
            WaitStatus::Exited(_, code) => u8::try_from(code).unwrap_or(EXIT_GAVE_UP),
            WaitStatus::Signaled(_, signal, _) => {
                kmsg::log_summary(
                    Level::Error,
                    format_args!(
                        "the worker died of {} while {}; {}",
                        signal.as_str(),
                        self.current,
                        LeftState(self)
                    ),
                );
                EXIT_GAVE_UP
            }
            _ => EXIT_GAVE_UP,
        }
    }

    fn give_up(&self, after: Duration, stuck: &str) {
        let after = Seconds(after);
        kmsg::log_summary(
            Level::Error,
            format_args!(
                "gave up after {after} s: {stuck} did not finish; the worker was killed there; {}",
                LeftState(self)
            ),
        );
    }
}

/// "no function's override was changed", or the functions that may be left overridden.
struct LeftState<'w>(&'w Watch);

impl fmt::Display for LeftState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watch = self.0;
        // A change of override still running may or may not have happened.
        let in_flight =
            |address: PciAddress| watch.step_running && watch.current_function == Some(address);
        let still_set = |address: PciAddress| {
            in_flight(address)
                || watch
                    .overrides
                    .iter()
                    .any(|(known, set)| *known == address && *set)
        };
        let mut given_back = watch
            .given_back
            .iter()
            .filter(|address| !still_set(**address))
            .peekable();
        let gave_back = given_back.peek().is_some();
        if gave_back {
            f.write_str("gave back ")?;
            for (position, address) in given_back.enumerate() {
                if position > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{address}")?;
            }
            f.write_str(" (override cleared); ")?;
        }
        let mut first = true;
        for (address, _) in watch
            .overrides
            .iter()
            .filter(|(address, _)| still_set(*address))
        {
            if first {
                f.write_str("driver_override may still be set on ")?;
            } else {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{address}")?;
        }
        if !first {
            f.write_str(" (run vfio-bind check; vfio-bind release gives them back)")
        } else if gave_back {
            f.write_str("no other driver_override was left set")
        } else {
            f.write_str("no driver_override was left set")
        }
    }
}

/// A duration in seconds as people write it: `10`, `2.5`.
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole and tenths of seconds, rounded; no u128 arithmetic (as_millis) for this.
        let tenths = self.0.as_secs() * 10 + (u64::from(self.0.subsec_millis()) + 50) / 100;
        if tenths.is_multiple_of(10) {
            write!(f, "{}", tenths / 10)
        } else {
            write!(f, "{}.{}", tenths / 10, tenths % 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_as_people_write_them() {
        assert_eq!(Seconds(Duration::from_secs(10)).to_string(), "10");
        assert_eq!(Seconds(Duration::from_millis(2500)).to_string(), "2.5");
        assert_eq!(Seconds(Duration::from_millis(1999)).to_string(), "2");
    }

    #[test]
    fn long_step_texts_are_cut_at_a_character_boundary() {
        let mut buffer = [0u8; 5];
        let mut text = Truncating {
            buffer: &mut buffer,
            length: 0,
        };
        let _ = text.write_str("abcdé");
        let length = text.length;
        assert_eq!(&buffer[..length], b"abcd");
    }

    #[test]
    fn the_last_override_step_of_each_function_decides_what_is_reported_left() {
        let address = |function| PciAddress::new(0, 7, 0, function).unwrap();
        let record = |change, function: u8| {
            let mut record = [0u8; RECORD_SIZE];
            record[0] = KIND_STEP;
            record[1] = change;
            record[6] = 7;
            record[8] = function;
            record[9] = 1;
            record[HEADER_SIZE] = b'x';
            record
        };
        let mut watch = Watch::default();
        assert_eq!(
            LeftState(&watch).to_string(),
            "no driver_override was left set"
        );
        watch.take(&record(OVERRIDE_SET, 0));
        watch.take(&record(OVERRIDE_SET, 1));
        watch.take(&record(OVERRIDE_CLEARED, 0));
        watch.take(&record(OVERRIDE_UNCHANGED, 0));
        assert_eq!(watch.overrides.len(), 2);
        assert_eq!(
            LeftState(&watch).to_string(),
            format!(
                "driver_override may still be set on {} (run vfio-bind check; vfio-bind release gives them back)",
                address(1)
            )
        );
        // A clear that never returned may not have happened.
        watch.take(&record(OVERRIDE_CLEARED, 1));
        assert!(LeftState(&watch)
            .to_string()
            .contains(&address(1).to_string()));
        // Once it returned, it did.
        let mut done = [0u8; RECORD_SIZE];
        done[0] = KIND_DONE;
        watch.take(&done);
        assert_eq!(
            LeftState(&watch).to_string(),
            "no driver_override was left set"
        );
    }

    #[test]
    fn a_hang_after_a_step_returned_is_not_blamed_on_it() {
        let mut watch = Watch::default();
        let mut step = [0u8; RECORD_SIZE];
        step[0] = KIND_STEP;
        step[9] = 3;
        step[HEADER_SIZE..HEADER_SIZE + 3].copy_from_slice(b"foo");
        let mut done = [0u8; RECORD_SIZE];
        done[0] = KIND_DONE;
        watch.take(&step);
        assert_eq!(watch.current, "foo");
        watch.take(&done);
        assert_eq!(watch.current, "reading sysfs after foo");
        // A second "done" changes nothing.
        watch.take(&done);
        assert_eq!(watch.current, "reading sysfs after foo");
    }
}
