//! What serves a person on a running host: `list`, `rule` and `check`, what they read from the
//! host, and how they print. The top layer: it may import every other folder, and nothing in
//! `rules`, `machine` or `boot` may import it.

pub mod checks;
pub mod host;
pub mod image;
pub mod json;
pub mod pciids;
pub mod report;
