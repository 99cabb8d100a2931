//! A duration in seconds as people write it: `10`, `2.5`.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use core::fmt;
use std::time::Duration;

/// A duration in seconds as people write it: `10`, `2.5`.
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole and tenths of seconds, rounded; no u128 arithmetic (as_millis) for this.
        let tenths = self.0.as_secs() * 10 + (u64::from(self.0.subsec_millis()) + 50) / 100;
        if tenths.is_multiple_of(10) {
            write!(f, "{}", tenths / 10)
        } else {
            write!(f, "{}.{}", tenths / 10, tenths % 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_as_people_write_them() {
        assert_eq!(Seconds(Duration::from_secs(10)).to_string(), "10");
        assert_eq!(Seconds(Duration::from_millis(2500)).to_string(), "2.5");
        assert_eq!(Seconds(Duration::from_millis(1999)).to_string(), "2");
    }
}
