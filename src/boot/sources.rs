//! Where rules come from: the kernel command line and `/etc/cmdline.d/*.conf`.
//!
//! `/etc/cmdline.d/*.conf` is dracut's convention for command-line fragments kept in the
//! image (the kernel never sees them, so they are not in /proc/cmdline); the hooks copy the
//! host's `/etc/cmdline.d/vfio-bind.conf` there. Text is read as bytes into fixed buffers;
//! text longer than a buffer is cut at the last white space or comma before the end, so a
//! rule is never cut in two (a cut `1002:ab28@07:00.1` would read as the whole slot
//! `07:00`).
//!
//! Nothing here may hang a boot or drop a rule in silence: a fragment is read only if it
//! is a regular file (a FIFO, a tty or any other device is never opened, and the file is
//! opened non-blocking and checked again once open), and every source or file left unread,
//! wholly or in part, is reported and counted in [`Gathered::dropped`], which makes the
//! run fail.

use core::fmt::{self, Display};
use std::os::fd::AsFd;
use std::path::Path;

use heapless::{String, Vec};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, stat, FileStat, Mode, SFlag};

use crate::machine::order;
use crate::machine::sysfs::for_each_entry;
use crate::rules::cmdline::{
    binder_disabled, is_kernel_space, requests_noiommu, Escaped, DISABLE_PARAMETER,
};
use crate::rules::ruleset::{RuleProblem, RuleSet, MAX_RULES};

/// The longest text read from one source. The kernel's own limit (COMMAND_LINE_SIZE) is
/// 2048 bytes on x86 and arm64, 4096 on a few others.
pub const TEXT_CAPACITY: usize = 4096;
/// How many `*.conf` files are read from the fragment directory.
pub const MAX_FRAGMENTS: usize = 16;
/// The longest fragment file name read (`vfio-bind.conf` is 14 bytes).
pub const FRAGMENT_NAME_CAPACITY: usize = 64;

/// The places rules are read from.
pub struct RuleSources<'a> {
    /// Command-line text given by the caller, as bytes; `None` reads `/proc/cmdline`.
    pub cmdline: Option<&'a [u8]>,
    /// The fragment directory, normally `/etc/cmdline.d`.
    pub fragment_dir: &'a Path,
}

