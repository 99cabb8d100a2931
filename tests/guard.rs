//! The guard: a function the host itself uses (its filesystems, swap, default routes, only
//! display) is never offered or taken without a word. Through the binary, on a fixture
//! sysfs and a fixture host root (`proc/self/mountinfo`, `proc/swaps`, `proc/net/*`), and,
//! read-only, on this machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sysfs_fixture::*;

mod common;

use common::{output_unless_hung, text, vfio_bind};

/// Mass storage, non-volatile memory (NVMe).
const CLASS_NVME: u32 = 0x010802;
/// Mass storage, SATA (AHCI).
const CLASS_SATA: u32 = 0x010601;
/// Network controller, Ethernet.
const CLASS_ETHERNET: u32 = 0x020000;

const NVME: &str = "0000:3d:00.0";
const SATA: &str = "0000:00:17.0";
const ETHERNET: &str = "0000:00:1f.6";
const IGPU: &str = "0000:00:02.0";
const GUEST_GPU: &str = "0000:01:00.0";

/// A workstation: an NVMe drive behind root port 00:1d.0, a SATA controller, an onboard
/// NIC, the integrated GPU the firmware drew on, and a guest GPU behind root port 00:01.0.
/// No block device, interface or display yet: each test adds what the host uses.
fn workstation() -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(Function::new("0000:00:00.0", 0x8086, 0x4660, CLASS_HOST_BRIDGE).group(0))
        .unwrap()
        .add(
            Function::new(IGPU, 0x8086, 0x4680, CLASS_VGA)
                .group(1)
                .boot_vga(true)
                .driver("i915"),
        )
        .unwrap()
        .add(Function::new("0000:00:01.0", 0x8086, 0x460d, CLASS_BRIDGE).group(2))
        .unwrap()
        .add(
            Function::new(GUEST_GPU, 0x10de, 0x2204, CLASS_VGA)
                .group(2)
                .behind("0000:00:01.0")
                .driver("nouveau"),
        )
        .unwrap()
        .add(
            Function::new(SATA, 0x8086, 0x7ae2, CLASS_SATA)
                .group(3)
                .driver("ahci"),
        )
        .unwrap()
        .add(
            Function::new(ETHERNET, 0x8086, 0x1a1c, CLASS_ETHERNET)
                .group(4)
                .driver("e1000e"),
        )
        .unwrap()
        .add(Function::new("0000:00:1d.0", 0x8086, 0x7ab0, CLASS_BRIDGE).group(5))
        .unwrap()
        .add(
            Function::new(NVME, 0x144d, 0xa80a, CLASS_NVME)
                .group(6)
                .behind("0000:00:1d.0")
                .driver("nvme"),
        )
        .unwrap();
    tree.add_driver("vfio-pci").unwrap();
    tree
}

/// The NVMe drive, partitioned: the ESP, the LUKS container, swap.
fn nvme_partitions(tree: &mut SysfsTree) {
    tree.add_disk("nvme0n1", (259, 0), NVME, "nvme/nvme0")
        .unwrap()
        .add_partition("nvme0n1", "nvme0n1p1", (259, 1))
        .unwrap()
        .add_partition("nvme0n1", "nvme0n1p2", (259, 2))
        .unwrap()
        .add_partition("nvme0n1", "nvme0n1p3", (259, 3))
        .unwrap();
}

/// dm-0: LUKS on nvme0n1p2, opened as `cryptroot`.
fn luks_on_nvme(tree: &mut SysfsTree) {
    nvme_partitions(tree);
    tree.add_virtual_block(
        "dm-0",
        (254, 0),
        &["nvme0n1p2"],
        &[
            (
                "dm/uuid",
                "CRYPT-LUKS2-3f2b1c4d5e6f40718293a4b5c6d7e8f9-cryptroot",
            ),
            ("dm/name", "cryptroot"),
        ],
    )
    .unwrap();
}

/// A host root with these `/proc` files; the others are absent.
struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    fn new(tree: &SysfsTree) -> Self {
        let root = tree.root().join("host");
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        HostRoot { root }
    }

    fn with(self, relative: &str, text: &str) -> Self {
        std::fs::write(self.root.join(relative), text).unwrap();
        self
    }

    fn mounts(self, text: &str) -> Self {
        self.with("proc/self/mountinfo", text)
    }
}

