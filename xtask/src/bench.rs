//! `cargo xtask bench`: vfio-bind apply against synthetic sysfs trees, beside the shell way.
//!
//! For each size (64, 256, 1024 PCI functions) a tree is built in the kernel's layout
//! (`bench/tree.rs`), and with rules selecting 1 and 8 identical cards by address, the static
//! release binary's `apply` and `xtask/bench/wiki-way.sh` under `busybox sh` are each run
//! repeatedly; medians of wall time (fork to reap) are compared. Each side's peak RSS is
//! read from one more run (its VmHWM at exit, see `measure::peak_rss_kib`), one run of each
//! side on the largest case is counted under `strace -f -c`, and the targets of issue 5 are
//! checked. Then the paired rounds of issue 20 (`measure_paired`): on 400 functions with two
//! cards, `apply`, a static `busybox true` exec and `xtask/bench/name-filter.sh` in turn,
//! the ratios taken per round (`--paired-only` runs only these). Timings are printed, never
//! asserted: they depend on the machine.
//!
//! On a fixture, `apply` never loads modules and no kernel binds anything, so each run ends
//! by giving its cards back (exit status 1). The run therefore does all of the real work
//! and a little more: scan, override, unbind, probe, read back, then undo.

mod measure;
mod tree;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use argh::FromArgs;

use crate::build::build_static_binary;
use crate::util::{create_dir_all, find_program, project_root, TaskResult};
use measure::{count_syscalls, peak_rss_kib, run_once, sample, Sample, SyscallCount};
use tree::Machine;

/// time vfio-bind apply on synthetic sysfs trees beside a shell implementation
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "bench",
    note = "Needs busybox (busybox-static) for the shell side and strace for the system-call count; says so when either is missing."
)]
pub struct BenchArgs {
    /// number of PCI functions in a tree; repeat for several (default 64, 256, 1024)
    #[argh(option)]
    size: Vec<usize>,
    /// number of cards the rules select; repeat for several (default 1, 8)
    #[argh(option)]
    cards: Vec<usize>,
    /// seconds of runs per case and side, after a warm-up run (default 1.5)
    #[argh(option, default = "1.5")]
    seconds: f64,
    /// bench this vfio-bind binary instead of building the static release one
    #[argh(option)]
    binary: Option<PathBuf>,
    /// keep the trees (/dev/shm/vfio-bind-bench-XXXXXX/tree-N) and print the commands
    #[argh(switch)]
    keep: bool,
    /// run only the paired comparison (400 functions: apply, busybox true, the
    /// name-filtering script), for a quick before-and-after
    #[argh(switch)]
    paired_only: bool,
}

/// The command line around the rules, as a distribution's bootloader writes it.
const CMDLINE_AROUND: &str =
    "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=0f2b7b1e-3c1a-4d5e-9f00-1b2c3d4e5f60 ro quiet";

const SCRIPT: &str = "xtask/bench/wiki-way.sh";
/// The fastest way a shell does the job: functions chosen by directory name before any read.
const NAME_FILTER_SCRIPT: &str = "xtask/bench/name-filter.sh";

/// The paired comparison of issue 20: functions in the tree, cards the rules select.
const PAIRED_FUNCTIONS: usize = 400;
const PAIRED_CARDS: usize = 2;
/// Issue 20's targets: apply at most this many times a static `busybox true` exec, and at
/// least this many times faster than the name-filtering script.
const TARGET_OVER_TRUE: f64 = 2.5;
const TARGET_UNDER_FILTER: f64 = 4.0;

/// Issue 5's targets.
const TARGET_APPLY_1024: Duration = Duration::from_millis(5);
const TARGET_RATIO: f64 = 10.0;
const TARGET_RSS_KIB: u64 = 1024;
const TARGET_SIZE_BYTES: u64 = 400 * 1024;
/// Growth exponent still called linear, for noise: t ∝ n^1.1 at most.
const LINEAR_EXPONENT: f64 = 1.1;

/// The shell side: busybox, and a directory whose `cat` and `sh` are busybox, as in an
/// initramfs.
struct Shell {
    busybox: PathBuf,
    bin_dir: PathBuf,
    version: String,
}

/// What was measured for one size and one number of cards.
struct Case {
    functions: usize,
    cards: usize,
    binder: Sample,
    /// The binder's own elapsed time from its summary line, median, in µs.
    binder_self_us: Option<u64>,
    /// Peak RSS of one binder run, KiB.
    binder_rss_kib: u64,
    shell: Option<Sample>,
    /// Peak RSS of the `busybox sh` process of one run (not its `cat`s), KiB.
    shell_rss_kib: Option<u64>,
}

