//! Where a path address leads: the walk through `/sys/devices/pciDDDD:BB/` that turns a
//! path rule into a concrete one before planning.
//!
//! The kernel lays its devices out as the hardware is wired: each function's directory
//! sits below its parent bridge's (`devices/pci0000:00/0000:00:1c.0/0000:02:00.0`), and a
//! bridge's children are exactly the devices on its secondary bus. So a path
//! `00:1c.0/00.0` is followed by opening the root-bus function's directory, checking that
//! it is a bridge, and taking the child named `DDDD:BB:00.0` whatever `BB` the firmware
//! gave the bus this boot. Nothing here allocates; the rules are resolved into a fixed
//! array once per scan.

use core::fmt::{self, Write as _};

use heapless::{String, Vec};
use log::{error, info};

use crate::machine::function::is_bridge_class;
use crate::machine::sysfs::{for_each_entry, read_attribute, Sysfs, PATH_CAPACITY, ROOT_CAPACITY};
use crate::rules::address::{Address, Hop, Location, PciAddress, PciPath, MAX_HOPS};
use crate::rules::ruleset::MAX_RULES;

/// Longest directory path a walk builds: the root, `devices/pciDDDDDDDD:BB/`, and the
/// root function and each hop as `DDDDDDDD:BB:SS.F/`.
const WALK_CAPACITY: usize = ROOT_CAPACITY + 24 + (MAX_HOPS + 1) * 18;

/// Why a path leads nowhere; reads as the end of "RULE not applied: ...".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The path's first part is not a function on a root bus.
    NoRoot(PciAddress),
    /// A hop asks for a device below a function that is not a bridge.
    NotABridge { device: PciAddress, hop: Hop },
    /// The bridge has no device at the hop's slot and function.
    NoHop { bridge: PciAddress, hop: Hop },
    /// The sysfs root is too long to build the path in.
    TooLong,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NoRoot(root) => write!(
                f,
                "the path starts at {root}, which is not a function on root bus pci{:04x}:{:02x}",
                root.domain(),
                root.bus()
            ),
            ResolveError::NotABridge { device, hop } => write!(
                f,
                "hop {hop} is below {device}, which is not a bridge, so nothing is below it"
            ),
            ResolveError::NoHop { bridge, hop } => {
                write!(f, "hop {hop}: the bridge {bridge} has no device at {hop}")
            }
            ResolveError::TooLong => f.write_str("the path is too long to look up in sysfs"),
        }
    }
}

/// Follows `path` through sysfs to the slot or function it names now.
///
/// A path that ends at a bridge resolves to the bridge, which the planner then refuses as it
/// refuses any bridge.
pub fn resolve(sysfs: &Sysfs, path: &PciPath) -> Result<Location, ResolveError> {
    let root = path.root;
    let mut directory: String<WALK_CAPACITY> = String::new();
    write!(
        directory,
        "{}/devices/pci{:04x}:{:02x}/{root}",
        sysfs.root(),
        root.domain(),
        root.bus()
    )
    .map_err(|_| ResolveError::TooLong)?;
    if nix::sys::stat::stat(directory.as_str()).is_err() {
        return Err(ResolveError::NoRoot(root));
    }
    let mut current = root;
    for hop in path.hops() {
        if !is_bridge_directory(&directory) {
            return Err(ResolveError::NotABridge {
                device: current,
                hop: *hop,
            });
        }
        current = child_at(&directory, current.domain(), *hop).ok_or(ResolveError::NoHop {
            bridge: current,
            hop: *hop,
        })?;
        write!(directory, "/{current}").map_err(|_| ResolveError::TooLong)?;
    }
    Ok(if path.is_slot() {
        Location::Slot(current.slot_address())
    } else {
        Location::Function(current)
    })
}

/// Whether the device directory's `class` is a PCI-to-PCI or CardBus bridge.
fn is_bridge_directory(directory: &str) -> bool {
    let mut path: String<{ WALK_CAPACITY + 8 }> = String::new();
    if write!(path, "{directory}/class").is_err() {
        return false;
    }
    let mut buffer = [0u8; 32];
    read_attribute(&path, &mut buffer)
        .ok()
        .and_then(crate::rules::address::parse_sysfs_hex)
        .is_some_and(is_bridge_class)
}

/// The child device of a bridge directory at `hop` (for a whole-slot hop, its lowest
/// function). Children of a bridge all sit on its secondary bus, so only the slot and
/// function are compared.
fn child_at(directory: &str, domain: u32, hop: Hop) -> Option<PciAddress> {
    let mut found: Option<PciAddress> = None;
    let _ = for_each_entry(directory, |name| {
        let Some(child) = core::str::from_utf8(name)
            .ok()
            .and_then(|name| name.parse::<PciAddress>().ok())
        else {
            return;
        };
        let wanted = child.domain() == domain
            && child.slot() == hop.slot
            && hop
                .function
                .is_none_or(|function| function == child.function());
        if wanted && found.is_none_or(|found| child < found) {
            found = Some(child);
        }
    });
    found
}

/// The path of a device from its `bus/pci/devices/ADDR` link target, e.g.
/// `../../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0` gives `0000:00:1c.0/00.0`.
/// `None` for a function on a root bus (its address is all there is), or a target that
/// does not look like the kernel's layout.
pub fn path_of_link(target: &str) -> Option<PciPath> {
    let mut components = target
        .split('/')
        .skip_while(|part| !part.starts_with("pci"));
    components.next()?;
    let root: PciAddress = components.next()?.parse().ok()?;
    let mut hops: Vec<Hop, MAX_HOPS> = Vec::new();
    for component in components {
        let device: PciAddress = component.parse().ok()?;
        hops.push(Hop {
            slot: device.slot(),
            function: Some(device.function()),
        })
        .ok()?;
    }
    PciPath::new(root, &hops)
}