const PROC_MOUNTS: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `vfio-bind rule ADDRESS` on the fixture and host root: the exit status and stdout.
fn rule(tree: &SysfsTree, host: &HostRoot, address: &str) -> (Option<i32>, String) {
    let output = vfio_bind(&[
        "rule",
        address,
        "--sysfs",
        path(tree.root()),
        "--host-root",
        path(&host.root),
    ]);
    (output.status.code(), text(&output.stdout))
}

/// The warning lines of `rule`'s output.
fn warnings(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|line| line.starts_with("warning:"))
        .collect()
}

/// `rule ADDRESS` warns in exactly one line, `expected`.
fn assert_rule_warns(tree: &SysfsTree, host: &HostRoot, address: &str, expected: String) {
    let (_, stdout) = rule(tree, host, address);
    assert_eq!(warnings(&stdout), [expected]);
}

/// `rule ADDRESS` warns of nothing.
fn assert_rule_does_not_warn(tree: &SysfsTree, host: &HostRoot, address: &str) {
    let (_, stdout) = rule(tree, host, address);
    assert!(warnings(&stdout).is_empty(), "{stdout}");
}

/// The sentence after a held function's `holds ...` in `rule`'s warning.
const ESCAPE: &str = "If that boot stops, add rd.vfio_bind=0 to the kernel command line at the boot menu: vfio-bind then binds nothing";

fn check(tree: &SysfsTree, host: &HostRoot, cmdline: &str) -> (Option<i32>, String) {
    let output = vfio_bind(&[
        "check",
        "--sysfs",
        path(tree.root()),
        "--host-root",
        path(&host.root),
        "--cmdline-dir",
        "/nonexistent",
        "--cmdline",
        cmdline,
    ]);
    (output.status.code(), text(&output.stdout))
}

fn luks_root_host(tree: &mut SysfsTree) -> HostRoot {
    luks_on_nvme(tree);
    HostRoot::new(tree).mounts(&format!(
        "{PROC_MOUNTS}27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/cryptroot rw\n\
         30 27 259:1 / /boot/efi rw,relatime shared:5 - vfat /dev/nvme0n1p1 rw\n"
    ))
}

#[test]
fn rule_names_what_the_nvme_behind_root_on_luks_holds_and_the_way_out_at_boot() {
    let mut tree = workstation();
    let host = luks_root_host(&mut tree);
    let (status, stdout) = rule(&tree, &host, "3d:00");
    assert_eq!(status, Some(0), "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "vfio.bind=144d:a80a@0000:3d:00\n\
             or by its path, which stays right when bus numbers move (they do when a card is added in an earlier slot): vfio.bind=144d:a80a@0000:00:1d.0/00\n  \
             takes 0000:3d:00.0  144d:a80a  driver=nvme\n\
             warning: 0000:3d:00.0 holds / (ext4 on /dev/nvme0n1p2 via LUKS), /boot/efi (vfat on /dev/nvme0n1p1): \
             with this rule the host loses / and /boot/efi at the next boot. {ESCAPE}\n"
        )
    );
    // A card the host does not use: no warning.
    assert_rule_does_not_warn(&tree, &host, "01:00");
}

#[test]
fn check_reports_a_rule_that_takes_the_root_filesystem_as_a_problem() {
    let mut tree = workstation();
    let host = luks_root_host(&mut tree);
    let (status, stdout) = check(&tree, &host, "vfio.bind=@3d:00.0,10de:2204@01:00");
    assert_eq!(status, Some(1), "{stdout}");
    let held: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("loses"))
        .collect();
    assert_eq!(
        held,
        ["PROBLEM @0000:3d:00.0: at the next boot the host loses / and /boot/efi: 0000:3d:00.0 holds \
          / (ext4 on /dev/nvme0n1p2 via LUKS), /boot/efi (vfat on /dev/nvme0n1p1). \
          Fix: take the rule out before rebooting, or stop the host using it first; if a boot stops there, \
          add rd.vfio_bind=0 at the boot menu"],
        "{stdout}"
    );
}

#[test]
fn root_on_lvm_on_luks_is_followed_down_to_the_nvme_function() {
    let mut tree = workstation();
    luks_on_nvme(&mut tree);
    tree.add_virtual_block(
        "dm-1",
        (254, 1),
        &["dm-0"],
        &[("dm/uuid", "LVM-Wm2b7YtPq0aJcK9e"), ("dm/name", "vg0-root")],
    )
    .unwrap();
    let host = HostRoot::new(&tree).mounts(&format!(
        "{PROC_MOUNTS}27 1 254:1 / / rw - ext4 /dev/mapper/vg0-root rw\n"
    ));
    assert_rule_warns(
        &tree,
        &host,
        NVME,
        format!("warning: {NVME} holds / (ext4 on /dev/nvme0n1p2 via LVM on LUKS): with this rule the host loses / at the next boot. {ESCAPE}"),
    );
}

