//! The supervisor: `apply`, `bind` and `release` end within a bounded time, whatever blocks,
//! and whoever stops them.
//!
//! This is a layer above the boot path, which does not know of it: the boot path is handed
//! a [`Kernel`] ([`Reporting`]) that notes each step it starts in a log shared with this
//! process, and the supervision happens around it.
//!
//! A write to a sysfs attribute, an unbind or a `modprobe` can block for ever, and a thread
//! in uninterruptible sleep can be neither killed nor waited out: it keeps its process alive
//! even after the main thread returns. So the work runs in a forked worker, and this process
//! only supervises it: it sleeps until the worker exits (SIGCHLD), writes output, the
//! deadline passes or a signal asks it to stop (SIGTERM, SIGINT, SIGHUP: systemd's start
//! timeout, libvirt's hook timeout, Ctrl-C). When the worker ends in time, the supervisor
//! exits with its status and adds nothing. Otherwise it kills the worker (SIGKILL), reads
//! from the shared log what the worker left overridden and what console it let go, has a
//! second bounded worker give those back, logs one line naming the step that did not
//! return and what was really reached, and exits 1.
//!
//! The log costs the worker no system call: each step is a record copied into a shared
//! anonymous mapping (no heap either), read by the supervisor only once the worker is
//! over. A step's record is written before the step starts and marked returned after it,
//! so a kill at any moment leaves a log that errs on the side of "may still be set".
//!
//! The worker's stdout and stderr are pipes the supervisor copies to its own: a stuck
//! worker must not keep the caller's output open either, or a caller that reads it to the
//! end (libvirt reads a hook's output) would wait as long as the worker does.
//!
//! Neither worker holds the binders' lock: the first closes its copy at once, the second
//! never gets one, so a worker stuck in the kernel never keeps the lock past its supervisor.
//!
//! Kernel log budget: the logger (`kmsg`) is set up before the fork, so both processes write
//! through the same /dev/kmsg open file, whose rate limit they share. The worker writes at
//! most [`crate::boot::kmsg::KMSG_RECORD_BUDGET`] records plus its summary; the supervisor writes
//! at most one line after the fork, and only when the worker did not end by itself.