/// One system-call count: the functions and cards it was made on, the binder's, the shell's.
type SyscallCounts = (usize, usize, SyscallCount, Option<SyscallCount>);

pub fn run(args: BenchArgs) -> TaskResult {
    let (sizes, card_counts, budget) = plan(args.size, args.cards, args.seconds)?;
    let trees = TreesDir::create(args.keep)?;
    let trees = trees.path();
    let (bench, binary_size) = Bench::set_up(args.binary, budget)?;

    let mut cases = Vec::new();
    let mut notes = Vec::new();
    let mut syscalls: Option<SyscallCounts> = None;
    let sizes = if args.paired_only { Vec::new() } else { sizes };
    for &functions in &sizes {
        eprintln!("bench: building a tree of {functions} PCI functions");
        let machine = tree::build(functions, trees.join(format!("tree-{functions}")))
            .with_context(|| format!("cannot build a sysfs tree of {functions}"))?;
        for &wanted in &card_counts {
            let cards = machine.pick_cards(wanted);
            if cards.len() < wanted {
                notes.push(format!(
                    "{functions} functions have only {} AMD cards; \"{wanted} cards\" selects {}",
                    machine.amd_cards.len(),
                    cards.len()
                ));
            }
            let selection = Selection::new(&machine, &cards);
            if args.keep {
                bench.print_commands(&selection);
            }
            eprintln!("bench: {functions} functions, {wanted} cards: vfio-bind apply");
            cases.push(bench.measure(&selection, functions, wanted)?);
            let largest = functions == *sizes.iter().max().unwrap_or(&0);
            let most_cards = wanted == *card_counts.iter().max().unwrap_or(&0);
            if largest && most_cards {
                if let Some((binder, shell)) = bench.count_syscalls(&selection)? {
                    syscalls = Some((functions, cards.len(), binder, shell));
                }
            }
        }
        if args.keep {
            // Leave the tree on disk for a rerun by hand.
            std::mem::forget(machine);
        }
    }

    let paired = match &bench.shell {
        Some(shell) => {
            eprintln!(
                "bench: paired runs on {PAIRED_FUNCTIONS} functions, {PAIRED_CARDS} cards: vfio-bind apply, busybox true, busybox sh {NAME_FILTER_SCRIPT}"
            );
            let machine = tree::build(PAIRED_FUNCTIONS, trees.join("tree-paired"))
                .context("cannot build the tree of the paired runs")?;
            let cards = machine.pick_cards(PAIRED_CARDS);
            let selection = Selection::new(&machine, &cards);
            if args.keep {
                bench.print_commands(&selection);
                eprintln!("bench: {:?}", bench.name_filter_command(shell, &selection));
                let paired = bench.measure_paired(shell, &selection)?;
                std::mem::forget(machine);
                Some(paired)
            } else {
                Some(bench.measure_paired(shell, &selection)?)
            }
        }
        None => None,
    };

    print!(
        "{}",
        report(&Report {
            paired: paired.as_ref(),
            binary: &bench.binary,
            binary_size,
            shell: bench.shell.as_ref(),
            strace: bench.strace.as_deref(),
            cases: &cases,
            syscalls: syscalls.as_ref(),
            notes: &notes,
        })
    );
    Ok(())
}

/// The sizes, card counts and time per case asked for (the defaults where none), checked.
fn plan(
    sizes: Vec<usize>,
    card_counts: Vec<usize>,
    seconds: f64,
) -> TaskResult<(Vec<usize>, Vec<usize>, Duration)> {
    let sizes = if sizes.is_empty() {
        vec![64, 256, 1024]
    } else {
        sizes
    };
    let card_counts = if card_counts.is_empty() {
        vec![1, 8]
    } else {
        card_counts
    };
    if sizes.iter().any(|&size| size < 32) || card_counts.contains(&0) {
        bail!("sizes must be at least 32 functions and card counts at least 1");
    }
    if !(seconds > 0.0 && seconds <= 60.0) {
        bail!("--seconds must be between 0 and 60");
    }
    Ok((sizes, card_counts, Duration::from_secs_f64(seconds)))
}

/// What every case runs: the binder, the shell side when busybox is there, strace when it
/// is there, and the time each side is given per case.
struct Bench {
    binary: PathBuf,
    /// `target/bench`: the empty `cmdline.d`, the shell's `bin`, strace's output.
    work: PathBuf,
    script: PathBuf,
    shell: Option<Shell>,
    strace: Option<PathBuf>,
    budget: Duration,
}