/// Something wrong with a source, for the caller to report.
pub enum SourceProblem<'a> {
    Rule(RuleProblem<'a>),
    /// The text was longer than [`TEXT_CAPACITY`]; only what fits was read.
    TooLong,
    Unreadable(Errno),
    /// Not a regular file (a FIFO, a device, a directory...): never opened, never read.
    NotRegularFile,
    /// More than [`MAX_FRAGMENTS`] fragment files; the rest were not read.
    TooManyFragments,
    /// A `*.conf` name that is not UTF-8 or longer than [`FRAGMENT_NAME_CAPACITY`]: not read.
    BadFragmentName(&'a [u8]),
}

/// The rules gathered, and what else the sources said.
#[derive(Debug, Default)]
pub struct Gathered {
    pub rules: RuleSet,
    /// Some source asked for no-IOMMU vfio (`vfio.enable_unsafe_noiommu_mode`).
    pub noiommu: bool,
    /// Some source turned the binder off (`rd.vfio_bind=0`, see
    /// [`crate::rules::cmdline::binder_disabled`]): `apply` binds nothing.
    pub disabled: bool,
    /// Sources and fragment files not read, or read only in part (each was reported).
    pub dropped: usize,
}

impl Gathered {
    /// Rule texts not kept plus sources or files not (wholly) read: what the run lost.
    pub fn rejected(&self) -> usize {
        self.rules.rejected() + self.dropped
    }

    /// Whether anything given was lost: a malformed or overflowing rule, or a source or
    /// file that was not wholly read. The run's exit status is then non-zero.
    pub fn has_rejects(&self) -> bool {
        self.rejected() > 0
    }
}

/// Reads every source. `report` gets each problem with the name of its source.
pub fn gather(
    sources: &RuleSources<'_>,
    report: &mut dyn FnMut(&dyn Display, SourceProblem<'_>),
) -> Gathered {
    let mut gathered = Gathered::default();
    let mut dropped = 0;
    let mut report = |source: &dyn Display, problem: SourceProblem<'_>| {
        if !matches!(problem, SourceProblem::Rule(_)) {
            dropped += 1;
        }
        report(source, problem)
    };
    let mut buffer = [0u8; TEXT_CAPACITY];
    let source = &"the kernel command line";
    let text = match sources.cmdline {
        Some(text) => Some(cut_to_capacity(text, &mut |problem| {
            report(source, problem)
        })),
        None => read_text(Path::new("/proc/cmdline"), &mut buffer, &mut |problem| {
            report(source, problem)
        }),
    };
    if let Some(text) = text {
        add_text(&mut gathered, text, &mut |problem| report(source, problem));
    }
    let dir = sources.fragment_dir;
    for name in fragment_names(dir, &mut |problem| report(&dir.display(), problem)) {
        let path = dir.join(name.as_str());
        let shown = &path.display();
        if let Some(text) = read_text(&path, &mut buffer, &mut |problem| report(shown, problem)) {
            for line in text
                .split(|&byte| byte == b'\n')
                .filter(|line| !is_comment(line))
            {
                add_text(&mut gathered, line, &mut |problem| report(shown, problem));
            }
        }
    }
    gathered.dropped = dropped;
    gathered
}

/// Logs a problem as one error line naming its source.
pub fn log_problem(source: &dyn Display, problem: SourceProblem<'_>) {
    match problem {
        SourceProblem::Rule(RuleProblem::Malformed(text, why)) => log::error!(
            "skipped malformed rule \"{}\" from {source}: {why}",
            Escaped(text.as_bytes())
        ),
        SourceProblem::Rule(RuleProblem::NotText(text)) => log::error!(
            "skipped malformed rule \"{}\" from {source}: not ASCII text",
            Escaped(text)
        ),
        SourceProblem::Rule(RuleProblem::TooMany(text)) => log::error!(
            "too many rules: at most {MAX_RULES} are kept; \"{}\" (from {source}) and every rule after it were skipped",
            Escaped(text.as_bytes())
        ),
        SourceProblem::TooLong => {
            log::error!("{source} is longer than {TEXT_CAPACITY} bytes; only the parameters that fit were read")
        }
        SourceProblem::Unreadable(errno) => log::error!("cannot read {source}: {}", errno.desc()),
        SourceProblem::NotRegularFile => {
            log::error!("skipped {source}: not a regular file (a FIFO or device is never read)")
        }
        SourceProblem::TooManyFragments => {
            log::error!("more than {MAX_FRAGMENTS} *.conf files in {source}; only the first {MAX_FRAGMENTS} by name were read")
        }
        SourceProblem::BadFragmentName(name) => log::error!(
            "skipped \"{}\" in {source}: a fragment's name must be UTF-8 of at most {FRAGMENT_NAME_CAPACITY} bytes",
            Escaped(name)
        ),
    }
}

/// The line logged, once, when `rd.vfio_bind=0` (or an equivalent) turned the binder off.
pub struct DisabledNotice;

impl Display for DisabledNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not run: {DISABLE_PARAMETER}=0 is on the kernel command line"
        )
    }
}

/// A fragment line whose first non-blank byte is `#`.
fn is_comment(line: &[u8]) -> bool {
    line.iter().find(|&&byte| !is_kernel_space(byte)) == Some(&b'#')
}

fn add_text(gathered: &mut Gathered, text: &[u8], report: &mut dyn FnMut(SourceProblem<'_>)) {
    gathered.noiommu |= requests_noiommu(text);
    gathered.disabled |= binder_disabled(text);
    gathered
        .rules
        .add_command_line(text, &mut |problem| report(SourceProblem::Rule(problem)));
}

/// At most [`TEXT_CAPACITY`] bytes of `text`, cut at white space.
fn cut_to_capacity<'t>(text: &'t [u8], report: &mut dyn FnMut(SourceProblem<'_>)) -> &'t [u8] {
    if text.len() <= TEXT_CAPACITY {
        return text;
    }
    report(SourceProblem::TooLong);
    cut_at_separator(&text[..TEXT_CAPACITY])
}

/// Drops the last, possibly partial, parameter or rule: everything after the last white
/// space or comma (rules in one `vfio.bind=` are separated by commas).
fn cut_at_separator(text: &[u8]) -> &[u8] {
    match text
        .iter()
        .rposition(|&byte| is_kernel_space(byte) || byte == b',')
    {
        Some(index) => &text[..index],
        None => &[],
    }
}

fn is_regular(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

/// Reads a whole small regular file into `buffer`; over-long text is cut at white space.
/// Anything else (a FIFO, a tty, a directory) is reported, not read: nothing here blocks.
fn read_text<'b>(
    path: &Path,
    buffer: &'b mut [u8],
    report: &mut dyn FnMut(SourceProblem<'_>),
) -> Option<&'b [u8]> {
    // Look before opening: opening some devices does something (a watchdog starts).
    match stat(path) {
        Ok(status) if is_regular(&status) => {}
        Ok(_) => {
            report(SourceProblem::NotRegularFile);
            return None;
        }
        Err(errno) => {
            report(SourceProblem::Unreadable(errno));
            return None;
        }
    }
    // Non-blocking and checked again once open, in case the file was swapped meanwhile.
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let fd = match open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(errno) => {
            report(SourceProblem::Unreadable(errno));
            return None;
        }
    };
    if !fstat(fd.as_fd()).is_ok_and(|status| is_regular(&status)) {
        report(SourceProblem::NotRegularFile);
        return None;
    }
    let mut length = 0;
    while length < buffer.len() {
        match nix::unistd::read(fd.as_fd(), &mut buffer[length..]) {
            Ok(0) => break,
            Ok(count) => length += count,
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                report(SourceProblem::Unreadable(errno));
                return None;
            }
        }
    }
    let mut probe = [0u8; 1];
    let too_long =
        length == buffer.len() && matches!(nix::unistd::read(fd.as_fd(), &mut probe), Ok(1));
    let text = &buffer[..length];
    if too_long {
        report(SourceProblem::TooLong);
        return Some(cut_at_separator(text));
    }
    Some(text)
}