use core::fmt::{self, Write as _};
use core::sync::atomic::{fence, AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use log::Level;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::{
    kill, sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::time::TimeSpec;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::boot::exit::{EXIT_GAVE_UP, EXIT_LOCKED};
use crate::boot::kernel::{Kernel, RunningKernel};
use crate::boot::kmsg;
use crate::boot::lock;
use crate::boot::modprobe::ModuleError;
use crate::boot::plan::MAX_TARGETS;
use crate::boot::seconds::Seconds;
use crate::machine::function::{base_class, DriverName, CLASS_DISPLAY, VFIO_PCI};
use crate::machine::sysfs::{
    Attribute, DeviceName, FramebufferDriver, Sysfs, MAX_FRAMEBUFFER_DEVICES, MAX_VTCONSOLES,
};
use crate::rules::address::PciAddress;

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

// ---------------------------------------------------------------------------------------
// The shared log: what the workers write, what the supervisor reads once they are over.
// ---------------------------------------------------------------------------------------

/// One step's record. Layout, by byte: kind, change, returned, console number or
/// framebuffer driver, domain (4, little-endian), bus, slot, function, has an address,
/// subject length, subject, text length, text.
const RECORD_SIZE: usize = 192;
const AT_CHANGE: usize = 1;
const AT_RETURNED: usize = 2;
const AT_SMALL: usize = 3;
const AT_ADDRESS: usize = 4;
const AT_HAS_ADDRESS: usize = 11;
const AT_SUBJECT_LENGTH: usize = 12;
const AT_SUBJECT: usize = 13;
const SUBJECT_CAPACITY: usize = 40;
const AT_TEXT_LENGTH: usize = AT_SUBJECT + SUBJECT_CAPACITY;
const AT_TEXT: usize = AT_TEXT_LENGTH + 1;
const TEXT_CAPACITY: usize = RECORD_SIZE - AT_TEXT;

/// A step the worker starts.
const KIND_STEP: u8 = 1;
/// Where a function given back after a kill ended, read back by the give-back worker.
const KIND_RESULT: u8 = 2;

/// What a step does, beyond its text.
const CHANGE_NONE: u8 = 0;
const CHANGE_OVERRIDE_SET: u8 = 1;
const CHANGE_OVERRIDE_CLEARED: u8 = 2;
/// The step works on a function without changing its override (an unbind, a probe).
const CHANGE_AT_FUNCTION: u8 = 3;
const CHANGE_CONSOLE_LET_GO: u8 = 4;
const CHANGE_CONSOLE_TAKEN_BACK: u8 = 5;
const CHANGE_FRAMEBUFFER_LET_GO: u8 = 6;
const CHANGE_FRAMEBUFFER_TAKEN_BACK: u8 = 7;

/// Result flags (in the change byte of a result record).
const RESULT_OVERRIDE_CLEARED: u8 = 1;
const RESULT_ON_VFIO: u8 = 2;
const RESULT_GONE: u8 = 4;

/// Records the log holds: far more than the longest run writes (64 functions, a few steps
/// each, the give-back after them). 1.5 MiB of address space, of which only the pages
/// written are ever allocated.
const LOG_RECORDS: usize = 8192;

/// The log in the shared mapping: how many records are complete, and the records.
#[repr(C)]
struct Log {
    count: AtomicUsize,
    records: [[u8; RECORD_SIZE]; LOG_RECORDS],
}

/// The shared log, mapped before the fork; null when unsupervised (then steps note
/// nothing).
static LOG: AtomicPtr<Log> = AtomicPtr::new(core::ptr::null_mut());
/// The index of the step this process noted last, to mark it returned; -1 for none.
static LAST_STEP: AtomicI32 = AtomicI32::new(-1);

/// Maps the shared log, once per process. `false` when no mapping could be had.
fn map_log() -> bool {
    if !LOG.load(Ordering::Relaxed).is_null() {
        return true;
    }
    // SAFETY: a fresh anonymous mapping, no address hint, no file; checked for failure.
    let pointer = unsafe {
        nix::libc::mmap(
            core::ptr::null_mut(),
            core::mem::size_of::<Log>(),
            nix::libc::PROT_READ | nix::libc::PROT_WRITE,
            nix::libc::MAP_SHARED | nix::libc::MAP_ANONYMOUS | nix::libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if pointer == nix::libc::MAP_FAILED {
        return false;
    }
    // Zero-filled by the kernel: the count starts at 0.
    LOG.store(pointer.cast(), Ordering::Relaxed);
    true
}

/// Appends one record (one process writes at a time: the worker, then the give-back
/// worker after it is over). A full log drops the record, as a full pipe would have.
fn append(record: &[u8; RECORD_SIZE]) -> Option<usize> {
    let log = LOG.load(Ordering::Relaxed);
    if log.is_null() {
        return None;
    }
    // SAFETY: `log` is the live shared mapping (never unmapped); this process is its only
    // writer now, and the record lands before the count that publishes it.
    unsafe {
        let count = &(*log).count;
        let index = count.load(Ordering::Relaxed);
        if index >= LOG_RECORDS {
            return None;
        }
        let slot = core::ptr::addr_of_mut!((*log).records[index]);
        core::ptr::copy_nonoverlapping(record.as_ptr(), slot.cast::<u8>(), RECORD_SIZE);
        count.store(index + 1, Ordering::Release);
        Some(index)
    }
}

/// Every complete record, in order, handed to `take`. Read only while no worker runs.
fn for_each_record(from: usize, take: &mut dyn FnMut(&[u8; RECORD_SIZE])) -> usize {
    let log = LOG.load(Ordering::Relaxed);
    if log.is_null() {
        return from;
    }
    // SAFETY: as in `append`; the writers are dead or stopped in the kernel, and the
    // Acquire load pairs with the Release store that published each record.
    unsafe {
        let count = (*log).count.load(Ordering::Acquire).min(LOG_RECORDS);
        for index in from..count {
            let mut record = [0u8; RECORD_SIZE];
            let slot = core::ptr::addr_of!((*log).records[index]);
            core::ptr::copy_nonoverlapping(slot.cast::<u8>(), record.as_mut_ptr(), RECORD_SIZE);
            take(&record);
        }
        count
    }
}

/// Notes the step this process starts now (e.g. `format_args!("unbinding {addr}")`), so
/// that if it never returns the supervisor can say what it gave up on. No system call and
/// no heap when supervised; nothing at all otherwise.
pub fn step(what: fmt::Arguments<'_>) {
    note(CHANGE_NONE, None, 0, "", what);
}

/// Marks the step noted last as returned, so that a hang in what follows (reading sysfs)
/// is not blamed on it.
pub fn done() {
    let index = LAST_STEP.load(Ordering::Relaxed);
    let log = LOG.load(Ordering::Relaxed);
    if index < 0 || log.is_null() {
        return;
    }
    // SAFETY: `index` was returned by `append` in this process, so it is in the mapping.
    unsafe {
        let slot = core::ptr::addr_of_mut!((*log).records[index as usize]);
        fence(Ordering::Release);
        core::ptr::write_volatile(slot.cast::<u8>().add(AT_RETURNED), 1);
    }
}

fn note(
    change: u8,
    address: Option<PciAddress>,
    small: u8,
    subject: &str,
    what: fmt::Arguments<'_>,
) {
    if LOG.load(Ordering::Relaxed).is_null() {
        return;
    }
    let mut record = [0u8; RECORD_SIZE];
    record[0] = KIND_STEP;
    record[AT_CHANGE] = change;
    record[AT_SMALL] = small;
    put_address(&mut record, address);
    put_subject(&mut record, subject);
    let mut text = Truncating {
        buffer: &mut record[AT_TEXT..],
        length: 0,
    };
    let _ = text.write_fmt(what);
    record[AT_TEXT_LENGTH] = text.length as u8;
    let index = append(&record).map_or(-1, |index| index as i32);
    LAST_STEP.store(index, Ordering::Relaxed);
}

fn put_address(record: &mut [u8; RECORD_SIZE], address: Option<PciAddress>) {
    if let Some(address) = address {
        record[AT_ADDRESS..AT_ADDRESS + 4].copy_from_slice(&address.domain().to_le_bytes());
        record[AT_ADDRESS + 4] = address.bus();
        record[AT_ADDRESS + 5] = address.slot();
        record[AT_ADDRESS + 6] = address.function();
        record[AT_HAS_ADDRESS] = 1;
    }
}

fn put_subject(record: &mut [u8; RECORD_SIZE], subject: &str) {
    let mut text = Truncating {
        buffer: &mut record[AT_SUBJECT..AT_SUBJECT + SUBJECT_CAPACITY],
        length: 0,
    };
    let _ = text.write_str(subject);
    record[AT_SUBJECT_LENGTH] = text.length as u8;
}

fn address_of(record: &[u8; RECORD_SIZE]) -> Option<PciAddress> {
    if record[AT_HAS_ADDRESS] == 0 {
        return None;
    }
    let at = AT_ADDRESS;
    PciAddress::new(
        u32::from_le_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]]),
        record[at + 4],
        record[at + 5],
        record[at + 6],
    )
}

fn text_of(record: &[u8; RECORD_SIZE], at: usize, length_at: usize, capacity: usize) -> &str {
    let length = usize::from(record[length_at]).min(capacity);
    core::str::from_utf8(&record[at..at + length]).unwrap_or("an unnamed step")
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

/// The kernel the boot path is handed under supervision: each write and module load is
/// noted in the shared log before it starts and marked returned after, then done by the
/// kernel inside.
pub struct Reporting<K: Kernel>(pub K);

impl<K: Kernel> Kernel for Reporting<K> {
    fn write(&mut self, sysfs: &Sysfs, attribute: Attribute, value: &str) -> Result<(), Errno> {
        note_write(attribute, value);
        let result = self.0.write(sysfs, attribute, value);
        done();
        result
    }

    fn load_module(&mut self, module: &str) -> Result<(), ModuleError> {
        step(format_args!("modprobe {module}"));
        let result = self.0.load_module(module);
        done();
        result
    }

    fn may_load_modules(&self) -> bool {
        self.0.may_load_modules()
    }
}

/// Notes a sysfs write about to be made, with what it changes: overrides, so that a
/// give-up can name the functions left overridden; consoles and framebuffers, so that it
/// can give back those let go.
fn note_write(attribute: Attribute, value: &str) {
    let value = value.trim_end();
    let what = format_args!("writing {value} to {attribute}");
    match attribute {
        Attribute::DriverOverride(address) if value.is_empty() => note(
            CHANGE_OVERRIDE_CLEARED,
            Some(address),
            0,
            "",
            format_args!("clearing {attribute}"),
        ),
        Attribute::DriverOverride(address) => note(CHANGE_OVERRIDE_SET, Some(address), 0, "", what),
        Attribute::Unbind(address) => note(CHANGE_AT_FUNCTION, Some(address), 0, "", what),
        Attribute::DriversProbe => note(CHANGE_AT_FUNCTION, value.parse().ok(), 0, "", what),
        Attribute::PlatformUnbind(driver) => note(
            CHANGE_FRAMEBUFFER_LET_GO,
            None,
            driver_code(driver),
            value,
            what,
        ),
        Attribute::PlatformBind(driver) => note(
            CHANGE_FRAMEBUFFER_TAKEN_BACK,
            None,
            driver_code(driver),
            value,
            what,
        ),
        Attribute::VtconsoleBind(number) => note(
            if value == "0" {
                CHANGE_CONSOLE_LET_GO
            } else {
                CHANGE_CONSOLE_TAKEN_BACK
            },
            None,
            number,
            "",
            what,
        ),
    }
}

fn driver_code(driver: FramebufferDriver) -> u8 {
    FramebufferDriver::ALL
        .iter()
        .position(|known| *known == driver)
        .unwrap_or(0) as u8
}

fn driver_of_code(code: u8) -> Option<FramebufferDriver> {
    FramebufferDriver::ALL.get(usize::from(code)).copied()
}

// ---------------------------------------------------------------------------------------
// Signals: the supervisor's wake-ups.
// ---------------------------------------------------------------------------------------

/// The stop signal received (SIGTERM, SIGINT, SIGHUP), 0 for none.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Set by SIGCHLD: a worker may have exited.
static CHILD_EXITED: AtomicI32 = AtomicI32::new(0);

const STOP_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

extern "C" fn on_signal(number: nix::libc::c_int) {
    if number == nix::libc::SIGCHLD {
        CHILD_EXITED.store(1, Ordering::Relaxed);
    } else {
        let _ = STOP_SIGNAL.compare_exchange(0, number, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// The signals the supervisor waits for: blocked at all times but while it sleeps in
/// `ppoll`, so that none is lost between a check and the sleep.
struct Signals {
    /// The mask before: restored in the workers (but the stop signals, which the
    /// supervisor handles for them) and unblocked in `ppoll`.
    before: SigSet,
}

impl Signals {
    fn block() -> Option<Signals> {
        STOP_SIGNAL.store(0, Ordering::Relaxed);
        CHILD_EXITED.store(0, Ordering::Relaxed);
        let mut wanted = SigSet::empty();
        wanted.add(Signal::SIGCHLD);
        for signal in STOP_SIGNALS {
            wanted.add(signal);
        }
        let mut before = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&wanted), Some(&mut before)).ok()?;
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            // No SA_RESTART: the sleep ends at once.
            SaFlags::SA_NOCLDSTOP,
            SigSet::empty(),
        );
        for signal in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            // SAFETY: the handler only stores into atomics, which is async-signal-safe.
            if unsafe { sigaction(signal, &action) }.is_err() {
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
                return None;
            }
        }
        Some(Signals { before })
    }

    /// In a worker: the mask from before, with the stop signals still blocked (the
    /// supervisor stops the worker itself; a Ctrl-C to the process group must not kill
    /// it before it can be given back), and SIGCHLD's default action back.
    fn in_worker(&self) {
        let mut mask = self.before;
        for signal in STOP_SIGNALS {
            mask.add(signal);
        }
        // SAFETY: restoring the default action is always sound.
        let _ = unsafe {
            sigaction(
                Signal::SIGCHLD,
                &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
            )
        };
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
    }

    /// The mask to sleep with: the one from before, with everything awaited unblocked
    /// (`stops`: the stop signals too, or they stay pending, as while giving back).
    fn sleeping_mask(&self, stops: bool) -> SigSet {
        let mut mask = self.before;
        mask.remove(Signal::SIGCHLD);
        for signal in STOP_SIGNALS {
            if stops {
                mask.remove(signal);
            } else {
                mask.add(signal);
            }
        }
        mask
    }
}

/// Sleeps until an fd is ready, a signal arrives, or `until`.
fn sleep_until(fds: &mut [PollFd<'_>], until: Instant, mask: &SigSet) -> Result<(), Errno> {
    let left = until.saturating_duration_since(Instant::now());
    let timeout = TimeSpec::from_duration(left);
    match ppoll(fds, Some(timeout), Some(*mask)) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(errno) => Err(errno),
    }
}

/// The worker's exit status if it has exited (after a SIGCHLD), without waiting.
fn exited(worker: Pid) -> Option<WaitStatus> {
    if CHILD_EXITED.swap(0, Ordering::Relaxed) == 0 {
        return None;
    }
    match waitpid(worker, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {
            // Another child (a give-back worker's sibling) or not yet: look again later.
            None
        }
        Ok(status) => Some(status),
        Err(_) => None,
    }
}

/// After a SIGKILL: waits a moment for the worker to be gone, so that its log is final, and
/// returns how it ended if it is (it may have exited on its own just before the kill). A
/// worker stuck in the kernel runs no more of its own code anyway.
fn let_die(worker: Pid) -> Option<WaitStatus> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(20) {
        match waitpid(worker, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(status) => return Some(status),
            Err(_) => return None,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

// ---------------------------------------------------------------------------------------
// Running the work under supervision.
// ---------------------------------------------------------------------------------------

/// Runs `work` under the binders' lock (when it `writes`) and the supervisor: it ends
/// within `timeout` of `started` whatever blocks, and gives back what it left when it is
/// stopped. `work` is handed the kernel to work through. What `apply`, `bind` and
/// `release` run in.
pub fn bounded(
    sysfs: &Sysfs,
    writes: bool,
    modules_allowed: bool,
    started: Instant,
    timeout: Duration,
    work: &mut dyn FnMut(&mut dyn Kernel) -> u8,
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
    let lock_fd = held.as_ref().map(|held| held.as_raw_fd());
    let deadline = started + timeout - give_back_share(timeout);
    let mut give_back = |left: &Leftover| give_back_after_kill(sysfs, left);
    let mut kernel = Reporting(RunningKernel {
        modules_allowed,
        deadline: Some(deadline),
    });
    match fork_supervised(started, timeout, lock_fd, &mut give_back) {
        Side::Worker => {
            if let Some(held) = held {
                held.leave_to_supervisor();
            }
            work(&mut kernel)
        }
        // The one process: it keeps the lock while it works, as no supervisor holds it.
        Side::Unsupervised => {
            let status = work(&mut kernel);
            drop(held);
            status
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
    /// This is the worker: do the work and exit with its status.
    Worker,
    /// No log, pipe or fork could be had: this is the one process, working unsupervised
    /// (the binder does not refuse to work for want of a supervisor). Do the work, holding
    /// what the supervisor would have held (the lock), and exit with its status.
    Unsupervised,
    /// This is the supervisor, and the worker is over: exit with this status.
    Ended(u8),
}

/// What a killed worker left, for the give-back worker.
#[derive(Debug, Default)]
pub struct Leftover {
    /// The functions it left overridden, but the one it was stuck on (a write to that
    /// function would wait on the same device lock).
    pub functions: heapless::Vec<PciAddress, MAX_TARGETS>,
    /// Every function it overrode, the stuck one too.
    pub overridden: heapless::Vec<PciAddress, MAX_TARGETS>,
    /// The function its last step was working on when it was killed.
    pub stuck_on: Option<PciAddress>,
    /// The framebuffer devices it let go and did not take back.
    pub framebuffers: heapless::Vec<(FramebufferDriver, DeviceName), MAX_FRAMEBUFFER_DEVICES>,
    /// The virtual consoles it let go and did not take back.
    pub consoles: heapless::Vec<u8, MAX_VTCONSOLES>,
}

/// Forks a worker and supervises it until it ends, its part of `timeout` (all but
/// [`give_back_share`]) has passed since `started`, or a stop signal comes. Then it is
/// killed, what it left is handed to `give_back` in a second worker (which holds neither
/// the caller's output nor `lock_fd`), bounded by the rest of `timeout`, one line is
/// logged, and the status is 1. Returns [`Side::Worker`] in the worker, and
/// [`Side::Ended`] in the supervisor once the worker is over.
pub fn fork_supervised(
    started: Instant,
    timeout: Duration,
    lock_fd: Option<i32>,
    give_back: &mut dyn FnMut(&Leftover),
) -> Side {
    let end = started + timeout;
    let deadline = end - give_back_share(timeout);
    if !map_log() {
        return Side::Unsupervised;
    }
    let Ok(outputs) = Outputs::new() else {
        return Side::Unsupervised;
    };
    let Some(signals) = Signals::block() else {
        return Side::Unsupervised;
    };
    let supervisor = nix::unistd::getpid();
    // SAFETY: the process is single-threaded here (the binder starts no thread), so the
    // child may run any code, allocating included.
    match unsafe { fork() } {
        Err(_) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&signals.before), None);
            Side::Unsupervised
        }
        Ok(ForkResult::Child) => {
            signals.in_worker();
            outputs.become_worker(supervisor);
            Side::Worker
        }
        Ok(ForkResult::Parent { child }) => {
            let (output, ended) = outputs.supervise(child, deadline, &signals);
            let stopped = match ended {
                Ok(status) => {
                    // A modprobe it started may still hold the output pipes: not waited for.
                    output.drain(end);
                    return Side::Ended(status);
                }
                Err(stopped) => stopped,
            };
            // When it was stopped, not when the give-back that follows is over.
            let after = Seconds(Instant::now().saturating_duration_since(started));
            let mut watch = Watch::default();
            let read = for_each_record(0, &mut |record| watch.take(record));
            let left = watch.leftover();
            let give_back_end = match stopped {
                Stopped::Deadline => end,
                Stopped::Signal(_) | Stopped::Died(_) => {
                    end.min(Instant::now() + give_back_share(timeout))
                }
            };
            give_back_after_kill_bounded(&left, give_back_end, &signals, lock_fd, give_back);
            watch.after_give_back(&left);
            for_each_record(read, &mut |record| watch.take(record));
            // Only now, when what it left is given back: copying its output may block.
            output.drain(end);
            match stopped {
                Stopped::Deadline => kmsg::log_summary(
                    Level::Error,
                    format_args!(
                        "gave up after {} s: {} did not finish; the worker was killed there; {}",
                        Seconds(deadline.saturating_duration_since(started)),
                        watch.stuck,
                        LeftState(&watch)
                    ),
                ),
                Stopped::Signal(signal) => kmsg::log_summary(
                    Level::Error,
                    format_args!(
                        "stopped by {} after {after} s while {}; the worker was killed there; {}",
                        signal.as_str(),
                        watch.stuck,
                        LeftState(&watch)
                    ),
                ),
                Stopped::Died(signal) => kmsg::log_summary(
                    Level::Error,
                    format_args!(
                        "the worker died of {} while {}; {}",
                        signal.as_str(),
                        watch.stuck,
                        LeftState(&watch)
                    ),
                ),
            }
            Side::Ended(EXIT_GAVE_UP)
        }
    }
}

/// Why the worker did not end with a status of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopped {
    /// Its part of the timeout passed: it was killed.
    Deadline,
    /// The supervisor was asked to stop: it was killed.
    Signal(Signal),
    /// It died of this signal itself (a panic's abort, a crash, the OOM killer).
    Died(Signal),
}

/// The read ends of the worker's output pipes, in the supervisor.
struct WorkerOutput {
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl WorkerOutput {
    /// Copies what is left in the pipes to the supervisor's own stdout and stderr, as far
    /// as they take it by `until`; the rest is dropped.
    fn drain(&self, until: Instant) {
        relay_stdout(&self.stdout, until);
        relay_stderr(&self.stderr, until);
    }
}

/// The worker's stdout and stderr: pipes the supervisor copies to its own.
struct Outputs {
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
    /// Both pipes hold [`OUTPUT_PIPE_SIZE`]: more than the worker ever writes, so the
    /// supervisor need not wake to empty them while it works, only copy them at its end.
    roomy: bool,
}

/// The output pipes' size asked for: far more than the longest output (a dry run of 32
/// rules of 64 functions each is about 100 KiB), and the unprivileged maximum.
const OUTPUT_PIPE_SIZE: nix::libc::c_int = 1 << 20;

impl Outputs {
    /// Blocking pipes: the worker's writes wait for room rather than lose a line. The
    /// supervisor makes its own read ends non-blocking (each end is an open file of its
    /// own), so the worker spends no system call on it.
    fn new() -> Result<Self, Errno> {
        let stdout = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let stderr = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let roomy = [&stdout.1, &stderr.1].iter().all(|pipe| {
            nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(OUTPUT_PIPE_SIZE))
                .is_ok_and(|size| size >= OUTPUT_PIPE_SIZE)
        });
        Ok(Outputs {
            stdout,
            stderr,
            roomy,
        })
    }

    /// In the worker: dies with the supervisor, writes its output into the pipes.
    fn become_worker(self, supervisor: Pid) {
        // SAFETY: prctl with integer arguments; the worker dies with its supervisor.
        unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) };
        if nix::unistd::getppid() != supervisor {
            // The supervisor died before the prctl: do nothing unsupervised.
            // SAFETY: ends this forked child at once.
            unsafe { nix::libc::_exit(EXIT_GAVE_UP.into()) }
        }
        let Outputs {
            stdout: (stdout_reader, stdout_writer),
            stderr: (stderr_reader, stderr_writer),
            ..
        } = self;
        drop((stdout_reader, stderr_reader));
        // dup2 puts the pipes at fds 1 and 2 (without O_CLOEXEC, so a modprobe writes
        // there too).
        let _ = nix::unistd::dup2_stdout(&stdout_writer);
        let _ = nix::unistd::dup2_stderr(&stderr_writer);
    }

    /// The worker's status, or why it did not give one (then it is dead). What it wrote
    /// and the supervisor has not copied yet is left in the returned pipes.
    fn supervise(
        self,
        worker: Pid,
        deadline: Instant,
        signals: &Signals,
    ) -> (WorkerOutput, Result<u8, Stopped>) {
        let Outputs {
            stdout: (stdout, stdout_writer),
            stderr: (stderr, stderr_writer),
            roomy,
        } = self;
        // Only the worker may hold the write ends, or no end of file would ever come.
        drop((stdout_writer, stderr_writer));
        let _ = set_nonblocking(&stdout);
        let _ = set_nonblocking(&stderr);
        let mask = signals.sleeping_mask(true);
        // With roomy pipes the output is copied once, at the end: no wake-up per line.
        let mut output_open = [!roomy, !roomy];
        let ended = loop {
            if let Some(status) = exited(worker) {
                break ended_with(status);
            }
            if let Some(signal) = stop_signal() {
                break kill_and_reap(worker, Stopped::Signal(signal));
            }
            if Instant::now() >= deadline {
                break kill_and_reap(worker, Stopped::Deadline);
            }
            // An output pipe at end of file is left out: poll would report it hung up at
            // once, every time.
            let mut fds: heapless::Vec<PollFd<'_>, 2> = heapless::Vec::new();
            for (open, pipe) in output_open.iter().zip([&stdout, &stderr]) {
                if *open {
                    let _ = fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                }
            }
            if sleep_until(&mut fds, deadline, &mask).is_err() {
                break kill_and_reap(worker, Stopped::Deadline);
            }
            drop(fds);
            // Bounded by the deadline: a caller that reads nothing cannot hold off the kill.
            output_open[0] = output_open[0] && relay_stdout(&stdout, deadline);
            output_open[1] = output_open[1] && relay_stderr(&stderr, deadline);
        };
        (WorkerOutput { stdout, stderr }, ended)
    }
}

