//! One binding rule: `IDS`, `@ADDR` or `IDS@ADDR`.
//!
//! ```text
//! RULE := IDS | @ADDR | IDS@ADDR
//! IDS  := VVVV:DDDD[:SSSS:ssss]   vendor and device, then optionally the subsystem vendor
//!                                 and device; 4 hex digits each, any case
//! ADDR := BUS | PATH
//! BUS  := [DDDD:]BB:SS[.F]        domain (default 0000), bus, slot 00-1f, function 0-7
//! PATH := [DDDD:]BB:SS.F/HOP[/HOP]...   a root-bus function and up to 8 hops below it
//! HOP  := SS.F                    the slot and function on the bridge's secondary bus;
//!                                 the last hop may be SS, the whole slot
//! ```
//! With IDs and an address, the IDs guard the address: a slot rule applies only when some
//! function in the slot has those IDs, a function rule only when that function has them.
//! A path is the kernel's own `pci=` device-specifier syntax: unlike a bus number it stays
//! the same when a card is added in an earlier slot.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use core::fmt;
use core::str::FromStr;

use crate::rules::address::{Address, AddressError, IdGuard};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Every function with these IDs, wherever it is (what `vfio-pci.ids=` does).
    Ids(IdGuard),
    /// Every function at this address, whatever it is.
    At(Address),
    /// The functions at this address, only if the IDs are found there.
    Guarded(IdGuard, Address),
}

impl Rule {
    pub fn ids(&self) -> Option<IdGuard> {
        match self {
            Rule::Ids(ids) | Rule::Guarded(ids, _) => Some(*ids),
            Rule::At(_) => None,
        }
    }

    /// The same rule pointing at `address` instead (an IDs-only rule is returned as it is).
    pub fn with_address(&self, address: Address) -> Rule {
        match self {
            Rule::Ids(_) => *self,
            Rule::At(_) => Rule::At(address),
            Rule::Guarded(ids, _) => Rule::Guarded(*ids, address),
        }
    }

    pub fn location(&self) -> Option<Address> {
        match self {
            Rule::At(location) | Rule::Guarded(_, location) => Some(*location),
            Rule::Ids(_) => None,
        }
    }
}

/// Why a rule was refused; reads as the end of "malformed rule "X": ...".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    Empty,
    BadIds(AddressError),
    BadAddress(AddressError),
    TwoAts,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Empty => f.write_str("empty rule; write VVVV:DDDD, @BB:SS[.F] or both"),
            RuleError::BadIds(error) => {
                write!(
                    f,
                    "{error} (IDs are VVVV:DDDD; an address needs a leading @)"
                )
            }
            RuleError::BadAddress(error) => write!(f, "{error}"),
            RuleError::TwoAts => f.write_str("only one '@' is allowed"),
        }
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(RuleError::Empty);
        }
        match text.split_once('@') {
            None => text.parse().map(Rule::Ids).map_err(RuleError::BadIds),
            Some((_, address)) if address.contains('@') => Err(RuleError::TwoAts),
            Some((ids, address)) => {
                let location = address.parse().map_err(RuleError::BadAddress)?;
                if ids.is_empty() {
                    Ok(Rule::At(location))
                } else {
                    let ids = ids.parse().map_err(RuleError::BadIds)?;
                    Ok(Rule::Guarded(ids, location))
                }
            }
        }
    }
}

/// The canonical form: lower case, full domain. It parses back to the same rule.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Ids(ids) => ids.fmt(f),
            Rule::At(location) => write!(f, "@{location}"),
            Rule::Guarded(ids, location) => write!(f, "{ids}@{location}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_round_trip() {
        let cases = [
            ("1002:73ff@07:00", "1002:73ff@0000:07:00"),
            ("1002:AB28@0000:07:00.1", "1002:ab28@0000:07:00.1"),
            ("@07:00", "@0000:07:00"),
            ("@10000:e1:00.0", "@10000:e1:00.0"),
            ("10de:1b80", "10de:1b80"),
            ("1234:1111@00:1c.0/00", "1234:1111@0000:00:1c.0/00"),
            ("@00:1C.0/00.0", "@0000:00:1c.0/00.0"),
            (
                "1002:73ff@00:03.1/00.0/00.0/00.0",
                "1002:73ff@0000:00:03.1/00.0/00.0/00.0",
            ),
            ("1234:1111:1AF4:1100", "1234:1111:1af4:1100"),
            (
                "1234:1111:1af4:1100@00:1c.0/00",
                "1234:1111:1af4:1100@0000:00:1c.0/00",
            ),
            (
                "1234:1111:1af4:1100@02:00.0",
                "1234:1111:1af4:1100@0000:02:00.0",
            ),
        ];
        for (text, canonical) in cases {
            let rule: Rule = text.parse().unwrap();
            assert_eq!(rule.to_string(), canonical);
            assert_eq!(canonical.parse::<Rule>(), Ok(rule));
        }
    }

    #[test]
    fn bad_rules_say_why() {
        let cases = [
            ("", RuleError::Empty),
            ("@", RuleError::BadAddress(AddressError::Shape)),
            ("1002:73ff@", RuleError::BadAddress(AddressError::Shape)),
            ("1002:73f@07:00", RuleError::BadIds(AddressError::Device)),
            ("1002@07:00", RuleError::BadIds(AddressError::Vendor)),
            ("1002:73ff@07:00@08:00", RuleError::TwoAts),
            ("07:00", RuleError::BadIds(AddressError::Vendor)),
            (
                "1002:73ff@07:00.9",
                RuleError::BadAddress(AddressError::Function),
            ),
            (
                "1002:73ff:07:00",
                RuleError::BadIds(AddressError::Subsystem),
            ),
            (
                "1002:73ff:07@07:00",
                RuleError::BadIds(AddressError::Subsystem),
            ),
            (
                "1002:73ff@00:1c/00",
                RuleError::BadAddress(AddressError::Function),
            ),
            (
                "1002:73ff@00:1c.0/0",
                RuleError::BadAddress(AddressError::Hop),
            ),
            (
                "@00:01.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0/00",
                RuleError::BadAddress(AddressError::TooManyHops),
            ),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<Rule>(), Err(error), "{text:?}");
        }
    }
}