/// One case's input: a tree, the kernel command line selecting some of its cards, and the
/// functions that selects.
struct Selection<'a> {
    machine: &'a Machine,
    cmdline: String,
    rules: usize,
    targets: BTreeSet<String>,
}

impl<'a> Selection<'a> {
    fn new(machine: &'a Machine, cards: &[&tree::Card]) -> Self {
        let rules: Vec<String> = cards.iter().map(|card| card.rule()).collect();
        Selection {
            machine,
            cmdline: format!("{CMDLINE_AROUND} vfio.bind={}", rules.join(",")),
            rules: rules.len(),
            targets: cards
                .iter()
                .flat_map(|card| card.functions.iter().cloned())
                .collect(),
        }
    }

    /// Gives the targets their unset `driver_override` back, for the next run.
    fn reset(&self) -> TaskResult {
        reset_overrides(self.machine, &self.targets)
    }
}

impl Bench {
    /// A fresh `target/bench`, the binary (built unless given) and its size, and the tools.
    fn set_up(binary: Option<PathBuf>, budget: Duration) -> TaskResult<(Bench, u64)> {
        let root = project_root();
        let work = root.join("target/bench");
        let _ = std::fs::remove_dir_all(&work);
        create_dir_all(&work.join("cmdline.d"))?;
        let binary = match binary {
            Some(binary) => binary,
            None => {
                eprintln!("bench: building the static release binary");
                build_static_binary()?
            }
        };
        let binary_size = std::fs::metadata(&binary)
            .with_context(|| format!("cannot read {}", binary.display()))?
            .len();
        let bench = Bench {
            shell: find_shell(&work)?,
            strace: find_program("strace"),
            script: root.join(SCRIPT),
            binary,
            work,
            budget,
        };
        Ok((bench, binary_size))
    }

