//! The `vfio-bind` command: `apply` at boot, and `list`, `rule`, `check` for people.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use argh::FromArgs;
use log::LevelFilter;

use vfio_bind::apply::{apply, release_rules, RunningKernel};
use vfio_bind::kmsg::{self, Destination};
use vfio_bind::report;
use vfio_bind::sources::{gather, log_problem, Gathered, RuleSources};
use vfio_bind::sysfs::Sysfs;
use vfio_bind::watchdog::{self, bounded};

/// Exit status for a bad argument.
const EXIT_USAGE: u8 = 2;
const DEFAULT_TIMEOUT_SECONDS: u64 = watchdog::DEFAULT_TIMEOUT.as_secs();
/// The longest `--timeout` taken: an hour is already far past any boot's patience.
const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// Hand chosen PCI functions to vfio-pci by address, before any GPU driver loads.
#[derive(FromArgs)]
#[argh(
    note = "Rules come from vfio.bind= on the kernel command line and /etc/cmdline.d/*.conf:\n  vfio.bind=RULE[,RULE]...   RULE := VVVV:DDDD | @[DDDD:]BB:SS[.F] | VVVV:DDDD@[DDDD:]BB:SS[.F]",
    example = "vfio-bind list\nvfio-bind rule 07:00\nvfio-bind check",
    error_code(1, "a rule did not apply, or a check found a problem"),
    error_code(2, "a bad argument")
)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Apply(ApplyArgs),
    List(ListArgs),
    Rule(RuleArgs),
    Check(CheckArgs),
    Bind(BindArgs),
    Release(ReleaseArgs),
}

/// Bind the functions the rules name to vfio-pci (what the initramfs hooks run).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "apply",
    example = "vfio-bind apply\nvfio-bind apply --dry-run --cmdline 'vfio.bind=1002:73ff@07:00'",
    note = "Logs to /dev/kmsg when working on /sys (see dmesg), else to stderr.",
    error_code(1, "a rule was malformed, did not match, or did not end on vfio-pci")
)]
struct ApplyArgs {
    /// sysfs root to work on (default /sys); modules are loaded only for /sys
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    sysfs: PathBuf,
    /// command-line text to read rules from instead of /proc/cmdline
    #[argh(option)]
    cmdline: Option<String>,
    /// directory of *.conf command-line fragments (default /etc/cmdline.d)
    #[argh(option, default = "PathBuf::from(\"/etc/cmdline.d\")")]
    cmdline_dir: PathBuf,
    /// print what would be bound on stdout and write nothing
    #[argh(switch)]
    dry_run: bool,
    /// give up after this many seconds, lock wait included (default 10)
    #[argh(option, default = "DEFAULT_TIMEOUT_SECONDS")]
    timeout: u64,
}

/// List every PCI function by IOMMU group, marking those the rules select.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "list",
    example = "vfio-bind list\nvfio-bind list --cmdline 'vfio.bind=1002:73ff@07:00'"
)]
struct ListArgs {
    /// sysfs root to read (default /sys)
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    sysfs: PathBuf,
    /// command-line text to read rules from instead of /proc/cmdline
    #[argh(option)]
    cmdline: Option<String>,
    /// directory of *.conf command-line fragments (default /etc/cmdline.d)
    #[argh(option, default = "PathBuf::from(\"/etc/cmdline.d\")")]
    cmdline_dir: PathBuf,
}

/// Print the guarded rule for the card (or function) at an address.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "rule",
    example = "vfio-bind rule 07:00\nvfio-bind rule 0000:07:00.1"
)]
struct RuleArgs {
    /// the card's address, [DDDD:]BB:SS, or one function's, [DDDD:]BB:SS.F
    #[argh(positional)]
    address: String,
    /// sysfs root to read (default /sys)
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    sysfs: PathBuf,
}

/// Check, after boot, that every rule matched and its group is ready for a VM.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "check",
    example = "vfio-bind check",
    error_code(1, "a problem was found (each is printed with its fix)")
)]
struct CheckArgs {
    /// sysfs root to read (default /sys)
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    sysfs: PathBuf,
    /// command-line text to read rules from instead of /proc/cmdline
    #[argh(option)]
    cmdline: Option<String>,
    /// directory of *.conf command-line fragments (default /etc/cmdline.d)
    #[argh(option, default = "PathBuf::from(\"/etc/cmdline.d\")")]
    cmdline_dir: PathBuf,
}

/// Bind cards to vfio-pci now, as at boot (for a libvirt prepare hook).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "bind",
    example = "vfio-bind bind 1002:73ff@07:00",
    note = "Same rule grammar and order as apply: override, unbind, probe, read back; a rule that does not end wholly on vfio-pci is given back. Logs to stderr.",
    error_code(1, "a rule was malformed, did not match, or did not end on vfio-pci")
)]
struct BindArgs {
    /// rules, as in vfio.bind= (e.g. 1002:73ff@07:00)
    #[argh(positional)]
    rules: Vec<String>,
    /// sysfs root to work on (default /sys); modules are loaded only for /sys
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    sysfs: PathBuf,
    /// give up after this many seconds, lock wait included (default 10)
    #[argh(option, default = "DEFAULT_TIMEOUT_SECONDS")]
    timeout: u64,
}

/// Give cards back to their own drivers (for a libvirt release hook).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "release",
    example = "vfio-bind release 1002:73ff@07:00",
    note = "Clears driver_override, unbinds from vfio-pci and probes, so the native driver takes the card back. Logs to stderr.",
    error_code(
        1,
        "a rule was malformed, did not match, or a function is still on vfio-pci"
    )
)]
struct ReleaseArgs {
    /// rules, as in vfio.bind= (e.g. 1002:73ff@07:00)
    #[argh(positional)]
    rules: Vec<String>,
    /// sysfs root to work on (default /sys)
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    sysfs: PathBuf,
    /// give up after this many seconds, lock wait included (default 10)
    #[argh(option, default = "DEFAULT_TIMEOUT_SECONDS")]
    timeout: u64,
}

