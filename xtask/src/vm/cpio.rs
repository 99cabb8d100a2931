//! A `newc` cpio writer (the format the kernel unpacks as an initramfs), for images the
//! xtask assembles itself. Owners are root, times are zero: images are reproducible.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

/// A file that is neither regular, a directory nor a symlink: its type bits in `st_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl Special {
    fn mode_bits(self) -> u32 {
        match self {
            Special::CharDevice => S_IFCHR,
            Special::BlockDevice => S_IFBLK,
            Special::Fifo => S_IFIFO,
            Special::Socket => S_IFSOCK,
        }
    }

    fn of(file_type: fs::FileType) -> Option<Special> {
        if file_type.is_char_device() {
            Some(Special::CharDevice)
        } else if file_type.is_block_device() {
            Some(Special::BlockDevice)
        } else if file_type.is_fifo() {
            Some(Special::Fifo)
        } else if file_type.is_socket() {
            Some(Special::Socket)
        } else {
            None
        }
    }
}

/// Splits a `dev_t` as glibc's `major()`/`minor()` do: 12 bits of major and 20 of minor,
/// the low 8 bits of the minor and 12 of the major first.
fn split_device_number(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

pub struct Writer<W: Write> {
    out: W,
    next_inode: u32,
    written: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            next_inode: 1,
            written: 0,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.next_inode,
            mode,
            0,
            0,
            if mode & S_IFDIR != 0 { 2 } else { 1 },
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.next_inode += 1;
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rest = (4 - self.written % 4) % 4;
        self.put(&[0u8; 3][..rest as usize])
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | perm, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | perm, (0, 0), data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes())
    }

    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.special(name, Special::CharDevice, perm, (major, minor))
    }

    /// A device node, FIFO or socket; `rdev` is (major, minor), (0, 0) for the last two.
    pub fn special(
        &mut self,
        name: &str,
        kind: Special,
        perm: u32,
        rdev: (u32, u32),
    ) -> io::Result<()> {
        self.entry(name, kind.mode_bits() | perm, rdev, &[])
    }

    /// Adds everything under `root`, sorted, with paths relative to it.
    pub fn tree(&mut self, root: &Path) -> io::Result<()> {
        self.walk(root, root)
    }

    fn walk(&mut self, root: &Path, dir: &Path) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = entry.path();
            let name = path
                .strip_prefix(root)
                .expect("walk stays under root")
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path)?;
            let perm = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path)?;
                self.symlink(&name, &target.to_string_lossy())?;
            } else if meta.is_dir() {
                self.dir(&name, perm)?;
                self.walk(root, &path)?;
            } else if meta.is_file() {
                self.file(&name, perm, &fs::read(&path)?)?;
            } else if let Some(kind) = Special::of(meta.file_type()) {
                self.special(&name, kind, perm, split_device_number(meta.rdev()))?;
            }
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// `cpio -itv` of an archive: what GNU cpio itself reads back from it.
    fn listed_by_cpio(archive: &[u8]) -> String {
        let mut cpio = Command::new("cpio")
            .args(["-itv", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cpio (Debian package cpio) is needed for the xtask tests");
        cpio.stdin.take().unwrap().write_all(archive).unwrap();
        let output = cpio.wait_with_output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    }

    /// Each listed entry as (mode string, the device numbers or size, name).
    fn entries(listing: &str) -> Vec<(String, String, String)> {
        listing
            .lines()
            .map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let numbers = if words[0].starts_with(['c', 'b']) {
                    format!("{} {}", words[4], words[5])
                } else {
                    words[4].to_string()
                };
                (
                    words[0].to_string(),
                    numbers,
                    words.last().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn device_numbers_and_file_types_read_back_as_written() {
        let mut writer = Writer::new(Vec::new());
        writer.char_device("dev/console", 0o600, 5, 1).unwrap();
        for (name, kind, mode, device) in [
            ("dev/wide", Special::CharDevice, 0o600, (511, 300)),
            ("dev/sda1", Special::BlockDevice, 0o660, (8, 1)),
            ("run/fifo", Special::Fifo, 0o644, (0, 0)),
            ("run/socket", Special::Socket, 0o755, (0, 0)),
        ] {
            writer.special(name, kind, mode, device).unwrap();
        }
        let listing = listed_by_cpio(&writer.finish().unwrap());
        assert_eq!(
            entries(&listing),
            [
                ("crw-------".into(), "5, 1".into(), "dev/console".into()),
                ("crw-------".into(), "511, 300".into(), "dev/wide".into()),
                ("brw-rw----".into(), "8, 1".into(), "dev/sda1".into()),
                ("prw-r--r--".into(), "0".into(), "run/fifo".into()),
                ("srwxr-xr-x".into(), "0".into(), "run/socket".into()),
            ]
        );
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        // makedev(511, 300) and makedev(8, 1) as glibc builds them.
        let makedev = |major: u64, minor: u64| {
            (minor & 0xff)
                | ((major & 0xfff) << 8)
                | ((minor & !0xff) << 12)
                | ((major & !0xfff) << 32)
        };
        assert_eq!(split_device_number(makedev(511, 300)), (511, 300));
        assert_eq!(split_device_number(makedev(8, 1)), (8, 1));
        assert_eq!(split_device_number(makedev(4095, 1048575)), (4095, 1048575));
    }

    #[test]
    fn a_tree_with_a_fifo_is_archived_as_a_fifo() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/hostname"), "guest\n").unwrap();
        let status = Command::new("mkfifo")
            .arg(dir.join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        let mut writer = Writer::new(Vec::new());
        writer.tree(dir).unwrap();
        let listing = listed_by_cpio(&writer.finish().unwrap());
        let kinds: Vec<(String, String)> = entries(&listing)
            .into_iter()
            .map(|(mode, _, name)| (mode[..1].to_string(), name))
            .collect();
        assert_eq!(
            kinds,
            [
                ("d".into(), "etc".into()),
                ("-".into(), "etc/hostname".into()),
                ("p".into(), "pipe".into()),
            ]
        );
    }

    #[test]
    fn entries_are_aligned_and_read_back_by_cpio() {
        let mut writer = Writer::new(Vec::new());
        writer.dir("etc", 0o755).unwrap();
        writer.file("etc/a", 0o644, b"hello").unwrap();
        writer.symlink("bin", "usr/bin").unwrap();
        let bytes = writer.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let listing = listed_by_cpio(&bytes);
        assert_eq!(
            entries(&listing),
            [
                ("drwxr-xr-x".into(), "0".into(), "etc".into()),
                ("-rw-r--r--".into(), "5".into(), "etc/a".into()),
                ("lrwxrwxrwx".into(), "7".into(), "usr/bin".into()),
            ]
        );
        assert!(listing.lines().nth(2).unwrap().contains("bin -> usr/bin"));
        let mut cpio = Command::new("cpio")
            .args(["-i", "--quiet", "--to-stdout", "etc/a"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        cpio.stdin.take().unwrap().write_all(&bytes).unwrap();
        assert_eq!(cpio.wait_with_output().unwrap().stdout, b"hello");
    }
}