#[test]
fn root_on_md_raid_is_held_by_both_members_controllers() {
    let mut tree = workstation();
    nvme_partitions(&mut tree);
    tree.add_disk("sda", (8, 0), SATA, "ata1/host0/target0:0:0/0:0:0:0")
        .unwrap()
        .add_partition("sda", "sda1", (8, 1))
        .unwrap()
        .add_virtual_block(
            "md127",
            (9, 127),
            &["sda1", "nvme0n1p2"],
            &[("md/level", "raid1")],
        )
        .unwrap();
    let host = HostRoot::new(&tree).mounts("27 1 9:127 / / rw - xfs /dev/md127 rw\n");
    for (function, member) in [(SATA, "sda1"), (NVME, "nvme0n1p2")] {
        assert_rule_warns(
            &tree,
            &host,
            function,
            format!("warning: {function} holds / (xfs on /dev/{member} via md raid1): with this rule the host loses / at the next boot. {ESCAPE}"),
        );
    }
}

#[test]
fn a_filesystem_in_a_loop_file_is_held_by_the_disk_the_file_is_on() {
    let mut tree = workstation();
    tree.add_disk("sda", (8, 0), SATA, "ata1/host0/target0:0:0/0:0:0:0")
        .unwrap()
        .add_virtual_block(
            "loop0",
            (7, 0),
            &[],
            &[("loop/backing_file", "/srv/vm disks/data.img")],
        )
        .unwrap();
    let host = HostRoot::new(&tree).mounts(
        "27 1 8:0 / / rw - ext4 /dev/sda rw\n\
         40 27 7:0 / /mnt/data rw - ext4 /dev/loop0 rw\n",
    );
    assert_rule_warns(
        &tree,
        &host,
        SATA,
        format!("warning: {SATA} holds / (ext4 on /dev/sda), /mnt/data (ext4 on /dev/sda via loop file /srv/vm disks/data.img): with this rule the host loses / and /mnt/data at the next boot. {ESCAPE}"),
    );
}

#[test]
fn root_on_a_partition_of_intel_rst_raid_is_held_by_both_member_drives() {
    // Intel RST (IMSM) RAID1 through mdadm: md126 over two whole disks, `/` on its second
    // partition, which lies below md126 and has no `slaves/` of its own.
    let mut tree = workstation();
    tree.add_disk("nvme0n1", (259, 0), NVME, "nvme/nvme0")
        .unwrap()
        .add_disk("sda", (8, 0), SATA, "ata1/host0/target0:0:0/0:0:0:0")
        .unwrap()
        .add_virtual_block(
            "md126",
            (9, 126),
            &["nvme0n1", "sda"],
            &[("md/level", "raid1")],
        )
        .unwrap()
        .add_partition("md126", "md126p1", (259, 4))
        .unwrap()
        .add_partition("md126", "md126p2", (259, 5))
        .unwrap();
    let host = HostRoot::new(&tree).mounts(&format!(
        "{PROC_MOUNTS}27 1 259:5 / / rw - ext4 /dev/md126p2 rw\n"
    ));
    for (function, member) in [(NVME, "nvme0n1"), (SATA, "sda")] {
        assert_rule_warns(
            &tree,
            &host,
            function,
            format!("warning: {function} holds / (ext4 on /dev/{member} via md raid1): with this rule the host loses / at the next boot. {ESCAPE}"),
        );
    }
}

