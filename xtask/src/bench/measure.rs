//! Running a command and measuring it: wall time, exit status, peak RSS, system calls.

use std::ffi::{CString, OsStr};
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::util::TaskResult;

/// One run of a command.
pub struct Run {
    /// From just before the fork to the return of `wait4`: what the boot pays.
    pub wall: Duration,
    pub status: ExitStatus,
    pub stderr: String,
}

/// Runs `command` once, with stdout discarded and stderr captured, and reaps it with
/// `wait4(2)` as soon as it exits.
pub fn run_once(command: &mut Command) -> TaskResult<Run> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut raw_status = 0;
    let reaped = loop {
        // SAFETY: `pid` is our child, not yet reaped (std's Child is never waited on);
        // the status pointer is to a live local, and a null rusage is allowed.
        let result = unsafe { libc::wait4(pid, &mut raw_status, 0, std::ptr::null_mut()) };
        if result == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        }
        break result;
    };
    let wall = started.elapsed();
    if reaped != pid {
        bail!(
            "wait4 for {command:?} failed: {}",
            std::io::Error::last_os_error()
        );
    }
    // The child has exited, so the pipe holds everything it wrote (far below a pipe's
    // capacity: it would have blocked otherwise, which a run this small never comes near).
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Ok(Run {
        wall,
        status: ExitStatus::from_raw(raw_status),
        stderr,
    })
}

/// Repeated runs of one command (the warm-up run not among them).
pub struct Sample {
    pub runs: Vec<Run>,
}

impl Sample {
    fn sorted_walls(&self) -> Vec<Duration> {
        let mut walls: Vec<Duration> = self.runs.iter().map(|run| run.wall).collect();
        walls.sort();
        walls
    }

    pub fn median(&self) -> Duration {
        let walls = self.sorted_walls();
        walls[walls.len() / 2]
    }

    /// The spread of the middle half of the runs, relative to the median.
    pub fn iqr_relative(&self) -> f64 {
        let walls = self.sorted_walls();
        let quarter = walls[walls.len() / 4];
        let three_quarters = walls[walls.len() * 3 / 4];
        (three_quarters - quarter).as_secs_f64() / self.median().as_secs_f64()
    }
}

/// How many runs to make: enough to fill `budget` at the speed of a first run, odd, and
/// within `min..=max`.
pub fn run_count(first: Duration, budget: Duration, min: usize, max: usize) -> usize {
    let fits = (budget.as_secs_f64() / first.as_secs_f64().max(1e-6)) as usize;
    fits.clamp(min, max) | 1
}

/// One warm-up run, then timed runs until `budget` is spent (within `min..=max` runs).
/// `prepare` runs before each, outside the timing.
pub fn sample(
    make: &dyn Fn() -> Command,
    prepare: &mut dyn FnMut() -> TaskResult,
    budget: Duration,
    min: usize,
    max: usize,
) -> TaskResult<Sample> {
    prepare()?;
    let warm_up = run_once(&mut make())?;
    let count = run_count(warm_up.wall, budget, min, max);
    let mut runs = Vec::with_capacity(count);
    for _ in 0..count {
        prepare()?;
        runs.push(run_once(&mut make())?);
    }
    Ok(Sample { runs })
}

/// The peak resident set of the process `command` starts, in KiB: its `VmHWM` read from
/// `/proc/PID/status` at its exit, stopped there with ptrace (`PTRACE_O_TRACEEXIT`).
///
/// Not `ru_maxrss` from `wait4` or `getrusage(RUSAGE_CHILDREN)` (what `/usr/bin/time` shows):
/// at `execve` the kernel records the high-water mark of the address space being replaced,
/// which after a fork or vfork from this process is this process's own, several MiB.
/// Children of the process are not counted.
pub fn peak_rss_kib(command: &Command) -> TaskResult<u64> {
    let pid = spawn_traced(command)?;
    // The first stop is the SIGTRAP after a successful execve.
    let status = wait_for(pid)?;
    if !libc::WIFSTOPPED(status) {
        bail!("{command:?} did not start (status {status:#x})");
    }
    // SAFETY: ptrace requests on our own stopped tracee, with integer arguments.
    unsafe {
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            0,
            libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL,
        );
        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
    }
    let mut peak = None;
    loop {
        let status = wait_for(pid)?;
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        let mut signal = 0;
        if status >> 8 == (libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8)) {
            peak = vm_hwm_kib(pid);
        } else if libc::WIFSTOPPED(status) {
            signal = libc::WSTOPSIG(status);
        }
        // SAFETY: as above; `signal` is delivered on (0 for our own stops).
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, signal) };
    }
    peak.with_context(|| format!("no VmHWM was read for {command:?}"))
}