/// Kills the worker for `stopped`; but if it had exited on its own by then (its SIGCHLD
/// not yet seen), its own status stands: what it did is done, nothing is to be given back.
fn kill_and_reap(worker: Pid, stopped: Stopped) -> Result<u8, Stopped> {
    let _ = kill(worker, Signal::SIGKILL);
    match let_die(worker) {
        Some(status @ WaitStatus::Exited(..)) => ended_with(status),
        _ => Err(stopped),
    }
}

fn stop_signal() -> Option<Signal> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        number => Signal::try_from(number).ok(),
    }
}

/// How a reaped worker ended: its own exit status, or the signal it died of (what it left
/// is then given back as after a kill).
fn ended_with(status: WaitStatus) -> Result<u8, Stopped> {
    match status {
        WaitStatus::Exited(_, code) => Ok(u8::try_from(code).unwrap_or(EXIT_GAVE_UP)),
        WaitStatus::Signaled(_, signal, _) => Err(Stopped::Died(signal)),
        _ => Ok(EXIT_GAVE_UP),
    }
}

/// After a kill: runs `give_back` in a second worker, bounded by `end`, when there is
/// anything to give back. It holds neither the caller's output nor the lock, and its steps
/// are noted in the same log, so the supervisor learns what it reached.
fn give_back_after_kill_bounded(
    left: &Leftover,
    end: Instant,
    signals: &Signals,
    lock_fd: Option<i32>,
    give_back: &mut dyn FnMut(&Leftover),
) {
    let nothing =
        left.functions.is_empty() && left.framebuffers.is_empty() && left.consoles.is_empty();
    if nothing || Instant::now() >= end {
        return;
    }
    let supervisor = nix::unistd::getpid();
    // SAFETY: single-threaded, as for the first fork.
    match unsafe { fork() } {
        Err(_) => {}
        Ok(ForkResult::Child) => {
            // SAFETY: as in `become_worker`.
            unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) };
            if nix::unistd::getppid() == supervisor {
                signals.in_worker();
                if let Some(fd) = lock_fd {
                    // The supervisor's copy keeps the lock; this one must not outlive it.
                    let _ = nix::unistd::close(fd);
                }
                // It writes nothing, and must not hold the caller's output if it gets stuck.
                if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                    let _ = nix::unistd::dup2_stdout(&null);
                    let _ = nix::unistd::dup2_stderr(&null);
                }
                LAST_STEP.store(-1, Ordering::Relaxed);
                give_back(left);
            }
            // SAFETY: ends this forked child at once; nothing of the supervisor's state
            // (buffered output above all) is run or flushed twice.
            unsafe { nix::libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            // Stop signals stay pending now: the give-back is already what they ask for.
            let mask = signals.sleeping_mask(false);
            loop {
                if exited(child).is_some() {
                    return;
                }
                if Instant::now() >= end {
                    let _ = kill(child, Signal::SIGKILL);
                    let_die(child);
                    return;
                }
                if sleep_until(&mut [] as &mut [PollFd<'_>], end, &mask).is_err() {
                    let _ = kill(child, Signal::SIGKILL);
                    return;
                }
            }
        }
    }
}