/// Native NVMe multipath: the head disk `nvme0n1` lies below the subsystem, not the PCI
/// function, with `/` on its partition; its path `nvme0c0n1` is a hidden disk on the
/// controller, which Linux 6.15 and later also list in the head's `multipath/`.
fn root_on_a_multipath_nvme_head(multipath_links: bool) -> (SysfsTree, HostRoot) {
    let mut tree = workstation();
    tree.add_disk("nvme0c0n1", (259, 8), NVME, "nvme/nvme0")
        .unwrap();
    let head = "devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1";
    std::fs::create_dir_all(tree.root().join(head)).unwrap();
    std::fs::write(tree.root().join(head).join("dev"), "259:0\n").unwrap();
    std::os::unix::fs::symlink(
        Path::new("../..").join(head),
        tree.root().join("class/block/nvme0n1"),
    )
    .unwrap();
    if multipath_links {
        let multipath = tree.root().join(head).join("multipath");
        std::fs::create_dir_all(&multipath).unwrap();
        let path_disk = std::fs::read_link(tree.root().join("class/block/nvme0c0n1")).unwrap();
        // Four `..` and the class link's two (`../../devices/...`) lead up from
        // `multipath/` to the root.
        let link = Path::new("../../../..").join(path_disk);
        std::os::unix::fs::symlink(&link, multipath.join("nvme0c0n1")).unwrap();
        assert!(
            std::fs::canonicalize(multipath.join("nvme0c0n1"))
                .unwrap()
                .starts_with(std::fs::canonicalize(tree.root()).unwrap()),
            "{link:?}"
        );
    }
    tree.add_partition("nvme0n1", "nvme0n1p2", (259, 2))
        .unwrap();
    let host = HostRoot::new(&tree).mounts(&format!(
        "{PROC_MOUNTS}27 1 259:2 / / rw - xfs /dev/nvme0n1p2 rw\n"
    ));
    (tree, host)
}

#[test]
fn root_on_a_partition_of_a_multipath_nvme_disk_is_held_by_the_function_of_its_path() {
    let (tree, host) = root_on_a_multipath_nvme_head(true);
    assert_rule_warns(
        &tree,
        &host,
        NVME,
        format!("warning: {NVME} holds / (xfs on /dev/nvme0c0n1): with this rule the host loses / at the next boot. {ESCAPE}"),
    );
}

#[test]
fn before_linux_6_15_a_multipath_nvme_head_is_followed_to_its_paths_by_their_names() {
    // No `multipath/` links: the paths of head nvme{S}n{N} are the disks nvme{S}c{C}n{N}.
    let (tree, host) = root_on_a_multipath_nvme_head(false);
    assert_rule_warns(
        &tree,
        &host,
        NVME,
        format!("warning: {NVME} holds / (xfs on /dev/nvme0c0n1): with this rule the host loses / at the next boot. {ESCAPE}"),
    );
}

#[test]
fn a_filesystem_on_a_partition_of_a_loop_device_is_held_by_the_disk_the_file_is_on() {
    // `losetup -P`: loop0p1 lies below loop0, which has the backing file.
    let mut tree = workstation();
    tree.add_disk("sda", (8, 0), SATA, "ata1/host0/target0:0:0/0:0:0:0")
        .unwrap()
        .add_virtual_block(
            "loop0",
            (7, 0),
            &[],
            &[("loop/backing_file", "/srv/disk.img")],
        )
        .unwrap()
        .add_partition("loop0", "loop0p1", (259, 9))
        .unwrap();
    let host = HostRoot::new(&tree).mounts(
        "27 1 8:0 / / rw - ext4 /dev/sda rw\n\
         40 27 259:9 / /mnt/data rw - ext4 /dev/loop0p1 rw\n",
    );
    assert_rule_warns(
        &tree,
        &host,
        SATA,
        format!("warning: {SATA} holds / (ext4 on /dev/sda), /mnt/data (ext4 on /dev/sda via loop file /srv/disk.img): with this rule the host loses / and /mnt/data at the next boot. {ESCAPE}"),
    );
}

#[test]
fn a_loop_file_on_the_filesystem_it_is_part_of_is_a_dead_end_not_a_loop() {
    // The root volume group extended with a loop file kept on the root itself: the file
    // leads back to `/`, which is built on the loop. That way round holds nothing more; the
    // NVMe partition beside it is named once.
    let mut tree = workstation();
    nvme_partitions(&mut tree);
    tree.add_virtual_block(
        "loop0",
        (7, 0),
        &[],
        &[("loop/backing_file", "/var/lib/extra-pv.img")],
    )
    .unwrap()
    .add_virtual_block(
        "dm-0",
        (254, 0),
        &["loop0", "nvme0n1p2"],
        &[("dm/uuid", "LVM-Wm2b7YtPq0aJcK9e"), ("dm/name", "vg0-root")],
    )
    .unwrap();
    let host = HostRoot::new(&tree).mounts(&format!(
        "{PROC_MOUNTS}27 1 254:0 / / rw - ext4 /dev/mapper/vg0-root rw\n"
    ));
    assert_rule_warns(
        &tree,
        &host,
        NVME,
        format!("warning: {NVME} holds / (ext4 on /dev/nvme0n1p2 via LVM): with this rule the host loses / at the next boot. {ESCAPE}"),
    );
}

