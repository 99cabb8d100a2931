//! Synthetic machines for the bench: sysfs trees of a given number of PCI functions in the
//! kernel's layout, built with the `sysfs-fixture` crate the tests use.
//!
//! Each domain has a host bridge at `DDDD:00:00.0` and up to 240 root ports at
//! `DDDD:00:01.0` to `DDDD:00:1e.7`, each with one device on its own bus behind it: GPUs with
//! their audio (and on Turing, USB-C and UCSI) functions, NVMe drives and network cards,
//! in a fixed mix. Functions of one device share an IOMMU group, each port has its own.
//! About half the devices are bound to their native driver, as after a driver got there
//! first. The AMD cards all have the same IDs (1002:73ff, audio 1002:ab28), so only the
//! address tells them apart: the case guarded rules exist for.

use std::io;

use sysfs_fixture::{
    Function, SysfsTree, CLASS_3D, CLASS_AUDIO, CLASS_BRIDGE, CLASS_HOST_BRIDGE, CLASS_SERIAL_BUS,
    CLASS_USB, CLASS_VGA,
};

const CLASS_NVME: u32 = 0x010802;
const CLASS_ETHERNET: u32 = 0x020000;
const CLASS_SMBUS: u32 = 0x0c0500;

/// Root ports per domain: slots 01 to 1e, eight functions each. Slot 1f is left for
/// integrated devices that fill up the count.
const PORTS_PER_DOMAIN: usize = 30 * 8;

/// The IDs the bench's rules guard on: AMD RX 6600.
pub const AMD_GPU: (u16, u16) = (0x1002, 0x73ff);

#[derive(Clone, Copy)]
enum Kind {
    /// RX 6600: VGA + HDMI audio.
    Amd,
    /// RTX 2080 (Turing): 3D + audio + USB + UCSI.
    Turing,
    /// GTX 1080 (Pascal): VGA + audio.
    Pascal,
    Nvme,
    Nic,
}

/// The repeating mix of devices behind the root ports.
const MIX: [Kind; 7] = [
    Kind::Amd,
    Kind::Turing,
    Kind::Amd,
    Kind::Nvme,
    Kind::Amd,
    Kind::Pascal,
    Kind::Nic,
];

impl Kind {
    /// (vendor, device, class, native driver) of each function.
    fn functions(self) -> &'static [(u16, u16, u32, &'static str)] {
        match self {
            Kind::Amd => &[
                (0x1002, 0x73ff, CLASS_VGA, "amdgpu"),
                (0x1002, 0xab28, CLASS_AUDIO, "snd_hda_intel"),
            ],
            Kind::Turing => &[
                (0x10de, 0x1e87, CLASS_VGA, "nouveau"),
                (0x10de, 0x10f8, CLASS_AUDIO, "snd_hda_intel"),
                (0x10de, 0x1ad8, CLASS_USB, "xhci_hcd"),
                (0x10de, 0x1ad9, CLASS_SERIAL_BUS, "nvidia-gpu"),
            ],
            Kind::Pascal => &[
                (0x10de, 0x1b80, CLASS_3D, "nouveau"),
                (0x10de, 0x10f0, CLASS_AUDIO, "snd_hda_intel"),
            ],
            Kind::Nvme => &[(0x144d, 0xa808, CLASS_NVME, "nvme")],
            Kind::Nic => &[(0x8086, 0x1533, CLASS_ETHERNET, "igb")],
        }
    }
}

/// One AMD card of the machine, which rules can select.
pub struct Card {
    /// `DDDD:BB:SS`
    pub slot: String,
    /// Its functions' full addresses.
    pub functions: Vec<String>,
}

impl Card {
    /// The guarded rule that selects this card, in canonical form.
    pub fn rule(&self) -> String {
        format!("{:04x}:{:04x}@{}", AMD_GPU.0, AMD_GPU.1, self.slot)
    }
}

pub struct Machine {
    pub tree: SysfsTree,
    /// Every function's address, in creation order.
    pub addresses: Vec<String>,
    pub amd_cards: Vec<Card>,
}