/// The `VmHWM` of process `pid` from `/proc/PID/status`, KiB.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
}

/// The program, arguments and environment of `command` as `execve` takes them: the
/// environment is only what the command sets (it was built with env_clear).
fn exec_strings(command: &Command) -> TaskResult<(CString, Vec<CString>, Vec<CString>)> {
    let c_string = |text: &OsStr| {
        CString::new(text.as_bytes()).with_context(|| format!("{text:?} holds a NUL byte"))
    };
    let program = c_string(command.get_program())?;
    let mut argv = vec![program.clone()];
    for argument in command.get_args() {
        argv.push(c_string(argument)?);
    }
    let mut envp = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            let mut pair = key.to_os_string();
            pair.push("=");
            pair.push(value);
            envp.push(c_string(&pair)?);
        }
    }
    Ok((program, argv, envp))
}

/// Forks and execs `command` under ptrace (`PTRACE_TRACEME`), its standard streams on
/// /dev/null; the child stops at the execve, for the caller to set options on.
fn spawn_traced(command: &Command) -> TaskResult<libc::pid_t> {
    let (program, argv, envp) = exec_strings(command)?;
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|string| string.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (argv_pointers, envp_pointers) = (pointers(&argv), pointers(&envp));
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    let null_fd = std::os::fd::AsRawFd::as_raw_fd(&null);

    // SAFETY: between fork and execve the child calls only async-signal-safe functions
    // (dup2, ptrace, execve, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::dup2(null_fd, 0);
            libc::dup2(null_fd, 1);
            libc::dup2(null_fd, 2);
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::execve(
                program.as_ptr(),
                argv_pointers.as_ptr(),
                envp_pointers.as_ptr(),
            );
            libc::_exit(127);
        }
    }
    if pid < 0 {
        bail!("fork failed: {}", std::io::Error::last_os_error());
    }
    Ok(pid)
}

/// The next wait status of the child `pid` (a stop or its end), retried on EINTR.
fn wait_for(pid: libc::pid_t) -> TaskResult<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child; `status` is a live local.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(status);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(anyhow::Error::new(error).context("waitpid failed"));
        }
    }
}

/// What `strace -c` counted for one run.
pub struct SyscallCount {
    pub total: u64,
    /// (name, calls), most called first.
    pub by_name: Vec<(String, u64)>,
}

impl SyscallCount {
    pub fn calls_of(&self, names: &[&str]) -> u64 {
        self.by_name
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(_, calls)| calls)
            .sum()
    }

    /// `openat 2051, read 1030, ...` for the `count` most called.
    pub fn top(&self, count: usize) -> String {
        self.by_name
            .iter()
            .take(count)
            .map(|(name, calls)| format!("{name} {calls}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs `command` under `strace -f -c` and reads its summary table.
pub fn count_syscalls(strace: &Path, command: &Command, out: &Path) -> TaskResult<SyscallCount> {
    let mut traced = Command::new(strace);
    traced
        .arg("-f")
        .arg("-c")
        .arg("-o")
        .arg(out)
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => traced.env(key, value),
            None => traced.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        traced.current_dir(dir);
    }
    let run = run_once(&mut traced)?;
    if run.status.signal().is_some() {
        bail!("strace was killed: {}", run.stderr.trim());
    }
    let table = std::fs::read_to_string(out)
        .with_context(|| format!("cannot read strace's summary {}", out.display()))?;
    parse_strace_summary(&table).with_context(|| format!("cannot read strace's summary:\n{table}"))
}

/// Reads `strace -c` output: rows of `% time, seconds, usecs/call, calls, [errors,] syscall`
/// and a `total` row.
fn parse_strace_summary(table: &str) -> Option<SyscallCount> {
    let mut total = None;
    let mut by_name = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let name = fields[fields.len() - 1];
        let calls: u64 = fields[3].parse().ok()?;
        if name == "total" {
            total = Some(calls);
        } else {
            by_name.push((name.to_string(), calls));
        }
    }
    by_name.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Some(SyscallCount {
        total: total?,
        by_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strace_summaries() {
        let table = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 41.22    0.000950           0      2052        10 openat
 20.00    0.000461           0      1026           read
  1.00    0.000023           1        20           readlink
------ ----------- ----------- --------- --------- ----------------
100.00    0.002305           0      3098        10 total
";
        let count = parse_strace_summary(table).unwrap();
        assert_eq!(count.total, 3098);
        assert_eq!(count.top(2), "openat 2052, read 1026");
        assert_eq!(count.calls_of(&["read", "readlink"]), 1046);
    }
}
