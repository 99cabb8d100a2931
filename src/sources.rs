//! Where rules come from: the kernel command line and `/etc/cmdline.d/*.conf`.
//!
//! `/etc/cmdline.d/*.conf` is dracut's convention for command-line fragments kept in the
//! image (the kernel never sees them, so they are not in /proc/cmdline); the hooks copy the
//! host's `/etc/cmdline.d/vfio-bind.conf` there. Text is read into fixed buffers; text
//! longer than a buffer is cut at the last white space or comma before the end, so a rule
//! is never cut in two (a cut `1002:ab28@07:00.1` would read as the whole slot `07:00`).

use std::os::fd::AsFd;
use std::path::Path;

use heapless::{String, Vec};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::cmdline::{requests_noiommu, RuleProblem, RuleSet, MAX_RULES};
use crate::sysfs::for_each_entry;

/// The longest text read from one source. The kernel's own limit (COMMAND_LINE_SIZE) is
/// 2048 bytes on x86 and arm64, 4096 on a few others.
pub const TEXT_CAPACITY: usize = 4096;
/// How many `*.conf` files are read from the fragment directory.
pub const MAX_FRAGMENTS: usize = 16;
const FRAGMENT_NAME_CAPACITY: usize = 64;

/// The places rules are read from.
pub struct RuleSources<'a> {
    /// Command-line text given by the caller; `None` reads `/proc/cmdline`.
    pub cmdline: Option<&'a str>,
    /// The fragment directory, normally `/etc/cmdline.d`.
    pub fragment_dir: &'a Path,
}

/// Something wrong with a source, for the caller to report.
pub enum SourceProblem<'a> {
    Rule(RuleProblem<'a>),
    /// The text was longer than [`TEXT_CAPACITY`]; only what fits was read.
    TooLong,
    Unreadable(Errno),
    /// More than [`MAX_FRAGMENTS`] fragment files; the rest were not read.
    TooManyFragments,
}

/// The rules gathered, and whether any source asked for no-IOMMU vfio.
pub struct Gathered {
    pub rules: RuleSet,
    pub noiommu: bool,
}

/// Reads every source. `report` gets each problem with the name of its source.
pub fn gather(
    sources: &RuleSources<'_>,
    report: &mut dyn FnMut(&str, SourceProblem<'_>),
) -> Gathered {
    let mut gathered = Gathered {
        rules: RuleSet::new(),
        noiommu: false,
    };
    let mut buffer = [0u8; TEXT_CAPACITY];
    let source = "the kernel command line";
    let text = match sources.cmdline {
        Some(text) => Ok(cut_to_capacity(text, &mut |problem| {
            report(source, problem)
        })),
        None => read_text(Path::new("/proc/cmdline"), &mut buffer, &mut |problem| {
            report(source, problem)
        }),
    };
    match text {
        Ok(text) => add_text(&mut gathered, text, &mut |problem| report(source, problem)),
        Err(errno) => report(source, SourceProblem::Unreadable(errno)),
    }
    for name in fragment_names(sources.fragment_dir, &mut |problem| {
        report("/etc/cmdline.d", problem)
    }) {
        let path = sources.fragment_dir.join(name.as_str());
        let shown = path.display().to_string();
        match read_text(&path, &mut buffer, &mut |problem| report(&shown, problem)) {
            Ok(text) => {
                for line in text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with('#'))
                {
                    add_text(&mut gathered, line, &mut |problem| report(&shown, problem));
                }
            }
            Err(errno) => report(&shown, SourceProblem::Unreadable(errno)),
        }
    }
    gathered
}

/// Logs a problem as one error line naming its source.
pub fn log_problem(source: &str, problem: SourceProblem<'_>) {
    match problem {
        SourceProblem::Rule(RuleProblem::Malformed(text, why)) => {
            log::error!("skipped malformed rule \"{text}\" from {source}: {why}")
        }
        SourceProblem::Rule(RuleProblem::TooMany(text)) => log::error!(
            "too many rules: at most {MAX_RULES} are kept; \"{text}\" (from {source}) and every rule after it were skipped"
        ),
        SourceProblem::TooLong => {
            log::error!("{source} is longer than {TEXT_CAPACITY} bytes; only the parameters that fit were read")
        }
        SourceProblem::Unreadable(errno) => log::error!("cannot read {source}: {}", errno.desc()),
        SourceProblem::TooManyFragments => {
            log::error!("more than {MAX_FRAGMENTS} files in {source}; only the first ones by name were read")
        }
    }
}

