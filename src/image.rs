//! Reading boot images for the doctor: the files an initramfs holds (newc cpio archives,
//! concatenated, each plain or compressed) and the `.cmdline` section of a unified kernel
//! image (a PE file). Pure: bytes in, findings' raw material out; decompression is done by a
//! caller-supplied function, so tests need no tools and `check` can use the system's own.

/// How a segment of an initramfs is compressed, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Xz,
    Lzma,
    Bzip2,
    Lz4,
    Lzop,
}

impl Compression {
    /// Recognises the magic number at the start of `bytes`.
    pub fn detect(bytes: &[u8]) -> Option<Compression> {
        const MAGICS: [(&[u8], Compression); 7] = [
            (&[0x1f, 0x8b], Compression::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
            (&[0x5d, 0x00, 0x00], Compression::Lzma),
            (b"BZh", Compression::Bzip2),
            (&[0x02, 0x21, 0x4c, 0x18], Compression::Lz4),
            (&[0x89, b'L', b'Z', b'O'], Compression::Lzop),
        ];
        MAGICS
            .iter()
            .find(|(magic, _)| bytes.starts_with(magic))
            .map(|(_, compression)| *compression)
    }

    /// The program (and its argument) that decompresses this format to stdout.
    pub fn program(self) -> (&'static str, &'static str) {
        match self {
            Compression::Gzip => ("gzip", "-dc"),
            Compression::Zstd => ("zstd", "-dcq"),
            Compression::Xz | Compression::Lzma => ("xz", "-dc"),
            Compression::Bzip2 => ("bzip2", "-dc"),
            Compression::Lz4 => ("lz4", "-dc"),
            Compression::Lzop => ("lzop", "-dc"),
        }
    }
}

/// One file of an initramfs: its path without the leading `./` or `/`, and its contents
/// when it is a small regular file the doctor reads (else empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    pub name: String,
    pub contents: Vec<u8>,
}

/// Why an image could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// A segment is compressed and could not be decompressed (the tool is missing).
    Undecompressed(Compression),
    /// Neither a cpio archive nor a known compression at this offset.
    Unrecognised(usize),
    /// A cpio header or name runs past the end.
    Truncated,
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImageError::Undecompressed(compression) => write!(
                f,
                "it is {compression:?}-compressed and `{}` could not decompress it",
                compression.program().0
            ),
            ImageError::Unrecognised(offset) => {
                write!(
                    f,
                    "byte {offset} starts neither a cpio archive nor a known compression"
                )
            }
            ImageError::Truncated => f.write_str("a cpio archive in it is truncated"),
        }
    }
}

/// Files whose contents [`files`] keeps: rule fragments only.
fn wanted_contents(name: &str) -> bool {
    name.starts_with("etc/cmdline.d/") && name.ends_with(".conf")
}

const NEWC_HEADER: usize = 110;
/// Guards against a hostile image: nesting of compressed segments.
const MAX_SEGMENTS: usize = 16;

/// Turns a compressed segment into plain bytes; `None` when it cannot.
pub type Decompressor<'a> = dyn FnMut(Compression, &[u8]) -> Option<Vec<u8>> + 'a;

/// Every file of an initramfs image: cpio archives one after another (an uncompressed
/// early-microcode archive, then the main one, compressed or not), as the kernel unpacks
/// them. `decompress` turns a compressed tail into plain bytes.
pub fn files(
    image: &[u8],
    decompress: &mut Decompressor<'_>,
) -> Result<Vec<ImageFile>, ImageError> {
    let mut found = Vec::new();
    let mut owned: Vec<u8>;
    let mut rest = image;
    let mut base = 0;
    for _ in 0..MAX_SEGMENTS {
        // The kernel skips zero padding between archives.
        let zeros = rest.iter().take_while(|&&byte| byte == 0).count();
        rest = &rest[zeros..];
        base += zeros;
        if rest.is_empty() {
            return Ok(found);
        }
        if rest.starts_with(b"070701") || rest.starts_with(b"070702") {
            let used = read_archive(rest, &mut found)?;
            rest = &rest[used..];
            base += used;
            continue;
        }
        let Some(compression) = Compression::detect(rest) else {
            return Err(ImageError::Unrecognised(base));
        };
        owned = decompress(compression, rest).ok_or(ImageError::Undecompressed(compression))?;
        rest = &owned;
        base = 0;
    }
    Ok(found)
}

/// Reads one newc archive up to its `TRAILER!!!`; returns the bytes it took.
fn read_archive(archive: &[u8], found: &mut Vec<ImageFile>) -> Result<usize, ImageError> {
    let mut at = 0;
    loop {
        let header = archive
            .get(at..at + NEWC_HEADER)
            .ok_or(ImageError::Truncated)?;
        let field = |index: usize| -> Result<usize, ImageError> {
            let text = core::str::from_utf8(&header[6 + index * 8..6 + (index + 1) * 8])
                .map_err(|_| ImageError::Truncated)?;
            usize::from_str_radix(text, 16).map_err(|_| ImageError::Truncated)
        };
        let mode = field(1)?;
        let file_size = field(6)?;
        let name_size = field(11)?;
        let name_start = at + NEWC_HEADER;
        let name_bytes = archive
            .get(name_start..name_start + name_size)
            .ok_or(ImageError::Truncated)?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        let data_start = align4(name_start + name_size);
        let data = archive
            .get(data_start..data_start + file_size)
            .ok_or(ImageError::Truncated)?;
        at = align4(data_start + file_size);
        if name == "TRAILER!!!" {
            return Ok(at.min(archive.len()));
        }
        let name = name
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        let regular = mode & 0o170000 == 0o100000;
        let contents = if regular && wanted_contents(&name) {
            data.to_vec()
        } else {
            Vec::new()
        };
        found.push(ImageFile { name, contents });
    }
}

