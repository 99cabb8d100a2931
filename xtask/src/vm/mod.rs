//! `cargo xtask vm-test` and `cargo xtask vm-run`: real initramfs images booted in QEMU.
//!
//! From a clean checkout: build the static binary, install it and the hook files into
//! staging roots (`cargo xtask install --destdir`), fetch Debian's current kernel, build an
//! image with each generator and init flavour, boot them with identical emulated cards
//! behind an emulated IOMMU, and compare what the guest kernel reports (driver, override,
//! IOMMU group and VFIO group viability per PCI function, the binder's log lines) with
//! what each scenario expects. docs/vm-test.md describes the matrix.
//!
//! - `host`: tools, process helpers; `kernel`: the kernel package; `stage`: binary, hooks
//!   and reporter; `image`: one module per generator; `cpio`: the archive writer;
//!   `qemu`: one boot; `scenario`: what to boot and what to expect; `report`: parsing what
//!   the guest said; `prepare`: what both commands set up first; `system`: scenario 21, an
//!   installed Debian system booted from its disk.

mod cpio;
mod host;
mod image;
mod kernel;
mod prepare;
mod qemu;
mod report;
mod scenario;
mod stage;
mod system;

/// The guest's reporter, compiled into the xtask's tests as well so that clippy and the
/// compiler check it with the rest (the images get it from plain rustc, see `stage`).
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../guest/vfio-test-report.rs"]
mod guest_reporter;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use argh::FromArgs;

use crate::util::TaskResult;
use image::{Generator, ImageSpec, ALL_GENERATORS};
use prepare::Setup;
use qemu::{print_console_tail, seconds};
use scenario::{Scenario, SCENARIOS};

/// What the VM test needs from the host (installed by [`host::ensure_tools`]).
pub fn host_needs() -> Vec<crate::setup::Need> {
    host::needs()
}

/// boot every initramfs image in QEMU and check what the guest kernel bound
#[derive(FromArgs)]
#[argh(subcommand, name = "vm-test")]
pub struct VmTestArgs {
    /// boot this kernel package (.deb) instead of Debian's current linux-image-amd64
    #[argh(option)]
    pub kernel_deb: Option<PathBuf>,
    /// run only one scenario (a number), or the boots whose scenario name or image contains
    /// this text
    #[argh(option)]
    pub only: Option<String>,
    /// seconds before a boot is killed (default 120)
    #[argh(option, default = "120")]
    pub timeout: u64,
    /// QEMU runs and image builds at a time, 1 or 2 (default 2)
    #[argh(option, default = "2")]
    pub jobs: usize,
}

/// boot one image with your own command line and devices and print what bound
#[derive(FromArgs)]
#[argh(subcommand, name = "vm-run")]
pub struct VmRunArgs {
    /// kernel command-line words to add, e.g. "vfio.bind=1234:1111@00:05"
    #[argh(option, default = "String::new()")]
    pub append: String,
    /// QEMU device arguments replacing the default two identical cards, e.g.
    /// "-device ati-vga,model=rv100,addr=07.0"
    #[argh(option)]
    pub qemu: Option<String>,
    /// the image: mkinitcpio (default), mkinitcpio-systemd, dracut, dracut-systemd,
    /// initramfs-tools
    #[argh(option, default = "String::from(\"mkinitcpio\")")]
    pub image: String,
    /// rules to bake into the image's /etc/cmdline.d/vfio-bind.conf
    #[argh(option)]
    pub baked: Option<String>,
    /// boot with intel_iommu=off instead of intel_iommu=on
    #[argh(switch)]
    pub no_iommu: bool,
    /// boot with UEFI firmware (Debian's OVMF) instead of SeaBIOS: the first display card
    /// becomes the boot display, with the firmware framebuffer (efifb) in its BAR0
    #[argh(switch)]
    pub uefi: bool,
    /// boot this kernel package (.deb) instead of Debian's current linux-image-amd64
    #[argh(option)]
    pub kernel_deb: Option<PathBuf>,
    /// seconds before the boot is killed (default 120)
    #[argh(option, default = "120")]
    pub timeout: u64,
    /// boot the installed Debian system of scenario 21 instead (its disk, built or cached):
    /// both boots, each step's report and the console's tail printed
    #[argh(switch)]
    pub system: bool,
}