    fn binder_command(&self, selection: &Selection) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .arg("apply")
            .arg("--sysfs")
            .arg(selection.machine.tree.root())
            .arg("--cmdline")
            .arg(&selection.cmdline)
            .arg("--cmdline-dir")
            .arg(self.work.join("cmdline.d"));
        command
    }

    fn shell_command(&self, shell: &Shell, selection: &Selection) -> Command {
        self.script_command(shell, selection, &self.script)
    }

    /// `busybox sh SCRIPT` with only busybox's `sh` and `cat` in `PATH`, as in an initramfs.
    fn script_command(&self, shell: &Shell, selection: &Selection, script: &Path) -> Command {
        let mut command = Command::new(&shell.busybox);
        command
            .env_clear()
            .env("PATH", &shell.bin_dir)
            .env("SYSFS", selection.machine.tree.root())
            .env("CMDLINE", &selection.cmdline)
            .arg("sh")
            .arg(script);
        command
    }

    /// The name-filtering script, run as the wiki-style one is.
    fn name_filter_command(&self, shell: &Shell, selection: &Selection) -> Command {
        self.script_command(shell, selection, &project_root().join(NAME_FILTER_SCRIPT))
    }

    /// `busybox true`: the cost of starting any static program, the floor for the binder.
    fn true_command(&self, shell: &Shell) -> Command {
        let mut command = Command::new(&shell.busybox);
        command.env_clear().arg("true");
        command
    }

    /// Issue 20's comparison, in rounds: each round runs the binder, `busybox true` and the
    /// name-filtering script once each, one after the other, so that the load of a shared
    /// machine falls on all three alike; the ratios are taken per round, and their medians
    /// reported. Each side's work is checked as in [`Bench::measure`].
    fn measure_paired(&self, shell: &Shell, selection: &Selection) -> TaskResult<Paired> {
        let binder_command = || self.binder_command(selection);
        let filter_command = || self.name_filter_command(shell, selection);
        // Warm-up: one run of each, and the script's work checked once.
        selection.reset()?;
        run_once(&mut filter_command())?;
        check_shell_run_status(
            &run_once(&mut filter_command())?,
            NAME_FILTER_SCRIPT,
            selection,
        )?;
        selection.reset()?;
        run_once(&mut binder_command())?;
        run_once(&mut self.true_command(shell))?;
        let round = {
            let started = std::time::Instant::now();
            selection.reset()?;
            run_once(&mut binder_command())?;
            run_once(&mut self.true_command(shell))?;
            selection.reset()?;
            run_once(&mut filter_command())?;
            started.elapsed()
        };
        let rounds = measure::run_count(round, self.budget * 3, 31, 301);
        let mut paired = Paired {
            binder: Vec::with_capacity(rounds),
            true_exec: Vec::with_capacity(rounds),
            filter: Vec::with_capacity(rounds),
            rounds,
        };
        for round in 0..rounds {
            selection.reset()?;
            // The order within a round alternates, so neither side always runs first.
            let binder_first = round % 2 == 0;
            let mut binder = None;
            let mut true_exec = None;
            for turn in 0..2 {
                if (turn == 0) == binder_first {
                    binder = Some(run_once(&mut binder_command())?);
                } else {
                    true_exec = Some(run_once(&mut self.true_command(shell))?);
                }
            }
            let binder = binder.context("the binder ran")?;
            let true_exec = true_exec.context("busybox true ran")?;
            if !matches!(binder.status.code(), Some(0 | 1)) {
                bail!(
                    "vfio-bind apply ended with {}:\n{}",
                    binder.status,
                    binder.stderr
                );
            }
            if !true_exec.status.success() {
                bail!("busybox true ended with {}", true_exec.status);
            }
            selection.reset()?;
            let filter = run_once(&mut filter_command())?;
            if !filter.status.success() {
                bail!(
                    "{NAME_FILTER_SCRIPT} ended with {}:\n{}",
                    filter.status,
                    filter.stderr
                );
            }
            paired.binder.push(binder.wall);
            paired.true_exec.push(true_exec.wall);
            paired.filter.push(filter.wall);
        }
        selection.reset()?;
        Ok(paired)
    }

    /// `--keep`: the commands, to rerun by hand on the kept tree.
    fn print_commands(&self, selection: &Selection) {
        eprintln!("bench: {:?}", self.binder_command(selection));
        if let Some(shell) = &self.shell {
            eprintln!("bench: {:?}", self.shell_command(shell, selection));
        }
    }

    /// Times both sides on one selection, checks that each did the work, and reads each
    /// side's peak RSS from one more run.
    fn measure(&self, selection: &Selection, functions: usize, wanted: usize) -> TaskResult<Case> {
        let mut reset = || selection.reset();
        let binder = sample(
            &|| self.binder_command(selection),
            &mut reset,
            self.budget,
            21,
            501,
        )?;
        check_binder_run(
            &binder,
            selection.machine,
            &selection.targets,
            selection.rules,
        )?;
        let shell_sample = match &self.shell {
            Some(shell) => {
                eprintln!("bench: {functions} functions, {wanted} cards: busybox sh {SCRIPT}");
                let sample = sample(
                    &|| self.shell_command(shell, selection),
                    &mut reset,
                    self.budget,
                    7,
                    101,
                )?;
                check_shell_run(&sample, selection.machine, &selection.targets)?;
                Some(sample)
            }
            None => None,
        };
        selection.reset()?;
        let binder_rss_kib = peak_rss_kib(&self.binder_command(selection))?;
        selection.reset()?;
        let shell_rss_kib = match &self.shell {
            Some(shell) => Some(peak_rss_kib(&self.shell_command(shell, selection))?),
            None => None,
        };
        selection.reset()?;
        Ok(Case {
            functions,
            cards: selection.rules,
            binder_self_us: self_reported_median(&binder),
            binder,
            binder_rss_kib,
            shell: shell_sample,
            shell_rss_kib,
        })
    }

    /// One run of each side under `strace -f -c`; nothing when strace is missing.
    fn count_syscalls(
        &self,
        selection: &Selection,
    ) -> TaskResult<Option<(SyscallCount, Option<SyscallCount>)>> {
        let Some(strace) = &self.strace else {
            return Ok(None);
        };
        eprintln!("bench: counting system calls with strace -f -c");
        let binder = count_syscalls(
            strace,
            &self.binder_command(selection),
            &self.work.join("strace-binder"),
        )?;
        selection.reset()?;
        let shell = match &self.shell {
            Some(shell) => Some(count_syscalls(
                strace,
                &self.shell_command(shell, selection),
                &self.work.join("strace-shell"),
            )?),
            None => None,
        };
        selection.reset()?;
        Ok(Some((binder, shell)))
    }
}

/// Where the trees are built: in `/dev/shm` when it is there, since tmpfs, like sysfs,
/// keeps everything in memory (a disk file system journals every truncating write, which
/// costs more than the rest of a run). One directory per bench process, removed at the end
/// unless it is to be kept.
struct TreesDir(tempfile::TempDir);

