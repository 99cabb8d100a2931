//! How the crate's imports run, read from the sources as a reader would follow them:
//! - the folders of `src/` are layers, `doctor` → `boot` → `machine` → `rules`: a module
//!   imports only its own folder and the folders after it, so nothing on the boot path
//!   imports the doctor;
//! - a pure module (its first comment says `Pure:`) imports only pure modules, and neither
//!   files, processes, the network nor `nix`;
//! - no modules import each other in a circle;
//! - inside the boot path, nothing calls into the supervisor (`watchdog`), and the
//!   supervisor never into `apply` or `bootfb`: it hands the work a kernel that notes its
//!   steps, and gives back after a kill on its own;
//! - `src/lib.rs` lists every module, in its folder, pure or I/O as the module says.
//!
//! An import is a `crate::FOLDER::MODULE` path (or `super::MODULE` to a sibling) in code;
//! comments do not count, so a doc link may name the module that calls this one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod import_graph;

use import_graph::{group_names, ident, read, without_comments};

/// The folders of `src/`, from the top layer down.
const LAYERS: [&str; 4] = ["doctor", "boot", "machine", "rules"];

/// What the standard library and the crates may not give a pure module.
const IO_PATHS: [&str; 6] = [
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::os",
    "nix::",
];

/// A module as `FOLDER::NAME`.
type Name = String;

struct Module {
    /// Its code, without comments.
    code: String,
    /// Whether its first comment says `Pure:`.
    pure: bool,
    imports: BTreeSet<Name>,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    entries
}

/// The modules a module's code names, as `FOLDER::NAME`.
fn imports_of(folder: &str, code: &str, siblings: &BTreeSet<String>) -> BTreeSet<Name> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let layer = ident(rest);
        let Some(after) = rest[layer.len()..].strip_prefix("::") else {
            found.insert(layer.to_string());
            continue;
        };
        if after.starts_with('{') {
            for name in group_names(after) {
                found.insert(format!("{layer}::{name}"));
            }
        } else {
            found.insert(format!("{layer}::{}", ident(after)));
        }
    }
    for (at, _) in code.match_indices("super::") {
        let name = ident(&code[at + "super::".len()..]);
        if siblings.contains(name) {
            found.insert(format!("{folder}::{name}"));
        }
    }
    found
}

/// Every module under the layer folders, read from the sources.
fn modules() -> BTreeMap<Name, Module> {
    let mut modules = BTreeMap::new();
    for folder in LAYERS {
        let dir = src().join(folder);
        let files: Vec<PathBuf> = sorted_entries(&dir)
            .into_iter()
            .filter(|path| path.file_name().is_some_and(|name| name != "mod.rs"))
            .collect();
        let siblings: BTreeSet<String> = files
            .iter()
            .filter_map(|path| path.file_stem()?.to_str().map(str::to_string))
            .collect();
        for path in &files {
            let name = path.file_stem().and_then(|stem| stem.to_str()).unwrap();
            let text = read(path);
            let mut first_comment = text.lines().take_while(|line| line.starts_with("//!"));
            let pure = first_comment.any(|line| line.starts_with("//! Pure:"));
            let code = without_comments(&text);
            let imports = imports_of(folder, &code, &siblings);
            modules.insert(
                format!("{folder}::{name}"),
                Module {
                    code,
                    pure,
                    imports,
                },
            );
        }
    }
    modules
}

fn layer_of(name: &str) -> usize {
    let folder = name.split("::").next().unwrap_or(name);
    LAYERS
        .iter()
        .position(|layer| *layer == folder)
        .unwrap_or_else(|| panic!("{name} is in no layer of {LAYERS:?}"))
}

#[test]
fn every_module_sits_in_a_layer_whose_first_comment_says_its_role() {
    for path in sorted_entries(&src()) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            assert!(
                LAYERS.contains(&name.as_str()),
                "src/{name}/ is not one of the layers {LAYERS:?}: place it in tests/layering.rs and src/lib.rs"
            );
            let head = read(&path.join("mod.rs"));
            let first_comment = head.lines().take_while(|line| line.starts_with("//!"));
            assert!(
                first_comment.count() >= 2,
                "src/{name}/mod.rs does not start with the comment that says its role and imports"
            );
        } else {
            assert!(
                name == "lib.rs" || name == "main.rs",
                "src/{name} sits beside lib.rs: move it into one of the layers {LAYERS:?}"
            );
        }
    }
}

#[test]
fn imports_run_down_the_layers_so_the_boot_path_never_imports_the_doctor() {
    for (name, module) in modules() {
        for imported in &module.imports {
            assert!(
                layer_of(imported) >= layer_of(&name),
                "{name} imports {imported}, a layer above it ({LAYERS:?}, top first)"
            );
        }
    }
}

#[test]
fn pure_modules_import_no_io_module() {
    let modules = modules();
    let pure: Vec<&Name> = modules.keys().filter(|name| modules[*name].pure).collect();
    assert!(pure.len() >= 10, "pure modules found: {pure:?}");
    for name in pure {
        let module = &modules[name];
        for imported in &module.imports {
            let imported_module = modules
                .get(imported)
                .unwrap_or_else(|| panic!("{name} imports {imported}, which is no module"));
            assert!(
                imported_module.pure,
                "{name} is pure but imports {imported}, an I/O module"
            );
        }
        for io in IO_PATHS {
            assert!(!module.code.contains(io), "{name} is pure but uses {io}");
        }
    }
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let graph: import_graph::Graph = modules()
        .into_iter()
        .map(|(name, module)| (name, module.imports))
        .collect();
    if let Some(circle) = import_graph::circle(&graph) {
        panic!("a circle: {}", circle.join(" -> "));
    }
}

#[test]
fn the_boot_path_never_calls_into_the_supervisor() {
    for (name, module) in modules() {
        if name.starts_with("boot::") && name != "boot::watchdog" {
            assert!(
                !module.imports.contains("boot::watchdog"),
                "{name} calls into the supervisor: {:?}",
                module.imports
            );
        }
    }
}

#[test]
fn the_supervisor_never_calls_into_apply_or_bootfb() {
    let imported = &modules()["boot::watchdog"].imports;
    for module in ["boot::apply", "boot::bootfb", "boot::sources"] {
        assert!(
            !imported.contains(module),
            "src/boot/watchdog.rs imports {module}: {imported:?}"
        );
    }
}

/// `src/lib.rs` names each folder (`//! - `FOLDER/`: ...`) and below it each module
/// (`//!   - `NAME` (pure): ...` or `(I/O)`).
#[test]
fn lib_rs_lists_every_module_as_pure_or_io_as_it_says() {
    let mut listed = BTreeMap::new();
    let mut folder = String::new();
    for line in read(&src().join("lib.rs")).lines() {
        if let Some(rest) = line.strip_prefix("//! - `") {
            folder = rest.split('/').next().unwrap_or_default().to_string();
        } else if let Some(rest) = line.strip_prefix("//!   - `") {
            let (name, rest) = rest.split_once('`').expect("a module name in backquotes");
            let pure = if rest.starts_with(" (pure)") {
                true
            } else if rest.starts_with(" (I/O)") {
                false
            } else {
                panic!("src/lib.rs: {name} is neither (pure) nor (I/O)")
            };
            listed.insert(format!("{folder}::{name}"), pure);
        }
    }
    let found: BTreeMap<Name, bool> = modules()
        .into_iter()
        .map(|(name, module)| (name, module.pure))
        .collect();
    assert_eq!(
        listed, found,
        "src/lib.rs (left) against the sources (right)"
    );
}
