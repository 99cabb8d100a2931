//! Fuzzes the path and subsystem-ID rule forms (issue 12) with arbitrary bytes, one rule
//! text at a time, and the parser of sysfs device links that `list` and `rule` use.
//!
//! Checked: nothing panics; a rule that parses prints to a canonical text that parses back
//! to the same rule and prints the same again; text without a `/` never parses as a path
//! (the bus forms keep their meaning); a path has 1 to MAX_HOPS hops, one per `/`; IDs with
//! subsystem IDs print as four groups of four hex digits; a device link that parses gives
//! a path that round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_bind::rules::address::{Address, IdGuard, PciPath, MAX_HOPS};
use vfio_bind::rules::rule::Rule;
use vfio_bind::boot::topology::path_of_link;

fn check_path(path: &PciPath) {
    assert!((1..=MAX_HOPS).contains(&path.hops().len()));
    let text = path.to_string();
    assert_eq!(text.matches('/').count(), path.hops().len(), "{text:?}");
    assert_eq!(text.parse::<PciPath>().as_ref(), Ok(path), "{text:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(rule) = text.parse::<Rule>() {
        let canonical = rule.to_string();
        let again: Rule = canonical
            .parse()
            .unwrap_or_else(|error| panic!("{canonical:?} does not parse: {error:?}"));
        assert_eq!(again, rule, "{canonical:?}");
        assert_eq!(again.to_string(), canonical);
        match rule.location() {
            Some(Address::Path(path)) => {
                assert!(text.contains('/'));
                check_path(&path);
            }
            Some(Address::Bus(_)) | None => assert!(!text.contains('/')),
            Some(Address::Resolved(..)) => panic!("parsing made a resolved address"),
        }
        if let Some(IdGuard {
            subsystem: Some(_), ..
        }) = rule.ids()
        {
            let ids = canonical.split('@').next().unwrap_or_default();
            assert_eq!(ids.len(), 19, "{canonical:?}");
            assert_eq!(ids.matches(':').count(), 3, "{canonical:?}");
        }
    }
    if let Ok(address) = text.parse::<Address>() {
        assert_eq!(address.to_string().parse::<Address>(), Ok(address));
    }
    if let Some(path) = path_of_link(&text) {
        check_path(&path);
    }
});