/// The supervisor's give-back after a kill, run in the give-back worker: every function
/// left overridden goes back to its own driver (as a failed rule's does) and where it ended
/// is noted; then the framebuffers and consoles let go are taken back, unless a display
/// card is on vfio-pci or is the one the worker was stuck on (its framebuffer would land
/// in a BAR in flux): then they are left, and the give-up line names them.
pub fn give_back_after_kill(sysfs: &Sysfs, left: &Leftover) {
    let mut kernel = Reporting(RunningKernel {
        modules_allowed: false,
        deadline: None,
    });
    for address in &left.functions {
        crate::boot::kernel::give_back(sysfs, &mut kernel, *address);
        note_result(sysfs, *address);
    }
    if left.framebuffers.is_empty() && left.consoles.is_empty() {
        return;
    }
    let display = |address: PciAddress| {
        sysfs.read_function(address).map(|function| {
            let display = function
                .class
                .is_some_and(|class| base_class(class) == CLASS_DISPLAY);
            (display, function.is_on(VFIO_PCI))
        })
    };
    let stuck_display = left
        .stuck_on
        .and_then(display)
        .is_some_and(|(display, _)| display);
    let display_on_vfio = left
        .overridden
        .iter()
        .any(|address| display(*address) == Some((true, true)));
    if stuck_display || display_on_vfio {
        return;
    }
    for (driver, device) in &left.framebuffers {
        let _ = kernel.write(sysfs, Attribute::PlatformBind(*driver), device);
    }
    for number in &left.consoles {
        let _ = kernel.write(sysfs, Attribute::VtconsoleBind(*number), "1");
    }
}

