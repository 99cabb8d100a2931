//! Test support: a simulated kernel over a fixture tree, a logger that captures lines, and
//! the binary run as a user runs it.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::errno::Errno;
use sysfs_fixture::SysfsTree;
use vfio_bind::boot::apply::apply;
use vfio_bind::boot::kernel::Kernel;
use vfio_bind::boot::modprobe::ModuleError;
use vfio_bind::boot::sources::{gather, log_problem, RuleSources};
use vfio_bind::machine::sysfs::{Attribute, Sysfs};

/// Plays the kernel's part: each write lands in the fixture file, then the tree changes as
/// the kernel would change it (unbind drops the driver, a probe or a module load binds).
pub struct SimulatedKernel<'t> {
    pub tree: &'t mut SysfsTree,
    /// Every write, in order: `bus/pci/devices/0000:07:00.0/driver_override = vfio-pci`.
    pub writes: Vec<String>,
    pub modules_loaded: Vec<String>,
    /// The driver each function gets when probed without an override.
    pub native: HashMap<String, String>,
    /// Writes to these attributes fail with the given error.
    pub failing: Vec<(Attribute, Errno)>,
    /// `load_module` fails for every module.
    pub modprobe_fails: bool,
    /// `load_module` fails for this module only.
    pub failing_module: Option<&'static str>,
    /// Clearing these functions' driver_override (writing a newline) fails with EACCES,
    /// while setting it works: a give-back that itself fails.
    pub refuses_clearing: Vec<String>,
    /// Before the first write to this function, it disappears (hot unplug).
    pub vanishes: Option<String>,
}

impl<'t> SimulatedKernel<'t> {
    pub fn new(tree: &'t mut SysfsTree) -> Self {
        SimulatedKernel {
            tree,
            writes: Vec::new(),
            modules_loaded: Vec::new(),
            native: HashMap::new(),
            failing: Vec::new(),
            modprobe_fails: false,
            failing_module: None,
            refuses_clearing: Vec::new(),
            vanishes: None,
        }
    }

    pub fn native(mut self, address: &str, driver: &str) -> Self {
        self.native.insert(address.to_string(), driver.to_string());
        self
    }

    fn addresses(&self) -> Vec<String> {
        std::fs::read_dir(self.tree.root().join("bus/pci/devices"))
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Kernel for SimulatedKernel<'_> {
    fn write(&mut self, sysfs: &Sysfs, attribute: Attribute, value: &str) -> Result<(), Errno> {
        if let Some(address) = self.vanishes.take() {
            self.tree.remove_device(&address).unwrap();
        }
        self.writes
            .push(format!("{attribute} = {}", value.trim_end()));
        if let Some((_, errno)) = self
            .failing
            .iter()
            .find(|(failing, _)| *failing == attribute)
        {
            return Err(*errno);
        }
        if let Attribute::DriverOverride(address) = attribute {
            if value == "\n" && self.refuses_clearing.contains(&address.to_string()) {
                return Err(Errno::EACCES);
            }
        }
        sysfs.write(attribute, value)?;
        match attribute {
            Attribute::Unbind(address) => {
                self.tree
                    .simulate_unbind(&address.to_string())
                    .map_err(|_| Errno::ENODEV)?;
            }
            Attribute::DriversProbe => {
                let native = self.native.get(value).cloned();
                self.tree
                    .simulate_probe(value, native.as_deref())
                    .map_err(|_| Errno::EINVAL)?;
            }
            Attribute::DriverOverride(_) | Attribute::VtconsoleBind(_) => {}
            Attribute::PlatformUnbind(driver) => self
                .tree
                .simulate_platform_unbind(driver.name(), value)
                .map_err(|_| Errno::ENODEV)?,
            Attribute::PlatformBind(driver) => self
                .tree
                .simulate_platform_bind(driver.name(), value)
                .map_err(|_| Errno::EBUSY)?,
        }
        Ok(())
    }

    fn load_module(&mut self, module: &str) -> Result<(), ModuleError> {
        if self.modprobe_fails || self.failing_module == Some(module) {
            return Err(ModuleError::Failed(Some(1)));
        }
        self.modules_loaded.push(module.to_string());
        if module == "vfio-pci" {
            // Registering the driver binds every function whose override names it.
            self.tree.add_driver("vfio-pci").unwrap();
            for address in self.addresses() {
                let native = self.native.get(&address).cloned();
                let _ = self.tree.simulate_probe(&address, native.as_deref());
            }
        }
        Ok(())
    }

    fn may_load_modules(&self) -> bool {
        true
    }
}

thread_local! {
    static CAPTURED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct CapturingLogger;

impl Log for CapturingLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let level = match record.level() {
            Level::Error => "err",
            Level::Warn => "warning",
            _ => "info",
        };
        CAPTURED.with(|lines| {
            lines
                .borrow_mut()
                .push(format!("{level}: {}", record.args()))
        });
    }

