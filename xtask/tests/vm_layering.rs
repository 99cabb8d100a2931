//! The VM test's modules (`xtask/src/vm/*`) import one another one way: read from the
//! sources, no two of them import each other in a circle, the scenario table sits above the
//! images it boots (`scenario` imports `image`, and neither `image` nor what builds it
//! imports `scenario`), `host`, the tools and process helpers, imports no other of them,
//! and none imports the runner (`vm/mod.rs`), which imports them.
//!
//! An import is a `super::NAME` or `crate::vm::NAME` path in code before the unit tests
//! (`#[cfg(test)]`); a file below a folder, such as `image/dracut.rs`, belongs to that
//! folder's module, and its `super::super::NAME` is the import. A `super::NAME` that is no
//! module names an item of the runner. Comments do not count.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[path = "../../tests/import_graph/mod.rs"]
mod import_graph;

use import_graph::{group_names, ident, read, without_comments, Graph};

fn vm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/vm")
}

/// The names a path prefix (`super::`, `crate::vm::`) reaches in `code`.
fn names_after<'c>(code: &'c str, prefix: &str) -> Vec<&'c str> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        // `super::super::` is seen again from its second `super::`.
        if code[..at].ends_with("super::") && prefix == "super::" {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if rest.starts_with('{') {
            names.extend(group_names(rest));
        } else {
            names.push(ident(rest));
        }
    }
    names
}

/// The runner, `vm/mod.rs`, in the graph.
const RUNNER: &str = "mod";

/// A file's code before its unit tests, without comments.
fn code_of(path: &Path) -> String {
    let text = read(path);
    let before_unit_tests = text
        .lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments(&before_unit_tests)
}

/// Each module of `vm` and the other modules of `vm` it imports.
fn graph() -> Graph {
    let mut files: Vec<(String, PathBuf, bool)> = Vec::new();
    for entry in std::fs::read_dir(vm_dir()).expect("xtask/src/vm") {
        let path = entry.expect("an entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).expect("a module folder") {
                let inner = inner.expect("an entry").path();
                let top = inner.file_name().is_some_and(|file| file == "mod.rs");
                files.push((name.clone(), inner, top));
            }
        } else if name != "mod" {
            files.push((name, path, true));
        }
    }
    let modules: BTreeSet<String> = files.iter().map(|(name, _, _)| name.clone()).collect();
    let mut graph = Graph::new();
    for (name, path, top) in &files {
        let code = code_of(path);
        let up = if *top { "super::" } else { "super::super::" };
        let imports = graph.entry(name.clone()).or_default();
        for other in names_after(&code, "crate::vm::") {
            if other != name && modules.contains(other) {
                imports.insert(other.to_string());
            }
        }
        for other in names_after(&code, up) {
            if modules.contains(other) {
                if other != name {
                    imports.insert(other.to_string());
                }
            } else if other != "*" && !other.is_empty() {
                imports.insert(RUNNER.to_string());
            }
        }
    }
    graph
}

/// Every module `name` reaches through its imports.
fn reached_from(name: &str, graph: &Graph) -> BTreeSet<String> {
    let mut reached = BTreeSet::new();
    let mut next = vec![name.to_string()];
    while let Some(module) = next.pop() {
        for imported in graph.get(&module).into_iter().flatten() {
            if reached.insert(imported.clone()) {
                next.push(imported.clone());
            }
        }
    }
    reached
}

#[test]
fn no_two_vm_modules_import_each_other_in_a_circle() {
    let graph = graph();
    assert!(graph.len() >= 8, "modules found: {graph:?}");
    if let Some(circle) = import_graph::circle(&graph) {
        panic!(
            "{} reaches itself through its imports: {graph:?}",
            circle.join(" -> ")
        );
    }
}

#[test]
fn the_scenario_table_sits_above_the_images_it_boots() {
    let graph = graph();
    assert!(
        graph["scenario"].contains("image"),
        "scenario no longer imports image: {graph:?}"
    );
    assert!(
        !reached_from("image", &graph).contains("scenario"),
        "image reaches scenario: {graph:?}"
    );
}

#[test]
fn the_host_helpers_import_no_other_vm_module() {
    let graph = graph();
    assert!(graph["host"].is_empty(), "host imports {:?}", graph["host"]);
}

#[test]
fn no_vm_module_imports_the_runner() {
    for (name, imports) in graph() {
        assert!(
            !imports.contains(RUNNER),
            "{name} imports an item of vm/mod.rs, which imports it"
        );
    }
}
