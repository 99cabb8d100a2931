//! Parsing what the guest's reporter wrote on the second serial port
//! (xtask/guest/vfio-test-report.rs gives the format).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One PCI function as the guest kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub address: String,
    pub ids: String,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub group: Option<u32>,
}

/// What opening `/dev/vfio/N` and asking for its status gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupStatus {
    Viable,
    NotViable,
    Failed(String),
}

impl std::fmt::Display for GroupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupStatus::Viable => f.write_str("viable"),
            GroupStatus::NotViable => f.write_str("not viable"),
            GroupStatus::Failed(why) => write!(f, "{why}"),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct GuestState {
    pub functions: Vec<Function>,
    pub groups: BTreeMap<u32, GroupStatus>,
    /// Kernel log records about vfio: (level, text).
    pub kmsg: Vec<(u8, String)>,
    pub uptime: Option<f64>,
    /// systemd's properties of the units that race the binder, by unit (`unit` lines:
    /// systemd-based images only).
    pub units: BTreeMap<String, BTreeMap<String, String>>,
    /// Per vfio-pci function (full address): `mapped` when every mappable BAR mapped
    /// through VFIO as QEMU maps it, else the BARs that failed (`BAR0:EBUSY`).
    pub bars: BTreeMap<String, String>,
    /// /proc/iomem's lines under the functions whose BARs did not map (what holds them).
    pub iomem: Vec<String>,
    /// Framebuffer devices: (`fb0`, the device under it: a PCI address or a platform device).
    pub framebuffers: Vec<(String, String)>,
    /// Console drivers: (`vtcon1`, bound, name such as `(S) frame buffer device`).
    pub vtconsoles: Vec<(String, bool, String)>,
    /// The reporter's own errors.
    pub errors: Vec<String>,
}

impl GuestState {
    pub fn function(&self, address: &str) -> Option<&Function> {
        let full = full_address(address);
        self.functions.iter().find(|f| f.address == full)
    }

    /// The `bars` cell of a function: its outcome, or `-` when it is not on vfio-pci.
    pub fn bars_of(&self, address: &str) -> &str {
        self.bars
            .get(&full_address(address))
            .map_or("-", String::as_str)
    }

    /// The binder's own log lines, without the `vfio-bind: ` prefix.
    pub fn binder_lines(&self) -> impl Iterator<Item = &(u8, String)> {
        self.kmsg
            .iter()
            .filter(|(_, text)| text.starts_with("vfio-bind: "))
    }

    /// The binder's summary line (`... in N us`) and the microseconds in it.
    pub fn summary(&self) -> Option<(&str, u64)> {
        self.binder_lines()
            .filter_map(|(_, text)| Some((text.as_str(), micros(text)?)))
            .last()
    }
}

impl GuestState {
    /// A unit's property as systemd reported it.
    pub fn unit_property(&self, unit: &str, key: &str) -> Option<&str> {
        self.units.get(unit)?.get(key).map(String::as_str)
    }

    /// A `...TimestampMonotonic` property: microseconds since boot, `None` when the unit
    /// never got there (systemd says 0) or systemd did not say.
    pub fn unit_time(&self, unit: &str, key: &str) -> Option<u64> {
        self.unit_property(unit, key)?
            .parse()
            .ok()
            .filter(|&micros| micros > 0)
    }
}

/// `00:05.0` and `0000:00:05.0` name the same function.
pub fn full_address(address: &str) -> String {
    if address.matches(':').count() == 1 {
        format!("0000:{address}")
    } else {
        address.to_string()
    }
}

/// The `N` of `... in N us` (maybe followed by more text).
fn micros(text: &str) -> Option<u64> {
    let at = text.rfind(" in ")?;
    let rest = &text[at + 4..];
    let (number, after) = rest.split_once(' ')?;
    if after == "us"
        || after.starts_with("us;")
        || after.starts_with("us ")
        || after.starts_with("us,")
    {
        number.parse().ok()
    } else {
        None
    }
}

fn dash(value: &str) -> Option<String> {
    (value != "-").then(|| value.to_string())
}

/// Parses the result log; `None` when the reporter never finished (no end marker).
pub fn parse(result: &str) -> Option<GuestState> {
    let begin = result.find("vfio-test: begin")?;
    let body = &result[begin..];
    let end = body.find("vfio-test: end")?;
    let mut state = GuestState::default();
    for line in body[..end].lines().skip(1) {
        let line = line.trim_end();
        let mut words = line.splitn(2, ' ');
        let (kind, rest) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if state.read_line(kind, rest).is_none() {
            state.errors.push(format!("unreadable line: {line}"));
        }
    }
    Some(state)
}

