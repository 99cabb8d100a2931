//! The kernel command line: splitting it the way the kernel does, and the switches read
//! from it (`vfio.enable_unsafe_noiommu_mode`, `rd.vfio_bind=0`). The rules it carries are
//! collected by [`crate::rules::ruleset`].
//!
//! The text is bytes, as the kernel keeps it: a filesystem label in Latin-1 or a comment
//! in some other encoding is just text, and never hides the parameters after it. Splitting
//! follows `next_arg()` in the kernel's lib/cmdline.c and `parse_args()` in kernel/params.c:
//! - parameters are separated by the kernel's white space (`isspace()` of lib/ctype.c:
//!   space, `\t`, `\n`, `\v`, `\f`, `\r`, and the Latin-1 no-break space 0xa0);
//! - a double quote toggles quoting, so `"a b"` is one parameter; a parameter that starts
//!   with a quote loses it and its last byte if that is a quote; a value that starts with
//!   a quote loses it, and its last byte if that is a quote; other quotes are kept;
//! - `name=value` splits at the first `=` that is not the parameter's first byte;
//! - a `--` with no value (quoted or not) ends the kernel's parameters: the rest is init's;
//! - a NUL byte ends the text, as it ends the kernel's C string;
//! - parameter names treat `-` and `_` alike (`parameq()`).
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use core::fmt;

/// The parameter that carries rules.
pub const BIND_PARAMETER: &str = "vfio.bind";
/// The vfio module's switch for running without an IOMMU.
const NOIOMMU_PARAMETER: &str = "vfio.enable_unsafe_noiommu_mode";
/// The escape hatch: with a false value, `vfio-bind apply` binds nothing. `rd.` is
/// dracut's namespace for initramfs switches, and every init's hook runs the same binder.
pub const DISABLE_PARAMETER: &str = "rd.vfio_bind";

/// The kernel's `isspace()` (lib/ctype.c marks 0x09-0x0d, 0x20 and 0xa0 as `_S`).
pub fn is_kernel_space(byte: u8) -> bool {
    matches!(byte, b'\t'..=b'\r' | b' ' | 0xa0)
}

/// One `name[=value]` parameter of a command line, as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parameter<'a> {
    pub name: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl Parameter<'_> {
    /// Compares names as the kernel does: `-` and `_` are the same character.
    pub fn is(&self, name: &str) -> bool {
        let normalise = |b: u8| if b == b'-' { b'_' } else { b };
        self.name.len() == name.len()
            && self
                .name
                .iter()
                .zip(name.bytes())
                .all(|(&a, b)| normalise(a) == normalise(b))
    }
}

/// Iterates over the parameters of a command line, stopping at a `--` without a value.
pub fn parameters(text: &[u8]) -> Parameters<'_> {
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    Parameters { rest: &text[..end] }
}

pub struct Parameters<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Parameters<'a> {
    type Item = Parameter<'a>;

    fn next(&mut self) -> Option<Parameter<'a>> {
        let start = self.rest.iter().position(|&b| !is_kernel_space(b))?;
        let mut args = &self.rest[start..];
        let quoted = args.first() == Some(&b'"');
        if quoted {
            args = &args[1..];
        }
        let mut in_quote = quoted;
        // As in next_arg(): 0 means "no `=`", so an `=` as the first byte is not seen.
        let mut equals = 0;
        let mut end = args.len();
        for (index, &byte) in args.iter().enumerate() {
            if is_kernel_space(byte) && !in_quote {
                end = index;
                break;
            }
            if equals == 0 && byte == b'=' {
                equals = index;
            }
            if byte == b'"' {
                in_quote = !in_quote;
            }
        }
        let word = &args[..end];
        // The separator itself is consumed; later white space is skipped by the next call.
        self.rest = args.get(end + 1..).unwrap_or_default();
        let ends_in_quote = word.last() == Some(&b'"');
        let parameter = if equals == 0 {
            let name = if quoted && ends_in_quote {
                &word[..word.len() - 1]
            } else {
                word
            };
            Parameter { name, value: None }
        } else {
            let mut value = &word[equals + 1..];
            let mut last_dropped = false;
            if let Some(unquoted) = value.strip_prefix(b"\"") {
                value = unquoted;
                if ends_in_quote {
                    // The closing quote, unless the opening one was the last byte.
                    value = value.strip_suffix(b"\"").unwrap_or(value);
                    last_dropped = true;
                }
            }
            if quoted && ends_in_quote && !last_dropped {
                value = &value[..value.len() - 1];
            }
            Parameter {
                name: &word[..equals],
                value: Some(value),
            }
        };
        if parameter.value.is_none() && parameter.name == b"--" {
            self.rest = &[];
            return None;
        }
        Some(parameter)
    }
}

