//! The `vfio-bind` command: `apply` at boot, and `list`, `rule`, `check` for people.

use std::ffi::OsString;
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use argh::FromArgs;
use log::LevelFilter;

use vfio_bind::boot::apply::{apply, release_rules};
use vfio_bind::boot::exit::{EXIT_FAILED, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE};
use vfio_bind::boot::kmsg::{self, Destination};
use vfio_bind::boot::sources::{gather, log_problem, Gathered, RuleSources, SourceProblem};
use vfio_bind::boot::watchdog::{self, bounded};
use vfio_bind::doctor::report;
use vfio_bind::machine::sysfs::Sysfs;
use vfio_bind::rules::cmdline::Escaped;

const DEFAULT_TIMEOUT_SECONDS: u64 = watchdog::DEFAULT_TIMEOUT.as_secs();
/// The longest `--timeout` taken: an hour is already far past any boot's patience.
const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// Hand chosen PCI functions to vfio-pci by address, before any GPU driver loads.
#[derive(FromArgs)]
#[argh(
    note = "Rules come from vfio.bind= on the kernel command line and /etc/cmdline.d/*.conf:\n  vfio.bind=RULE[,RULE]...   RULE := IDS | @ADDR | IDS@ADDR\n  IDS  := VVVV:DDDD[:SSSS:ssss]            (optionally with subsystem IDs)\n  ADDR := [DDDD:]BB:SS[.F]                 (by bus number)\n        | [DDDD:]BB:SS.F/SS.F[/SS.F]...    (by path below a root-bus bridge)\nFor identical cards use the path form, e.g. vfio.bind=1234:1111@00:1c.0/00: bus\nnumbers move when a card is added in an earlier slot; `vfio-bind rule BB:SS` prints it.",
    example = "vfio-bind list\nvfio-bind rule 07:00\nvfio-bind check",
    error_code(
        1,
        "a rule did not apply, a rule or source was lost, a check found a problem, or the output could not be written"
    ),
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
    example = "vfio-bind apply\nvfio-bind apply --dry-run --cmdline 'vfio.bind=1002:73ff@07:00'\nvfio-bind apply --dry-run --cmdline 'vfio.bind=1002:73ff@00:01.2/00'",
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
    /// the iomem tree to read (default /proc/iomem; with another --sysfs, none unless given)
    #[argh(option)]
    iomem: Option<PathBuf>,
    /// give up after this many seconds, lock wait included (default 10)
    #[argh(option, default = "DEFAULT_TIMEOUT_SECONDS")]
    timeout: u64,
}

/// List every PCI function by IOMMU group, marking those the rules select.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "list",
    example = "vfio-bind list\nvfio-bind list --cmdline 'vfio.bind=1002:73ff@07:00'\nvfio-bind list --json"
)]
struct ListArgs {
    /// print one JSON document (schema vfio-bind.list/1, see the man page) instead of text
    #[argh(switch)]
    json: bool,
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

/// Print the guarded rule for the card (or function) at an address, and its path form.
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
    /// root of /proc, whose mounts, swaps and routes say what the host uses (default / on
    /// the real /sys; with a fixture --sysfs, none unless given)
    #[argh(option)]
    host_root: Option<PathBuf>,
}

/// Check, after boot, that every rule matched and its group is ready for a VM, and what
/// else would stop a VM from using the card (reset, interrupt remapping, vfio modules, the
/// booted initramfs and unified kernel image).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "check",
    example = "vfio-bind check",
    error_code(1, "a problem was found (each is printed with its fix)")
)]
struct CheckArgs {
    /// print one JSON document (schema vfio-bind.check/1, see the man page) instead of text
    #[argh(switch)]
    json: bool,
    /// root of /proc, /lib/modules, /boot and /etc for the host checks (default / on the
    /// real /sys; with a fixture --sysfs the host checks run only when this is given)
    #[argh(option)]
    host_root: Option<PathBuf>,
    /// sysfs root to read (default /sys)
    #[argh(option, default = "PathBuf::from(\"/sys\")")]
    sysfs: PathBuf,
    /// command-line text to read rules from instead of /proc/cmdline
    #[argh(option)]
    cmdline: Option<String>,
    /// directory of *.conf command-line fragments (default /etc/cmdline.d)
    #[argh(option, default = "PathBuf::from(\"/etc/cmdline.d\")")]
    cmdline_dir: PathBuf,
    /// the iomem tree to read (default /proc/iomem; with another --sysfs, none unless given)
    #[argh(option)]
    iomem: Option<PathBuf>,
}