/// The rules given as arguments, each problem logged.
fn rules_from_arguments(texts: &[String]) -> Result<Gathered, ExitCode> {
    if texts.is_empty() {
        eprintln!("vfio-bind: give at least one rule, e.g. 1002:73ff@07:00");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    let mut gathered = Gathered {
        rules: vfio_bind::cmdline::RuleSet::new(),
        noiommu: false,
    };
    for text in texts {
        gathered.rules.add_rule_text(text, &mut |problem| {
            log_problem(
                "the arguments",
                vfio_bind::sources::SourceProblem::Rule(problem),
            )
        });
    }
    Ok(gathered)
}

fn parse_arguments() -> Result<Cli, ExitCode> {
    let arguments: Vec<String> = std::env::args().collect();
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    Cli::from_args(&["vfio-bind"], arguments.get(1..).unwrap_or_default()).map_err(|early_exit| {
        match early_exit.status {
            Ok(()) => {
                println!("{}", early_exit.output);
                ExitCode::SUCCESS
            }
            Err(()) => {
                eprintln!("{}", early_exit.output);
                ExitCode::from(EXIT_USAGE)
            }
        }
    })
}

fn open_sysfs(root: &std::path::Path) -> Result<Sysfs, ExitCode> {
    Sysfs::new(root).map_err(|_| {
        eprintln!(
            "vfio-bind: --sysfs must be a UTF-8 path of at most {} bytes",
            vfio_bind::sysfs::ROOT_CAPACITY
        );
        ExitCode::from(EXIT_USAGE)
    })
}

/// Gathers the rules, logging each problem with its source.
fn gather_logged(cmdline: Option<&str>, fragment_dir: &std::path::Path) -> Gathered {
    gather(
        &RuleSources {
            cmdline,
            fragment_dir,
        },
        &mut log_problem,
    )
}

/// `--timeout`, checked.
fn timeout(seconds: u64) -> Result<Duration, ExitCode> {
    if (1..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
        Ok(Duration::from_secs(seconds))
    } else {
        eprintln!("vfio-bind: --timeout must be 1 to {MAX_TIMEOUT_SECONDS} seconds");
        Err(ExitCode::from(EXIT_USAGE))
    }
}

fn run() -> Result<u8, ExitCode> {
    let started = Instant::now();
    let cli = parse_arguments()?;
    match cli.command {
        Command::Apply(args) => {
            let sysfs = open_sysfs(&args.sysfs)?;
            let destination = if sysfs.is_real() && !args.dry_run {
                Destination::KernelLog
            } else {
                Destination::Stderr
            };
            kmsg::init(destination, LevelFilter::Info);
            let timeout = timeout(args.timeout)?;
            Ok(bounded(
                &sysfs,
                !args.dry_run,
                started,
                timeout,
                &mut || {
                    let gathered = gather_logged(args.cmdline.as_deref(), &args.cmdline_dir);
                    let mut kernel = RunningKernel {
                        modules_allowed: sysfs.is_real(),
                    };
                    apply(&sysfs, &gathered, &mut kernel, started, args.dry_run)
                },
            ))
        }
        Command::List(args) => {
            let sysfs = open_sysfs(&args.sysfs)?;
            kmsg::init(Destination::Stderr, LevelFilter::Info);
            let gathered = gather_logged(args.cmdline.as_deref(), &args.cmdline_dir);
            Ok(report::list(
                &sysfs,
                &gathered,
                &mut std::io::stdout().lock(),
            ))
        }
        Command::Rule(args) => {
            let sysfs = open_sysfs(&args.sysfs)?;
            kmsg::init(Destination::Stderr, LevelFilter::Info);
            let Ok(location) = args.address.parse() else {
                eprintln!(
                    "vfio-bind: \"{}\" is not a PCI address; write [DDDD:]BB:SS or [DDDD:]BB:SS.F",
                    args.address
                );
                return Err(ExitCode::from(EXIT_USAGE));
            };
            Ok(report::rule(
                &sysfs,
                location,
                &mut std::io::stdout().lock(),
            ))
        }
        Command::Bind(args) => {
            let sysfs = open_sysfs(&args.sysfs)?;
            kmsg::init(Destination::Stderr, LevelFilter::Info);
            let timeout = timeout(args.timeout)?;
            let gathered = rules_from_arguments(&args.rules)?;
            Ok(bounded(&sysfs, true, started, timeout, &mut || {
                let mut kernel = RunningKernel {
                    modules_allowed: sysfs.is_real(),
                };
                apply(&sysfs, &gathered, &mut kernel, started, false)
            }))
        }
        Command::Release(args) => {
            let sysfs = open_sysfs(&args.sysfs)?;
            kmsg::init(Destination::Stderr, LevelFilter::Info);
            let timeout = timeout(args.timeout)?;
            let gathered = rules_from_arguments(&args.rules)?;
            Ok(bounded(&sysfs, true, started, timeout, &mut || {
                let mut kernel = RunningKernel {
                    modules_allowed: false,
                };
                release_rules(&sysfs, &gathered, &mut kernel, started)
            }))
        }
        Command::Check(args) => {
            let sysfs = open_sysfs(&args.sysfs)?;
            kmsg::init(Destination::Stderr, LevelFilter::Info);
            let gathered = gather_logged(args.cmdline.as_deref(), &args.cmdline_dir);
            Ok(report::check(
                &sysfs,
                &gathered,
                &mut std::io::stdout().lock(),
            ))
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(status) => ExitCode::from(status),
        Err(code) => code,
    }
}