/// Runs `work` over `items`, `jobs` at a time, keeping the order of the results.
fn parallel<T: Sync, R: Send>(items: &[T], jobs: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 2).min(items.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(index) else { break };
                let result = work(item);
                results.lock().expect("no worker panics holding the lock")[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panicked")
        .into_iter()
        .map(|result| result.expect("every item was worked on"))
        .collect()
}

/// One boot: a scenario on an image, with the kernel command line it boots with.
struct Run {
    scenario: &'static Scenario,
    spec: ImageSpec,
    command_line: String,
}

impl Run {
    fn new(scenario: &'static Scenario, generator: Generator) -> Run {
        Run {
            scenario,
            spec: ImageSpec {
                generator,
                baked: scenario.baked,
            },
            command_line: scenario::command_line(scenario, generator),
        }
    }

    fn label(&self) -> String {
        format!("{}-{}", self.scenario.number, self.spec)
    }

    /// `--only`: a scenario number, or text in the scenario's name or the image's.
    fn matches(&self, filter: &str) -> bool {
        if filter.chars().all(|c| c.is_ascii_digit()) {
            self.scenario.number.to_string() == filter
        } else {
            self.scenario.name.contains(filter) || self.spec.to_string().contains(filter)
        }
    }
}

struct Outcome {
    problems: Vec<String>,
    boot: Option<qemu::Boot>,
    state: Option<report::GuestState>,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

fn boot_and_check(setup: &Setup, image: &Path, run: &Run, timeout: Duration) -> Outcome {
    let firmware = run.scenario.cards.firmware();
    let kernel = setup.kernel_for(firmware);
    let spec = qemu::BootSpec {
        direct: Some((&kernel, image)),
        append: run.command_line.clone(),
        devices: run.scenario.cards.qemu_args(),
        dir: setup.vm_dir.join("runs").join(run.label()),
        timeout,
        firmware,
    };
    let boot = match qemu::boot(&spec) {
        Ok(boot) => boot,
        Err(error) => {
            return Outcome {
                problems: vec![format!("{error:#}")],
                boot: None,
                state: None,
            }
        }
    };
    let state = report::parse(&boot.result);
    let mut problems = Vec::new();
    if boot.timed_out {
        problems.push(format!(
            "{}: QEMU was killed {}",
            qemu::timed_out_after(timeout),
            if state.is_some() {
                "after the guest reported (it never powered off)"
            } else {
                "before the guest reported"
            }
        ));
    }
    match &state {
        Some(state) => problems.extend(scenario::check(run.scenario, state, &boot.console)),
        None if boot.timed_out => {}
        None => problems.push("no report: the guest stopped before the reporter ran".into()),
    }
    Outcome {
        problems,
        boot: Some(boot),
        state,
    }
}

/// `pass 5.1s`, `FAIL 9.3s`, or `FAIL timed out after 120 s`: a timeout says so plainly.
fn cell(outcome: &Outcome, timeout: Duration) -> String {
    let verdict = if outcome.passed() { "pass" } else { "FAIL" };
    match &outcome.boot {
        Some(boot) if boot.timed_out => format!("{verdict} {}", qemu::timed_out_after(timeout)),
        Some(boot) => format!("{verdict} {}", seconds(boot.elapsed)),
        None => format!("{verdict} -"),
    }
}

pub fn run_tests(args: VmTestArgs) -> TaskResult {
    let started = Instant::now();
    let runs: Vec<Run> = matrix()
        .into_iter()
        .filter(|run| {
            args.only
                .as_deref()
                .is_none_or(|filter| run.matches(filter))
        })
        .collect();
    let with_system = system::selected(args.only.as_deref());
    if runs.is_empty() && !with_system {
        bail!("--only matched no boot");
    }
    let setup = Setup::new(args.kernel_deb.as_deref(), stage::default_baked_rules())?;
    let mut specs: Vec<ImageSpec> = runs.iter().map(|run| run.spec).collect();
    specs.sort();
    specs.dedup();
    let timeout = Duration::from_secs(args.timeout);
    // The installed system's disk (mmdebstrap, a minute or two when not cached) is made
    // while the images build and the matrix's first boots run; the installed system's job
    // waits for it.
    let (outcomes, system_outcome) = std::thread::scope(|scope| -> TaskResult<_> {
        let disk: Option<PendingDisk> =
            with_system.then(|| Mutex::new(Some(scope.spawn(|| system::disk(&setup)))));
        let images = if specs.is_empty() {
            BTreeMap::new()
        } else {
            build_images(&setup, &specs, args.jobs)?
        };
        Ok(boot_all(
            &setup,
            &runs,
            &images,
            disk.as_ref(),
            args.jobs,
            timeout,
        ))
    })?;

    if !runs.is_empty() {
        print_table(&runs, &outcomes, timeout);
    }
    if let Some(outcome) = &system_outcome {
        println!(
            "{:<26} {}",
            format!("{} {}", scenario::SYSTEM_NUMBER, scenario::SYSTEM_NAME),
            system::cell(outcome)
        );
    }
    if !runs.is_empty() {
        print_binder_times(&runs, &outcomes);
    }
    let failures: Vec<(&Run, &Outcome)> = runs
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| !outcome.passed())
        .collect();
    for (run, outcome) in &failures {
        print_failure(run, outcome);
    }
    let system_failed = system_outcome.as_ref().is_some_and(|o| !o.passed());
    if let Some(outcome) = system_outcome.as_ref().filter(|_| system_failed) {
        system::print_failure(outcome);
    }
    let scenarios = runs.len() + usize::from(system_outcome.is_some());
    let failed = failures.len() + usize::from(system_failed);
    println!(
        "\n{} boots of {} images{} in {} total",
        runs.len(),
        specs.len(),
        if system_outcome.is_some() {
            " and the installed system"
        } else {
            ""
        },
        seconds(started.elapsed())
    );
    println!("vm-test: {} passed, {failed} failed", scenarios - failed);
    if failed == 0 {
        Ok(())
    } else {
        Err(anyhow!("{failed} of {scenarios} VM scenarios failed"))
    }
}

/// The installed system's time limit per boot: its first boot runs every step, `dpkg -r`
/// and an image rebuild under emulation.
fn system_timeout(timeout: Duration) -> Duration {
    timeout * 3
}

/// Every boot of the matrix, image by image: each scenario on each image its row names.
fn matrix() -> Vec<Run> {
    ALL_GENERATORS
        .iter()
        .flat_map(|&generator| {
            SCENARIOS
                .iter()
                .filter(move |scenario| scenario.runs_on(generator))
                .map(move |scenario| Run::new(scenario, generator))
        })
        .collect()
}

/// Builds each image, `jobs` at a time, saying how each went; a failed build fails only
/// the boots of that image.
fn build_images(
    setup: &Setup,
    specs: &[ImageSpec],
    jobs: usize,
) -> TaskResult<BTreeMap<ImageSpec, TaskResult<PathBuf>>> {
    let inputs = setup.inputs();
    image::prepare(&inputs, specs)?;
    let build_started = Instant::now();
    let built = parallel(specs, jobs, |spec| {
        let started = Instant::now();
        let result = image::build(&inputs, *spec);
        match &result {
            Ok(path) => println!(
                "image {spec}: built in {} ({} KiB)",
                seconds(started.elapsed()),
                std::fs::metadata(path).map(|m| m.len() / 1024).unwrap_or(0)
            ),
            Err(error) => println!("image {spec}: FAILED to build: {error:#}"),
        }
        result
    });
    println!("images built in {}", seconds(build_started.elapsed()));
    Ok(specs.iter().copied().zip(built).collect())
}

/// One boot job: the installed system (both its boots), or a run of the matrix.
enum Job<'a, 'scope> {
    System(&'a PendingDisk<'scope>),
    Matrix(&'a Run),
}

/// The installed system's disk, being made on a thread of its own; taken (once) by the job
/// that boots it.
type PendingDisk<'scope> =
    Mutex<Option<std::thread::ScopedJoinHandle<'scope, TaskResult<system::Disk>>>>;

enum Done {
    System(system::SystemOutcome),
    Matrix(Box<Outcome>),
}

/// Boots and checks every run, and the installed system when its disk is given, `jobs` at a
/// time, printing each verdict as it comes. The installed system, the longest job by far,
/// goes first, so that the matrix's boots share the other worker with it.
fn boot_all(
    setup: &Setup,
    runs: &[Run],
    images: &BTreeMap<ImageSpec, TaskResult<PathBuf>>,
    disk: Option<&PendingDisk>,
    jobs: usize,
    timeout: Duration,
) -> (Vec<Outcome>, Option<system::SystemOutcome>) {
    let done = AtomicUsize::new(0);
    let work: Vec<Job> = disk
        .map(Job::System)
        .into_iter()
        .chain(runs.iter().map(Job::Matrix))
        .collect();
    let results = parallel(&work, jobs, |job| {
        let (label, image, verdict, result) = match job {
            Job::System(pending) => {
                let handle = pending.lock().expect("no job panics holding it").take();
                let disk = match handle {
                    Some(handle) => handle
                        .join()
                        .unwrap_or_else(|_| Err(anyhow!("making the disk panicked"))),
                    None => Err(anyhow!("the disk was already taken")),
                };
                let outcome = match &disk {
                    Ok(disk) => system::run(setup, disk, system_timeout(timeout)),
                    Err(error) => system::SystemOutcome::not_built(error),
                };
                (
                    format!("{} {}", scenario::SYSTEM_NUMBER, scenario::SYSTEM_NAME),
                    "its own disk".to_string(),
                    system::cell(&outcome),
                    Done::System(outcome),
                )
            }
            Job::Matrix(run) => {
                let outcome = match &images[&run.spec] {
                    Ok(path) => boot_and_check(setup, path, run, timeout),
                    Err(error) => Outcome {
                        problems: vec![format!("the image could not be built: {error:#}")],
                        boot: None,
                        state: None,
                    },
                };
                (
                    format!("{} {}", run.scenario.number, run.scenario.name),
                    run.spec.to_string(),
                    cell(&outcome, timeout),
                    Done::Matrix(Box::new(outcome)),
                )
            }
        };
        let count = done.fetch_add(1, Ordering::SeqCst) + 1;
        println!(
            "[{count:>2}/{}] {label:<24} on {image:<26} {verdict}",
            work.len()
        );
        result
    });
    let mut outcomes = Vec::new();
    let mut system_outcome = None;
    for result in results {
        match result {
            Done::System(outcome) => system_outcome = Some(outcome),
            Done::Matrix(outcome) => outcomes.push(*outcome),
        }
    }
    (outcomes, system_outcome)
}

/// Scenario rows by generator columns: pass/FAIL, boot time (or the timeout).
fn print_table(runs: &[Run], outcomes: &[Outcome], timeout: Duration) {
    let generators: Vec<Generator> = ALL_GENERATORS
        .into_iter()
        .filter(|g| runs.iter().any(|run| run.spec.generator == *g))
        .collect();
    println!();
    let mut header = format!("{:<26}", "scenario");
    for generator in &generators {
        header.push_str(&format!(" {:<19}", generator.name()));
    }
    println!("{}", header.trim_end());
    for scenario in SCENARIOS {
        if !runs
            .iter()
            .any(|run| run.scenario.number == scenario.number)
        {
            continue;
        }
        let mut line = format!("{:<26}", format!("{} {}", scenario.number, scenario.name));
        for generator in &generators {
            let cell = runs
                .iter()
                .zip(outcomes)
                .find(|(run, _)| {
                    run.scenario.number == scenario.number && run.spec.generator == *generator
                })
                .map(|(_, outcome)| cell(outcome, timeout))
                .unwrap_or_else(|| "·".into());
            line.push_str(&format!(" {cell:<19}"));
        }
        println!("{}", line.trim_end());
    }
}

/// The binder's own elapsed time, from its summary line, per image.
fn print_binder_times(runs: &[Run], outcomes: &[Outcome]) {
    let mut per_image: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (run, outcome) in runs.iter().zip(outcomes) {
        if let Some((_, micros)) = outcome.state.as_ref().and_then(|s| s.summary()) {
            per_image
                .entry(run.spec.to_string())
                .or_default()
                .push(format!("#{} {micros} us", run.scenario.number));
        }
    }
    if per_image.is_empty() {
        println!("\nbinder summary: not found in any boot");
        return;
    }
    println!("\nbinder elapsed time (from its summary line):");
    for (image, times) in per_image {
        println!("  {image:<26} {}", times.join(", "));
    }
}

fn print_failure(run: &Run, outcome: &Outcome) {
    println!(
        "\n=== FAIL: scenario {} ({}) on {}",
        run.scenario.number, run.scenario.name, run.spec
    );
    if let Some(boot) = &outcome.boot {
        println!("command line: {}", run.command_line);
        println!(
            "logs: {}",
            boot.console_path
                .parent()
                .unwrap_or(Path::new(""))
                .display()
        );
    }
    println!("expected vs found:");
    for problem in &outcome.problems {
        println!("  - {problem}");
    }
    if let Some(state) = &outcome.state {
        println!("found:");
        print!("{}", report::function_table(state));
        for (level, text) in &state.kmsg {
            println!("    kmsg <{level}> {text}");
        }
    }
    if let Some(boot) = &outcome.boot {
        print_console_tail(&boot.console);
    }
}

pub fn run_one(args: VmRunArgs) -> TaskResult {
    if args.system {
        return run_system(&args);
    }
    let generator = Generator::from_name(&args.image).with_context(|| {
        format!(
            "--image {}: expected one of {}",
            args.image,
            ALL_GENERATORS.map(|g| g.name()).join(", ")
        )
    })?;
    let baked_rules = args
        .baked
        .clone()
        .unwrap_or_else(|| stage::default_baked_rules().into());
    let setup = Setup::new(args.kernel_deb.as_deref(), &baked_rules)?;
    let spec = ImageSpec {
        generator,
        baked: args.baked.is_some(),
    };
    let inputs = setup.inputs();
    image::prepare(&inputs, &[spec])?;
    let image = image::build(&inputs, spec)?;
    let devices: Vec<String> = match &args.qemu {
        Some(text) => text.split_whitespace().map(str::to_string).collect(),
        None => scenario::Cards::Twins.qemu_args(),
    };
    let append = vm_run_command_line(&args, generator, &devices);
    let firmware = if args.uefi {
        qemu::Firmware::Uefi
    } else {
        qemu::Firmware::SeaBios
    };
    println!(
        "image: {spec}\nfirmware: {}\ndevices: {}\ncommand line: {append}",
        match firmware {
            qemu::Firmware::SeaBios => "SeaBIOS".to_string(),
            qemu::Firmware::Uefi => format!("UEFI ({})", host::OVMF_PATH),
        },
        devices.join(" ")
    );
    let timeout = Duration::from_secs(args.timeout);
    let boot = qemu::boot(&qemu::BootSpec {
        direct: Some((&setup.kernel_for(firmware), &image)),
        append,
        devices,
        dir: setup.vm_dir.join("runs/vm-run"),
        timeout,
        firmware,
    })?;
    println!(
        "boot: {}; console log: {}",
        if boot.timed_out {
            format!("{}, QEMU was killed", qemu::timed_out_after(timeout))
        } else {
            seconds(boot.elapsed)
        },
        boot.console_path.display()
    );
    let Some(state) = report::parse(&boot.result) else {
        print_console_tail(&boot.console);
        return Err(if boot.timed_out {
            anyhow!(
                "{}: no report (the guest never reached the reporter)",
                qemu::timed_out_after(timeout)
            )
        } else {
            anyhow!("no report: the guest stopped before the reporter ran")
        });
    };
    print_guest_state(&state);
    Ok(())
}

/// `vm-run --system`: both boots of the installed system, each boot's report and console
/// tail printed, then the verdict.
fn run_system(args: &VmRunArgs) -> TaskResult {
    let setup = Setup::new(args.kernel_deb.as_deref(), stage::default_baked_rules())?;
    let disk = system::disk(&setup)?;
    let outcome = system::run(
        &setup,
        &disk,
        system_timeout(Duration::from_secs(args.timeout)),
    );
    for boot in &outcome.boots {
        println!("\n=== {}", boot.label);
        if let Some(qemu_boot) = &boot.boot {
            println!("console log: {}", qemu_boot.console_path.display());
            print_console_tail(&qemu_boot.console);
            println!("report (second serial port):");
            for line in qemu_boot.result.lines() {
                println!("  | {line}");
            }
        }
        for problem in &boot.problems {
            println!("  - {problem}");
        }
    }
    println!(
        "\n{} {}: {}",
        scenario::SYSTEM_NUMBER,
        scenario::SYSTEM_NAME,
        system::cell(&outcome)
    );
    if outcome.passed() {
        Ok(())
    } else {
        Err(anyhow!(
            "the installed system did not behave as expected (above)"
        ))
    }
}

/// vm-run's kernel command line: the cards' words for ati-vga, then the user's.
fn vm_run_command_line(args: &VmRunArgs, generator: Generator, devices: &[String]) -> String {
    let mut extra = Vec::new();
    if devices.iter().any(|d| d.starts_with("ati-vga")) {
        extra.push(scenario::ATI_VGA_APPEND);
    }
    extra.push(&args.append);
    scenario::kernel_command_line(!args.no_iommu, generator, &extra)
}

/// vm-run's account of the guest: where each function ended, the kernel log, the
/// binder's time, the reporter's errors.
fn print_guest_state(state: &report::GuestState) {
    print!("{}", report::function_table(state));
    if state.binder_lines().next().is_none() {
        println!("binder: no log lines");
    }
    for (level, text) in &state.kmsg {
        println!("kmsg <{level}> {text}");
    }
    if let Some((_, micros)) = state.summary() {
        println!("binder elapsed: {micros} us");
    }
    if let Some(uptime) = state.uptime {
        println!("guest uptime at report: {uptime:.2} s");
    }
    for error in &state.errors {
        println!("reporter error: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boots of the matrix, pinned: a change to a row's images shows here.
    #[test]
    fn the_matrix_boots_each_scenario_on_the_images_its_row_names() {
        let boots: Vec<String> = matrix().iter().map(Run::label).collect();
        assert_eq!(
            boots.join(" "),
            "1-mkinitcpio 2-mkinitcpio 3-mkinitcpio 4-mkinitcpio 5-mkinitcpio 6-mkinitcpio 7-mkinitcpio 8-mkinitcpio 9-mkinitcpio+baked 10-mkinitcpio 12-mkinitcpio 13-mkinitcpio 14-mkinitcpio 15-mkinitcpio 16-mkinitcpio+baked 17-mkinitcpio 18-mkinitcpio 19-mkinitcpio 20-mkinitcpio 1-mkinitcpio-systemd 3-mkinitcpio-systemd 9-mkinitcpio-systemd+baked 16-mkinitcpio-systemd+baked 1-dracut 3-dracut 9-dracut+baked 16-dracut+baked 1-dracut-systemd 3-dracut-systemd 9-dracut-systemd+baked 11-dracut-systemd 16-dracut-systemd+baked 1-initramfs-tools 3-initramfs-tools 9-initramfs-tools+baked 16-initramfs-tools+baked"
        );
    }

    #[test]
    fn only_selects_by_scenario_number_name_or_image() {
        let selected = |filter: &str| -> Vec<String> {
            matrix()
                .iter()
                .filter(|run| run.matches(filter))
                .map(Run::label)
                .collect()
        };
        assert_eq!(selected("11"), ["11-dracut-systemd"]);
        assert_eq!(selected("1").len(), 5);
        assert_eq!(selected("UEFI VGA"), ["20-mkinitcpio"]);
        assert_eq!(selected("initramfs-tools").len(), 4);
        assert!(selected("no such boot").is_empty());
    }

    /// vm-run builds its line with the same words, in the same order, as before the two
    /// builders became one: the cards' words (ati-vga, UEFI), then the user's.
    #[test]
    fn vm_run_adds_the_cards_words_then_the_users() {
        let args = |uefi: bool, no_iommu: bool| VmRunArgs {
            append: "vfio.bind=1002:5159@00:07 quiet".into(),
            qemu: None,
            image: "dracut".into(),
            baked: None,
            no_iommu,
            uefi,
            kernel_deb: None,
            timeout: 120,
            system: false,
        };
        let ati = [
            "-device".to_string(),
            "ati-vga,model=rv100,addr=07.0".to_string(),
        ];
        assert_eq!(
            vm_run_command_line(&args(true, false), Generator::Mkinitcpio, &ati),
            "console=ttyS0 panic=-1 no_timer_check intel_iommu=on drm_kms_helper.fbdev_emulation=0 vfio.bind=1002:5159@00:07 quiet"
        );
        let line = vm_run_command_line(&args(false, true), Generator::Dracut, &[]);
        assert_eq!(
            line,
            format!(
                "console=ttyS0 panic=-1 no_timer_check intel_iommu=off {} vfio.bind=1002:5159@00:07 quiet",
                Generator::Dracut.append()
            )
        );
    }

    #[test]
    fn each_run_boots_its_scenarios_command_line() {
        let run = matrix()
            .into_iter()
            .find(|run| run.label() == "6-mkinitcpio")
            .unwrap();
        assert_eq!(
            run.command_line,
            "console=ttyS0 panic=-1 no_timer_check intel_iommu=off vfio.bind=1234:1111@00:05"
        );
    }
}