/// Bind cards to vfio-pci now, as at boot (for a libvirt prepare hook).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "bind",
    example = "vfio-bind bind 1002:73ff@07:00\nvfio-bind bind 1002:73ff@00:01.2/00",
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
    /// the iomem tree to read (default /proc/iomem; with another --sysfs, none unless given)
    #[argh(option)]
    iomem: Option<PathBuf>,
    /// give up after this many seconds, lock wait included (default 10)
    #[argh(option, default = "DEFAULT_TIMEOUT_SECONDS")]
    timeout: u64,
    /// bind even a function the host uses (its root or another mounted filesystem, swap,
    /// a default route, its only display), which is otherwise refused
    #[argh(switch)]
    force: bool,
    /// root of /proc, whose mounts, swaps and routes say what the host uses (default / on
    /// the real /sys; with a fixture --sysfs, none unless given)
    #[argh(option)]
    host_root: Option<PathBuf>,
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
    /// the iomem tree to read (default /proc/iomem; with another --sysfs, none unless given)
    #[argh(option)]
    iomem: Option<PathBuf>,
    /// give up after this many seconds, lock wait included (default 10)
    #[argh(option, default = "DEFAULT_TIMEOUT_SECONDS")]
    timeout: u64,
}

/// The rules given as arguments, each a comma-separated list as in `vfio.bind=`, each
/// problem logged.
fn rules_from_arguments(texts: &[String]) -> Result<Gathered, ExitCode> {
    if texts.is_empty() {
        eprintln!("vfio-bind: give at least one rule, e.g. 1002:73ff@07:00");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    let mut gathered = Gathered::default();
    for text in texts {
        gathered
            .rules
            .add_rule_list(text.as_bytes(), &mut |problem| {
                log_problem(&"the arguments", SourceProblem::Rule(problem))
            });
    }
    Ok(gathered)
}

/// Options whose value is taken as bytes: a path or a command line need not be UTF-8.
const BYTE_OPTIONS: [&str; 3] = ["--sysfs", "--cmdline", "--cmdline-dir"];

/// The command line as argh takes it (UTF-8), with the non-UTF-8 values of
/// [`BYTE_OPTIONS`] kept aside as bytes. Each stands in the text as a NUL and its index,
/// which no real argument can contain.
struct Arguments {
    texts: Vec<String>,
    bytes: Vec<OsString>,
}

impl Arguments {
    /// Any other argument that is not UTF-8 is refused with one line and exit status 2
    /// (`std::env::args` would abort the program).
    fn from_os(arguments: impl Iterator<Item = OsString>) -> Result<Self, ExitCode> {
        let mut parsed = Arguments {
            texts: Vec::new(),
            bytes: Vec::new(),
        };
        for (position, argument) in arguments.enumerate() {
            let argument = match argument.into_string() {
                Ok(text) => text,
                // The program's own name is never parsed: any bytes will do.
                Err(bytes) if position == 0 => bytes.to_string_lossy().into_owned(),
                Err(bytes) => {
                    let after_byte_option = parsed
                        .texts
                        .last()
                        .is_some_and(|previous| BYTE_OPTIONS.contains(&previous.as_str()));
                    if !after_byte_option {
                        eprintln!(
                            "vfio-bind: argument {position} is not UTF-8: \"{}\"",
                            Escaped(bytes.as_bytes())
                        );
                        return Err(ExitCode::from(EXIT_USAGE));
                    }
                    parsed.bytes.push(bytes);
                    format!("\0{}", parsed.bytes.len() - 1)
                }
            };
            parsed.texts.push(argument);
        }
        Ok(parsed)
    }

    /// The bytes an option's value stands for.
    fn value(&self, text: &str) -> OsString {
        text.strip_prefix('\0')
            .and_then(|index| index.parse::<usize>().ok())
            .and_then(|index| self.bytes.get(index))
            .cloned()
            .unwrap_or_else(|| OsString::from(text))
    }

    fn path(&self, path: &Path) -> PathBuf {
        match path.to_str() {
            Some(text) => PathBuf::from(self.value(text)),
            None => path.to_path_buf(),
        }
    }

    fn cmdline(&self, text: Option<&str>) -> Option<Vec<u8>> {
        text.map(|text| self.value(text).into_vec())
    }
}

fn parse_arguments(out: &mut CheckedOutput<'_>) -> Result<(Cli, Arguments), ExitCode> {
    let arguments = Arguments::from_os(std::env::args_os())?;
    let texts: Vec<&str> = arguments.texts.iter().map(String::as_str).collect();
    match Cli::from_args(&["vfio-bind"], texts.get(1..).unwrap_or_default()) {
        Ok(cli) => Ok((cli, arguments)),
        Err(early_exit) => Err(match early_exit.status {
            Ok(()) => {
                let _ = writeln!(out, "{}", early_exit.output);
                ExitCode::from(out.finish(EXIT_OK))
            }
            Err(()) => {
                eprintln!("{}", early_exit.output);
                ExitCode::from(EXIT_USAGE)
            }
        }),
    }
}

fn open_sysfs(root: &Path, iomem: Option<&Path>) -> Result<Sysfs, ExitCode> {
    let sysfs = Sysfs::new(root).map_err(|_| {
        eprintln!(
            "vfio-bind: --sysfs must be a UTF-8 path of at most {} bytes, not \"{}\"",
            vfio_bind::machine::sysfs::ROOT_CAPACITY,
            Escaped(root.as_os_str().as_bytes())
        );
        ExitCode::from(EXIT_USAGE)
    })?;
    match iomem {
        None => Ok(sysfs),
        Some(path) => sysfs.with_iomem(path).map_err(|_| {
            eprintln!(
                "vfio-bind: --iomem must be a UTF-8 path of at most {} bytes",
                vfio_bind::machine::sysfs::ROOT_CAPACITY
            );
            ExitCode::from(EXIT_USAGE)
        }),
    }
}

/// Gathers the rules, logging each problem with its source.
fn gather_logged(cmdline: Option<&[u8]>, fragment_dir: &Path) -> Gathered {
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

/// Standard output that never panics (`println!` does on EPIPE, and the release binary
/// aborts on a panic): the first write error is kept, and [`CheckedOutput::finish`] turns
/// it into one line on stderr and a failing exit status.
struct CheckedOutput<'a> {
    inner: std::io::StdoutLock<'a>,
    error: Option<std::io::Error>,
}

impl CheckedOutput<'_> {
    fn new() -> Self {
        CheckedOutput {
            inner: std::io::stdout().lock(),
            error: None,
        }
    }

    fn keep<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(error) = &result {
            if self.error.is_none() {
                self.error = Some(match error.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::from(error.kind()),
                });
            }
        }
        result
    }

    /// Flushes, and returns `status`, or [`EXIT_OUTPUT`] if the output was not all written.
    /// A closed pipe (`vfio-bind list | head -1`) is the reader's choice: no line for it.
    fn finish(&mut self, status: u8) -> u8 {
        let flushed = self.inner.flush();
        let _ = self.keep(flushed);
        // Under the watchdog the worker wrote into a pipe; the supervisor saw the real error.
        if let Some(error) = vfio_bind::boot::watchdog::relayed_output_error() {
            let _ = self.keep(Err::<(), _>(error));
        }
        match self.error.take() {
            None => status,
            Some(error) if error.kind() == ErrorKind::BrokenPipe => status.max(EXIT_OUTPUT),
            Some(error) => {
                eprintln!("vfio-bind: cannot write the output: {error}");
                status.max(EXIT_OUTPUT)
            }
        }
    }
}