impl Machine {
    /// `count` evenly spread AMD cards (fewer if the machine has fewer).
    pub fn pick_cards(&self, count: usize) -> Vec<&Card> {
        let total = self.amd_cards.len();
        let count = count.min(total);
        (0..count)
            .map(|index| &self.amd_cards[(2 * index + 1) * total / (2 * count)])
            .collect()
    }
}

/// Builds a machine of exactly `functions` PCI functions in the directory `at`, which must
/// not exist; it is removed when the machine is dropped.
pub fn build(functions: usize, at: std::path::PathBuf) -> io::Result<Machine> {
    let mut builder = Builder {
        tree: SysfsTree::create_at(at)?,
        addresses: Vec::new(),
        amd_cards: Vec::new(),
        next_group: 0,
        devices: 0,
        boot_vga_given: false,
    };
    builder.tree.add_driver("vfio-pci")?;
    let mut domain = 0u32;
    'domains: while builder.addresses.len() < functions {
        builder.add_host_bridge(domain)?;
        for port in 0..PORTS_PER_DOMAIN {
            let remaining = functions - builder.addresses.len();
            if remaining == 0 {
                break 'domains;
            }
            let mut kind = MIX[builder.devices % MIX.len()];
            if 1 + kind.functions().len() > remaining {
                kind = Kind::Nvme;
            }
            if 1 + kind.functions().len() > remaining {
                builder.fill_integrated(domain, remaining)?;
                break 'domains;
            }
            builder.add_port_with_device(domain, port, kind)?;
        }
        domain += 1;
    }
    Ok(Machine {
        tree: builder.tree,
        addresses: builder.addresses,
        amd_cards: builder.amd_cards,
    })
}

struct Builder {
    tree: SysfsTree,
    addresses: Vec<String>,
    amd_cards: Vec<Card>,
    next_group: u32,
    devices: usize,
    boot_vga_given: bool,
}

impl Builder {
    fn group(&mut self) -> u32 {
        self.next_group += 1;
        self.next_group - 1
    }

    fn add(&mut self, function: Function) -> io::Result<()> {
        self.addresses.push(function.address.clone());
        self.tree.add(function)?;
        Ok(())
    }

    fn add_host_bridge(&mut self, domain: u32) -> io::Result<()> {
        let group = self.group();
        self.add(
            Function::new(
                &format!("{domain:04x}:00:00.0"),
                0x1022,
                0x14d8,
                CLASS_HOST_BRIDGE,
            )
            .group(group),
        )
    }

    fn add_port_with_device(&mut self, domain: u32, port: usize, kind: Kind) -> io::Result<()> {
        let port_address = format!("{domain:04x}:00:{:02x}.{}", 1 + port / 8, port % 8);
        let group = self.group();
        self.add(
            Function::new(&port_address, 0x1022, 0x14db, CLASS_BRIDGE)
                .group(group)
                .driver("pcieport"),
        )?;
        let slot = format!("{domain:04x}:{:02x}:00", port + 1);
        let bound = self.devices.is_multiple_of(2);
        let group = self.group();
        let mut card_functions = Vec::new();
        for (number, &(vendor, device, class, driver)) in kind.functions().iter().enumerate() {
            let address = format!("{slot}.{number}");
            let mut function = Function::new(&address, vendor, device, class)
                .group(group)
                .behind(&port_address);
            if bound {
                function = function.driver(driver);
            }
            if class == CLASS_VGA {
                function = function.boot_vga(!self.boot_vga_given);
                self.boot_vga_given = true;
            }
            self.add(function)?;
            card_functions.push(address);
        }
        if matches!(kind, Kind::Amd) {
            self.amd_cards.push(Card {
                slot,
                functions: card_functions,
            });
        }
        self.devices += 1;
        Ok(())
    }

    /// Integrated functions on the root bus, slot 1f, to reach the exact count.
    fn fill_integrated(&mut self, domain: u32, count: usize) -> io::Result<()> {
        for function in 0..count.min(8) {
            let group = self.group();
            self.add(
                Function::new(
                    &format!("{domain:04x}:00:1f.{function}"),
                    0x8086,
                    0xa323,
                    CLASS_SMBUS,
                )
                .group(group),
            )?;
        }
        Ok(())
    }
}