/// The kernel's `kstrtobool()`: `None` for text it refuses (the parameter is then left as
/// it was).
fn kstrtobool(value: &[u8]) -> Option<bool> {
    match value {
        [b'y' | b'Y' | b'1', ..] | [b'o' | b'O', b'n' | b'N', ..] => Some(true),
        [b'n' | b'N' | b'0', ..] | [b'o' | b'O', b'f' | b'F', ..] => Some(false),
        _ => None,
    }
}

/// Whether the command line asks vfio for no-IOMMU mode (`vfio.enable_unsafe_noiommu_mode=1`).
/// As for a module's bool parameter: a bare name means true, the last valid value wins.
pub fn requests_noiommu(text: &[u8]) -> bool {
    parameters(text)
        .filter(|parameter| parameter.is(NOIOMMU_PARAMETER))
        .fold(false, |state, parameter| match parameter.value {
            None => true,
            Some(value) => kstrtobool(value).unwrap_or(state),
        })
}

/// Whether the text turns the binder off: `rd.vfio_bind=` (or `rd.vfio-bind=`) with the
/// value `0`, `n`, `no`, `off` or `false`, in any case, anywhere among the kernel's
/// parameters. Any one such parameter is enough: the escape hatch is typed at a boot
/// menu, and nothing later (a fragment saying `rd.vfio_bind=1`) can take it back.
pub fn binder_disabled(text: &[u8]) -> bool {
    parameters(text)
        .filter(|parameter| parameter.is(DISABLE_PARAMETER))
        .any(|parameter| {
            parameter.value.is_some_and(|value| {
                [&b"0"[..], b"n", b"no", b"off", b"false"]
                    .iter()
                    .any(|off| value.eq_ignore_ascii_case(off))
            })
        })
}