#[test]
fn active_swap_on_a_partition_holds_its_drive() {
    let mut tree = workstation();
    nvme_partitions(&mut tree);
    tree.add_virtual_block("zram0", (253, 0), &[], &[]).unwrap();
    let host = HostRoot::new(&tree).mounts(PROC_MOUNTS).with(
        "proc/swaps",
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
         /dev/nvme0n1p3                          partition\t8388604\t\t0\t\t-2\n\
         /dev/zram0                              partition\t4194300\t\t0\t\t100\n",
    );
    assert_rule_warns(
        &tree,
        &host,
        NVME,
        format!("warning: {NVME} holds swap (/dev/nvme0n1p3): with this rule the host loses swap at the next boot. {ESCAPE}"),
    );
}

#[test]
fn default_routes_are_followed_through_a_bridge_a_bond_and_a_vlan_to_the_nic() {
    let mut tree = workstation();
    tree.add_interface("lo", None, &[])
        .unwrap()
        .add_interface("eno1", Some((ETHERNET, "")), &[])
        .unwrap()
        .add_interface("bond0", None, &["eno1"])
        .unwrap()
        .add_interface("vnet0", None, &[])
        .unwrap()
        .add_interface("br0", None, &["bond0", "vnet0"])
        .unwrap()
        .add_interface("eno1.7", None, &["eno1"])
        .unwrap();
    let host = HostRoot::new(&tree)
        .mounts(PROC_MOUNTS)
        .with(
            "proc/net/route",
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             br0\t00000000\t010AA8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             br0\t000AA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        )
        .with(
            "proc/net/ipv6_route",
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000002 00000000 00000003   eno1.7\n\
             00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n",
        );
    assert_rule_warns(
        &tree,
        &host,
        ETHERNET,
        format!("warning: {ETHERNET} holds the IPv4 default route (br0 via bond0 on eno1), the IPv6 default route (eno1.7 via eno1): with this rule the host loses its IPv4 default route and its IPv6 default route at the next boot. {ESCAPE}"),
    );
}

/// The integrated GPU shows the console (fb0, from efi-framebuffer.0) and is the only DRM
/// card on its driver; the host mounts nothing but /proc.
fn igpu_the_only_display(tree: &mut SysfsTree) -> HostRoot {
    tree.add_platform_graphics(0, "efi-framebuffer.0")
        .unwrap()
        .add_drm_card(0, IGPU)
        .unwrap();
    HostRoot::new(tree).mounts(PROC_MOUNTS)
}

#[test]
fn the_console_card_is_held_when_it_is_the_only_display_and_free_when_another_remains() {
    let mut tree = workstation();
    let host = igpu_the_only_display(&mut tree);
    assert_rule_warns(
        &tree,
        &host,
        "00:02",
        format!("warning: {IGPU} holds the console (fb0), the host's only display: with this rule the host loses its only display at the next boot. {ESCAPE}"),
    );
    // With the guest GPU on its driver too, the host keeps a display.
    tree.add_drm_card(1, GUEST_GPU).unwrap();
    assert_rule_does_not_warn(&tree, &host, "00:02");
}

/// `bind` of the NVMe drive that holds `/`, with the extra arguments.
fn bind(tree: &SysfsTree, host: &HostRoot, extra: &[&str]) -> Output {
    let mut arguments = vec![
        "bind",
        "144d:a80a@3d:00",
        "--sysfs",
        path(tree.root()),
        "--host-root",
        path(&host.root),
    ];
    arguments.extend(extra);
    vfio_bind(&arguments)
}

#[test]
fn bind_refuses_a_function_the_host_holds_in_one_line_and_touches_nothing() {
    let mut tree = workstation();
    let host = luks_root_host(&mut tree);
    let output = bind(&tree, &host, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "vfio-bind: 144d:a80a@0000:3d:00 refused: 0000:3d:00.0 holds / (ext4 on /dev/nvme0n1p2 via LUKS), \
         /boot/efi (vfat on /dev/nvme0n1p1), which the host would lose; nothing was touched (--force binds it anyway)\n"
    );
    assert_eq!(tree.override_of(NVME), "(null)");
    assert_eq!(tree.driver_of(NVME).as_deref(), Some("nvme"));
    assert_eq!(tree.read("bus/pci/drivers_probe"), "");
}

