//! What a user writes, and its grammar: PCI addresses, rules, rule sets, the kernel command line.
//! The bottom layer, all pure: it imports nothing of this crate outside `rules`, and every
//! other folder may import it.

pub mod address;
pub mod cmdline;
pub mod rule;
pub mod ruleset;
