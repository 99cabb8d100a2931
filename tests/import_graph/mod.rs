//! Reading a module's imports from its code, and finding a circle among them: shared by
//! `tests/layering.rs` (the crate's layers) and `xtask/tests/vm_layering.rs` (the VM test's
//! modules), each of which includes this file with `#[path = ...] mod import_graph;`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module and the modules it imports.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// A source file's text; a file that cannot be read fails the test with its path.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The lines of `text` that are not comments.
pub fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifier that starts `text` (empty when none does).
pub fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first names of the items at the top level of a `{...}` group that starts `text`.
pub fn group_names(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (at, c) in text.char_indices() {
        match c {
            '{' => {
                depth += 1;
                item_start = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => item_start = true,
            c if c.is_whitespace() => {}
            _ if item_start && depth == 1 => {
                names.push(ident(&text[at..]));
                item_start = false;
            }
            _ => {}
        }
    }
    names
}

/// A circle of imports, as the modules walked from its first back to it
/// (`["a", "b", "a"]`), or `None` when there is none. A module naming itself is no circle.
pub fn circle(graph: &Graph) -> Option<Vec<String>> {
    // Depth-first, with the path walked so far: reaching a module on it closes a circle.
    fn walk(
        name: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|on| on == name) {
            let mut circle = path[at..].to_vec();
            circle.push(name.to_string());
            return Some(circle);
        }
        if done.contains(name) {
            return None;
        }
        path.push(name.to_string());
        for imported in graph.get(name).into_iter().flatten() {
            if imported != name {
                if let Some(circle) = walk(imported, graph, path, done) {
                    return Some(circle);
                }
            }
        }
        path.pop();
        done.insert(name.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|name| walk(name, graph, &mut Vec::new(), &mut done))
}
