//! What the doctor reads from the host: /proc, /lib/modules, /boot, /etc and EFI variables,
//! under an injected root (`/` on the running system, a fixture tree in tests), handed to
//! the pure checks of [`crate::doctor::checks`].

use std::cell::Cell;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::doctor::checks::{
    self, Finding, HostFragment, InterruptRemapping, ResetMethod, Severity, UnifiedImage,
};
use crate::doctor::image::{self, Compression, Stopped, Unread};
use crate::machine::function::Function;
use crate::machine::order;
use crate::machine::sysfs::{for_each_entry, read_attribute, Sysfs};
use crate::rules::address::PciAddress;

/// systemd's vendor GUID for the boot loader and stub EFI variables.
const SYSTEMD_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// The largest boot image read, all its `initrd=` files together (initramfs images with
/// firmware run to 100 MiB and more).
const IMAGE_LIMIT: u64 = 512 << 20;
/// The most an image may unpack to before `check` stops reading it ("too large to read"):
/// the kernel's own limit is the RAM, but real images unpack to a few hundred MiB.
pub const UNPACKED_LIMIT: u64 = 1 << 30;
/// The longest `check` spends unpacking an image, all its compressed parts together.
pub const UNPACK_TIME_LIMIT: Duration = Duration::from_secs(20);
/// Where decompressors are looked for, as `modprobe` is: fixed places, never `$PATH`
/// (`check` runs as root).
const TOOL_DIRECTORIES: [&str; 2] = ["/usr/bin", "/bin"];
/// Where an ESP (or XBOOTLDR) is mounted, in the order looked at: systemd's `/efi` and
/// `/boot`, Fedora's and Debian's `/boot/efi`.
const ESPS: [&str; 3] = ["efi", "boot", "boot/efi"];

/// The initramfs the kernel unpacked, as found: the files concatenated, in order.
struct BootedImage {
    /// How messages name it: `/boot/amd-ucode.img + /boot/initramfs-linux.img`.
    shown: String,
    parts: Vec<PathBuf>,
    /// Said along with the findings: where the image was found other than the boot named it.
    note: Option<String>,
}

