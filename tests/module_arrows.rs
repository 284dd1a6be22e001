//! Arrows run one way: no source file imports a file that imports it back.
//!
//! Reads `src/` and resolves every `use crate::...`, `use super::...`,
//! `use self::...` and inline `crate::...` path (outside comments and the
//! unit-test module) to the file that defines it. The only pairs allowed to
//! point at each other are a module and its own direct submodules (the
//! parent declares and re-exports them; a child may extend the parent's
//! types with `impl` blocks), as in `server/mod.rs` and `server/flow.rs`.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/store/sql/mod.rs` is `store::sql`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// The file defining the longest prefix of `segs` that is a module.
fn file_of(root: &Path, segs: &[String]) -> Option<PathBuf> {
    (1..=segs.len()).rev().find_map(|n| {
        let base: PathBuf = segs[..n].iter().fold(root.to_path_buf(), |p, s| p.join(s));
        [base.with_extension("rs"), base.join("mod.rs")]
            .into_iter()
            .find(|c| c.is_file())
    })
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into whole paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_owned()];
    };
    let close = tree.rfind('}').unwrap();
    let prefix = &tree[..open];
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for ch in tree[open + 1..close].chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(ch);
        }
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p).into_iter().map(|e| format!("{prefix}{e}")))
        .collect()
}

/// The code of a file without comments and without its unit-test module.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn paths_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use ...;` statements (possibly over several lines).
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        if tree.starts_with("crate::") || tree.starts_with("super::") || tree.starts_with("self::") {
            out.extend(expand(&tree));
        }
    }
    // Inline `crate::a::b` paths.
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at..];
        let len = rest
            .char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(rest.len(), |(i, _)| i);
        out.push(rest[..len].trim_end_matches(':').to_owned());
        rest = &rest[len..];
    }
    out
}

fn imports(root: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut files = Vec::new();
    source_files(root, &mut files);
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(root, file);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let mut targets = BTreeSet::new();
        for path in paths_in(&code) {
            let mut segs: Vec<String> = path.split("::").map(|s| s.trim().to_owned()).collect();
            let resolved = match segs.first().map(String::as_str) {
                Some("crate") => segs.split_off(1),
                Some("self") => me.iter().cloned().chain(segs.split_off(1)).collect(),
                Some("super") => {
                    let mut base = me.clone();
                    let mut rest = segs.as_slice();
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.into_iter().chain(rest.iter().cloned()).collect()
                }
                _ => continue,
            };
            if let Some(target) = file_of(root, &resolved)
                && &target != file
            {
                targets.insert(target);
            }
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&root);
    let mut cycles = Vec::new();
    for (a, targets) in &graph {
        for b in targets {
            if a < b && graph.get(b).is_some_and(|t| t.contains(a)) {
                let (ma, mb) = (module_of(&root, a), module_of(&root, b));
                let parent_and_child = |p: &[String], c: &[String]| c.len() == p.len() + 1 && c.starts_with(p);
                if !parent_and_child(&ma, &mb) && !parent_and_child(&mb, &ma) {
                    cycles.push(format!("{} <-> {}", a.display(), b.display()));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other:\n{}",
        cycles.join("\n")
    );
}

/// The checker itself finds a cycle when there is one (so the test above
/// cannot pass by reading nothing).
#[test]
fn the_checker_sees_imports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&root);
    let project = root.join("project.rs");
    let issuer = root.join("issuer.rs");
    assert!(graph[&project].contains(&root.join("project_id.rs")));
    assert!(graph[&root.join("discovery.rs")].contains(&issuer));
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]
    );
    let code = "use crate::store::{StoreError,\n    TokenIssuer};\nfn f() { crate::jwt::sign(); }";
    let found = paths_in(code);
    for want in [
        "crate::store::StoreError",
        "crate::store::TokenIssuer",
        "crate::jwt::sign",
    ] {
        assert!(found.iter().any(|p| p == want), "{want} in {found:?}");
    }
}
