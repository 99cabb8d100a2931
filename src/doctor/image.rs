//! Reading boot images for the doctor: the files an initramfs holds (newc cpio archives,
//! concatenated, each plain or compressed) and the `.cmdline` section of a unified kernel
//! image (a PE file). Pure: bytes in, findings' raw material out; decompression is done by a
//! caller-supplied function, so tests need no tools and `check` can use the system's own.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

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

    /// The program (and its arguments) that decompresses this format to stdout. Each keeps
    /// its memory small by itself (zstd refuses windows over 128 MiB unless told), but xz
    /// allocates whatever dictionary a header asks for: it gets a limit.
    pub fn program(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Compression::Gzip => ("gzip", &["-dc"]),
            Compression::Zstd => ("zstd", &["-dcq"]),
            Compression::Xz | Compression::Lzma => ("xz", &["-dc", "--memlimit-decompress=256MiB"]),
            Compression::Bzip2 => ("bzip2", &["-dc"]),
            Compression::Lz4 => ("lz4", &["-dc"]),
            Compression::Lzop => ("lzop", &["-dc"]),
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

/// What was read of an initramfs: the files the caller asked for, and, when the reading
/// stopped before the end of what the kernel unpacks, why. A part can show that a file is
/// there, never that it is missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub files: Vec<ImageFile>,
    pub unread: Option<Unread>,
}

/// Why an image was read only in part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unread {
    /// No decompressor for a segment of this format was found.
    NoDecompressor(Compression),
    /// The decompressor failed on a segment of this format.
    DecompressorFailed(Compression),
    /// A segment of this format was decompressed, but where it ends (and so whether the
    /// kernel unpacks more after it) cannot be told without decoding it ourselves.
    EndUnknown(Compression),
    /// The decompressed output passed the limit of this many bytes.
    TooLarge(u64),
    /// Reading did not finish within this many seconds.
    TooSlow(u64),
    /// Bytes the kernel does not unpack either (it stops there, keeping what it unpacked):
    /// `inside` names the compressed segment they were found in, if any.
    Junk {
        offset: u64,
        inside: Option<Compression>,
    },
    /// A cpio archive ends in the middle of an entry.
    Truncated,
    /// More files of interest than the reader keeps.
    TooManyFiles,
    /// More compressed segments than the reader unpacks (each is one decompressor run).
    TooManySegments(usize),
}

impl core::fmt::Display for Unread {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unread::NoDecompressor(compression) => write!(
                f,
                "it has a {compression:?}-compressed part and no `{}` was found in /usr/bin or /bin",
                compression.program().0
            ),
            Unread::DecompressorFailed(compression) => write!(
                f,
                "`{}` failed on its {compression:?}-compressed part",
                compression.program().0
            ),
            Unread::EndUnknown(compression) => write!(
                f,
                "where its {compression:?}-compressed part ends, and so whether the kernel unpacks more after it, cannot be told"
            ),
            Unread::TooLarge(limit) => write!(
                f,
                "too large to read: it unpacks to more than {} MiB",
                limit >> 20
            ),
            Unread::TooSlow(seconds) => {
                write!(f, "too slow to read: not unpacked within {seconds} s")
            }
            Unread::Junk {
                offset,
                inside: None,
            } => write!(
                f,
                "byte {offset} starts neither a cpio archive nor a known compression (the kernel stops there too)"
            ),
            Unread::Junk {
                offset,
                inside: Some(compression),
            } => write!(
                f,
                "byte {offset} of what its {compression:?}-compressed part unpacks to is not a cpio archive (the kernel stops there too)"
            ),
            Unread::Truncated => f.write_str("a cpio archive in it is truncated"),
            Unread::TooManyFiles => f.write_str("it holds more rule fragments than are read"),
            Unread::TooManySegments(limit) => {
                write!(f, "it has more than {limit} compressed parts")
            }
        }
    }
}

/// Files whose contents the reader keeps: rule fragments only, up to what the binder reads.
fn wanted_contents(name: &str) -> bool {
    name.starts_with("etc/cmdline.d/") && name.ends_with(".conf")
}
const CONTENTS_LIMIT: u64 = 4096;
/// Files kept at most (the names asked for are few: the binary, its hooks, the fragments).
const KEPT_LIMIT: usize = 256;