/// The host's files under `root`.
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: &Path) -> Self {
        Host {
            root: root.to_path_buf(),
        }
    }

    /// The root the host's files are read under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative.trim_start_matches('/'))
    }

    fn read_text(&self, relative: &str) -> Option<String> {
        std::fs::read(self.path(relative))
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The running kernel's release (`uname -r`).
    fn release(&self) -> Option<String> {
        Some(
            self.read_text("proc/sys/kernel/osrelease")?
                .trim()
                .to_string(),
        )
    }

    /// Every finding about the host, for `functions` (those the rules select and those on
    /// vfio-pci).
    pub fn findings(&self, sysfs: &Sysfs, functions: &[Function]) -> Vec<Finding> {
        let mut findings = Vec::new();
        let release = self.release();
        let reset_method_exists = release.as_deref().is_some_and(has_reset_method_attribute);
        for function in functions {
            let method = reset_method(sysfs, function.address);
            if method == ResetMethod::Absent && !reset_method_exists {
                continue;
            }
            findings.extend(checks::reset(
                function.address,
                function.ids.map(|ids| ids.vendor()),
                &method,
            ));
        }
        findings.extend(checks::interrupt_remapping(
            &self.interrupt_remapping(sysfs),
        ));
        if let Some(release) = &release {
            let modules = format!("lib/modules/{release}");
            findings.extend(checks::vfio_modules(
                release,
                self.read_text(&format!("{modules}/modules.builtin"))
                    .as_deref(),
                self.read_text(&format!("{modules}/modules.dep")).as_deref(),
            ));
        }
        let cmdline = self.read_text("proc/cmdline").unwrap_or_default();
        let uki = self.unified_image_path(sysfs);
        // The UKI is read once, bounded as an image is: its command line is taken out, then
        // its bytes hold the booted initramfs when it has a .initrd section.
        let uki_bytes = match &uki {
            Some(Ok(path)) => Some(read_bounded(path)),
            _ => None,
        };
        let embedded = match &uki_bytes {
            Some(Ok(bytes)) => image::pe_cmdline(bytes),
            _ => None,
        };
        let unified = self.unified_image(&uki, &uki_bytes, embedded, &cmdline);
        let uki_image = uki_bytes
            .and_then(Result::ok)
            .filter(|bytes| image::pe_section(bytes, b".initrd\0").is_some());
        findings.extend(self.booted_image(&cmdline, release.as_deref(), &uki, uki_image));
        findings.extend(unified);
        findings
    }

    fn interrupt_remapping(&self, sysfs: &Sysfs) -> InterruptRemapping {
        let mut seen = InterruptRemapping {
            remapped_chips: self.read_text("proc/interrupts").map(|text| {
                text.lines()
                    .filter(|line| line.split_whitespace().any(|word| word.starts_with("IR-")))
                    .count()
            }),
            allow_unsafe_interrupts: sysfs_text(
                sysfs,
                "module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
            )
            .map(|value| value.starts_with(['Y', 'y', '1'])),
            ..Default::default()
        };
        let Ok(units) = sysfs.path(format_args!("class/iommu")) else {
            return seen;
        };
        let mut names = Vec::new();
        let _ = for_each_entry(units.as_str(), |name| {
            names.push(String::from_utf8_lossy(name).into_owned())
        });
        for name in names {
            if let Some(ecap) = sysfs_text(sysfs, &format!("class/iommu/{name}/intel-iommu/ecap")) {
                let ecap =
                    u64::from_str_radix(ecap.trim().trim_start_matches("0x"), 16).unwrap_or(0);
                seen.intel_units_with_ir.push(ecap >> 3 & 1 == 1);
            } else if sysfs
                .path(format_args!("class/iommu/{name}/amd-iommu"))
                .is_ok_and(|path| Path::new(path.as_str()).exists())
            {
                seen.amd_units += 1;
            }
        }
        seen
    }

    fn shown(&self, path: &Path) -> String {
        Path::new("/")
            .join(path.strip_prefix(&self.root).unwrap_or(path))
            .display()
            .to_string()
    }

    /// The initramfs that booted: every `initrd=` (EFI stub, systemd-boot), which the kernel
    /// gets as one image, microcode first; else the image `BOOT_IMAGE=` (GRUB) names; else
    /// the distributions' names for the running release.
    fn booted_image_paths(&self, cmdline: &str, release: Option<&str>) -> Option<BootedImage> {
        let mut initrds = Vec::new();
        let mut candidates = Vec::new();
        for parameter in crate::rules::cmdline::parameters(cmdline.as_bytes()) {
            let Some(value) = parameter.value.map(String::from_utf8_lossy) else {
                continue;
            };
            let value = value.as_ref();
            if parameter.is("initrd") {
                initrds.push(value.to_string());
            } else if parameter.is("BOOT_IMAGE") {
                // `(hd0,gpt2)/vmlinuz-linux` or `/boot/vmlinuz-6.1.0-57-amd64`.
                let kernel = value.rsplit('/').next().unwrap_or(value);
                if let Some(name) = kernel.strip_prefix("vmlinuz-") {
                    candidates.push(self.path(&format!("boot/initramfs-{name}.img")));
                    candidates.push(self.path(&format!("boot/initrd.img-{name}")));
                }
            }
        }
        // An `initrd=` path is on the ESP the loader read it from: find every one on one
        // mounted ESP (or relative to the root), or none.
        let on_esp = ESPS.iter().chain(&[""]).find_map(|esp| {
            let parts: Vec<PathBuf> = initrds
                .iter()
                .map(|initrd| {
                    let relative = initrd.replace('\\', "/");
                    self.path(esp).join(relative.trim_start_matches('/'))
                })
                .collect();
            parts.iter().all(|path| path.is_file()).then_some(parts)
        });
        if let Some(parts) = on_esp.filter(|parts| !parts.is_empty()) {
            let shown: Vec<String> = parts.iter().map(|path| self.shown(path)).collect();
            return Some(BootedImage {
                shown: shown.join(" + "),
                parts,
                note: None,
            });
        }
        if let Some(release) = release {
            candidates.push(self.path(&format!("boot/initrd.img-{release}")));
            candidates.push(self.path(&format!("boot/initramfs-{release}.img")));
        }
        let path = candidates.into_iter().find(|path| path.is_file())?;
        let shown = self.shown(&path);
        // proxmox-boot-tool keeps the ESPs unmounted and copies each image from /boot.
        let note = (!initrds.is_empty()).then(|| {
            format!(
                "the boot loader's initrd={} is on an ESP that is not mounted; read {shown} instead, the image copied there (proxmox-boot-tool keeps its ESPs unmounted and copies each image from /boot)",
                initrds.join(" initrd=")
            )
        });
        Some(BootedImage {
            shown,
            parts: vec![path],
            note,
        })
    }

    fn booted_image(
        &self,
        cmdline: &str,
        release: Option<&str>,
        uki: &Option<Result<PathBuf, String>>,
        uki_image: Option<Vec<u8>>,
    ) -> Vec<Finding> {
        let subject = "initramfs";
        let mut findings = Vec::new();
        // A unified kernel image carries its initramfs in its .initrd section (one without
        // gets its image from the loader, as a kernel does); `uki_image` is its bytes, read.
        let uki_path = uki
            .as_ref()
            .and_then(|uki| uki.as_ref().ok())
            .filter(|_| uki_image.is_some());
        let booted = match uki_path {
            Some(path) => BootedImage {
                shown: format!("{} (its .initrd)", self.shown(path)),
                parts: vec![path.clone()],
                note: None,
            },
            None => match self.booted_image_paths(cmdline, release) {
                Some(booted) => booted,
                None => {
                    if !self.path("boot").is_dir() {
                        return Vec::new();
                    }
                    return vec![Finding::new(
                        Severity::Warning,
                        subject,
                        "cannot tell which initramfs booted (no initrd= or BOOT_IMAGE= match in /boot, and no image for the running release: is /boot mounted?)",
                    )
                    .fix("check it by hand: lsinitcpio, lsinitrd or lsinitramfs IMAGE | grep vfio-bind")];
                }
            },
        };
        if let Some(note) = &booted.note {
            findings.push(Finding::new(Severity::Ok, subject, note.clone()));
        }
        let shown = &booted.shown;
        // Read into one buffer, sized first: the image is the largest thing `check` holds.
        let sizes: Option<Vec<u64>> = booted
            .parts
            .iter()
            .map(|part| std::fs::metadata(part).ok().map(|metadata| metadata.len()))
            .collect();
        let total = sizes.map(|sizes| sizes.iter().map(|size| size + 3).sum::<u64>());
        let mut bytes = Vec::new();
        let from_uki = uki_image.is_some();
        let read_all = if let Some(uki_bytes) = uki_image {
            bytes = uki_bytes;
            true
        } else {
            total
                .filter(|&total| total <= IMAGE_LIMIT)
                .is_some_and(|total| {
                    bytes.reserve_exact(total as usize);
                    booted.parts.iter().all(|part| {
                        use std::io::Read as _;
                        let read = std::fs::File::open(part).and_then(|file| {
                            file.take(IMAGE_LIMIT - bytes.len() as u64)
                                .read_to_end(&mut bytes)
                        });
                        // Boot loaders put each file at a 4-byte boundary; zeros fill the gap.
                        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
                        read.is_ok()
                    })
                })
        };
        if !read_all {
            findings.push(Finding::new(
                Severity::Warning,
                subject,
                format!(
                    "cannot read the booted image {shown} (over {} MiB, or run check as root)",
                    IMAGE_LIMIT >> 20
                ),
            ));
            return findings;
        }
        if from_uki {
            let section = image::pe_section_range(&bytes, b".initrd\0").unwrap_or_default();
            bytes.truncate(section.end);
            bytes.drain(..section.start);
        }
        let budget = Budget {
            deadline: Instant::now() + UNPACK_TIME_LIMIT,
            left: Rc::new(Cell::new(UNPACKED_LIMIT)),
            image: Rc::new(bytes),
        };
        let read = image::read(
            &budget.image,
            &mut |compression, segment| budget.decompress(compression, segment),
            &checks::wanted_in_image,
        );
        let uki_shown = match uki {
            Some(Ok(path)) if !self.path("etc/kernel/cmdline").exists() => Some(self.shown(path)),
            _ => None,
        };
        findings.extend(checks::booted_image(
            shown,
            &read,
            &self.host_fragments(),
            cmdline,
            uki_shown.as_deref(),
        ));
        findings
    }

    /// The host's `/etc/cmdline.d/*.conf` files, in name order.
    fn host_fragments(&self) -> Vec<HostFragment> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.path("etc/cmdline.d"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|e| e == "conf") && path.is_file())
                    .collect()
            })
            .unwrap_or_default();
        order::sort(&mut paths);
        paths
            .iter()
            .filter_map(|path| {
                Some(HostFragment {
                    name: path.file_name()?.to_string_lossy().into_owned(),
                    contents: std::fs::read(path).ok()?,
                })
            })
            .collect()
    }

    /// When systemd-stub booted a unified kernel image, where it is: found on the ESP from
    /// `LoaderEntrySelected`, or the entry name when it is not there. `None` for other boots.
    fn unified_image_path(&self, sysfs: &Sysfs) -> Option<Result<PathBuf, String>> {
        let variable = |name: &str| -> Option<Vec<u8>> {
            let path = sysfs
                .path(format_args!("firmware/efi/efivars/{name}-{SYSTEMD_GUID}"))
                .ok()?;
            std::fs::read(path.as_str()).ok()
        };
        variable("StubInfo")?;
        let entry = variable("LoaderEntrySelected")
            .map(|bytes| efi_string(&bytes))
            .unwrap_or_default();
        let found = ESPS
            .iter()
            .map(|esp| self.path(esp).join("EFI/Linux").join(&entry))
            .find(|path| !entry.is_empty() && !entry.contains('/') && path.is_file());
        Some(found.ok_or(entry))
    }

    /// Compares a booted unified kernel image's embedded command line.
    fn unified_image(
        &self,
        uki: &Option<Result<PathBuf, String>>,
        bytes: &Option<Result<Vec<u8>, NotRead>>,
        embedded: Option<String>,
        cmdline: &str,
    ) -> Vec<Finding> {
        let path = match uki {
            None => return Vec::new(),
            Some(Ok(path)) => path,
            Some(Err(entry)) => {
                return vec![Finding::new(
                    Severity::Warning,
                    "boot",
                    format!("booted a unified kernel image (entry \"{entry}\") that is not in EFI/Linux on /efi, /boot or /boot/efi, so its embedded command line was not compared"),
                )];
            }
        };
        let shown = self.shown(path);
        let unread = match bytes {
            Some(Err(NotRead::Over)) => Some(format!(
                "too large to read (over {} MiB)",
                IMAGE_LIMIT >> 20
            )),
            Some(Err(NotRead::Unreadable)) => Some("unreadable (run check as root)".to_string()),
            _ => None,
        };
        if let Some(unread) = unread {
            return vec![Finding::new(
                Severity::Warning,
                "boot",
                format!("booted the unified kernel image {shown}, {unread}, so its embedded command line was not compared"),
            )];
        }
        let uki = UnifiedImage {
            path: shown,
            embedded,
        };
        checks::unified_image(
            &uki,
            cmdline,
            self.read_text("etc/kernel/cmdline").as_deref(),
        )
    }
}