fn align4(offset: usize) -> usize {
    offset.div_ceil(4) * 4
}

/// The `.cmdline` section of a PE image (a unified kernel image), NULs and the final
/// newline removed; `None` if the file is not PE or has no such section.
pub fn pe_cmdline(pe: &[u8]) -> Option<String> {
    let read_u16 = |at: usize| -> Option<usize> {
        Some(u16::from_le_bytes(pe.get(at..at + 2)?.try_into().ok()?) as usize)
    };
    let read_u32 = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(pe.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    if !pe.starts_with(b"MZ") {
        return None;
    }
    let header = read_u32(0x3c)?;
    if pe.get(header..header + 4)? != b"PE\0\0" {
        return None;
    }
    let sections = read_u16(header + 6)?;
    let optional_size = read_u16(header + 20)?;
    let table = header + 24 + optional_size;
    for index in 0..sections.min(96) {
        let entry = table + index * 40;
        let name = pe.get(entry..entry + 8)?;
        if name != b".cmdline" {
            continue;
        }
        let virtual_size = read_u32(entry + 8)?;
        let raw_size = read_u32(entry + 16)?;
        let raw_start = read_u32(entry + 20)?;
        let length = if virtual_size == 0 {
            raw_size
        } else {
            virtual_size.min(raw_size)
        };
        let bytes = pe.get(raw_start..raw_start.checked_add(length)?)?;
        let text = String::from_utf8_lossy(bytes);
        return Some(text.trim_end_matches(['\0', '\n']).to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysfs_fixture::images::{newc, pe};

    fn no_tools(_: Compression, _: &[u8]) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn reads_the_files_of_concatenated_archives_and_the_fragments_contents() {
        let mut image = newc(&[("kernel/x86/microcode/GenuineIntel.bin", 0o100644, b"ucode")]);
        image.extend_from_slice(&[0; 512]);
        image.extend(newc(&[
            (".", 0o040755, b""),
            ("usr/bin/vfio-bind", 0o100755, b"\x7fELF"),
            (
                "etc/cmdline.d/vfio-bind.conf",
                0o100644,
                b"vfio.bind=1002:73ff@07:00\n",
            ),
        ]));
        let files = files(&image, &mut no_tools).unwrap();
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kernel/x86/microcode/GenuineIntel.bin",
                ".",
                "usr/bin/vfio-bind",
                "etc/cmdline.d/vfio-bind.conf"
            ]
        );
        assert!(files[2].contents.is_empty(), "only fragments are kept");
        assert_eq!(files[3].contents, b"vfio.bind=1002:73ff@07:00\n");
    }

    #[test]
    fn a_compressed_tail_goes_through_the_decompressor() {
        let inner = newc(&[("hooks/vfio-bind", 0o100644, b"run_earlyhook")]);
        let mut image = newc(&[("early", 0o100644, b"")]);
        image.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]);
        let mut asked = Vec::new();
        let files = files(&image, &mut |compression, bytes| {
            asked.push((compression, bytes.len()));
            Some(inner.clone())
        })
        .unwrap();
        assert_eq!(asked, [(Compression::Zstd, 7)]);
        assert_eq!(files.last().unwrap().name, "hooks/vfio-bind");
        assert_eq!(
            super::files(&image, &mut no_tools),
            Err(ImageError::Undecompressed(Compression::Zstd))
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert_eq!(
            files(b"hello", &mut no_tools),
            Err(ImageError::Unrecognised(0))
        );
        let archive = newc(&[("a", 0o100644, b"abc")]);
        for cut in 1..archive.len() - 1 {
            let _ = files(&archive[..cut], &mut no_tools);
        }
        assert_eq!(
            files(&archive[..50], &mut no_tools),
            Err(ImageError::Truncated)
        );
    }

    #[test]
    fn the_cmdline_section_of_a_unified_kernel_image() {
        let uki = pe(&[
            (b".osrel\0\0", b"ID=arch"),
            (b".cmdline", b"root=/dev/sda2 vfio.bind=@07:00\n\0"),
        ]);
        assert_eq!(
            pe_cmdline(&uki).as_deref(),
            Some("root=/dev/sda2 vfio.bind=@07:00")
        );
        assert_eq!(pe_cmdline(&pe(&[(b".linux\0\0", b"")])), None);
        assert_eq!(pe_cmdline(b"MZ"), None);
        assert_eq!(pe_cmdline(b"\x7fELF"), None);
        for cut in 0..uki.len() {
            let _ = pe_cmdline(&uki[..cut]);
        }
    }
}