const NEWC_HEADER: usize = 110;
/// Compressed segments unpacked at most: real images have one to three (early firmware or
/// microcode may be compressed too); each is a decompressor run.
pub const SEGMENT_LIMIT: usize = 64;

/// Turns a compressed segment into a stream of plain bytes; `None` when no decompressor is
/// there. A stream stopped by a limit says so with a [`Stopped`] error; any other error is
/// a failed decompressor.
pub type Decompressor<'a> =
    dyn FnMut(Compression, &[u8]) -> Option<Box<dyn std::io::Read + 'a>> + 'a;

/// What the kernel unpacks of an initramfs image (`init/initramfs.c`): at the top level,
/// cpio archives, zero padding and compressed segments one after another; a compressed
/// segment's output holds cpio archives and zero padding only (anything else there, a
/// second compression included, stops the kernel: "junk within compressed archive"), and
/// after it the top level goes on. `keep` says which files the caller wants; later files
/// of the same name replace earlier ones, as they do in the kernel's rootfs.
pub fn read(image: &[u8], decompress: &mut Decompressor<'_>, keep: &dyn Fn(&str) -> bool) -> Image {
    let mut kept = Kept {
        image: Image::default(),
        keep,
    };
    let mut at = 0usize;
    let mut segments = 0;
    while at < image.len() {
        let rest = &image[at..];
        let zeros = rest.iter().take_while(|&&byte| byte == 0).count();
        if zeros > 0 {
            at += zeros;
            continue;
        }
        if rest.starts_with(b"07070") {
            let mut input = rest;
            let result = read_archives(&mut input, &mut kept, None, at as u64);
            at += rest.len() - input.len();
            match result {
                Ok(()) => continue,
                Err(unread) => return kept.stop(unread),
            }
        }
        let Some(compression) = Compression::detect(rest) else {
            return kept.stop(Unread::Junk {
                offset: at as u64,
                inside: None,
            });
        };
        segments += 1;
        if segments > SEGMENT_LIMIT {
            return kept.stop(Unread::TooManySegments(SEGMENT_LIMIT));
        }
        let end = segment_end(compression, rest);
        let segment = &rest[..end.unwrap_or(rest.len())];
        let Some(stream) = decompress(compression, segment) else {
            return kept.stop(Unread::NoDecompressor(compression));
        };
        let mut stream = std::io::BufReader::with_capacity(1 << 16, stream);
        if let Err(unread) = read_archives(&mut stream, &mut kept, Some(compression), 0) {
            return kept.stop(match (end, unread) {
                (None, Unread::DecompressorFailed(_)) => Unread::EndUnknown(compression),
                (_, unread) => unread,
            });
        }
        match end {
            Some(end) => at += end,
            None => return kept.stop(Unread::EndUnknown(compression)),
        }
    }
    kept.image
}

/// The files kept so far.
struct Kept<'a> {
    image: Image,
    keep: &'a dyn Fn(&str) -> bool,
}

impl Kept<'_> {
    fn stop(mut self, unread: Unread) -> Image {
        self.image.unread = Some(unread);
        self.image
    }

    fn add(&mut self, file: ImageFile) -> Result<(), Unread> {
        let files = &mut self.image.files;
        match files.iter().position(|seen| seen.name == file.name) {
            Some(index) => files[index] = file,
            None if files.len() < KEPT_LIMIT => files.push(file),
            None => return Err(Unread::TooManyFiles),
        }
        Ok(())
    }
}

/// Reads cpio archives and zero padding from `input` to its end (in a compressed segment)
/// or to the first byte that starts neither (at the top level, `inside` is `None`: left
/// unread for the caller). `base` is the offset of `input` in the image, for messages.
fn read_archives(
    input: &mut dyn std::io::BufRead,
    kept: &mut Kept<'_>,
    inside: Option<Compression>,
    base: u64,
) -> Result<(), Unread> {
    let mut offset = base;
    loop {
        let (next, zeros) = match input.fill_buf() {
            Ok(buffer) => (
                buffer.first().copied(),
                buffer.iter().take_while(|&&byte| byte == 0).count(),
            ),
            Err(error) => return Err(stream_error(&error, inside)),
        };
        match next {
            None => return Ok(()),
            Some(0) => {
                input.consume(zeros);
                offset += zeros as u64;
            }
            Some(b'0') => offset += read_entry(input, kept, inside)?,
            Some(_) if inside.is_none() => return Ok(()),
            Some(_) => return Err(Unread::Junk { offset, inside }),
        }
    }
}