/// Why a file was not read whole.
#[derive(Debug)]
enum NotRead {
    /// It is over [`IMAGE_LIMIT`].
    Over,
    /// It cannot be opened or read.
    Unreadable,
}

/// A boot file's bytes, at most [`IMAGE_LIMIT`] of them: a larger file is not read.
fn read_bounded(path: &Path) -> Result<Vec<u8>, NotRead> {
    use std::io::Read as _;
    let metadata = std::fs::metadata(path).map_err(|_| NotRead::Unreadable)?;
    if !metadata.is_file() {
        return Err(NotRead::Unreadable);
    }
    if metadata.len() > IMAGE_LIMIT {
        return Err(NotRead::Over);
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    std::fs::File::open(path)
        .and_then(|file| file.take(IMAGE_LIMIT + 1).read_to_end(&mut bytes))
        .map_err(|_| NotRead::Unreadable)?;
    if bytes.len() as u64 > IMAGE_LIMIT {
        // It grew since it was measured.
        return Err(NotRead::Over);
    }
    Ok(bytes)
}

/// What is left for unpacking one image: time and bytes, shared by its compressed parts.
struct Budget {
    deadline: Instant,
    left: Rc<Cell<u64>>,
    /// The image the segments are parts of, shared with the streams that feed them to the
    /// decompressors (a segment from elsewhere is copied).
    image: Rc<Vec<u8>>,
}

impl Budget {
    /// Starts the system's decompressor (`zstd -dcq`, `xz -dc`, ...) on `segment`, found in
    /// [`TOOL_DIRECTORIES`], run with an empty environment. Its output is read as a stream,
    /// bounded by the budget; while reading, the stream feeds it the segment from the image
    /// held once (no copy), as far as its input pipe takes it without blocking, until the
    /// segment is written or the decompressor is gone. No thread: a feeder thread would put
    /// std's thread spawning, and musl's printf behind its naming, into the binary (20 KiB).
    fn decompress(
        &self,
        compression: Compression,
        segment: &[u8],
    ) -> Option<Box<dyn std::io::Read>> {
        if Instant::now() >= self.deadline {
            let late = std::io::Error::other(Stopped(Unread::TooSlow(UNPACK_TIME_LIMIT.as_secs())));
            return Some(Box::new(FailingRead(Some(late))));
        }
        let (program, arguments) = compression.program();
        let program = TOOL_DIRECTORIES
            .iter()
            .map(|directory| Path::new(directory).join(program))
            .find(|path| path.is_file())?;
        // Where the segment is in the image, by address: it is a slice of it.
        let start = (segment.as_ptr() as usize).wrapping_sub(self.image.as_ptr() as usize);
        let (image, range) = match start.checked_add(segment.len()) {
            Some(end) if end <= self.image.len() => (Rc::clone(&self.image), start..end),
            _ => (Rc::new(segment.to_vec()), 0..segment.len()),
        };
        let mut child = Command::new(program)
            .args(arguments)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let input = child.stdin.take()?;
        let output = child.stdout.take()?;
        fcntl(&input, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).ok()?;
        Some(Box::new(ToolOutput {
            child,
            input: Some(input),
            image,
            unfed: range,
            output,
            deadline: self.deadline,
            left: Rc::clone(&self.left),
        }))
    }
}

/// A stream that fails with its error at once.
struct FailingRead(Option<std::io::Error>);

impl std::io::Read for FailingRead {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("stopped")))
    }
}