impl Write for CheckedOutput<'_> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let result = self.inner.write(buffer);
        self.keep(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.inner.flush();
        self.keep(result)
    }
}

/// `status`, or [`EXIT_FAILED`] if some rule text, source or file was lost on the way.
fn failed_if_lost(status: u8, gathered: &Gathered) -> u8 {
    if gathered.has_rejects() {
        status.max(EXIT_FAILED)
    } else {
        status
    }
}

fn run(out: &mut CheckedOutput<'_>) -> Result<u8, ExitCode> {
    let started = Instant::now();
    let (cli, arguments) = parse_arguments(out)?;
    match cli.command {
        Command::Apply(args) => run_apply(&args, &arguments, started, out),
        Command::List(args) => {
            let sysfs = open_sysfs(&arguments.path(&args.sysfs), None)?;
            kmsg::init(Destination::Stderr, LevelFilter::Info);
            let cmdline = arguments.cmdline(args.cmdline.as_deref());
            let gathered = gather_logged(cmdline.as_deref(), &arguments.path(&args.cmdline_dir));
            let status = report::list(&sysfs, &gathered, format(args.json), out);
            Ok(failed_if_lost(status, &gathered))
        }
        Command::Rule(args) => {
            let sysfs = open_sysfs(&arguments.path(&args.sysfs), None)?;
            kmsg::init(Destination::Stderr, LevelFilter::Info);
            let Ok(location) = args.address.parse() else {
                eprintln!(
                    "vfio-bind: \"{}\" is not a PCI address; write [DDDD:]BB:SS or [DDDD:]BB:SS.F",
                    Escaped(args.address.as_bytes())
                );
                return Err(ExitCode::from(EXIT_USAGE));
            };
            let holdings = host_root(args.host_root.as_deref(), &sysfs, &arguments)
                .map(|root| vfio_bind::machine::host_usage::holdings(&root, &sysfs));
            Ok(report::rule(&sysfs, location, holdings.as_ref(), out))
        }
        Command::Bind(args) => run_bind(&args, &arguments, started),
        Command::Release(args) => run_release(&args, &arguments, started),
        Command::Check(args) => run_check(&args, &arguments, out),
    }
}