    fn flush(&self) {}
}

/// Installs the capturing logger (once per test binary) and clears this thread's lines.
pub fn capture_log() {
    static LOGGER: CapturingLogger = CapturingLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
    CAPTURED.with(|lines| lines.borrow_mut().clear());
}

/// The lines logged on this thread since [`capture_log`], as `level: text`.
pub fn captured() -> Vec<String> {
    CAPTURED.with(|lines| lines.borrow().clone())
}

/// The outcome of one apply run.
pub struct Run {
    pub status: u8,
    pub writes: Vec<String>,
    pub modules: Vec<String>,
    pub log: Vec<String>,
}

/// Runs apply with `cmdline` (and no fragment directory) against a simulated kernel.
pub fn run_apply(kernel: &mut SimulatedKernel<'_>, cmdline: &str) -> Run {
    capture_log();
    let sysfs = Sysfs::new(kernel.tree.root()).unwrap();
    let gathered = gathered_from(kernel.tree, cmdline);
    let status = apply(&sysfs, &gathered, kernel, Instant::now(), None);
    Run {
        status,
        writes: std::mem::take(&mut kernel.writes),
        modules: std::mem::take(&mut kernel.modules_loaded),
        log: captured(),
    }
}

/// The rules of `cmdline` (and of no fragment directory), each problem logged.
pub fn gathered_from(tree: &SysfsTree, cmdline: &str) -> vfio_bind::boot::sources::Gathered {
    let no_fragments = tree.root().join("no-cmdline.d");
    let sources = RuleSources {
        cmdline: Some(cmdline.as_bytes()),
        fragment_dir: &no_fragments,
    };
    gather(&sources, &mut log_problem)
}

/// `check` as the command runs it (text, no host checks): its status and what it printed.
pub fn check_text(sysfs: &Sysfs, gathered: &vfio_bind::boot::sources::Gathered) -> (u8, String) {
    let mut out = Vec::new();
    let status = vfio_bind::doctor::report::check(
        sysfs,
        gathered,
        None,
        vfio_bind::doctor::report::Format::Text,
        &mut out,
    );
    (status, String::from_utf8(out).unwrap())
}

/// Runs `release` for the rules in `rules` (space separated) against a simulated kernel.
pub fn run_release(kernel: &mut SimulatedKernel<'_>, rules: &str) -> Run {
    capture_log();
    let sysfs = Sysfs::new(kernel.tree.root()).unwrap();
    let mut gathered = vfio_bind::boot::sources::Gathered::default();
    for rule in rules.split(' ') {
        gathered
            .rules
            .add_rule_text(rule, &mut |_| panic!("test rules are well formed"));
    }
    let status = vfio_bind::boot::apply::release_rules(&sysfs, &gathered, kernel, Instant::now());
    Run {
        status,
        writes: std::mem::take(&mut kernel.writes),
        modules: std::mem::take(&mut kernel.modules_loaded),
        log: captured(),
    }
}

/// The log without the timing at the end of the summary (`in 123 us`).
pub fn without_timing(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| match line.rfind(" in ") {
            Some(index) if line.ends_with(" us") => line[..index].to_string(),
            _ => line.clone(),
        })
        .collect()
}

/// The `vfio-bind` binary run with `arguments`, to its end.
pub fn vfio_bind(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(arguments)
        .output()
        .expect("the binary runs")
}

/// The binary with `command` on the fixture `tree`, with `cmdline` as the kernel command
/// line and no fragment directory.
pub fn vfio_bind_on_fixture(command: &[&str], tree: &SysfsTree, cmdline: &str) -> Output {
    let mut arguments = command.to_vec();
    arguments.extend([
        "--sysfs",
        tree.root().to_str().unwrap(),
        "--cmdline-dir",
        "/nonexistent",
        "--cmdline",
        cmdline,
    ]);
    vfio_bind(&arguments)
}

/// Writes `contents` to `path`, creating the folders on the way.
pub fn write(path: &std::path::Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// A run's stdout or stderr as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output of `child` (spawned with piped output) once it ends; if it still runs after
/// ten seconds, it is killed and the test fails with `hung` (what the child blocked on).
pub fn output_unless_hung(mut child: Child, hung: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("{hung}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