/// A decompressor's output, read within the budget, and its input, fed while it is read.
/// Dropping it kills the decompressor.
struct ToolOutput {
    child: Child,
    /// Its stdin (non-blocking) until the segment is written or a write fails; then closed.
    input: Option<ChildStdin>,
    image: Rc<Vec<u8>>,
    /// What of `image` is still to be written to `input`.
    unfed: Range<usize>,
    output: ChildStdout,
    deadline: Instant,
    left: Rc<Cell<u64>>,
}

impl std::io::Read for ToolOutput {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd as _;
        let stopped = |unread| std::io::Error::other(Stopped(unread));
        let too_slow = || stopped(Unread::TooSlow(UNPACK_TIME_LIMIT.as_secs()));
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(too_slow());
            }
            let milliseconds = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            // The second entry is watched only while there is input to feed.
            let output = || PollFd::new(self.output.as_fd(), PollFlags::POLLIN);
            let (mut fds, watched) = match &self.input {
                Some(input) => (
                    [output(), PollFd::new(input.as_fd(), PollFlags::POLLOUT)],
                    2,
                ),
                None => ([output(), output()], 1),
            };
            match poll(&mut fds[..watched], PollTimeout::from(milliseconds)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(errno) => return Err(errno.into()),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|events| !events.is_empty());
            let (readable, writable) = (ready(&fds[0]), watched == 2 && ready(&fds[1]));
            if writable {
                self.feed();
            }
            if readable {
                break;
            }
        }
        // One byte past the budget is enough to know it was passed.
        let allowed = usize::try_from(self.left.get().saturating_add(1)).unwrap_or(usize::MAX);
        let wanted = buffer.len().min(allowed);
        let count = std::io::Read::read(&mut self.output, &mut buffer[..wanted])?;
        if count as u64 > self.left.get() {
            return Err(stopped(Unread::TooLarge(UNPACKED_LIMIT)));
        }
        self.left.set(self.left.get() - count as u64);
        if count == 0 {
            // The end of its output: it has finished, or is about to.
            while Instant::now() < self.deadline {
                match self.child.try_wait()? {
                    Some(status) if status.success() => return Ok(0),
                    Some(_) => return Err(std::io::Error::other("the decompressor failed")),
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            return Err(too_slow());
        }
        Ok(count)
    }
}