fn add_text(gathered: &mut Gathered, text: &str, report: &mut dyn FnMut(SourceProblem<'_>)) {
    gathered.noiommu |= requests_noiommu(text);
    gathered
        .rules
        .add_command_line(text, &mut |problem| report(SourceProblem::Rule(problem)));
}

/// At most [`TEXT_CAPACITY`] bytes of `text`, cut at white space.
fn cut_to_capacity<'t>(text: &'t str, report: &mut dyn FnMut(SourceProblem<'_>)) -> &'t str {
    if text.len() <= TEXT_CAPACITY {
        return text;
    }
    report(SourceProblem::TooLong);
    let mut end = TEXT_CAPACITY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    cut_at_separator(&text[..end])
}

/// Drops the last, possibly partial, parameter or rule: everything after the last white
/// space or comma (rules in one `vfio.bind=` are separated by commas).
fn cut_at_separator(text: &str) -> &str {
    match text.rfind(|c: char| c.is_ascii_whitespace() || c == ',') {
        Some(index) => &text[..index],
        None => "",
    }
}

/// Reads a whole small file into `buffer`; over-long text is cut at white space.
fn read_text<'b>(
    path: &Path,
    buffer: &'b mut [u8],
    report: &mut dyn FnMut(SourceProblem<'_>),
) -> Result<&'b str, Errno> {
    let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut length = 0;
    while length < buffer.len() {
        match nix::unistd::read(fd.as_fd(), &mut buffer[length..]) {
            Ok(0) => break,
            Ok(count) => length += count,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno),
        }
    }
    let mut probe = [0u8; 1];
    let too_long =
        length == buffer.len() && matches!(nix::unistd::read(fd.as_fd(), &mut probe), Ok(1));
    let text = match core::str::from_utf8(&buffer[..length]) {
        Ok(text) => text,
        // Invalid UTF-8 (or a character cut at the end): keep the valid part.
        Err(error) => core::str::from_utf8(&buffer[..error.valid_up_to()]).unwrap_or_default(),
    };
    if too_long {
        report(SourceProblem::TooLong);
        return Ok(cut_at_separator(text));
    }
    Ok(text)
}

/// The `*.conf` names in `dir`, sorted as a shell glob sorts them; none if it is absent.
fn fragment_names(
    dir: &Path,
    report: &mut dyn FnMut(SourceProblem<'_>),
) -> Vec<String<FRAGMENT_NAME_CAPACITY>, MAX_FRAGMENTS> {
    let mut names = Vec::new();
    let Some(dir) = dir.to_str() else {
        return names;
    };
    let mut overflowed = false;
    let _ = for_each_entry(dir, |name| {
        let Ok(name) = core::str::from_utf8(name) else {
            return;
        };
        if !name.ends_with(".conf") || name.starts_with('.') {
            return;
        }
        let Ok(name) = String::try_from(name) else {
            return;
        };
        // When full, keep the names that sort first: the listing comes in no order.
        if let Err(name) = names.push(name) {
            overflowed = true;
            if let Some(last) = names.iter_mut().max() {
                if name < *last {
                    *last = name;
                }
            }
        }
    });
    if overflowed {
        report(SourceProblem::TooManyFragments);
    }
    names.sort_unstable();
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
        let cut = cut_to_capacity(&text, &mut |_| problems += 1);
        assert_eq!(problems, 1);
        assert!(cut.len() <= TEXT_CAPACITY);
        assert!(!cut.contains("vfio.bind"));
        assert_eq!(cut_at_separator("a b c"), "a b");
        assert_eq!(
            cut_at_separator("vfio.bind=1002:ab28@07:00.1,1002:ab28@07:0"),
            "vfio.bind=1002:ab28@07:00.1"
        );
        assert_eq!(cut_at_separator("abc"), "");
    }
}