/// `apply`: the rules of the command line and the fragments, under the watchdog.
fn run_apply(
    args: &ApplyArgs,
    arguments: &Arguments,
    started: Instant,
    out: &mut CheckedOutput<'_>,
) -> Result<u8, ExitCode> {
    let iomem = args.iomem.as_ref().map(|path| arguments.path(path));
    let sysfs = open_sysfs(&arguments.path(&args.sysfs), iomem.as_deref())?;
    let destination = if sysfs.is_real() && !args.dry_run {
        Destination::KernelLog
    } else {
        Destination::Stderr
    };
    kmsg::init(destination, LevelFilter::Info);
    let cmdline = arguments.cmdline(args.cmdline.as_deref());
    let cmdline_dir = arguments.path(&args.cmdline_dir);
    let timeout = timeout(args.timeout)?;
    Ok(bounded(
        &sysfs,
        !args.dry_run,
        sysfs.is_real(),
        started,
        timeout,
        &mut |kernel| {
            let gathered = gather_logged(cmdline.as_deref(), &cmdline_dir);
            let plan_out: Option<&mut dyn Write> =
                if args.dry_run { Some(&mut *out) } else { None };
            apply(&sysfs, &gathered, kernel, started, plan_out)
        },
    ))
}

/// `bind`: the argument rules, as at boot, under the watchdog.
fn run_bind(args: &BindArgs, arguments: &Arguments, started: Instant) -> Result<u8, ExitCode> {
    let iomem = args.iomem.as_ref().map(|path| arguments.path(path));
    let sysfs = open_sysfs(&arguments.path(&args.sysfs), iomem.as_deref())?;
    kmsg::init(Destination::Stderr, LevelFilter::Info);
    let timeout = timeout(args.timeout)?;
    let mut gathered = rules_from_arguments(&args.rules)?;
    if !args.force {
        if let Some(root) = host_root(args.host_root.as_deref(), &sysfs, arguments) {
            let holdings = vfio_bind::machine::host_usage::holdings(&root, &sysfs);
            if report::refuse_held(&sysfs, &gathered, &holdings) {
                return Ok(EXIT_FAILED);
            }
        }
    }
    // The boot's no-IOMMU switch holds for a runtime bind too: modprobe hands it to vfio
    // when it loads (once loaded, vfio's own parameter says so; see apply).
    gathered.noiommu = sysfs.is_real()
        && std::fs::read("/proc/cmdline")
            .is_ok_and(|text| vfio_bind::rules::cmdline::requests_noiommu(&text));
    Ok(bounded(
        &sysfs,
        true,
        sysfs.is_real(),
        started,
        timeout,
        &mut |kernel| apply(&sysfs, &gathered, kernel, started, None),
    ))
}

