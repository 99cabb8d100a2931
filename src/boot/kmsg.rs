//! A `log` logger that writes each record to /dev/kmsg (or stderr) in one `write()`.
//!
//! The kernel makes one log record of each write to /dev/kmsg and reads a leading `<N>` as
//! the syslog priority (see `devkmsg_write()` in kernel/printk/printk.c). It also
//! rate-limits writers (10 records per 5 seconds per open file by default), so this logger
//! keeps a budget: past [`KMSG_RECORD_BUDGET`] records it only counts what it holds back,
//! and the run's summary (logged with [`log_summary`]) always gets through and says how
//! many were held back.

use core::fmt::{self, Write as _};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Every line starts with this, so `dmesg | grep vfio-bind` finds them all.
pub const PREFIX: &str = "vfio-bind: ";
/// Records written to /dev/kmsg before holding back, leaving one for the summary and room
/// for the hook's own line under the kernel's burst of 10.
pub const KMSG_RECORD_BUDGET: usize = 7;
// The budget and the summary stay under the kernel's burst of 10 records.
const _: () = assert!(KMSG_RECORD_BUDGET + 1 < 10);
/// Longest record; the kernel's own limit is about 1 KiB.
const RECORD_CAPACITY: usize = 976;

/// The `log` target that marks the summary record, which the budget never holds back.
const SUMMARY_TARGET: &str = "vfio-bind::summary";

enum Sink {
    Kmsg(File),
    Stderr,
}

struct Logger {
    sink: Sink,
    /// Whether /dev/kmsg records are also copied to stderr (someone is at a terminal).
    echo_to_stderr: bool,
    written: AtomicUsize,
    held_back: AtomicUsize,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// A fixed buffer that keeps what fits and drops the rest of an over-long record.
struct RecordBuffer {
    text: heapless::String<RECORD_CAPACITY>,
}

impl fmt::Write for RecordBuffer {
    fn write_str(&mut self, part: &str) -> fmt::Result {
        for character in part.chars() {
            // Keep room for the final newline.
            if self.text.len() + character.len_utf8() + 1 > RECORD_CAPACITY {
                break;
            }
            let _ = self.text.push(character);
        }
        Ok(())
    }
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Logger {
    fn format(&self, record: &Record<'_>, with_priority: bool) -> RecordBuffer {
        let mut buffer = RecordBuffer {
            text: heapless::String::new(),
        };
        if with_priority {
            let _ = write!(buffer, "<{}>", syslog_priority(record.level()));
        }
        let _ = write!(buffer, "{PREFIX}{}", record.args());
        let _ = buffer.text.push('\n');
        buffer
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match &self.sink {
            Sink::Kmsg(file) => {
                let is_summary = record.target() == SUMMARY_TARGET;
                if !is_summary && self.written.load(Ordering::Relaxed) >= KMSG_RECORD_BUDGET {
                    self.held_back.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.written.fetch_add(1, Ordering::Relaxed);
                    let buffer = self.format(record, true);
                    let _ = (&*file).write(buffer.text.as_bytes());
                }
                if self.echo_to_stderr {
                    let buffer = self.format(record, false);
                    let _ = std::io::stderr().write_all(buffer.text.as_bytes());
                }
            }
            Sink::Stderr => {
                let buffer = self.format(record, false);
                let _ = std::io::stderr().write_all(buffer.text.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Where log records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// /dev/kmsg if it opens for writing, else stderr.
    KernelLog,
    Stderr,
}

/// Installs the logger once; later calls keep the first destination.
pub fn init(destination: Destination, level: LevelFilter) {
    let sink = match destination {
        Destination::KernelLog => std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open("/dev/kmsg")
            .map(Sink::Kmsg)
            .unwrap_or(Sink::Stderr),
        Destination::Stderr => Sink::Stderr,
    };
    install(sink, level);
}

/// Installs the logger with `kmsg` standing in for /dev/kmsg: for tests, which give it one
/// end of a socket pair to see each record's priority, text and write boundaries.
pub fn init_with_kmsg(kmsg: File, level: LevelFilter) {
    install(Sink::Kmsg(kmsg), level);
}

fn install(sink: Sink, level: LevelFilter) {
    let echo_to_stderr = stderr_is_a_user_terminal();
    let logger = LOGGER.get_or_init(|| Logger {
        sink,
        echo_to_stderr,
        written: AtomicUsize::new(0),
        held_back: AtomicUsize::new(0),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Whether stderr is a terminal other than the system console: someone ran the command by
/// hand. At boot, stderr is /dev/console (character device 5:1), where the kernel already
/// shows what /dev/kmsg gets, so echoing there would print every line twice.
fn stderr_is_a_user_terminal() -> bool {
    const CONSOLE: (u64, u64) = (5, 1);
    let stderr = std::io::stderr();
    if !nix::unistd::isatty(&stderr).unwrap_or(false) {
        return false;
    }
    nix::sys::stat::fstat(&stderr).is_ok_and(|status| {
        let device = status.st_rdev;
        (
            nix::libc::major(device) as u64,
            nix::libc::minor(device) as u64,
        ) != CONSOLE
    })
}

/// How many records the kmsg budget held back so far.
pub fn held_back() -> usize {
    LOGGER
        .get()
        .map_or(0, |logger| logger.held_back.load(Ordering::Relaxed))
}

/// Logs the run's last line, which the kmsg budget never holds back.
pub fn log_summary(level: Level, args: fmt::Arguments<'_>) {
    log::logger().log(
        &Record::builder()
            .args(args)
            .level(level)
            .target(SUMMARY_TARGET)
            .build(),
    );
}
