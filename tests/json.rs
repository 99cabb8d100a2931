//! `list --json` and `check --json` through the binary: the documented schemas, parsed back
//! as a script would parse them.

use std::process::Command;

use serde_json::Value;
use sysfs_fixture::*;

mod common;

use common::vfio_bind_on_fixture;

fn run(arguments: &[&str], tree: &SysfsTree, cmdline: &str) -> (Option<i32>, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(arguments)
        .arg("--sysfs")
        .arg(tree.root())
        .args(["--cmdline", cmdline, "--cmdline-dir", "/nonexistent"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (output.status.code(), value, stdout)
}

#[test]
fn list_json_has_one_object_per_function_with_the_documented_fields() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let (status, value, stdout) = run(&["list", "--json"], &tree, "vfio.bind=1002:73ff@07:00");
    assert_eq!(status, Some(0), "{stdout}");
    assert_eq!(value["schema"], "vfio-bind.list/1");
    assert_eq!(value["iommu"], true);
    let functions = value["functions"].as_array().unwrap();
    let addresses: Vec<&str> = functions
        .iter()
        .map(|f| f["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "0000:00:00.0",
            "0000:00:01.1",
            "0000:00:01.2",
            "0000:03:00.0",
            "0000:03:00.1",
            "0000:07:00.0",
            "0000:07:00.1"
        ]
    );
    let guest = &functions[5];
    assert_eq!(guest["vendor"], "1002");
    assert_eq!(guest["device"], "73ff");
    assert_eq!(guest["class"], "030000");
    assert_eq!(guest["selected"], true);
    assert_eq!(guest["iommu_group"], 17);
    assert!(guest["driver_override"].is_null());
    assert_eq!(
        functions[4]["selected"], false,
        "the host's audio is not selected"
    );
    assert_eq!(
        functions[6]["path"], "0000:00:01.2/00.1",
        "the guest card sits behind a bridge"
    );
    for function in functions {
        let keys: Vec<&String> = function.as_object().unwrap().keys().collect();
        assert_eq!(
            keys.len(),
            12,
            "address vendor device class driver driver_override iommu_group boot_vga path selected name class_name: {keys:?}"
        );
    }
}

#[test]
fn check_json_has_one_object_per_finding_with_its_fix_and_the_same_exit_status() {
    let tree = guest_card_after_boot("snd_hda_intel").unwrap();
    let (status, value, stdout) = run(&["check", "--json"], &tree, "vfio.bind=1002:73ff@07:00.0");
    assert_eq!(status, Some(1), "{stdout}");
    assert_eq!(value["schema"], "vfio-bind.check/1");
    assert_eq!(value["ok"], false);
    let findings = value["findings"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap(),
                f["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ok", ""),
            ("ok", "1002:73ff@0000:07:00.0"),
            ("problem", "IOMMU group 17"),
        ]
    );
    assert_eq!(
        findings[2]["text"],
        "IOMMU group 17 is not viable: 0000:07:00.1 (1002:ab28) is on snd_hda_intel"
    );
    assert_eq!(findings[2]["fix"], "add vfio.bind=1002:ab28@0000:07:00.1");
    assert!(findings[0]["fix"].is_null());

    // The text output says the same findings, one line each.
    let text = vfio_bind_on_fixture(&["check"], &tree, "vfio.bind=1002:73ff@07:00.0");
    assert_eq!(text.status.code(), Some(1));
    let lines = String::from_utf8(text.stdout).unwrap();
    assert_eq!(lines.lines().count(), findings.len(), "{lines}");
    assert!(lines.contains("PROBLEM IOMMU group 17 is not viable: 0000:07:00.1 (1002:ab28) is on snd_hda_intel. Fix: add vfio.bind=1002:ab28@0000:07:00.1"));
}

/// The same findings in JSON: one per rule and cause, its subject the rule or the group,
/// its text naming every function (was: one object per function).
#[test]
fn check_json_has_one_finding_per_rule_and_cause() {
    let mut tree = SysfsTree::new().unwrap();
    for (function, device, class, driver) in [
        ("0", 0x73ff, CLASS_VGA, "amdgpu"),
        ("1", 0xab28, CLASS_AUDIO, "snd_hda_intel"),
    ] {
        tree.add(
            Function::new(&format!("0000:07:00.{function}"), 0x1002, device, class)
                .group(17)
                .driver(driver),
        )
        .unwrap();
    }
    tree.add(
        Function::new("0000:07:00.2", 0x1002, 0x73a6, CLASS_USB)
            .group(17)
            .driver("xhci_hcd"),
    )
    .unwrap();
    let (status, value, stdout) = run(&["check", "--json"], &tree, "vfio.bind=@07:00.0,@07:00.1");
    assert_eq!(status, Some(1), "{stdout}");
    let findings = value["findings"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap(),
                f["subject"].as_str().unwrap(),
                f["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ok", "", "the IOMMU is on"),
            ("problem", "@0000:07:00.0", "@0000:07:00.0: 0000:07:00.0 is on amdgpu, not vfio-pci"),
            ("problem", "@0000:07:00.1", "@0000:07:00.1: 0000:07:00.1 is on snd_hda_intel, not vfio-pci"),
            ("problem", "IOMMU group 17", "IOMMU group 17 is not viable: 0000:07:00.0 (1002:73ff) is on amdgpu, 0000:07:00.1 (1002:ab28) is on snd_hda_intel; the rules above select them, so the fix is theirs"),
            ("problem", "IOMMU group 17", "IOMMU group 17 is not viable: 0000:07:00.2 (1002:73a6) is on xhci_hcd"),
        ],
        "{stdout}"
    );
    assert_eq!(findings[4]["fix"], "add vfio.bind=1002:73a6@0000:07:00.2");
}
