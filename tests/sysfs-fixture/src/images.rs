//! Boot images for the doctor's tests: newc cpio archives and minimal PE files (unified
//! kernel images), built as the tools that make real ones lay them out; compressed as the
//! generators compress them; and the EFI variables a boot loader leaves.

use std::io::Write as _;
use std::process::{Command, Stdio};

fn align4(offset: usize) -> usize {
    offset.div_ceil(4) * 4
}

/// A newc archive of `(name, mode, contents)` entries with its trailer.
pub fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut archive = Vec::new();
    let trailer: (&str, u32, &[u8]) = ("TRAILER!!!", 0, b"");
    for (number, (name, mode, contents)) in entries.iter().chain([&trailer]).enumerate() {
        let fields = [
            number + 1,
            *mode as usize,
            0,
            0,
            1,
            0,
            contents.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0,
        ];
        archive.extend_from_slice(b"070701");
        for field in fields {
            archive.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        archive.extend_from_slice(name.as_bytes());
        archive.push(0);
        archive.resize(align4(archive.len()), 0);
        archive.extend_from_slice(contents);
        archive.resize(align4(archive.len()), 0);
    }
    archive
}

/// A minimal PE file with the given sections.
pub fn pe(sections: &[(&[u8; 8], &[u8])]) -> Vec<u8> {
    let mut file = vec![0u8; 0x80];
    file[0..2].copy_from_slice(b"MZ");
    file[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    file[0x40..0x44].copy_from_slice(b"PE\0\0");
    file[0x46..0x48].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    // No optional header: the section table follows the COFF header at 0x58.
    file.truncate(0x58);
    let data_start = 0x58 + 40 * sections.len();
    let mut data = Vec::new();
    for (name, contents) in sections {
        let mut entry = [0u8; 40];
        entry[0..8].copy_from_slice(*name);
        entry[8..12].copy_from_slice(&(contents.len() as u32).to_le_bytes());
        entry[16..20].copy_from_slice(&(contents.len() as u32 + 8).to_le_bytes());
        entry[20..24].copy_from_slice(&((data_start + data.len()) as u32).to_le_bytes());
        file.extend_from_slice(&entry);
        data.extend_from_slice(contents);
        data.extend_from_slice(&[0; 8]);
    }
    file.extend(data);
    file
}

/// `bytes` compressed by the system's `program` (`zstd`, `gzip`), as the generators do.
pub fn compressed_by(program: &str, bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (apt-get install {program})"));
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout
}

/// An EFI variable's file in efivarfs: 4 bytes of attributes, then UTF-16LE text and a NUL.
pub fn efi_variable(text: &str) -> Vec<u8> {
    let mut bytes = vec![6, 0, 0, 0];
    for unit in text.encode_utf16().chain([0]) {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

/// The CRC-32 of gzip (and of zlib, PNG, the xz check): reflected, polynomial 0xedb88320.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                crc >> 1 ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A gzip member holding `bytes` in stored (uncompressed) deflate blocks: valid for any
/// gzip, and made without one.
pub fn gzip_stored(bytes: &[u8]) -> Vec<u8> {
    let mut member = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let mut chunks = bytes.chunks(0xffff).peekable();
    if bytes.is_empty() {
        member.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        member.push(u8::from(chunks.peek().is_none()));
        let length = chunk.len() as u16;
        member.extend_from_slice(&length.to_le_bytes());
        member.extend_from_slice(&(!length).to_le_bytes());
        member.extend_from_slice(chunk);
    }
    member.extend_from_slice(&crc32(bytes).to_le_bytes());
    member.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    member
}

/// The start of a zstd frame: magic, no content size, a 128 KiB window, no checksum.
fn zstd_frame_header() -> Vec<u8> {
    vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3]
}

/// A zstd block header: last-block flag, type (0 raw, 1 RLE), size.
fn zstd_block_header(last: bool, kind: u32, size: usize) -> [u8; 3] {
    let header = u32::from(last) | kind << 1 | (size as u32) << 3;
    [header as u8, (header >> 8) as u8, (header >> 16) as u8]
}

/// A zstd frame holding `bytes` in raw blocks: valid for any zstd, and made without one.
pub fn zstd_raw(bytes: &[u8]) -> Vec<u8> {
    let mut frame = zstd_frame_header();
    let mut chunks = bytes.chunks(128 << 10).peekable();
    if bytes.is_empty() {
        frame.extend_from_slice(&zstd_block_header(true, 0, 0));
    }
    while let Some(chunk) = chunks.next() {
        frame.extend_from_slice(&zstd_block_header(chunks.peek().is_none(), 0, chunk.len()));
        frame.extend_from_slice(chunk);
    }
    frame
}

/// A zstd frame that unpacks to `count` copies of `byte` in 4 bytes per 128 KiB (RLE
/// blocks): a decompression bomb of any size, a few KiB on disk.
pub fn zstd_rle(byte: u8, count: u64) -> Vec<u8> {
    let mut frame = zstd_frame_header();
    let block = 128u64 << 10;
    let mut left = count;
    while left > 0 {
        let size = left.min(block);
        left -= size;
        frame.extend_from_slice(&zstd_block_header(left == 0, 1, size as usize));
        frame.push(byte);
    }
    frame
}