/// The `*.conf` names in `dir`, sorted as a shell glob sorts them; none if it is absent.
fn fragment_names(
    dir: &Path,
    report: &mut dyn FnMut(SourceProblem<'_>),
) -> Vec<String<FRAGMENT_NAME_CAPACITY>, MAX_FRAGMENTS> {
    let mut names = Vec::new();
    let mut overflowed = false;
    let listed = for_each_entry(dir, |name| {
        if !name.ends_with(b".conf") || name.starts_with(b".") {
            return;
        }
        let Some(name_text) = core::str::from_utf8(name)
            .ok()
            .and_then(|text| String::try_from(text).ok())
        else {
            return report(SourceProblem::BadFragmentName(name));
        };
        // When full, keep the names that sort first: the listing comes in no order.
        if let Err(name) = names.push(name_text) {
            overflowed = true;
            if let Some(last) = names.iter_mut().max() {
                if name < *last {
                    *last = name;
                }
            }
        }
    });
    match listed {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(errno) => report(SourceProblem::Unreadable(errno)),
    }
    if overflowed {
        report(SourceProblem::TooManyFragments);
    }
    order::sort(&mut names);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_too_many_fragments_the_first_by_name_are_read() {
        let dir = std::env::temp_dir().join(format!("vfio-bind-fragments-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in (0..MAX_FRAGMENTS + 4).rev() {
            std::fs::write(dir.join(format!("{n:02}.conf")), "").unwrap();
        }
        std::fs::write(dir.join("00.txt"), "").unwrap();
        let mut problems = 0;
        let names = fragment_names(&dir, &mut |_| problems += 1);
        std::fs::remove_dir_all(&dir).unwrap();
        let expected: std::vec::Vec<std::string::String> =
            (0..MAX_FRAGMENTS).map(|n| format!("{n:02}.conf")).collect();
        let names: std::vec::Vec<&str> = names.iter().map(|name| name.as_str()).collect();
        assert_eq!(names, expected);
        assert_eq!(problems, 1);
    }

    #[test]
    fn over_long_text_loses_its_last_rule_not_half_of_it() {
        let mut text = "x ".repeat(TEXT_CAPACITY / 2 - 10);
        text.push_str("vfio.bind=1002:ab28@07:00.1");
        let mut problems = 0;
        let cut = cut_to_capacity(text.as_bytes(), &mut |_| problems += 1);
        assert_eq!(problems, 1);
        assert!(cut.len() <= TEXT_CAPACITY);
        assert!(!cut.windows(9).any(|window| window == b"vfio.bind"));
        assert_eq!(cut_at_separator(b"a b c"), b"a b");
        assert_eq!(cut_at_separator(b"a b\x0bc"), b"a b");
        assert_eq!(
            cut_at_separator(b"vfio.bind=1002:ab28@07:00.1,1002:ab28@07:0"),
            b"vfio.bind=1002:ab28@07:00.1"
        );
        assert_eq!(cut_at_separator(b"abc"), b"");
    }

    #[test]
    fn comments_are_lines_whose_first_non_blank_byte_is_a_hash() {
        assert!(is_comment(b"# a comment"));
        assert!(is_comment(b" \t# indented, in Latin-1: caf\xe9"));
        assert!(!is_comment(b"vfio.bind=@07:00 # not a comment line"));
        assert!(!is_comment(b""));
    }
}
