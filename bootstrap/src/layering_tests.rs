//! ARCHITECTURE.md's stack, checked: every `crate::X` path in `src/**/*.rs` (comments and test
//! code aside) goes to a module of the same layer or one below, no two modules reach each other
//! (no circle, even inside a layer), and no operation imports another; and every stop script runs
//! through `Ctx::stop_member`. rust-analyzer's `tidy` tests are the model: the rule lives next to
//! the code it keeps honest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first; a module is named by its top-level path (`adopt`, `ops::up` counts
/// as `ops`, `run::live` as `run`).
const LAYERS: &[(&str, &[&str])] = &[
    // lib.rs only declares the modules
    ("vocabulary", &["error", "exit", "format", "progress", "journal", "formation"]),
    ("spec/", &["spec"]),
    ("plan", &["plan"]),
    ("host/", &["host"]),
    ("kube/ and adopt/", &["kube", "adopt"]),
    ("run/", &["run"]),
    ("backup/ and in_place/", &["backup", "in_place"]),
    ("ops/", &["ops"]),
    ("doctor/", &["doctor"]),
    ("cli/", &["cli"]),
];

/// The folders: inside each, a path names a file (`crate::host::scripts` is `host::scripts`), so
/// the circle check sees inside them too.
const FOLDERS: &[&str] = &["spec", "host", "kube", "adopt", "run", "backup", "in_place", "ops", "doctor", "cli"];

fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap_or(module);
    LAYERS.iter().position(|(_, ms)| ms.contains(&top))
}

/// Module path of a source file: `src/ops/up.rs` -> `ops::up`, `src/adopt/mod.rs` -> `adopt`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).filter(|p| p != "mod").collect();
    parts.join("::")
}

/// The code of a file without its test module and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// `src/**/*.rs` but lib.rs, the binaries and the test files.
fn source_files(src: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("bin") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.to_string_lossy().ends_with("tests.rs") && !p.ends_with("lib.rs") {
                files.push(p);
            }
        }
    }
    files
}

/// `module -> modules it names` (`crate::a::b` names `a`, or `a::b` when `a` is a folder).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_files(&src);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let module = module_of(&src, &f);
        let text = code(&std::fs::read_to_string(&f).unwrap_or_default());
        let names = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let path: String = text[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut segs = path.split("::").filter(|s| !s.is_empty());
            let Some(top) = segs.next() else { continue };
            let target = match (top, segs.next()) {
                (folder, Some(sub)) if FOLDERS.contains(&folder) && sub.starts_with(|c: char| c.is_lowercase()) => format!("{top}::{sub}"),
                _ => top.to_string(),
            };
            if target != module && !module.starts_with(&format!("{target}::")) {
                names.insert(target);
            }
        }
    }
    graph
}

#[test]
fn every_module_has_a_layer_and_imports_only_its_own_layer_or_below() {
    let mut upward = vec![];
    for (from, targets) in imports() {
        let Some(lf) = layer_of(&from) else { panic!("{from} has no layer in LAYERS: put it where its imports say") };
        for to in targets {
            let Some(lt) = layer_of(&to) else { continue }; // a macro or a name that is no module
            if lt > lf {
                upward.push(format!("{from} ({}) imports {to} ({})", LAYERS[lf].0, LAYERS[lt].0));
            }
            if from.starts_with("ops::") && to.starts_with("ops::") {
                upward.push(format!("{from} imports {to}: operations never import each other (shared steps move below them)"));
            }
        }
    }
    assert!(upward.is_empty(), "imports against the stack:\n{}", upward.join("\n"));
}

#[test]
fn no_two_modules_reach_each_other() {
    let graph = imports();
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if n == to {
                    return true;
                }
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        false
    };
    let mut circles = vec![];
    for (from, targets) in &graph {
        for to in targets.iter().filter(|t| graph.contains_key(*t)) {
            if reaches(to, from) {
                circles.push(format!("{from} -> {to} -> ... -> {from}"));
            }
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

/// `Ctx::stop_member` forgets the connection kept to a member before its stop script runs; run
/// any other way, etcd's graceful stop would wait about a second for that idle connection.
#[test]
fn every_stop_script_runs_through_stop_member() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bypasses = vec![];
    for f in source_files(&src) {
        let text = code(&std::fs::read_to_string(&f).unwrap_or_default());
        for line in text.lines().filter(|l| l.contains("scripts::stop(") || l.contains("scripts::stop_drained(")) {
            if !line.contains("stop_member(") {
                bypasses.push(format!("{}: {}", module_of(&src, &f), line.trim()));
            }
        }
    }
    assert!(bypasses.is_empty(), "stop scripts not run through Ctx::stop_member:\n{}", bypasses.join("\n"));
}