impl ToolOutput {
    /// Writes what the input pipe takes of the segment without blocking. The input is closed
    /// once all is written (the decompressor's end of input), or when a write fails: a
    /// decompressor that was killed or stopped reading (EPIPE; SIGPIPE is ignored).
    fn feed(&mut self) {
        let Some(input) = &mut self.input else {
            return;
        };
        let unfed = self.image.get(self.unfed.clone()).unwrap_or_default();
        match input.write(unfed) {
            Ok(written) if written < unfed.len() => self.unfed.start += written,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(_) | Err(_) => self.input = None,
        }
    }
}

impl Drop for ToolOutput {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // A killed decompressor dies at once; one that cannot (stuck in the kernel) is not
        // waited for.
        let killed = Instant::now();
        while killed.elapsed() < Duration::from_millis(100)
            && matches!(self.child.try_wait(), Ok(None))
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// `reset_method` exists from Linux 5.15 on; before, its absence says nothing.
fn has_reset_method_attribute(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (5, 15)
}

fn reset_method(sysfs: &Sysfs, address: PciAddress) -> ResetMethod {
    match sysfs_text(sysfs, &format!("bus/pci/devices/{address}/reset_method")) {
        Some(methods) => ResetMethod::Methods(methods),
        None => ResetMethod::Absent,
    }
}

fn sysfs_text(sysfs: &Sysfs, relative: &str) -> Option<String> {
    let path = sysfs.path(format_args!("{relative}")).ok()?;
    let mut buffer = [0u8; 256];
    read_attribute(&path, &mut buffer).ok().map(str::to_string)
}

/// An EFI variable's value as text: 4 bytes of attributes, then UTF-16LE up to a NUL.
fn efi_string(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|&unit| unit != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_method_exists_from_5_15() {
        assert!(has_reset_method_attribute("6.1.0-57-amd64"));
        assert!(has_reset_method_attribute("5.15.0"));
        assert!(!has_reset_method_attribute("5.10.0-28-amd64"));
        assert!(!has_reset_method_attribute("garbage"));
    }

    #[test]
    fn efi_strings_are_utf16_after_the_attributes() {
        let mut bytes = vec![7, 0, 0, 0];
        for unit in "arch.efi".encode_utf16().chain([0, 0x41]) {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(efi_string(&bytes), "arch.efi");
        assert_eq!(efi_string(&[1, 2]), "");
    }

    #[test]
    fn the_system_gzip_decompresses_an_image() {
        let mut gzip = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip is part of every Debian system");
        let archive = sysfs_fixture::images::newc(&[("usr/bin/vfio-bind", 0o100755, b"x")]);
        gzip.stdin.take().unwrap().write_all(&archive).unwrap();
        let compressed = gzip.wait_with_output().unwrap().stdout;
        let budget = Budget {
            deadline: Instant::now() + UNPACK_TIME_LIMIT,
            left: Rc::new(Cell::new(UNPACKED_LIMIT)),
            image: Rc::new(Vec::new()),
        };
        let read = crate::doctor::image::read(
            &compressed,
            &mut |compression, segment| budget.decompress(compression, segment),
            &|_| true,
        );
        assert_eq!(read.unread, None);
        assert_eq!(read.files[0].name, "usr/bin/vfio-bind");
    }

    fn compressed(command: &str, bytes: &[u8]) -> Vec<u8> {
        let mut child = Command::new("sh")
            .args(["-c", command])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Fed from a thread: the tool's output fills its pipe long before its input ends.
        let mut stdin = child.stdin.take().unwrap();
        let input = bytes.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output().unwrap().stdout;
        feeder.join().unwrap().unwrap();
        output
    }

    /// Text that compresses into many dynamic-Huffman deflate blocks, several zstd blocks
    /// and LZMA2 chunks: what a generator's output is like.
    fn varied_text() -> Vec<u8> {
        let mut text = Vec::new();
        let mut state = 0x2545_f491_u32;
        while text.len() < 1 << 20 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let word = [
                "vfio",
                "bind",
                "kernel",
                "module",
                "firmware",
                "initramfs",
                "\n",
                "0x",
            ][(state % 8) as usize];
            text.extend_from_slice(word.as_bytes());
            text.extend_from_slice(format!("{} ", state % 1000).as_bytes());
        }
        text
    }

    /// The framing walkers find where the system's tools end a segment, for the settings
    /// the generators use (mkinitcpio, dracut, initramfs-tools).
    #[test]
    fn the_end_of_real_compressed_segments_is_found() {
        let text = varied_text();
        for command in [
            "gzip -9 -c",
            "gzip -1 -c",
            "zstd -q -12 -c",
            "zstd -q -1 -c -T2",
            "xz -c --check=crc32 --lzma2=dict=1MiB",
            "xz -c -T2 --check=crc32 --block-size=1MiB",
            "xz -c --check=crc64 -0",
        ] {
            let segment = compressed(command, &text);
            let compression = Compression::detect(&segment).unwrap();
            assert_eq!(
                image::segment_end(compression, &segment),
                Some(segment.len()),
                "{command}"
            );
            let mut followed = segment.clone();
            followed.extend_from_slice(b"070701 and more");
            assert_eq!(
                image::segment_end(compression, &followed),
                Some(segment.len()),
                "{command}"
            );
            assert_eq!(
                image::segment_end(compression, &segment[..segment.len() - 1]),
                None,
                "{command}"
            );
        }
    }

    /// A segment many times a pipe's size, with an output larger still, goes through the
    /// decompressor whole: its input is fed while its output is read, neither waiting on the
    /// other.
    #[test]
    fn a_segment_larger_than_a_pipe_is_fed_while_its_output_is_read() {
        let text = varied_text();
        for command in ["gzip -1 -c", "zstd -q -1 -c", "xz -0 -c"] {
            let segment = compressed(command, &text);
            assert!(
                segment.len() > 4 << 16,
                "{command}: {} bytes",
                segment.len()
            );
            let budget = Budget {
                deadline: Instant::now() + UNPACK_TIME_LIMIT,
                left: Rc::new(Cell::new(UNPACKED_LIMIT)),
                image: Rc::new(segment),
            };
            let compression = Compression::detect(&budget.image).unwrap();
            let mut stream = budget.decompress(compression, &budget.image).unwrap();
            let mut unpacked = Vec::new();
            std::io::Read::read_to_end(&mut stream, &mut unpacked).unwrap();
            assert!(unpacked == text, "{command}: {} bytes out", unpacked.len());
        }
    }

    /// Past the time limit, a decompressor's output stops with "too slow to read", and a
    /// segment after the deadline starts no decompressor at all.
    #[test]
    fn unpacking_stops_at_the_deadline() {
        let budget = Budget {
            deadline: Instant::now() + Duration::from_millis(50),
            left: Rc::new(Cell::new(u64::MAX)),
            image: Rc::new(Vec::new()),
        };
        let bomb = sysfs_fixture::images::zstd_rle(0, 64 << 30);
        let mut stream = budget.decompress(Compression::Zstd, &bomb).unwrap();
        let error = std::io::copy(&mut stream, &mut std::io::sink()).unwrap_err();
        let stopped = error.get_ref().unwrap().downcast_ref::<Stopped>().unwrap();
        assert_eq!(stopped.0, Unread::TooSlow(UNPACK_TIME_LIMIT.as_secs()));
        let late = budget.decompress(Compression::Zstd, &bomb).unwrap();
        let error = std::io::copy(&mut { late }, &mut std::io::sink()).unwrap_err();
        assert!(error.get_ref().unwrap().is::<Stopped>());
    }
}