impl GuestState {
    /// Takes in one line of the result log, `kind rest`; `None` when `rest` is not what a
    /// line of that kind holds. Kinds it does not know are skipped.
    fn read_line(&mut self, kind: &str, rest: &str) -> Option<()> {
        match kind {
            "fn" => self.functions.push(parse_function(rest)?),
            "group" => {
                let (number, status) = parse_group(rest)?;
                self.groups.insert(number, status);
            }
            "kmsg" => {
                let (level, text) = rest.split_once(' ').unwrap_or((rest, ""));
                self.kmsg
                    .push((level.parse().unwrap_or(9), text.to_string()));
            }
            "unit" => {
                let (unit, property) = rest.split_once(' ')?;
                let (key, value) = property.split_once('=')?;
                self.units
                    .entry(unit.to_string())
                    .or_default()
                    .insert(key.to_string(), value.to_string());
            }
            "bars" => {
                let (address, outcome) = rest.split_once(' ')?;
                if outcome.contains(' ') {
                    return None;
                }
                self.bars.insert(address.to_string(), outcome.to_string());
            }
            "iomem" => self.iomem.push(rest.to_string()),
            "fb" => {
                let (fb, device) = rest.split_once(' ')?;
                self.framebuffers.push((fb.to_string(), device.to_string()));
            }
            "vtcon" => {
                let [vtcon, bind, name] = rest.splitn(3, ' ').collect::<Vec<_>>()[..] else {
                    return None;
                };
                self.vtconsoles
                    .push((vtcon.to_string(), bind == "1", name.to_string()));
            }
            "uptime" => self.uptime = rest.parse().ok(),
            "error" => self.errors.push(rest.to_string()),
            _ => {}
        }
        Some(())
    }
}

/// `fn ADDRESS IDS DRIVER OVERRIDE GROUP`, `-` for none.
fn parse_function(rest: &str) -> Option<Function> {
    let [address, ids, driver, over, group] = rest.split(' ').collect::<Vec<_>>()[..] else {
        return None;
    };
    Some(Function {
        address: address.to_string(),
        ids: ids.to_string(),
        driver: dash(driver),
        driver_override: dash(over),
        group: group.parse().ok(),
    })
}

/// `group N viable`, `group N not-viable`, or `group N` and what failed.
fn parse_group(rest: &str) -> Option<(u32, GroupStatus)> {
    let parts: Vec<&str> = rest.split(' ').collect();
    let number = parts.first()?.parse().ok()?;
    let status = match parts.get(1..)? {
        ["viable"] => GroupStatus::Viable,
        ["not-viable"] => GroupStatus::NotViable,
        [] => return None,
        other => GroupStatus::Failed(other.join(" ")),
    };
    Some((number, status))
}