/// Bytes shown in a log line between double quotes: valid UTF-8 as it is, every other
/// byte as `\xNN`, and control characters, `"` and `\` escaped, so that a hostile text can
/// neither forge a line nor hide its own bytes.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for character in chunk.valid().chars() {
                match character {
                    '"' | '\\' => write!(f, "\\{character}")?,
                    c if c.is_control() && c.is_ascii() => write!(f, "\\x{:02x}", c as u8)?,
                    c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => fmt::Write::write_char(f, c)?,
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_values(text: &[u8]) -> std::vec::Vec<(&[u8], Option<&[u8]>)> {
        parameters(text).map(|p| (p.name, p.value)).collect()
    }

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            names_and_values(
                b"  ro quiet vfio.bind=1002:73ff@07:00\tfoo=\"a b\" \"bar=c d\" -- init=x"
            ),
            [
                (&b"ro"[..], None),
                (b"quiet", None),
                (b"vfio.bind", Some(&b"1002:73ff@07:00"[..])),
                (b"foo", Some(b"a b")),
                (b"bar", Some(b"c d")),
            ]
        );
        assert_eq!(names_and_values(b""), []);
        assert_eq!(names_and_values(b" \t\x0b\x0c\r\n"), []);
        assert_eq!(
            names_and_values(b"a=\"unterminated value"),
            [(&b"a"[..], Some(&b"unterminated value"[..]))]
        );
    }

    #[test]
    fn vertical_tab_form_feed_and_latin1_no_break_space_separate_parameters() {
        assert_eq!(
            names_and_values(b"a\x0bb\x0cc\xa0d\re"),
            [
                (&b"a"[..], None),
                (b"b", None),
                (b"c", None),
                (b"d", None),
                (b"e", None)
            ]
        );
    }

    #[test]
    fn non_utf8_bytes_are_just_text() {
        assert_eq!(
            names_and_values(b"root=LABEL=Donn\xe9es vfio.bind=@07:00"),
            [
                (&b"root"[..], Some(&b"LABEL=Donn\xe9es"[..])),
                (b"vfio.bind", Some(b"@07:00")),
            ]
        );
    }

    #[test]
    fn a_nul_byte_ends_the_text() {
        assert_eq!(names_and_values(b"a\0 b"), [(&b"a"[..], None)]);
    }

    #[test]
    fn quotes_are_dropped_only_where_the_kernel_drops_them() {
        // A value's closing quote goes only with its opening one; an unquoted parameter
        // keeps a trailing quote.
        assert_eq!(names_and_values(b"a=b\""), [(&b"a"[..], Some(&b"b\""[..]))]);
        assert_eq!(names_and_values(b"foo\""), [(&b"foo\""[..], None)]);
        assert_eq!(names_and_values(b"\"foo\""), [(&b"foo"[..], None)]);
        assert_eq!(names_and_values(b"\"a=b\""), [(&b"a"[..], Some(&b"b"[..]))]);
        assert_eq!(
            names_and_values(b"a=\"x\"y"),
            [(&b"a"[..], Some(&b"x\"y"[..]))]
        );
        assert_eq!(names_and_values(b"a=\""), [(&b"a"[..], Some(&b""[..]))]);
        assert_eq!(
            names_and_values(b"\"a=\"b\"\""),
            [(&b"a"[..], Some(&b"b\""[..]))]
        );
        assert_eq!(
            names_and_values(b"\"\" x"),
            [(&b""[..], None), (b"x", None)]
        );
        // An `=` as the first byte does not split; the next one does.
        assert_eq!(names_and_values(b"=a"), [(&b"=a"[..], None)]);
        assert_eq!(names_and_values(b"=a=b"), [(&b"=a"[..], Some(&b"b"[..]))]);
    }

    #[test]
    fn a_quoted_double_dash_ends_the_parameters_too() {
        assert_eq!(
            names_and_values(b"a \"--\" vfio.bind=@07:00"),
            [(&b"a"[..], None)]
        );
        assert_eq!(names_and_values(b"a\t--\tb"), [(&b"a"[..], None)]);
        // `--=x` has a value, `--"` is another word (whose quote then groups ` b`):
        // neither ends anything.
        assert_eq!(
            names_and_values(b"--=x --\" b"),
            [(&b"--"[..], Some(&b"x"[..])), (b"--\" b", None)]
        );
    }

    #[test]
    fn noiommu_switch() {
        assert!(requests_noiommu(b"vfio.enable_unsafe_noiommu_mode=1"));
        assert!(requests_noiommu(b"vfio.enable-unsafe-noiommu-mode=Y"));
        assert!(requests_noiommu(b"vfio.enable_unsafe_noiommu_mode"));
        assert!(!requests_noiommu(
            b"vfio.enable_unsafe_noiommu_mode=1 vfio.enable_unsafe_noiommu_mode=0"
        ));
        // A value kstrtobool refuses leaves the parameter as it was.
        assert!(requests_noiommu(
            b"vfio.enable_unsafe_noiommu_mode=1 vfio.enable_unsafe_noiommu_mode=maybe"
        ));
        assert!(!requests_noiommu(b"enable_unsafe_noiommu_mode=1"));
        assert!(!requests_noiommu(b"-- vfio.enable_unsafe_noiommu_mode=1"));
    }

    #[test]
    fn the_escape_hatch_is_read_with_the_kernels_splitter() {
        for text in [
            &b"rd.vfio_bind=0"[..],
            b"quiet\trd.vfio_bind=0\tsplash",
            b"quiet\x0brd.vfio_bind=0",
            b"\"rd.vfio_bind=0\"",
            b"rd.vfio_bind=\"0\"",
            b"rd.vfio-bind=0",
            b"root=LABEL=Donn\xe9es rd.vfio_bind=off",
            b"rd.vfio_bind=n",
            b"rd.vfio_bind=N",
            b"rd.vfio_bind=no",
            b"rd.vfio_bind=OFF",
            b"rd.vfio_bind=false",
            b"rd.vfio_bind=0 rd.vfio_bind=1",
        ] {
            assert!(binder_disabled(text), "{}", Escaped(text));
        }
        for text in [
            &b""[..],
            b"rd.vfio_bind",
            b"rd.vfio_bind=",
            b"rd.vfio_bind=1",
            b"rd.vfio_bind=01",
            b"xrd.vfio_bind=0",
            b"rd.vfio_bind=0x",
            b"rd_vfio_bind=0",
            b"foo=\"a rd.vfio_bind=0\"",
            b"-- rd.vfio_bind=0",
            b"\"--\" rd.vfio_bind=0",
        ] {
            assert!(!binder_disabled(text), "{}", Escaped(text));
        }
    }

    #[test]
    fn escaped_text_shows_every_byte() {
        assert_eq!(
            Escaped(b"Donn\xe9es \"x\"\\ \x1b[31m\n\xc3\xa9").to_string(),
            "Donn\\xe9es \\\"x\\\"\\\\ \\x1b[31m\\x0a\u{e9}"
        );
    }
}