impl TreesDir {
    fn create(keep: bool) -> TaskResult<Self> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            eprintln!("bench: no /dev/shm; building the trees in the temporary directory");
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("vfio-bind-bench-")
            .disable_cleanup(keep)
            .tempdir_in(&base)
            .with_context(|| format!("cannot create a directory in {}", base.display()))?;
        if keep {
            eprintln!("bench: the trees are kept in {}", dir.path().display());
        }
        Ok(TreesDir(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Finds busybox and makes `bin/` with `sh` and `cat` pointing to it. `None`, said loudly,
/// when busybox is missing.
fn find_shell(work: &Path) -> TaskResult<Option<Shell>> {
    let Some(busybox) = find_program("busybox") else {
        eprintln!(
            "bench: BUSYBOX IS MISSING: the shell side is not run and the 10x target cannot be checked. \
             Install it (apt-get install busybox-static) and run the bench again."
        );
        return Ok(None);
    };
    let bin_dir = work.join("bin");
    create_dir_all(&bin_dir)?;
    for applet in ["sh", "cat"] {
        symlink(&busybox, bin_dir.join(applet))
            .with_context(|| format!("cannot link {applet} to busybox"))?;
    }
    let version = Command::new(&busybox)
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default();
    Ok(Some(Shell {
        busybox,
        bin_dir,
        version,
    }))
}

/// Puts `(null)` back in the targets' `driver_override`, as the kernel shows it unset.
fn reset_overrides(machine: &Machine, targets: &BTreeSet<String>) -> TaskResult {
    for address in targets {
        let path = machine.tree.attribute(address, "driver_override");
        std::fs::write(&path, "(null)\n")
            .with_context(|| format!("cannot reset {}", path.display()))?;
    }
    Ok(())
}

/// The functions whose `driver_override` is no longer `(null)`.
fn overridden(machine: &Machine) -> TaskResult<BTreeSet<String>> {
    let mut changed = BTreeSet::new();
    for address in &machine.addresses {
        if machine.tree.override_of(address) != "(null)" {
            changed.insert(address.clone());
        }
    }
    Ok(changed)
}

/// The binder must have worked on exactly the targets: written their overrides (then
/// cleared them when giving the cards back, since no kernel binds on a fixture), and none
/// other; and have exited 0 or 1, not crashed or refused its arguments.
fn check_binder_run(
    sample: &Sample,
    machine: &Machine,
    targets: &BTreeSet<String>,
    rules: usize,
) -> TaskResult {
    for run in &sample.runs {
        if !matches!(run.status.code(), Some(0 | 1)) {
            bail!("vfio-bind apply ended with {}:\n{}", run.status, run.stderr);
        }
    }
    let touched = overridden(machine)?;
    if &touched != targets {
        bail!("vfio-bind apply changed the overrides of {touched:?}, expected {targets:?}");
    }
    let stderr = &sample.runs[0].stderr;
    if !stderr.contains(&format!(" of {rules} rules applied")) {
        bail!("vfio-bind apply did not print its summary:\n{stderr}");
    }
    Ok(())
}

/// The script must have written `vfio-pci` to exactly the targets' overrides.
fn check_shell_run(sample: &Sample, machine: &Machine, targets: &BTreeSet<String>) -> TaskResult {
    let first = &sample.runs[0];
    if !first.status.success() {
        bail!("{SCRIPT} ended with {}:\n{}", first.status, first.stderr);
    }
    let touched = overridden(machine)?;
    let wrong: Vec<&String> = touched
        .iter()
        .filter(|address| machine.tree.override_of(address) != "vfio-pci")
        .collect();
    if &touched != targets || !wrong.is_empty() {
        bail!("{SCRIPT} overrode {touched:?}, expected vfio-pci on {targets:?}");
    }
    Ok(())
}

/// One run of a script must have ended well and written `vfio-pci` to exactly the targets.
fn check_shell_run_status(run: &measure::Run, script: &str, selection: &Selection) -> TaskResult {
    if !run.status.success() {
        bail!("{script} ended with {}:\n{}", run.status, run.stderr);
    }
    let touched = overridden(selection.machine)?;
    let wrong = touched
        .iter()
        .any(|address| selection.machine.tree.override_of(address) != "vfio-pci");
    if touched != selection.targets || wrong {
        bail!(
            "{script} overrode {touched:?}, expected vfio-pci on {:?}",
            selection.targets
        );
    }
    Ok(())
}

/// Issue 20's paired rounds: one wall time per round for each side.
struct Paired {
    rounds: usize,
    binder: Vec<Duration>,
    true_exec: Vec<Duration>,
    filter: Vec<Duration>,
}

impl Paired {
    /// The median over the rounds of `top / bottom`.
    fn median_ratio(top: &[Duration], bottom: &[Duration]) -> f64 {
        let mut ratios: Vec<f64> = top
            .iter()
            .zip(bottom)
            .map(|(top, bottom)| top.as_secs_f64() / bottom.as_secs_f64().max(1e-9))
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }

    fn median(walls: &[Duration]) -> Duration {
        let mut walls = walls.to_vec();
        walls.sort();
        walls[walls.len() / 2]
    }

    /// apply / `busybox true`, the median of the rounds' ratios.
    fn over_true(&self) -> f64 {
        Self::median_ratio(&self.binder, &self.true_exec)
    }

    /// name-filtering script / apply.
    fn under_filter(&self) -> f64 {
        Self::median_ratio(&self.filter, &self.binder)
    }
}

/// The median of the `in N us` the binder's summary line reports.
fn self_reported_median(sample: &Sample) -> Option<u64> {
    let mut micros: Vec<u64> = sample
        .runs
        .iter()
        .filter_map(|run| {
            let line = run.stderr.lines().last()?;
            let (_, after) = line.rsplit_once(" in ")?;
            after.strip_suffix(" us")?.parse().ok()
        })
        .collect();
    if micros.len() != sample.runs.len() {
        return None;
    }
    micros.sort_unstable();
    Some(micros[micros.len() / 2])
}

struct Report<'a> {
    paired: Option<&'a Paired>,
    binary: &'a Path,
    binary_size: u64,
    shell: Option<&'a Shell>,
    strace: Option<&'a Path>,
    cases: &'a [Case],
    syscalls: Option<&'a SyscallCounts>,
    notes: &'a [String],
}

impl Report<'_> {
    /// The binder's peak RSS, the largest over the cases, KiB.
    fn binder_rss_kib(&self) -> u64 {
        self.cases
            .iter()
            .map(|case| case.binder_rss_kib)
            .max()
            .unwrap_or(0)
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

fn us_per_function(duration: Duration, functions: usize) -> String {
    format!("{:.2} µs", duration.as_secs_f64() * 1e6 / functions as f64)
}

fn verdict(holds: Option<bool>) -> &'static str {
    match holds {
        Some(true) => "[ok]  ",
        Some(false) => "[MISS]",
        None => "[--]  ",
    }
}

fn report(report: &Report<'_>) -> String {
    let mut out = String::new();
    write_header(&mut out, report);
    if !report.cases.is_empty() {
        write_cases(&mut out, report);
        write_syscalls(&mut out, report);
        write_rss_and_notes(&mut out, report);
    }
    write_paired(&mut out, report);
    write_targets(&mut out, report);
    out
}

/// The binary, the shell side, the machine, and what the times mean.
fn write_header(out: &mut String, report: &Report<'_>) {
    let root = project_root();
    let shown = |path: &Path| {
        path.strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let _ = writeln!(out, "\nvfio-bind bench");
    let _ = writeln!(
        out,
        "binary: {} ({} bytes, {:.1} KiB)",
        shown(report.binary),
        report.binary_size,
        report.binary_size as f64 / 1024.0
    );
    match report.shell {
        Some(shell) => {
            let _ = writeln!(
                out,
                "shell:  busybox sh {SCRIPT}, cat = busybox ({})",
                shell.version
            );
        }
        None => {
            let _ = writeln!(
                out,
                "shell:  NOT RUN: busybox is missing (apt-get install busybox-static)"
            );
        }
    }
    let _ = writeln!(
        out,
        "machine: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        out,
        "wall time = fork to reap, median of the runs (after one warm-up run); spread = interquartile range / median\n"
    );
}

/// One row per case: each side's median, per function, spread and runs, and the ratio.
fn write_cases(out: &mut String, report: &Report<'_>) {
    let _ = writeln!(
        out,
        "{:>9} {:>5} | {:>10} {:>10} {:>11} {:>6} {:>5} | {:>11} {:>10} {:>6} {:>5} | {:>11}",
        "functions",
        "cards",
        "vfio-bind",
        "per fn",
        "self-timed",
        "spread",
        "runs",
        "shell",
        "per fn",
        "spread",
        "runs",
        "shell/bind"
    );
    for case in report.cases {
        let binder = case.binder.median();
        let self_timed = case
            .binder_self_us
            .map_or("-".to_string(), |us| format!("{us} µs"));
        let (shell, shell_per, shell_spread, shell_runs, ratio) = match &case.shell {
            Some(shell) => (
                ms(shell.median()),
                us_per_function(shell.median(), case.functions),
                format!("{:.0}%", shell.iqr_relative() * 100.0),
                shell.runs.len().to_string(),
                format!(
                    "{:.0}x",
                    shell.median().as_secs_f64() / binder.as_secs_f64()
                ),
            ),
            None => Default::default(),
        };
        let _ = writeln!(
            out,
            "{:>9} {:>5} | {:>10} {:>10} {:>11} {:>6} {:>5} | {:>11} {:>10} {:>6} {:>5} | {:>11}",
            case.functions,
            case.cards,
            ms(binder),
            us_per_function(binder, case.functions),
            self_timed,
            format!("{:.0}%", case.binder.iqr_relative() * 100.0),
            case.binder.runs.len(),
            shell,
            shell_per,
            shell_spread,
            shell_runs,
            ratio
        );
    }
    let _ = writeln!(out);
}

/// The system-call counts of one run of each side, or why there are none.
fn write_syscalls(out: &mut String, report: &Report<'_>) {
    match (report.strace, report.syscalls) {
        (None, _) => {
            let _ = writeln!(
                out,
                "system calls: NOT COUNTED: strace is missing (apt-get install strace)"
            );
        }
        (Some(_), None) => {}
        (Some(_), Some((functions, cards, binder, shell))) => {
            let _ = writeln!(
                out,
                "system calls, one run on {functions} functions, {cards} cards (strace -f -c):"
            );
            let _ = writeln!(
                out,
                "  vfio-bind: {} ({:.1} per function): {}",
                binder.total,
                binder.total as f64 / *functions as f64,
                binder.top(6)
            );
            if let Some(shell) = shell {
                let _ = writeln!(
                    out,
                    "  shell:     {} ({:.1} per function), {} processes started: {}",
                    shell.total,
                    shell.total as f64 / *functions as f64,
                    shell.calls_of(&["clone", "clone3", "fork", "vfork"]),
                    shell.top(6)
                );
            }
        }
    }
}

/// The largest peak RSS of each side, and the notes.
fn write_rss_and_notes(out: &mut String, report: &Report<'_>) {
    let binder_rss = report.binder_rss_kib();
    let shell_rss = report
        .cases
        .iter()
        .filter_map(|case| case.shell_rss_kib)
        .max();
    let _ = writeln!(
        out,
        "peak RSS (VmHWM at exit, largest over the cases): vfio-bind {binder_rss} KiB{}",
        shell_rss.map_or(String::new(), |kib| format!(
            ", busybox sh {kib} KiB (the shell process alone)"
        ))
    );
    for note in report.notes {
        let _ = writeln!(out, "note: {note}");
    }
}

/// Issue 20's paired rounds: each side's median and the two ratios.
fn write_paired(out: &mut String, report: &Report<'_>) {
    let Some(paired) = report.paired else {
        let _ = writeln!(
            out,
            "\npaired runs: NOT RUN: busybox is missing (apt-get install busybox-static)"
        );
        return;
    };
    let _ = writeln!(
        out,
        "\npaired runs, {PAIRED_FUNCTIONS} functions, {PAIRED_CARDS} cards, {} rounds of: apply, busybox true (in turn first), busybox sh {NAME_FILTER_SCRIPT}",
        paired.rounds
    );
    let _ = writeln!(
        out,
        "  medians: vfio-bind apply {}, busybox true {}, name-filtering script {}",
        ms(Paired::median(&paired.binder)),
        ms(Paired::median(&paired.true_exec)),
        ms(Paired::median(&paired.filter))
    );
    let _ = writeln!(
        out,
        "  apply / busybox true: {:.2}x; name-filtering script / apply: {:.2}x (medians of the rounds' ratios)",
        paired.over_true(),
        paired.under_filter()
    );
}

/// Issue 20's two targets, from the paired rounds.
fn write_paired_targets(out: &mut String, report: &Report<'_>) {
    let _ = writeln!(
        out,
        "  {} apply on {PAIRED_FUNCTIONS} functions <= {TARGET_OVER_TRUE}x a static busybox true exec: {}",
        verdict(report.paired.map(|paired| paired.over_true() <= TARGET_OVER_TRUE)),
        report.paired.map_or("not measured: busybox is missing".to_string(), |paired| format!(
            "{:.2}x (paired)",
            paired.over_true()
        ))
    );
    let _ = writeln!(
        out,
        "  {} apply on {PAIRED_FUNCTIONS} functions >= {TARGET_UNDER_FILTER}x faster than the name-filtering script: {}",
        verdict(report.paired.map(|paired| paired.under_filter() >= TARGET_UNDER_FILTER)),
        report.paired.map_or("not measured: busybox is missing".to_string(), |paired| format!(
            "{:.2}x (paired)",
            paired.under_filter()
        ))
    );
}

/// Issue 5's targets, each met, missed, or not measured.
fn write_targets(out: &mut String, report: &Report<'_>) {
    let binder_rss = report.binder_rss_kib();
    let _ = writeln!(out, "\ntargets:");
    write_paired_targets(out, report);
    if report.cases.is_empty() {
        return;
    }
    let largest = report.cases.iter().map(|case| case.functions).max();
    let at_1024: Vec<&Case> = report
        .cases
        .iter()
        .filter(|case| case.functions == 1024)
        .collect();
    let worst_1024 = at_1024.iter().map(|case| case.binder.median()).max();
    let _ = writeln!(
        out,
        "  {} apply on 1024 functions < 5 ms: {}",
        verdict(worst_1024.map(|worst| worst < TARGET_APPLY_1024)),
        worst_1024.map_or(
            format!("not measured (largest size {})", largest.unwrap_or(0)),
            |worst| format!("{} (median, the slower card count)", ms(worst))
        )
    );
    let ratios: Vec<(f64, &Case)> = report
        .cases
        .iter()
        .filter_map(|case| {
            let shell = case.shell.as_ref()?;
            Some((
                shell.median().as_secs_f64() / case.binder.median().as_secs_f64(),
                case,
            ))
        })
        .collect();
    let lowest = ratios.iter().min_by(|a, b| a.0.total_cmp(&b.0));
    let _ = writeln!(
        out,
        "  {} >= 10x faster than the shell at every size: {}",
        verdict(lowest.map(|(ratio, _)| *ratio >= TARGET_RATIO)),
        lowest.map_or(
            "not measured: busybox is missing".to_string(),
            |(ratio, case)| {
                format!(
                    "lowest {ratio:.0}x ({} functions, {} cards)",
                    case.functions, case.cards
                )
            }
        )
    );
    let (linear, growth) = growth(report.cases);
    let _ = writeln!(
        out,
        "  {} cost grows linearly or better (t ~ n^k, k <= {LINEAR_EXPONENT} for noise): {growth}",
        verdict(linear)
    );
    let _ = writeln!(
        out,
        "  {} peak RSS < 1 MiB: {binder_rss} KiB",
        verdict(Some(binder_rss < TARGET_RSS_KIB))
    );
    let _ = writeln!(
        out,
        "  {} static binary < 400 KiB: {:.1} KiB",
        verdict(Some(report.binary_size < TARGET_SIZE_BYTES)),
        report.binary_size as f64 / 1024.0
    );
}

/// Whether time grows at most linearly with the number of functions, per card count: the
/// exponent k of t ∝ n^k between the smallest and the largest size.
fn growth(cases: &[Case]) -> (Option<bool>, String) {
    let mut card_counts: Vec<usize> = cases.iter().map(|case| case.cards).collect();
    card_counts.sort_unstable();
    card_counts.dedup();
    let mut holds = None;
    let mut parts = Vec::new();
    for cards in card_counts {
        let of: Vec<&Case> = cases.iter().filter(|case| case.cards == cards).collect();
        let (Some(small), Some(large)) = (
            of.iter().min_by_key(|case| case.functions),
            of.iter().max_by_key(|case| case.functions),
        ) else {
            continue;
        };
        let per_function: Vec<String> = of
            .iter()
            .map(|case| {
                format!(
                    "{} ({})",
                    us_per_function(case.binder.median(), case.functions),
                    case.functions
                )
            })
            .collect();
        if large.functions == small.functions {
            parts.push(format!("{cards} cards: {}", per_function.join(", ")));
            continue;
        }
        let exponent = (large.binder.median().as_secs_f64() / small.binder.median().as_secs_f64())
            .ln()
            / (large.functions as f64 / small.functions as f64).ln();
        holds = Some(holds.unwrap_or(true) && exponent <= LINEAR_EXPONENT);
        parts.push(format!(
            "{cards} cards: t ~ n^{exponent:.2}; per function {}",
            per_function.join(" -> ")
        ));
    }
    (holds, parts.join("; "))
}