/// The path of the function at `address`, when it sits below a bridge.
pub fn path_of(sysfs: &Sysfs, address: PciAddress) -> Option<PciPath> {
    let mut buffer = [0u8; PATH_CAPACITY];
    path_of_link(sysfs.device_link(address, &mut buffer)?)
}

/// The rules with each path resolved, for planning. Logs one line per path rule: where it
/// leads, or why it leads nowhere (such a rule stays unresolved and selects nothing).
/// Every caller that plans (apply, bind, release, check, list) goes through here once.
pub fn resolve_rules(
    sysfs: &Sysfs,
    rules: &[crate::rules::rule::Rule],
) -> Vec<crate::rules::rule::Rule, MAX_RULES> {
    resolve_each(sysfs, rules, true)
}

/// The rules with each path resolved, saying nothing: for a look before the run that will
/// say it (runtime `bind`'s guard, which must not log each path twice).
pub fn resolve_rules_quietly(
    sysfs: &Sysfs,
    rules: &[crate::rules::rule::Rule],
) -> Vec<crate::rules::rule::Rule, MAX_RULES> {
    resolve_each(sysfs, rules, false)
}

fn resolve_each(
    sysfs: &Sysfs,
    rules: &[crate::rules::rule::Rule],
    say: bool,
) -> Vec<crate::rules::rule::Rule, MAX_RULES> {
    let mut resolved = Vec::new();
    for rule in rules.iter().take(MAX_RULES) {
        let concrete = match rule.location() {
            Some(Address::Path(path)) => match resolve(sysfs, &path) {
                Ok(location) => {
                    if say {
                        info!("{rule}: resolved to {location}");
                    }
                    rule.with_address(Address::Resolved(path, location))
                }
                Err(problem) => {
                    if say {
                        error!("{rule} not applied: {problem}");
                    }
                    *rule
                }
            },
            _ => *rule,
        };
        // At most MAX_RULES are taken: pushing cannot fail.
        let _ = resolved.push(concrete);
    }
    resolved
}

/// The same rule by path, for a rule at `location` whose first function is `address`
/// below a bridge (a slot rule gets a slot path); `None` on a root bus, which no added card
/// renumbers.
pub fn path_form(
    sysfs: &Sysfs,
    rule: &crate::rules::rule::Rule,
    location: Location,
    address: PciAddress,
) -> Option<crate::rules::rule::Rule> {
    let path = path_of(sysfs, address)?;
    let path = match location {
        Location::Slot(_) => path.to_slot(),
        Location::Function(_) => path,
    };
    Some(rule.with_address(Address::Path(path)))
}

/// A function a bus-number rule selects, its twin elsewhere (see [`crate::boot::plan::is_twin`]),
/// and the rule by path that tells them apart. Reads as "0000:0a:00.0 has a twin at
/// 0000:06:00.0 (10de:1e89:1462:3750): ...".
pub struct Twin {
    pub function: PciAddress,
    pub twin: PciAddress,
    pub twin_ids: crate::rules::address::IdGuard,
    pub path_rule: crate::rules::rule::Rule,
}

impl fmt::Display for Twin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has a twin at {} ({}): bus numbers move when a card is added in an earlier slot, and this rule would then take the other one",
            self.function, self.twin, self.twin_ids
        )
    }
}

/// The first of `targets` (the functions `rule` selects) that has a twin on the host, when
/// the rule names it by bus number and a path form exists. Reads every function once per
/// target, heap-free.
pub fn twin_of<'f>(
    sysfs: &Sysfs,
    rule: &crate::rules::rule::Rule,
    targets: impl Iterator<Item = &'f crate::machine::function::Function>,
) -> Option<Twin> {
    let Some(Address::Bus(location)) = rule.location() else {
        return None;
    };
    for target in targets {
        let mut found = None;
        let _ = sysfs.for_each_function(|other| {
            if found.is_none() && crate::boot::plan::is_twin(rule, target, other) {
                found = other.ids.map(|ids| {
                    let twin_ids = crate::rules::address::IdGuard {
                        ids,
                        subsystem: other.subsystem,
                    };
                    (other.address, twin_ids)
                });
            }
        });
        let Some((twin, twin_ids)) = found else {
            continue;
        };
        if let Some(path_rule) = path_form(sysfs, rule, location, target.address) {
            return Some(Twin {
                function: target.address,
                twin,
                twin_ids,
                path_rule,
            });
        }
    }
    None
}

/// Whether a rule (as written) names its card by path. When such a rule selects nothing,
/// [`resolve_rules`] has already said which hop failed.
pub fn is_path_rule(rule: &crate::rules::rule::Rule) -> bool {
    matches!(rule.location(), Some(Address::Path(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_kernels_links() {
        let cases = [
            (
                "../../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0",
                Some("0000:00:1c.0/00.0"),
            ),
            (
                "../../../devices/pci0000:00/0000:00:03.1/0000:0a:00.0/0000:0b:00.0/0000:0c:00.1",
                Some("0000:00:03.1/00.0/00.0/00.1"),
            ),
            (
                "../../../devices/pci10000:e0/10000:e0:17.0/10000:e1:00.0",
                Some("10000:e0:17.0/00.0"),
            ),
            ("../../../devices/pci0000:00/0000:00:02.0", None),
            ("../../../devices/platform/x", None),
            ("../../../devices/pci0000:00/0000:00:1c.0/extra", None),
        ];
        for (link, path) in cases {
            assert_eq!(
                path_of_link(link).map(|path| path.to_string()).as_deref(),
                path,
                "{link}"
            );
        }
    }
}
