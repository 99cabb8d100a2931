//! Boot images for the doctor's tests: newc cpio archives and minimal PE files (unified
//! kernel images), built as the tools that make real ones lay them out.

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