/// Why a decompressor's stream stopped, when the stream itself decided it (a limit): the
/// payload of the [`std::io::Error`] its `read` returns.
#[derive(Debug)]
pub struct Stopped(pub Unread);

impl core::fmt::Display for Stopped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Stopped {}

fn stream_error(error: &std::io::Error, inside: Option<Compression>) -> Unread {
    if let Some(Stopped(unread)) = error.get_ref().and_then(|inner| inner.downcast_ref()) {
        return unread.clone();
    }
    match (error.kind(), inside) {
        (std::io::ErrorKind::UnexpectedEof, _) | (_, None) => Unread::Truncated,
        (_, Some(compression)) => Unread::DecompressorFailed(compression),
    }
}

/// Reads one newc entry (a `TRAILER!!!` included); returns the bytes it took.
fn read_entry(
    input: &mut dyn std::io::BufRead,
    kept: &mut Kept<'_>,
    inside: Option<Compression>,
) -> Result<u64, Unread> {
    use std::io::Read as _;
    let fail = |error: std::io::Error| stream_error(&error, inside);
    let mut header = [0u8; NEWC_HEADER];
    input.read_exact(&mut header).map_err(fail)?;
    if !(header.starts_with(b"070701") || header.starts_with(b"070702")) {
        return Err(Unread::Truncated);
    }
    let field = |index: usize| -> Result<u64, Unread> {
        let text = core::str::from_utf8(&header[6 + index * 8..6 + (index + 1) * 8])
            .map_err(|_| Unread::Truncated)?;
        u64::from_str_radix(text, 16).map_err(|_| Unread::Truncated)
    };
    let mode = field(1)?;
    let file_size = field(6)?;
    let name_size = field(11)?;
    // A name is at most PATH_MAX (the kernel refuses longer ones).
    if name_size > 4096 {
        return Err(Unread::Truncated);
    }
    let mut name_bytes = vec![0u8; name_size as usize];
    input.read_exact(&mut name_bytes).map_err(fail)?;
    let name_end = NEWC_HEADER as u64 + name_size;
    skip(input, align4(name_end) - name_end).map_err(fail)?;
    let name =
        String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(&name_bytes)).into_owned();
    let name = name
        .trim_start_matches("./")
        .trim_start_matches('/')
        .to_string();
    let regular = mode & 0o170000 == 0o100000;
    let mut contents = Vec::new();
    if name != "TRAILER!!!" && (kept.keep)(&name) {
        if regular && wanted_contents(&name) {
            input
                .take(file_size.min(CONTENTS_LIMIT))
                .read_to_end(&mut contents)
                .map_err(fail)?;
        }
        kept.add(ImageFile {
            name,
            contents: contents.clone(),
        })?;
    }
    let data_end = align4(name_end) + file_size;
    skip(
        input,
        file_size - contents.len() as u64 + (align4(data_end) - data_end),
    )
    .map_err(fail)?;
    Ok(align4(data_end))
}

