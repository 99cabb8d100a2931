//! The exit statuses, all in one place: what a hook or a script sees of a run.
//!
//! Every failure is 1 so that a caller needs one test (`vfio-bind ... || warn`); only a
//! command line that cannot be run at all differs, so a typo in a hook is told apart.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

/// Every rule applied, or (for the read-only commands) no problem found.
pub const EXIT_OK: u8 = 0;
/// Some rule was malformed, did not match or did not bind; a problem was found; or some
/// rule text, source or file was lost on the way.
pub const EXIT_FAILED: u8 = 1;
/// Output that could not be written: the same as any failure.
pub const EXIT_OUTPUT: u8 = EXIT_FAILED;
/// The worker did not end in time or died of a signal: the same as any failure.
pub const EXIT_GAVE_UP: u8 = EXIT_FAILED;
/// Another binder held the lock for the whole wait: the same as any failure.
pub const EXIT_LOCKED: u8 = EXIT_FAILED;
/// A bad argument.
pub const EXIT_USAGE: u8 = 2;