#[test]
fn bind_with_force_takes_a_held_function_anyway() {
    let mut tree = workstation();
    let host = luks_root_host(&mut tree);
    let output = bind(&tree, &host, &["--force"]);
    // No kernel reacts in a fixture: the driver stays, so the card is given back. What
    // counts is that the binder went ahead and wrote (the override, cleared again).
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("refused"), "{stderr}");
    assert!(
        stderr.starts_with("vfio-bind: 144d:a80a@0000:3d:00 not applied: 0000:3d:00.0 is on nvme, not vfio-pci; given back"),
        "{stderr}"
    );
    assert_eq!(tree.override_of(NVME), "");
    assert_eq!(tree.read("bus/pci/drivers_probe"), "0000:3d:00.0");
}

/// The PCI function behind this machine's `/`, found from its real /proc and /sys the way
/// the kernel documents them, independently of the binder: mountinfo's MAJ:MIN, the
/// `/sys/dev/block` link, the deepest PCI address on its path.
fn function_behind_the_real_root() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let number = mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(4) == Some(&"/")).then(|| fields[2].to_string())
    })?;
    let device = std::fs::canonicalize(format!("/sys/dev/block/{number}")).ok()?;
    let device = device.to_str()?;
    // A partition's directory lies inside its disk's, on the same path.
    device
        .rsplit('/')
        .find(|part| part.len() == 12 && part.as_bytes()[4] == b':' && part.as_bytes()[10] == b'.')
        .map(str::to_string)
}

#[test]
fn on_this_machine_the_function_behind_root_is_warned_about_and_a_rule_for_it_is_a_problem() {
    // Read-only commands on the real /sys and /proc: rule and check.
    let Some(function) = function_behind_the_real_root() else {
        panic!("this test wants a machine whose / is on a PCI block device (a VM with virtio-blk or NVMe)");
    };
    let output = vfio_bind(&["rule", &function]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let warning = warnings(&stdout);
    assert_eq!(warning.len(), 1, "{stdout}");
    assert!(
        warning[0].starts_with(&format!("warning: {function} holds / (")),
        "{stdout}"
    );
    assert!(warning[0].ends_with(ESCAPE), "{stdout}");

    let slot = &function[..function.len() - 2];
    let output = vfio_bind(&[
        "check",
        "--cmdline",
        &format!("vfio.bind=@{slot}"),
        "--cmdline-dir",
        "/nonexistent",
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.lines().any(|line| line.starts_with(&format!(
            "PROBLEM @{slot}: at the next boot the host loses /"
        ))),
        "{stdout}"
    );
}

#[test]
fn a_fifo_in_the_host_root_is_never_opened() {
    let mut tree = workstation();
    let host = luks_root_host(&mut tree);
    nix::unistd::mkfifo(
        &host.root.join("proc/net/route"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(["rule", "3d:00", "--sysfs", path(tree.root()), "--host-root"])
        .arg(&host.root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = output_unless_hung(child, "rule blocked on a FIFO in the host root");
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    // The mounts are still read: the FIFO only hides the routes.
    assert_eq!(warnings(&stdout).len(), 1, "{stdout}");
}

#[test]
fn bind_by_path_of_a_function_the_host_does_not_use_says_where_the_path_led_once() {
    let mut tree = workstation();
    let host = luks_root_host(&mut tree);
    let output = vfio_bind(&[
        "bind",
        "10de:2204@00:01.0/00",
        "--sysfs",
        path(tree.root()),
        "--host-root",
        path(&host.root),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.matches("resolved to 0000:01:00").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("refused"), "{stderr}");
}

/// A host whose kernel console is on a serial port only (`console=ttyS0`, a headless server
/// or the VM test's guests) does not lose its console with its only display card; one whose
/// console list has a virtual terminal (`tty0`, as a desktop's has) does. Without the list
/// (an old kernel) the card is held, as the safe reading.
#[test]
fn the_only_display_is_held_only_while_the_kernel_console_is_on_a_virtual_terminal() {
    let mut tree = workstation();
    let host = igpu_the_only_display(&mut tree);
    let active = tree.root().join("class/tty/console/active");
    std::fs::create_dir_all(active.parent().unwrap()).unwrap();

    std::fs::write(&active, "ttyS0\n").unwrap();
    assert_rule_does_not_warn(&tree, &host, "00:02");

    std::fs::write(&active, "ttyS0 tty0\n").unwrap();
    assert_rule_warns(
        &tree,
        &host,
        "00:02",
        format!("warning: {IGPU} holds the console (fb0), the host's only display: with this rule the host loses its only display at the next boot. {ESCAPE}"),
    );
}