/// Reads and drops `count` bytes; a short input is an unexpected end.
fn skip(input: &mut dyn std::io::BufRead, count: u64) -> std::io::Result<()> {
    use std::io::Read as _;
    let skipped = std::io::copy(&mut input.take(count), &mut std::io::sink())?;
    if skipped < count {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn align4(offset: u64) -> u64 {
    offset.div_ceil(4) * 4
}
/// Where a compressed segment starting at `bytes[0]` ends, as the kernel's decompressor
/// finds it (one zstd frame, one gzip member, one xz stream), without decompressing it:
/// by walking the format's own framing. `None` for the formats whose end cannot be found
/// that way (lzma, bzip2, lz4, lzo) and for a segment that runs past the end.
pub fn segment_end(compression: Compression, bytes: &[u8]) -> Option<usize> {
    match compression {
        Compression::Zstd => zstd_frame_end(bytes),
        Compression::Gzip => gzip_member_end(bytes),
        Compression::Xz => xz_stream_end(bytes),
        Compression::Lzma | Compression::Bzip2 | Compression::Lz4 | Compression::Lzop => None,
    }
}

/// RFC 8878: frame header, then blocks of a 3-byte header each, then an optional checksum.
fn zstd_frame_end(bytes: &[u8]) -> Option<usize> {
    let descriptor = *bytes.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    let dictionary_id = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let content_size = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut at = 5 + usize::from(!single_segment) + dictionary_id + content_size;
    loop {
        let header = bytes.get(at..at + 3)?;
        let header = u32::from(header[0]) | u32::from(header[1]) << 8 | u32::from(header[2]) << 16;
        let last = header & 1 == 1;
        let size = (header >> 3) as usize;
        at += 3 + match (header >> 1) & 3 {
            0 | 2 => size,
            1 => 1,
            _ => return None,
        };
        if last {
            break;
        }
    }
    if descriptor & 4 != 0 {
        at += 4;
    }
    (at <= bytes.len()).then_some(at)
}

/// RFC 1952 header, an RFC 1951 deflate stream walked symbol by symbol (nothing is written
/// out, so its cost is bounded by the compressed size), then the CRC32 and size.
fn gzip_member_end(bytes: &[u8]) -> Option<usize> {
    if bytes.get(2) != Some(&8) {
        return None;
    }
    let flags = *bytes.get(3)?;
    let mut at = 10;
    if flags & 4 != 0 {
        let extra = bytes.get(at..at + 2)?;
        at += 2 + usize::from(u16::from_le_bytes([extra[0], extra[1]]));
    }
    for flag in [8, 16] {
        if flags & flag != 0 {
            at += bytes.get(at..)?.iter().position(|&byte| byte == 0)? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    let end = at + deflate_end(bytes.get(at..)?)? + 8;
    (end <= bytes.len()).then_some(end)
}

/// Bits of a deflate stream, least significant first.
struct Bits<'a> {
    bytes: &'a [u8],
    /// The next bit, counted from the start.
    at: usize,
}

impl Bits<'_> {
    fn take(&mut self, count: u32) -> Option<u32> {
        let mut value = 0;
        for bit in 0..count {
            let byte = *self.bytes.get(self.at / 8)?;
            value |= u32::from(byte >> (self.at % 8) & 1) << bit;
            self.at += 1;
        }
        Some(value)
    }

    /// The next `count` (at most 24) bits without taking them (zeros past the end).
    fn peek(&self, count: u32) -> u32 {
        let byte = self.at / 8;
        let mut window = 0u32;
        for index in 0..4 {
            window |= u32::from(*self.bytes.get(byte + index).unwrap_or(&0)) << (8 * index);
        }
        (window >> (self.at % 8)) & ((1 << count) - 1)
    }
}

/// A canonical Huffman code as a table over its longest code's bits: (symbol, length).
struct Huffman {
    table: Vec<(u16, u8)>,
    bits: u32,
}

impl Huffman {
    /// Builds the table; `work` is what is left of the entries the caller lets it fill
    /// (a hostile stream of tiny blocks with 15-bit codes would otherwise cost 32 K
    /// entries per few bytes).
    fn new(lengths: &[u8], work: &mut usize) -> Option<Huffman> {
        // A code with no symbol at all (a block that uses no distance) has a one-entry
        // table that decodes nothing.
        let bits = u32::from(*lengths.iter().max()?);
        if bits > 15 {
            return None;
        }
        *work = work.checked_sub(1 << bits)?;
        let mut count = [0u16; 16];
        for &length in lengths {
            count[usize::from(length)] += 1;
        }
        count[0] = 0;
        let mut next = [0u32; 16];
        let mut code = 0u32;
        for length in 1..16 {
            code = (code + u32::from(count[length - 1])) << 1;
            next[length] = code;
        }
        // Unfilled entries (an incomplete code) decode as length 0: an error.
        let mut table = vec![(0u16, 0u8); 1 << bits];
        for (symbol, &length) in lengths.iter().enumerate() {
            if length == 0 {
                continue;
            }
            let length_bits = u32::from(length);
            let code = next[usize::from(length)];
            next[usize::from(length)] += 1;
            if code >= 1 << length_bits {
                return None;
            }
            let reversed = code.reverse_bits() >> (32 - length_bits);
            let mut index = reversed as usize;
            while index < table.len() {
                table[index] = (symbol as u16, length);
                index += 1 << length_bits;
            }
        }
        Some(Huffman { table, bits })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Option<u16> {
        let (symbol, length) = self.table[bits.peek(self.bits) as usize];
        if length == 0 || bits.at + usize::from(length) > bits.bytes.len() * 8 {
            return None;
        }
        bits.at += usize::from(length);
        Some(symbol)
    }
}

/// Extra bits of the length symbols 257..=285 and of the distance symbols 0..=29.
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The length in bytes of the deflate stream at the start of `bytes`.
fn deflate_end(bytes: &[u8]) -> Option<usize> {
    let mut bits = Bits { bytes, at: 0 };
    // Real streams build a few tables per 16 KiB or more; this allows 16 entries per byte,
    // and 16 tables of the largest size whatever the length.
    let mut work = bytes.len().saturating_mul(16).saturating_add(1 << 20);
    let mut fixed = None;
    loop {
        let last = bits.take(1)? == 1;
        match bits.take(2)? {
            0 => {
                let start = bits.at.div_ceil(8);
                let length = bytes.get(start..start + 4)?;
                let stored = usize::from(u16::from_le_bytes([length[0], length[1]]));
                bits.at = (start + 4 + stored) * 8;
            }
            kind @ (1 | 2) => {
                let dynamic;
                let (literals, distances) = if kind == 1 {
                    if fixed.is_none() {
                        let mut lengths = [8u8; 288];
                        lengths[144..256].fill(9);
                        lengths[256..280].fill(7);
                        fixed = Some((
                            Huffman::new(&lengths, &mut work)?,
                            Huffman::new(&[5u8; 30], &mut work)?,
                        ));
                    }
                    let (literals, distances) = fixed.as_ref()?;
                    (literals, distances)
                } else {
                    dynamic = dynamic_codes(&mut bits, &mut work)?;
                    (&dynamic.0, &dynamic.1)
                };
                loop {
                    let symbol = literals.decode(&mut bits)?;
                    match symbol {
                        0..=255 => {}
                        256 => break,
                        257..=285 => {
                            bits.take(u32::from(LENGTH_EXTRA[usize::from(symbol - 257)]))?;
                            let distance = distances.decode(&mut bits)?;
                            let extra = DISTANCE_EXTRA.get(usize::from(distance))?;
                            bits.take(u32::from(*extra))?;
                        }
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
        if bits.at > bytes.len() * 8 {
            return None;
        }
        if last {
            return Some(bits.at.div_ceil(8));
        }
    }
}

/// The code-length codes of a dynamic block, then its literal/length and distance codes.
fn dynamic_codes(bits: &mut Bits<'_>, work: &mut usize) -> Option<(Huffman, Huffman)> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let literals = bits.take(5)? as usize + 257;
    let distances = bits.take(5)? as usize + 1;
    let code_lengths = bits.take(4)? as usize + 4;
    let mut lengths_of_lengths = [0u8; 19];
    for &index in ORDER.iter().take(code_lengths) {
        lengths_of_lengths[index] = bits.take(3)? as u8;
    }
    let code = Huffman::new(&lengths_of_lengths, work)?;
    let mut lengths = Vec::with_capacity(literals + distances);
    while lengths.len() < literals + distances {
        let (value, repeat) = match code.decode(bits)? {
            symbol @ 0..=15 => (symbol as u8, 1),
            16 => (*lengths.last()?, 3 + bits.take(2)?),
            17 => (0, 3 + bits.take(3)?),
            18 => (0, 11 + bits.take(7)?),
            _ => return None,
        };
        for _ in 0..repeat {
            lengths.push(value);
        }
    }
    if lengths.len() != literals + distances || lengths[256] == 0 {
        return None;
    }
    Some((
        Huffman::new(&lengths[..literals], work)?,
        Huffman::new(&lengths[literals..], work)?,
    ))
}

/// The .xz format (tukaani.org/xz/xz-file-format.txt): stream header, blocks (each walked
/// by its LZMA2 chunk headers when it does not state its size), index, stream footer.
fn xz_stream_end(bytes: &[u8]) -> Option<usize> {
    let check = match *bytes.get(7)? & 0x0f {
        0 => 0,
        1..=3 => 4,
        4..=6 => 8,
        7..=9 => 16,
        10..=12 => 32,
        _ => 64,
    };
    let varint = |at: &mut usize| -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..63).step_by(7) {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    let mut at = 12;
    loop {
        let size_byte = *bytes.get(at)?;
        if size_byte == 0 {
            break;
        }
        let block = at;
        let header_size = (usize::from(size_byte) + 1) * 4;
        let flags = *bytes.get(at + 1)?;
        let mut field = at + 2;
        let data = block + header_size;
        at = if flags & 0x40 != 0 {
            data + usize::try_from(varint(&mut field)?).ok()?
        } else {
            lzma2_end(bytes, data)?
        };
        at = block + (at - block).div_ceil(4) * 4 + check;
    }
    // The index: its indicator, the record count, each record's two sizes, padding, CRC32.
    let index = at;
    at += 1;
    let records = varint(&mut at)?;
    for _ in 0..records {
        varint(&mut at)?;
        varint(&mut at)?;
    }
    at = index + (at - index).div_ceil(4) * 4 + 4;
    let end = at + 12;
    (bytes.get(end - 2..end)? == b"YZ").then_some(end)
}

/// The end of LZMA2 data starting at `at`: chunks, each stating its packed size, then 0.
fn lzma2_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let control = *bytes.get(at)?;
        let size = |at: usize| -> Option<usize> {
            let pair = bytes.get(at..at + 2)?;
            Some(usize::from(u16::from_be_bytes([pair[0], pair[1]])) + 1)
        };
        at = match control {
            0 => return Some(at + 1),
            1 | 2 => at + 3 + size(at + 1)?,
            0x80..=0xff => {
                let properties = usize::from((control >> 5) & 3 >= 2);
                at + 5 + properties + size(at + 3)?
            }
            _ => return None,
        };
    }
}

/// The `.cmdline` section of a PE image (a unified kernel image), NULs and the final
/// newline removed; `None` if the file is not PE or has no such section.
pub fn pe_cmdline(pe: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(pe_section(pe, b".cmdline")?);
    Some(text.trim_end_matches(['\0', '\n']).to_string())
}

/// A section of a PE image by its 8-byte name (`.initrd`, `.cmdline`); `None` if the file is
/// not PE or has no such section.
pub fn pe_section<'a>(pe: &'a [u8], wanted: &[u8; 8]) -> Option<&'a [u8]> {
    pe.get(pe_section_range(pe, wanted)?)
}

/// Where [`pe_section`] is in the file.
pub fn pe_section_range(pe: &[u8], wanted: &[u8; 8]) -> Option<core::ops::Range<usize>> {
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
    if pe.get(header..header.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let sections = read_u16(header + 6)?;
    let optional_size = read_u16(header + 20)?;
    let table = header + 24 + optional_size;
    for index in 0..sections.min(96) {
        let entry = table + index * 40;
        let name = pe.get(entry..entry + 8)?;
        if name != wanted {
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
        let range = raw_start..raw_start.checked_add(length)?;
        return pe.get(range.clone()).map(|_| range);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysfs_fixture::images::{gzip_stored, newc, pe, zstd_raw};

    fn no_tools(_: Compression, _: &[u8]) -> Option<Box<dyn std::io::Read>> {
        None
    }

    /// Stands in for the system's tools on the stored-block formats of the fixtures: the
    /// payload of a stored gzip member or a raw zstd frame.
    fn unwrap_stored(compression: Compression, segment: &[u8]) -> Option<Box<dyn std::io::Read>> {
        let mut plain = Vec::new();
        match compression {
            Compression::Gzip => {
                let mut at = 10;
                loop {
                    let last = segment[at] & 1 == 1;
                    let length =
                        usize::from(u16::from_le_bytes([segment[at + 1], segment[at + 2]]));
                    plain.extend_from_slice(&segment[at + 5..at + 5 + length]);
                    at += 5 + length;
                    if last {
                        break;
                    }
                }
            }
            Compression::Zstd => {
                let mut at = 6;
                loop {
                    let header = u32::from(segment[at])
                        | u32::from(segment[at + 1]) << 8
                        | u32::from(segment[at + 2]) << 16;
                    let size = (header >> 3) as usize;
                    plain.extend_from_slice(&segment[at + 3..at + 3 + size]);
                    at += 3 + size;
                    if header & 1 == 1 {
                        break;
                    }
                }
            }
            _ => return None,
        }
        Some(Box::new(std::io::Cursor::new(plain)))
    }

    fn everything(_: &str) -> bool {
        true
    }

    fn names(image: &Image) -> Vec<&str> {
        image.files.iter().map(|file| file.name.as_str()).collect()
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
        let read = read(&image, &mut no_tools, &everything);
        assert_eq!(read.unread, None);
        assert_eq!(
            names(&read),
            [
                "kernel/x86/microcode/GenuineIntel.bin",
                ".",
                "usr/bin/vfio-bind",
                "etc/cmdline.d/vfio-bind.conf"
            ]
        );
        assert!(read.files[2].contents.is_empty(), "only fragments are kept");
        assert_eq!(read.files[3].contents, b"vfio.bind=1002:73ff@07:00\n");
        let only_binary = super::read(&image, &mut no_tools, &|name| name == "usr/bin/vfio-bind");
        assert_eq!(names(&only_binary), ["usr/bin/vfio-bind"]);
    }

    /// More than 16 archives (was: the first 16 judged as if they were all).
    #[test]
    fn every_archive_is_read_however_many() {
        let mut image = Vec::new();
        for index in 0..40 {
            image.extend(newc(&[(&format!("firmware/{index}"), 0o100644, b"x")]));
        }
        image.extend(newc(&[("usr/bin/vfio-bind", 0o100755, b"")]));
        let read = read(&image, &mut no_tools, &everything);
        assert_eq!(read.unread, None);
        assert_eq!(read.files.len(), 41);
        assert_eq!(read.files[40].name, "usr/bin/vfio-bind");
    }

    /// The kernel goes on after a compressed segment: `gzip(main) + cpio(extra)` (was: what
    /// follows a compressed segment never read).
    #[test]
    fn what_follows_a_compressed_segment_is_read_as_the_kernel_reads_it() {
        for compress in [gzip_stored, zstd_raw] {
            let mut image = newc(&[("kernel/x86/microcode/AuthenticAMD.bin", 0o100644, b"u")]);
            image.extend(compress(&newc(&[("usr/bin/vfio-bind", 0o100755, b"x")])));
            image.extend_from_slice(&[0; 3]);
            image.extend(newc(&[("hooks/vfio-bind", 0o100644, b"run_earlyhook")]));
            image.extend(compress(&newc(&[(
                "etc/cmdline.d/vfio-bind.conf",
                0o100644,
                b"vfio.bind=@07:00",
            )])));
            let mut asked = Vec::new();
            let read = read(
                &image,
                &mut |compression, segment| {
                    asked.push(compression);
                    unwrap_stored(compression, segment)
                },
                &everything,
            );
            assert_eq!(read.unread, None, "{asked:?}");
            assert_eq!(
                names(&read),
                [
                    "kernel/x86/microcode/AuthenticAMD.bin",
                    "usr/bin/vfio-bind",
                    "hooks/vfio-bind",
                    "etc/cmdline.d/vfio-bind.conf"
                ]
            );
            assert_eq!(asked.len(), 2);
        }
    }

    /// A compressed segment inside a compressed segment is junk to the kernel ("junk within
    /// compressed archive"): it is not unpacked, so a gzip-of-gzip bomb costs nothing.
    #[test]
    fn a_compressed_segment_inside_another_is_not_unpacked() {
        let inner = gzip_stored(&newc(&[("usr/bin/vfio-bind", 0o100755, b"x")]));
        let mut image = newc(&[("early", 0o100644, b"")]);
        image.extend(gzip_stored(&inner));
        let mut asked = 0;
        let read = read(
            &image,
            &mut |compression, segment| {
                asked += 1;
                unwrap_stored(compression, segment)
            },
            &everything,
        );
        assert_eq!(asked, 1);
        assert_eq!(
            read.unread,
            Some(Unread::Junk {
                offset: 0,
                inside: Some(Compression::Gzip)
            })
        );
        assert_eq!(names(&read), ["early"]);
    }

    #[test]
    fn a_segment_that_cannot_be_unpacked_leaves_the_image_read_in_part() {
        let mut image = newc(&[("early", 0o100644, b"")]);
        image.extend(zstd_raw(b"anything"));
        let read = super::read(&image, &mut no_tools, &everything);
        assert_eq!(read.unread, Some(Unread::NoDecompressor(Compression::Zstd)));
        assert_eq!(names(&read), ["early"]);
        // lz4's end cannot be found without decoding: what follows it is not known.
        let mut image = newc(&[("early", 0o100644, b"")]);
        image.extend_from_slice(&[0x02, 0x21, 0x4c, 0x18, 1, 2, 3]);
        let read = super::read(
            &image,
            &mut |_, _| {
                Some(Box::new(std::io::Cursor::new(newc(&[(
                    "main", 0o100644, b"",
                )]))))
            },
            &everything,
        );
        assert_eq!(read.unread, Some(Unread::EndUnknown(Compression::Lz4)));
        assert_eq!(names(&read), ["early", "main"]);
    }

    #[test]
    fn garbage_and_truncation_are_reported_not_panics() {
        assert_eq!(
            read(b"hello", &mut no_tools, &everything).unread,
            Some(Unread::Junk {
                offset: 0,
                inside: None
            })
        );
        let archive = newc(&[("a", 0o100644, b"abc")]);
        for cut in 1..archive.len() - 1 {
            let _ = read(&archive[..cut], &mut no_tools, &everything);
        }
        assert_eq!(
            read(&archive[..50], &mut no_tools, &everything).unread,
            Some(Unread::Truncated)
        );
        for compress in [gzip_stored, zstd_raw] {
            let segment = compress(&archive);
            for cut in 1..segment.len() {
                let compression = Compression::detect(&segment).unwrap();
                assert_eq!(segment_end(compression, &segment[..cut]), None);
            }
        }
    }

    /// Deflate blocks of 109 bits each whose codes are 15 bits long: each would cost two
    /// 32 K-entry tables. The walk gives up within its work budget instead of spinning.
    #[test]
    fn a_deflate_stream_of_costly_tiny_blocks_is_given_up_on() {
        struct Writer {
            bytes: Vec<u8>,
            bits: usize,
        }
        impl Writer {
            /// `value`'s `count` low bits, least significant first.
            fn put(&mut self, value: u32, count: u32) {
                for bit in 0..count {
                    if self.bits.is_multiple_of(8) {
                        self.bytes.push(0);
                    }
                    let last = self.bytes.len() - 1;
                    self.bytes[last] |= ((value >> bit & 1) as u8) << (self.bits % 8);
                    self.bits += 1;
                }
            }
            /// A Huffman code, most significant bit first.
            fn code(&mut self, code: u32, length: u32) {
                for bit in (0..length).rev() {
                    self.put(code >> bit & 1, 1);
                }
            }
        }
        let member = |blocks: usize| -> Vec<u8> {
            let mut stream = Writer {
                bytes: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
                bits: 80,
            };
            for block in 0..blocks {
                stream.put(u32::from(block == blocks - 1), 1);
                stream.put(2, 2); // dynamic
                stream.put(0, 5); // 257 literal/length codes
                stream.put(0, 5); // 1 distance code
                stream.put(15, 4); // all 19 code-length code lengths
                                   // In the order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1 15: 18, 0 and
                                   // 15 get codes (18: 0, 0: 10, 15: 11), the rest none.
                for length in [0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2] {
                    stream.put(length, 3);
                }
                // 256 zero lengths (138 + 118), then 15 for the end of block and for the
                // one distance code.
                stream.code(0, 1);
                stream.put(138 - 11, 7);
                stream.code(0, 1);
                stream.put(118 - 11, 7);
                stream.code(3, 2);
                stream.code(3, 2);
                // The end of block: the one 15-bit code, all zeros.
                stream.code(0, 15);
            }
            let mut member = stream.bytes;
            member.extend_from_slice(&[0; 8]);
            member
        };
        // Such blocks are valid: a few are walked to the member's end.
        let few = member(3);
        assert_eq!(segment_end(Compression::Gzip, &few), Some(few.len()));
        assert_eq!(segment_end(Compression::Gzip, &member(10_000)), None);
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