/// The per-function table people read: address, IDs, driver, override, group, viability,
/// and whether the BARs map through VFIO (`-` for functions not on vfio-pci).
pub fn function_table(state: &GuestState) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "    {:<14} {:<10} {:<15} {:<10} {:<6} {:<11} bars",
        "function", "ids", "driver", "override", "group", "vfio group"
    );
    for function in &state.functions {
        let viability = function
            .group
            .and_then(|group| state.groups.get(&group))
            .map(|status| status.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "    {:<14} {:<10} {:<15} {:<10} {:<6} {:<11} {}",
            function.address,
            function.ids,
            function.driver.as_deref().unwrap_or("-"),
            function.driver_override.as_deref().unwrap_or("-"),
            function.group.map_or("-".to_string(), |g| g.to_string()),
            viability,
            state.bars_of(&function.address)
        );
    }
    for line in &state.iomem {
        let _ = writeln!(out, "    iomem {line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "noise\r\nvfio-test: begin\n\
        fn 0000:00:04.0 1234:1111 bochs-drm - 1\n\
        fn 0000:00:05.0 1234:1111 vfio-pci vfio-pci 2\n\
        fn 0000:00:1f.0 8086:2918 - - -\n\
        group 2 viable\n\
        group 3 open-failed EBUSY\n\
        bars 0000:00:05.0 mapped\n\
        bars 0000:00:04.0 BAR0:EBUSY,BAR2:EINVAL\n\
        iomem   c0000000-c0ffffff : 0000:00:04.0\n\
        iomem     c0000000-c03e7fff : efifb\n\
        fb fb0 0000:00:04.0\n\
        vtcon vtcon0 0 (S) dummy device\n\
        vtcon vtcon1 1 (M) frame buffer device\n\
        kmsg 6 vfio-bind: 1234:1111@00:05: 0000:00:05.0, 0000:00:05.1 on vfio-pci\n\
        kmsg 6 vfio-bind: 1 of 1 rules applied, 2 functions on vfio-pci in 812 us\n\
        uptime 4.25\n\
        vfio-test: end\n";

    #[test]
    fn parses_functions_groups_and_log() {
        let state = parse(SAMPLE).unwrap();
        assert_eq!(state.functions.len(), 3);
        let second = state.function("00:05.0").unwrap();
        assert_eq!(second.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(second.driver_override.as_deref(), Some("vfio-pci"));
        assert_eq!(second.group, Some(2));
        let lpc = state.function("0000:00:1f.0").unwrap();
        assert_eq!((lpc.driver.as_ref(), lpc.group), (None, None));
        assert_eq!(state.groups[&2], GroupStatus::Viable);
        assert_eq!(
            state.groups[&3],
            GroupStatus::Failed("open-failed EBUSY".into())
        );
        assert_eq!(state.bars_of("00:05.0"), "mapped");
        assert_eq!(state.bars_of("0000:00:04.0"), "BAR0:EBUSY,BAR2:EINVAL");
        assert_eq!(state.bars_of("00:1f.0"), "-");
        assert_eq!(
            state.iomem,
            [
                "  c0000000-c0ffffff : 0000:00:04.0",
                "    c0000000-c03e7fff : efifb"
            ]
        );
        assert_eq!(
            state.framebuffers,
            [("fb0".to_string(), "0000:00:04.0".to_string())]
        );
        assert_eq!(
            state.vtconsoles,
            [
                ("vtcon0".to_string(), false, "(S) dummy device".to_string()),
                (
                    "vtcon1".to_string(),
                    true,
                    "(M) frame buffer device".to_string()
                )
            ]
        );
        assert_eq!(state.summary().map(|(_, us)| us), Some(812));
        assert_eq!(state.uptime, Some(4.25));
        assert!(state.errors.is_empty());
    }

    #[test]
    fn parses_what_systemd_said_of_the_units() {
        let report = "vfio-test: begin\n\
            unit vfio-bind.service ActiveEnterTimestampMonotonic=2100\n\
            unit vfio-bind.service Before=sysinit.target dracut-pre-udev.service\n\
            unit dracut-pre-udev.service InactiveExitTimestampMonotonic=0\n\
            unit broken\n\
            vfio-test: end\n";
        let state = parse(report).unwrap();
        assert_eq!(
            state.unit_time("vfio-bind.service", "ActiveEnterTimestampMonotonic"),
            Some(2100)
        );
        assert_eq!(
            state.unit_property("vfio-bind.service", "Before"),
            Some("sysinit.target dracut-pre-udev.service")
        );
        // 0: systemd never started it.
        assert_eq!(
            state.unit_time("dracut-pre-udev.service", "InactiveExitTimestampMonotonic"),
            None
        );
        assert_eq!(state.errors, ["unreadable line: unit broken"]);
    }

    #[test]
    fn the_table_has_a_bars_column() {
        let table = function_table(&parse(SAMPLE).unwrap());
        let mut lines = table.lines();
        assert!(lines
            .next()
            .unwrap()
            .trim_end()
            .ends_with("vfio group  bars"));
        let row = |address: &str| {
            table
                .lines()
                .find(|line| line.trim_start().starts_with(address))
                .unwrap()
                .split_whitespace()
                .last()
                .unwrap()
                .to_string()
        };
        assert_eq!(row("0000:00:05.0"), "mapped");
        assert_eq!(row("0000:00:04.0"), "BAR0:EBUSY,BAR2:EINVAL");
        assert_eq!(row("0000:00:1f.0"), "-");
        assert!(table.contains("    iomem     c0000000-c03e7fff : efifb\n"));
    }

    #[test]
    fn a_report_without_its_end_is_no_report() {
        assert!(parse("vfio-test: begin\nfn 0000:00:04.0 1234:1111 - - -\n").is_none());
    }

    #[test]
    fn summary_time_is_found_before_a_trailing_note() {
        assert_eq!(
            micros("vfio-bind: 0 of 1 rules applied in 40 us; 2 more messages held back"),
            Some(40)
        );
        assert_eq!(micros("vfio-bind: something in 3 steps"), None);
    }
}
