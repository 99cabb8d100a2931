//! The supervisor and its worker share one /dev/kmsg open file, and so one rate limit (a
//! burst of 10 records per 5 s): together they must stay under it, whatever the worker
//! logs before it hangs. A socket pair stands in for /dev/kmsg, showing every record.
//!
//! One test only, alone in this binary: it forks, and the test harness must have no other
//! test thread running at that moment.

mod kmsg_stand_in;

use std::time::{Duration, Instant};

use kmsg_stand_in::{packet_pair, packets};
use log::{Level, LevelFilter};
use vfio_bind::boot::kmsg::{self, KMSG_RECORD_BUDGET};
use vfio_bind::boot::watchdog::{self, Side};

/// The kernel's default burst for writers of /dev/kmsg (`printk.devkmsg=ratelimit`).
const KERNEL_BURST: usize = 10;

/// Runs `work` in a supervised worker, which never returns into the test harness; the
/// supervisor's status.
fn supervise(timeout: Duration, work: impl FnOnce() -> i32) -> u8 {
    match watchdog::fork_supervised(Instant::now(), timeout, None, &mut |_| {}) {
        Side::Worker => {
            let status = work();
            // SAFETY: _exit ends the process; nothing is used after it.
            unsafe { nix::libc::_exit(status) }
        }
        Side::Ended(status) => status,
        Side::Unsupervised => panic!("no supervisor could be set up"),
    }
}

#[test]
fn supervisor_and_worker_together_stay_under_the_kernel_log_burst() {
    let (writer, reader) = packet_pair();
    kmsg::init_with_kmsg(writer, LevelFilter::Info);

    // A note before the fork (as the lock's "working without it"), then a worker that logs
    // far more than the budget and hangs: the supervisor adds its one line, no more.
    log::info!("a note before the fork");
    let status = supervise(Duration::from_secs(2), || {
        for n in 0..20 {
            log::error!("flood {n}");
        }
        watchdog::step(format_args!("waiting for ever"));
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    });
    assert_eq!(status, 1);
    let records = packets(&reader);
    assert_eq!(records.len(), KMSG_RECORD_BUDGET + 1, "{records:#?}");
    assert!(records.len() < KERNEL_BURST);
    assert_eq!(records[0], "<6>vfio-bind: a note before the fork\n");
    assert_eq!(records[1], "<3>vfio-bind: flood 0\n");
    assert_eq!(
        records.last().unwrap(),
        "<3>vfio-bind: gave up after 1.5 s: waiting for ever did not finish; the worker was killed there; no driver_override was left set\n"
    );

    // A worker that ends by itself: its own records and status, nothing from the supervisor.
    let status = supervise(Duration::from_secs(5), || {
        kmsg::log_summary(Level::Info, format_args!("the worker's summary"));
        3
    });
    assert_eq!(status, 3);
    assert_eq!(
        packets(&reader),
        ["<6>vfio-bind: the worker's summary\n"],
        "the supervisor added a line to a worker that ended by itself"
    );

    // A worker that dies of a signal: one line says so and names its last step.
    let status = supervise(Duration::from_secs(5), || {
        watchdog::step(format_args!("doing something"));
        // No core file in the developer's tree.
        let no_core = nix::libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the limit we pass and nothing else.
        unsafe { nix::libc::setrlimit(nix::libc::RLIMIT_CORE, &no_core) };
        // What a panic does in the release build (panic = "abort").
        std::process::abort()
    });
    assert_eq!(status, 1);
    assert_eq!(
        packets(&reader),
        ["<3>vfio-bind: the worker died of SIGABRT while doing something; no driver_override was left set\n"]
    );
}