/// `release`: the argument rules given back to their drivers, under the watchdog.
fn run_release(
    args: &ReleaseArgs,
    arguments: &Arguments,
    started: Instant,
) -> Result<u8, ExitCode> {
    let iomem = args.iomem.as_ref().map(|path| arguments.path(path));
    let sysfs = open_sysfs(&arguments.path(&args.sysfs), iomem.as_deref())?;
    kmsg::init(Destination::Stderr, LevelFilter::Info);
    let timeout = timeout(args.timeout)?;
    let gathered = rules_from_arguments(&args.rules)?;
    Ok(bounded(
        &sysfs,
        true,
        false,
        started,
        timeout,
        &mut |kernel| release_rules(&sysfs, &gathered, kernel, started),
    ))
}

/// `check`: the rules, the groups, the BARs, and the host checks where a host root is known.
fn run_check(
    args: &CheckArgs,
    arguments: &Arguments,
    out: &mut CheckedOutput<'_>,
) -> Result<u8, ExitCode> {
    let iomem = args.iomem.as_ref().map(|path| arguments.path(path));
    let sysfs = open_sysfs(&arguments.path(&args.sysfs), iomem.as_deref())?;
    kmsg::init(Destination::Stderr, LevelFilter::Info);
    let cmdline = arguments.cmdline(args.cmdline.as_deref());
    let gathered = gather_logged(cmdline.as_deref(), &arguments.path(&args.cmdline_dir));
    let host_root = host_root(args.host_root.as_deref(), &sysfs, arguments);
    let host = host_root.as_deref().map(vfio_bind::doctor::host::Host::new);
    Ok(report::check(
        &sysfs,
        &gathered,
        host.as_ref(),
        format(args.json),
        out,
    ))
}

/// The host root to read `/proc` (and the doctor's files) under: the one given, else `/`
/// when working on the real `/sys`; for a fixture sysfs given none, the host is not read.
fn host_root(given: Option<&Path>, sysfs: &Sysfs, arguments: &Arguments) -> Option<PathBuf> {
    match (given, sysfs.is_real()) {
        (Some(root), _) => Some(arguments.path(root)),
        (None, true) => Some(PathBuf::from("/")),
        (None, false) => None,
    }
}

fn format(json: bool) -> report::Format {
    if json {
        report::Format::Json
    } else {
        report::Format::Text
    }
}

fn main() -> ExitCode {
    let mut out = CheckedOutput::new();
    match run(&mut out) {
        Ok(status) => ExitCode::from(out.finish(status)),
        Err(code) => code,
    }
}