/// Notes where a function given back after a kill ended, read back from sysfs.
fn note_result(sysfs: &Sysfs, address: PciAddress) {
    if LOG.load(Ordering::Relaxed).is_null() {
        return;
    }
    let mut record = [0u8; RECORD_SIZE];
    record[0] = KIND_RESULT;
    put_address(&mut record, Some(address));
    match sysfs.binding_of(address) {
        None => record[AT_CHANGE] = RESULT_GONE,
        Some(now) => {
            if now.driver_override.is_none() {
                record[AT_CHANGE] |= RESULT_OVERRIDE_CLEARED;
            }
            if now.is_on(VFIO_PCI) {
                record[AT_CHANGE] |= RESULT_ON_VFIO;
            }
            if let Some(driver) = &now.driver {
                put_subject(&mut record, driver);
            }
        }
    }
    let _ = append(&record);
}

/// Makes the supervisor's read end of a pipe non-blocking: it reads what is there.
fn set_nonblocking(fd: &OwnedFd) -> Result<(), Errno> {
    // A pipe's read end has no other status flag worth keeping: no F_GETFL first.
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map(drop)
}

/// The first error writing the worker's stdout to ours (an errno; 0: none): the worker's
/// own writes went to a pipe and succeeded, so only the supervisor can see that the output
/// did not arrive (`apply --dry-run > /dev/full`). See [`relayed_output_error`].
static RELAYED_OUTPUT_ERROR: AtomicI32 = AtomicI32::new(0);

