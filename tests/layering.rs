//! One direction through the boot path: sources, plan, apply (with bootfb, kernel and
//! modprobe), and the supervisor (`watchdog`) around it. The boot path never calls into the
//! supervisor, and the supervisor never into `apply` or `bootfb`: it hands the work a
//! kernel that notes its steps, and gives back after a kill on its own. Read from the
//! sources, as a reader would follow the imports.

use std::path::Path;

fn source(module: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(format!("{module}.rs"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The modules `module` names as `crate::FOLDER::NAME`, in `use` lines or paths.
fn imports(module: &str) -> Vec<String> {
    let text = source(module);
    let mut found: Vec<String> = text
        .match_indices("crate::")
        .map(|(at, _)| {
            text[at + "crate::".len()..]
                .split("::")
                .take(2)
                .map(|segment| {
                    segment
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("::")
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_boot_path_never_calls_into_the_supervisor() {
    for module in [
        "boot/sources",
        "boot/plan",
        "boot/apply",
        "boot/bootfb",
        "boot/kernel",
        "boot/modprobe",
        "machine/sysfs",
        "boot/topology",
    ] {
        assert!(
            !imports(module).contains(&"boot::watchdog".to_string()),
            "src/{module}.rs calls into the supervisor: {:?}",
            imports(module)
        );
    }
}

#[test]
fn the_supervisor_never_calls_into_apply_or_bootfb() {
    let imported = imports("boot/watchdog");
    for module in [
        "boot::apply",
        "boot::bootfb",
        "boot::sources",
        "doctor::report",
    ] {
        assert!(
            !imported.contains(&module.to_string()),
            "src/boot/watchdog.rs imports {module}: {imported:?}"
        );
    }
}