/// The error the supervisor met copying the worker's stdout to its own, if any.
pub fn relayed_output_error() -> Option<std::io::Error> {
    match RELAYED_OUTPUT_ERROR.load(Ordering::Relaxed) {
        0 => None,
        code => Some(std::io::Error::from_raw_os_error(code)),
    }
}

/// Copies what the worker wrote on its stdout pipe to ours by `until`, keeping the first
/// error (ETIMEDOUT: the caller did not read it in time, and the rest was dropped).
fn relay_stdout(from: &OwnedFd, until: Instant) -> bool {
    let mut failed = None;
    let open = relay(from, std::io::stdout().as_fd(), until, &mut failed);
    if let Some(errno) = failed {
        let _ = RELAYED_OUTPUT_ERROR.compare_exchange(
            0,
            errno as i32,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    open
}

/// Copies what the worker wrote on its stderr pipe to ours by `until`.
fn relay_stderr(from: &OwnedFd, until: Instant) -> bool {
    relay(from, std::io::stderr().as_fd(), until, &mut None)
}

/// Copies what the worker wrote on one of its output pipes to `to`, as far as `to` takes
/// it by `until`. `false` at end of file. After the first write error (its errno goes to
/// `failed`), what is read is dropped: the worker must not wait on a full pipe.
fn relay(from: &OwnedFd, to: BorrowedFd<'_>, until: Instant, failed: &mut Option<Errno>) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        match nix::unistd::read(from, &mut buffer) {
            Ok(0) => return false,
            Ok(length) => {
                if failed.is_none() {
                    *failed = write_by(to, &buffer[..length], until).err();
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// The most written at once once poll reports room: a pipe (a page), a terminal or a
/// socket that reports room takes this much without blocking.
const RELAY_CHUNK: usize = 512;

/// Writes `bytes` to `to` by `until`, without blocking past it: it waits for room with
/// poll and writes a chunk at a time (the caller's open file is shared with others: it is
/// not made non-blocking). ETIMEDOUT when `until` came first.
fn write_by(to: BorrowedFd<'_>, mut bytes: &[u8], until: Instant) -> Result<(), Errno> {
    while !bytes.is_empty() {
        let mut fds = [PollFd::new(to, PollFlags::POLLOUT)];
        let left = TimeSpec::from_duration(until.saturating_duration_since(Instant::now()));
        match ppoll(&mut fds, Some(left), None) {
            Ok(0) => return Err(Errno::ETIMEDOUT),
            // Room, or an error or hang-up, which the write reports.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
        let chunk = &bytes[..bytes.len().min(RELAY_CHUNK)];
        match nix::unistd::write(to, chunk) {
            Ok(written) => bytes = &bytes[written..],
            // A caller's non-blocking output without room yet: poll again, until `until`.
            Err(Errno::EINTR | Errno::EAGAIN) => {
                if Instant::now() >= until {
                    return Err(Errno::ETIMEDOUT);
                }
            }
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the log says: the step that did not return, what is left, what was given back.
// ---------------------------------------------------------------------------------------

/// What the step the worker started last was, and was doing.
const AFTER_A_STEP: &str = "reading sysfs after ";
/// The step the supervisor names if the worker never noted one.
const FIRST_STEP: &str = "reading the rules and the PCI devices";

/// Where a function given back after a kill ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reached {
    /// Override cleared, off vfio-pci: on this driver, or on none.
    Back(Option<DriverName>),
    /// Override cleared, but still on vfio-pci (its unbind failed).
    StillOnVfio,
    /// Its override stayed.
    NotBack,
    Gone,
}

/// What the supervisor reads of the workers' progress in the log.
struct Watch {
    /// The step the worker started last, which it may still be in.
    stuck: heapless::String<{ TEXT_CAPACITY + AFTER_A_STEP.len() }>,
    /// Whether the worker is still in the step `stuck` names (it was not marked returned).
    step_running: bool,
    /// The function the running step changes the override of, if it does.
    current_function: Option<PciAddress>,
    /// The function the running step works on, if it names one.
    current_address: Option<PciAddress>,
    /// Each function whose override a step set or cleared, with whether it may be set now.
    overrides: heapless::Vec<(PciAddress, bool), MAX_TARGETS>,
    /// The functions handed to the give-back worker, and where each ended if it said.
    given_back: heapless::Vec<(PciAddress, Option<Reached>), MAX_TARGETS>,
    /// Framebuffers let go and not (yet) taken back; whether the give-back took them back.
    framebuffers: heapless::Vec<(FramebufferDriver, DeviceName, bool), MAX_FRAMEBUFFER_DEVICES>,
    consoles: heapless::Vec<(u8, bool), MAX_VTCONSOLES>,
    /// The give-back worker is running (its steps are not the stuck worker's).
    giving_back: bool,
}

impl Default for Watch {
    fn default() -> Self {
        let mut stuck = heapless::String::new();
        let _ = stuck.push_str(FIRST_STEP);
        Watch {
            stuck,
            step_running: false,
            current_function: None,
            current_address: None,
            overrides: heapless::Vec::new(),
            given_back: heapless::Vec::new(),
            framebuffers: heapless::Vec::new(),
            consoles: heapless::Vec::new(),
            giving_back: false,
        }
    }
}

impl Watch {
    fn take(&mut self, record: &[u8; RECORD_SIZE]) {
        match record[0] {
            KIND_STEP => self.take_step(record),
            KIND_RESULT => {
                let Some(address) = address_of(record) else {
                    return;
                };
                let flags = record[AT_CHANGE];
                let result = if flags & RESULT_GONE != 0 {
                    Reached::Gone
                } else if flags & RESULT_OVERRIDE_CLEARED != 0 && flags & RESULT_ON_VFIO == 0 {
                    let driver = text_of(record, AT_SUBJECT, AT_SUBJECT_LENGTH, SUBJECT_CAPACITY);
                    Reached::Back(DriverName::try_from(driver).ok().filter(|d| !d.is_empty()))
                } else if flags & RESULT_OVERRIDE_CLEARED != 0 {
                    Reached::StillOnVfio
                } else {
                    Reached::NotBack
                };
                if let Some(entry) = self
                    .given_back
                    .iter_mut()
                    .find(|(known, _)| *known == address)
                {
                    entry.1 = Some(result);
                }
            }
            _ => {}
        }
    }

    fn take_step(&mut self, record: &[u8; RECORD_SIZE]) {
        let returned = record[AT_RETURNED] != 0;
        let change = record[AT_CHANGE];
        let address = address_of(record);
        if !self.giving_back {
            self.stuck.clear();
            if returned {
                let _ = self.stuck.push_str(AFTER_A_STEP);
            }
            let text = text_of(record, AT_TEXT, AT_TEXT_LENGTH, TEXT_CAPACITY);
            for character in text.chars() {
                if self.stuck.push(character).is_err() {
                    break;
                }
            }
            self.step_running = !returned;
            self.current_address = address.filter(|_| {
                matches!(
                    change,
                    CHANGE_OVERRIDE_SET | CHANGE_OVERRIDE_CLEARED | CHANGE_AT_FUNCTION
                )
            });
            self.current_function =
                address.filter(|_| matches!(change, CHANGE_OVERRIDE_SET | CHANGE_OVERRIDE_CLEARED));
        }
        match change {
            CHANGE_OVERRIDE_SET | CHANGE_OVERRIDE_CLEARED => {
                let Some(address) = address else {
                    return;
                };
                // A clear that did not return may not have happened.
                let set = change == CHANGE_OVERRIDE_SET || !returned;
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
            CHANGE_FRAMEBUFFER_LET_GO => {
                // An unbind that did not return may have happened: count it as let go.
                let Some(driver) = driver_of_code(record[AT_SMALL]) else {
                    return;
                };
                let device = text_of(record, AT_SUBJECT, AT_SUBJECT_LENGTH, SUBJECT_CAPACITY);
                let Ok(device) = DeviceName::try_from(device) else {
                    return;
                };
                if !self
                    .framebuffers
                    .iter()
                    .any(|(_, known, _)| *known == device)
                {
                    let _ = self.framebuffers.push((driver, device, false));
                }
            }
            CHANGE_FRAMEBUFFER_TAKEN_BACK if returned => {
                let device = text_of(record, AT_SUBJECT, AT_SUBJECT_LENGTH, SUBJECT_CAPACITY);
                if self.giving_back {
                    if let Some(entry) = self
                        .framebuffers
                        .iter_mut()
                        .find(|(_, known, _)| known.as_str() == device)
                    {
                        entry.2 = true;
                    }
                } else {
                    self.framebuffers
                        .retain(|(_, known, _)| known.as_str() != device);
                }
            }
            CHANGE_CONSOLE_LET_GO => {
                let number = record[AT_SMALL];
                if !self.consoles.iter().any(|(known, _)| *known == number) {
                    let _ = self.consoles.push((number, false));
                }
            }
            CHANGE_CONSOLE_TAKEN_BACK if returned => {
                let number = record[AT_SMALL];
                if self.giving_back {
                    if let Some(entry) =
                        self.consoles.iter_mut().find(|(known, _)| *known == number)
                    {
                        entry.1 = true;
                    }
                } else {
                    self.consoles.retain(|(known, _)| *known != number);
                }
            }
            _ => {}
        }
    }

    /// What the killed worker left: the functions whose override may still be set, but
    /// the one it was stuck on; the framebuffers and consoles it let go.
    fn leftover(&self) -> Leftover {
        let stuck_on = self.step_running.then_some(self.current_address).flatten();
        let mut left = Leftover {
            stuck_on,
            ..Leftover::default()
        };
        for (address, set) in &self.overrides {
            let _ = left.overridden.push(*address);
            if *set && Some(*address) != stuck_on {
                let _ = left.functions.push(*address);
            }
        }
        for (driver, device, _) in &self.framebuffers {
            let _ = left.framebuffers.push((*driver, device.clone()));
        }
        for (number, _) in &self.consoles {
            let _ = left.consoles.push(*number);
        }
        left
    }

    /// Before reading the give-back worker's records: they are the give-back's, not steps
    /// of the killed worker.
    fn after_give_back(&mut self, left: &Leftover) {
        self.giving_back = true;
        for address in &left.functions {
            let _ = self.given_back.push((*address, None));
        }
    }
}

/// What the workers left and reached: "gave back A (on amdgpu); cleared the override of
/// B, but ...; driver_override may still be set on C (...)", then the console's state.
struct LeftState<'w>(&'w Watch);

impl LeftState<'_> {
    /// Whether a function's override may still be set: in flight or set by the last step.
    fn still_set(&self, address: PciAddress) -> bool {
        let watch = self.0;
        let result = watch
            .given_back
            .iter()
            .find(|(known, _)| *known == address)
            .and_then(|(_, result)| result.as_ref());
        match result {
            Some(Reached::Back(_) | Reached::Gone | Reached::StillOnVfio) => false,
            Some(Reached::NotBack) => true,
            None => watch
                .overrides
                .iter()
                .any(|(known, set)| *known == address && *set),
        }
    }
}

impl fmt::Display for LeftState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watch = self.0;
        let mut any = false;
        let mut first = true;
        for (address, result) in &watch.given_back {
            if !matches!(result, Some(Reached::Back(_) | Reached::Gone)) {
                continue;
            }
            f.write_str(if first { "gave back " } else { ", " })?;
            first = false;
            any = true;
            match result {
                Some(Reached::Back(Some(driver))) => write!(f, "{address} (on {driver})")?,
                Some(Reached::Back(None)) => write!(f, "{address} (no driver took it)")?,
                _ => write!(f, "{address} (it is gone)")?,
            }
        }
        if !first {
            f.write_str("; ")?;
        }
        // Given back only in part: the override cleared, but the function is still on
        // vfio-pci, or its probe never returned.
        for (address, result) in &watch.given_back {
            if result == &Some(Reached::StillOnVfio) {
                any = true;
                write!(
                    f,
                    "cleared the override of {address}, but it is still on vfio-pci (vfio-bind release gives it back); "
                )?;
            }
            if result.is_none() && !self.still_set(*address) {
                any = true;
                write!(
                    f,
                    "cleared the override of {address}, but its probe did not finish, so it may have no driver; "
                )?;
            }
        }
        let mut first = true;
        for (address, _) in watch
            .overrides
            .iter()
            .filter(|(address, _)| self.still_set(*address))
        {
            f.write_str(if first {
                "driver_override may still be set on "
            } else {
                ", "
            })?;
            first = false;
            write!(f, "{address}")?;
        }
        if !first {
            f.write_str(" (run vfio-bind check; vfio-bind release gives them back)")?;
        } else if any {
            f.write_str("no other driver_override was left set")?;
        } else {
            f.write_str("no driver_override was left set")?;
        }
        ConsoleState(watch).fmt(f)
    }
}

/// `; the console was given back (vtcon1, efi-framebuffer.0)`, `; the console is still let
/// go: ...`, or nothing when nothing was let go or all was taken back by the worker.
struct ConsoleState<'w>(&'w Watch);

impl ConsoleState<'_> {
    fn list(&self, f: &mut fmt::Formatter<'_>, taken_back: bool) -> Result<bool, fmt::Error> {
        let watch = self.0;
        let mut first = true;
        let consoles = watch
            .consoles
            .iter()
            .filter(|(_, back)| *back == taken_back);
        for (number, _) in consoles {
            f.write_str(if first { "" } else { ", " })?;
            first = false;
            write!(f, "vtcon{number}")?;
        }
        let framebuffers = watch
            .framebuffers
            .iter()
            .filter(|(_, _, back)| *back == taken_back);
        for (_, device, _) in framebuffers {
            f.write_str(if first { "" } else { ", " })?;
            first = false;
            f.write_str(device)?;
        }
        Ok(!first)
    }

    fn has(&self, taken_back: bool) -> bool {
        self.0.consoles.iter().any(|(_, back)| *back == taken_back)
            || self
                .0
                .framebuffers
                .iter()
                .any(|(_, _, back)| *back == taken_back)
    }
}

impl fmt::Display for ConsoleState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.has(true) {
            f.write_str("; the console was given back (")?;
            self.list(f, true)?;
            f.write_str(")")?;
        }
        if self.has(false) {
            f.write_str("; the console is still let go (")?;
            self.list(f, false)?;
            f.write_str("): vfio-bind release gives it back")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(function: u8) -> PciAddress {
        PciAddress::new(0, 7, 0, function).unwrap()
    }

    fn step(change: u8, at: Option<PciAddress>, returned: bool, text: &str) -> [u8; RECORD_SIZE] {
        let mut record = [0u8; RECORD_SIZE];
        record[0] = KIND_STEP;
        record[AT_CHANGE] = change;
        record[AT_RETURNED] = u8::from(returned);
        put_address(&mut record, at);
        record[AT_TEXT..AT_TEXT + text.len()].copy_from_slice(text.as_bytes());
        record[AT_TEXT_LENGTH] = text.len() as u8;
        record
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
        let mut watch = Watch::default();
        assert_eq!(
            LeftState(&watch).to_string(),
            "no driver_override was left set"
        );
        watch.take(&step(CHANGE_OVERRIDE_SET, Some(address(0)), true, "x"));
        watch.take(&step(CHANGE_OVERRIDE_SET, Some(address(1)), true, "x"));
        watch.take(&step(CHANGE_OVERRIDE_CLEARED, Some(address(0)), true, "x"));
        watch.take(&step(CHANGE_NONE, None, true, "x"));
        assert_eq!(watch.overrides.len(), 2);
        assert_eq!(
            LeftState(&watch).to_string(),
            format!(
                "driver_override may still be set on {} (run vfio-bind check; vfio-bind release gives them back)",
                address(1)
            )
        );
        // A clear that never returned may not have happened.
        watch.take(&step(CHANGE_OVERRIDE_CLEARED, Some(address(1)), false, "x"));
        assert!(LeftState(&watch)
            .to_string()
            .contains(&address(1).to_string()));
        // Once it returned, it did.
        watch.take(&step(CHANGE_OVERRIDE_CLEARED, Some(address(1)), true, "x"));
        assert_eq!(
            LeftState(&watch).to_string(),
            "no driver_override was left set"
        );
    }

    #[test]
    fn a_hang_after_a_step_returned_is_not_blamed_on_it() {
        let mut watch = Watch::default();
        watch.take(&step(CHANGE_NONE, None, false, "foo"));
        assert_eq!(watch.stuck, "foo");
        assert!(watch.step_running);
        watch.take(&step(CHANGE_NONE, None, true, "foo"));
        assert_eq!(watch.stuck, "reading sysfs after foo");
        assert!(!watch.step_running);
    }

    fn result(at: PciAddress, flags: u8, driver: &str) -> [u8; RECORD_SIZE] {
        let mut record = [0u8; RECORD_SIZE];
        record[0] = KIND_RESULT;
        record[AT_CHANGE] = flags;
        put_address(&mut record, Some(at));
        put_subject(&mut record, driver);
        record
    }

    #[test]
    fn the_line_says_where_each_function_given_back_ended() {
        let mut watch = Watch::default();
        for function in 0..5 {
            watch.take(&step(
                CHANGE_OVERRIDE_SET,
                Some(address(function)),
                true,
                "x",
            ));
        }
        watch.take(&step(CHANGE_AT_FUNCTION, Some(address(5)), false, "stuck"));
        let left = watch.leftover();
        watch.after_give_back(&left);
        watch.take(&result(address(0), RESULT_OVERRIDE_CLEARED, "amdgpu"));
        watch.take(&result(address(1), RESULT_OVERRIDE_CLEARED, ""));
        watch.take(&result(
            address(2),
            RESULT_OVERRIDE_CLEARED | RESULT_ON_VFIO,
            "vfio-pci",
        ));
        watch.take(&result(address(3), 0, "amdgpu"));
        // 4: its override cleared (the step returned), then nothing: its probe hung.
        watch.take(&step(CHANGE_OVERRIDE_CLEARED, Some(address(4)), true, "x"));
        watch.take(&step(CHANGE_AT_FUNCTION, Some(address(4)), false, "probe"));
        assert_eq!(
            LeftState(&watch).to_string(),
            format!(
                "gave back {} (on amdgpu), {} (no driver took it); \
                 cleared the override of {}, but it is still on vfio-pci (vfio-bind release gives it back); \
                 cleared the override of {}, but its probe did not finish, so it may have no driver; \
                 driver_override may still be set on {} (run vfio-bind check; vfio-bind release gives them back)",
                address(0),
                address(1),
                address(2),
                address(4),
                address(3),
            )
        );
    }

    #[test]
    fn the_function_the_worker_was_stuck_on_is_not_handed_to_the_give_back() {
        let mut watch = Watch::default();
        watch.take(&step(CHANGE_OVERRIDE_SET, Some(address(0)), true, "x"));
        watch.take(&step(CHANGE_OVERRIDE_SET, Some(address(1)), true, "x"));
        watch.take(&step(CHANGE_AT_FUNCTION, Some(address(1)), false, "unbind"));
        let left = watch.leftover();
        assert_eq!(left.functions.as_slice(), &[address(0)]);
        assert_eq!(left.stuck_on, Some(address(1)));
    }

    /// A child that has exited with `code` and is not reaped yet, as a worker that ended
    /// just as a stop signal came, its SIGCHLD not seen yet.
    fn exited_child(code: i32) -> Pid {
        // SAFETY: the child only calls _exit, which is async-signal-safe.
        let child = match unsafe { fork() }.unwrap() {
            // SAFETY: ends the child at once.
            ForkResult::Child => unsafe { nix::libc::_exit(code) },
            ForkResult::Parent { child } => child,
        };
        let stat = format!("/proc/{child}/stat");
        let started = Instant::now();
        while !std::fs::read_to_string(&stat)
            .unwrap()
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        child
    }

    #[test]
    fn a_worker_that_exited_before_its_kill_keeps_its_own_status() {
        // Was: the status reaped after the kill thrown away, and what the worker did
        // given back though it had ended in success.
        for (code, stopped) in [
            (0, Stopped::Signal(Signal::SIGTERM)),
            (0, Stopped::Deadline),
            (3, Stopped::Signal(Signal::SIGINT)),
        ] {
            assert_eq!(kill_and_reap(exited_child(code), stopped), Ok(code as u8));
        }
    }
}
