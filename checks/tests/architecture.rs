//! The core reads in one direction: no module of `src/` imports a module
//! that imports it back (ARCHITECTURE.md).
//!
//! The nodes are the crate root (`lib.rs`, the public API) and its
//! top-level modules (`registry`, `runner`, `sys`, …), each with all of its
//! submodules. A module depends on another when its code names a path into
//! it: `use crate::state::STATE`, `crate::report::deadline_passed(..)`,
//! `super::super::trigger::…`, the same inside macro bodies
//! (`tracing::debug!(.. crate::x ..)`), or an item the root re-exports
//! (`crate::Exit` is `exit`'s). Doc comments do not count: a link is not a
//! call. Every `cfg` counts (the Windows back-end is checked on Linux too)
//! but `cfg(test)`: a unit test may drive the crate through its public API,
//! as a user would, from any module.
//!
//! `cargo test --test architecture` fails on a cycle and names the paths
//! that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The root's node: items defined in `lib.rs` itself.
const ROOT: &str = "lib";

/// ARCHITECTURE.md's layers under `marker`, top first: each line's modules.
fn layers(marker: &str) -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let block = text
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split("```text\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("ARCHITECTURE.md has the layers block");
    block
        .lines()
        .map(|line| {
            let (names, _what) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("a layer line is `modules: what they own`: {line}"));
            names.split(", ").map(str::to_owned).collect()
        })
        .collect()
}

#[test]
fn every_module_uses_only_modules_of_lower_layers() {
    check_layers(
        "../src",
        "<!-- layers: checked by checks/tests/architecture.rs -->",
    );
}

/// keepalive's library (its command, `src/bin/`, aside) is layered too.
#[test]
fn every_module_of_keepalive_uses_only_modules_of_lower_layers() {
    check_layers(
        "../keepalive/src",
        "<!-- keepalive layers: checked by checks/tests/architecture.rs -->",
    );
}

/// keepalive's decisions (`machine/`) read no clock, take no lock and call
/// nothing of the OS: they use only what describes (events, the policy,
/// the status view) and `os::later`, an `Instant` sum.
#[test]
fn keepalive_machine_is_pure() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keepalive/src");
    let graph = Graph::of(&src);
    let mut wrong = String::new();
    for ((from, to), places) in &graph.edges {
        if from != "machine" {
            continue;
        }
        for place in places {
            let allowed = match to.as_str() {
                "event" | "policy" | "protocol" => true,
                "os" => place.ends_with("::os::later"),
                _ => false,
            };
            if !allowed {
                writeln!(wrong, "  {place}").unwrap();
            }
        }
    }
    // Its unit tests (`tests.rs`) make exit statuses as the OS does.
    for file in rust_files(&src.join("machine")) {
        if file.ends_with("tests.rs") {
            continue;
        }
        let code = std::fs::read_to_string(&file).unwrap();
        for impure in [
            "Instant::now",
            "SystemTime",
            "std::sync",
            "std::thread",
            "std::fs",
            "std::io",
            "std::net",
            "std::process::Command",
            "rustix",
            "libc",
        ] {
            if code.contains(impure) {
                writeln!(wrong, "  {}: {impure}", file.display()).unwrap();
            }
        }
    }
    assert!(
        graph.edges.keys().any(|(from, _)| from == "machine"),
        "the checker found no dependency of keepalive's machine: it is not reading it"
    );
    assert!(
        wrong.is_empty(),
        "keepalive's machine reaches out:\n{wrong}"
    );
}

/// `src` (from this package) has every module in one layer of the block
/// under `marker`, and uses only modules of lower layers.
fn check_layers(src: &str, marker: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
    let graph = Graph::of(&src);
    let layers = layers(marker);
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |name| (name.as_str(), i)))
        .collect();
    let root = root_names(&parse(&src.join("lib.rs")));
    let modules: BTreeSet<&str> = root
        .modules
        .iter()
        .map(String::as_str)
        .chain([ROOT])
        .collect();
    let listed: BTreeSet<&str> = layer_of.keys().copied().collect();
    assert_eq!(
        listed, modules,
        "ARCHITECTURE.md's layers list every module of src/, once"
    );
    assert_eq!(
        layer_of.len(),
        layers.iter().map(Vec::len).sum::<usize>(),
        "a module listed twice"
    );
    let mut wrong = String::new();
    for ((from, to), places) in &graph.edges {
        if layer_of[from.as_str()] >= layer_of[to.as_str()] {
            writeln!(wrong, "  {from} → {to} (not a lower layer):").unwrap();
            for place in places {
                writeln!(wrong, "    {place}").unwrap();
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that go against ARCHITECTURE.md's layers:\n{wrong}"
    );
}

#[test]
fn no_module_of_src_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    let graph = Graph::of(&src);
    assert!(
        graph.edges.len() > 10,
        "the checker found only {} dependencies in src/: it is not reading the code",
        graph.edges.len()
    );
    let cycles = graph.cycles();
    assert!(cycles.is_empty(), "{}", graph.explain(&cycles));
    if std::env::var_os("EXIT_HOOK_PRINT_GRAPH").is_some() {
        for ((from, to), places) in &graph.edges {
            println!(
                "{from} → {to}: {}",
                places.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
}

/// The checker itself: a cycle through a re-export, `super::` and a macro
/// body is found; a tree without one passes, unit tests and doc links aside.
#[test]
fn the_checker_finds_a_cycle_wherever_it_is_spelled() {
    let dir = std::env::temp_dir().join(format!("exit_hook_arch_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod a; mod b; mod c; pub use a::Thing;\n");
    write("a.rs", "pub struct Thing; fn f() { crate::c::g(); }\n");
    // A unit test may use any module: `cfg(test)` is left out.
    write(
        "c.rs",
        "pub fn g() {}\n#[cfg(test)]\nmod tests { fn t() { crate::b::h(); } }\n",
    );
    write(
        "b/mod.rs",
        "mod inner; /// [`crate::a`] is only a link\nfn h() {}\n",
    );
    write("b/inner.rs", "use crate::Thing;\n");
    let graph = Graph::of(&dir);
    assert!(
        graph.cycles().is_empty(),
        "{}",
        graph.explain(&graph.cycles())
    );
    assert!(
        graph.edges.contains_key(&("b".into(), "a".into())),
        "a re-export resolves to its module"
    );
    assert!(
        !graph.edges.contains_key(&("a".into(), "b".into())),
        "a doc link is no dependency"
    );

    // a → c and now c → b → a, by three spellings.
    write(
        "c.rs",
        "pub fn g() { tracing::debug!(\"{}\", crate::b::h()); }\n",
    );
    write("b/mod.rs", "mod inner; pub fn h() {}\n");
    write("b/inner.rs", "fn k() { super::super::Thing; }\n");
    let graph = Graph::of(&dir);
    let cycles = graph.cycles();
    assert_eq!(cycles, vec![vec!["a".to_owned(), "b".into(), "c".into()]]);
    let explained = graph.explain(&cycles);
    assert!(explained.contains("c.rs: crate::b::h"), "{explained}");
    assert!(
        explained.contains("inner.rs: super::super::Thing"),
        "{explained}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Dependencies between nodes, each with where it is spelled.
struct Graph {
    /// (from, to) → "file: path" for each place.
    edges: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Graph {
    fn of(src: &Path) -> Graph {
        let files = rust_files(src);
        let root = root_names(&parse(&src.join("lib.rs")));
        let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let module = module_path(src, file);
            let mut paths = Paths {
                module: module.clone(),
                found: Vec::new(),
            };
            paths.visit_file(&parse(file));
            let from = node(&module);
            for (module, path) in paths.found {
                let Some(to) = resolve(&module, &path, &root) else {
                    continue;
                };
                if to != from {
                    let shown = file.strip_prefix(src).unwrap_or(file).display();
                    let place = format!("{shown}: {}", path.join("::"));
                    edges.entry((from.clone(), to)).or_default().insert(place);
                }
            }
        }
        Graph { edges }
    }

    /// Every strongly connected set of two or more nodes, each sorted.
    fn cycles(&self) -> Vec<Vec<String>> {
        let nodes: BTreeSet<&String> = self.edges.keys().flat_map(|(a, b)| [a, b]).collect();
        let reaches = |from: &String| {
            let mut seen = BTreeSet::from([from.clone()]);
            let mut todo = vec![from.clone()];
            while let Some(at) = todo.pop() {
                for (a, b) in self.edges.keys() {
                    if *a == at && seen.insert(b.clone()) {
                        todo.push(b.clone());
                    }
                }
            }
            seen
        };
        let reach: BTreeMap<&String, BTreeSet<String>> =
            nodes.iter().map(|&n| (n, reaches(n))).collect();
        let mut cycles: Vec<Vec<String>> = Vec::new();
        for &node in &nodes {
            let set: Vec<String> = nodes
                .iter()
                .filter(|&&other| reach[node].contains(other) && reach[other].contains(node))
                .map(|&n| n.clone())
                .collect();
            if set.len() > 1 && !cycles.contains(&set) {
                cycles.push(set);
            }
        }
        cycles
    }

    fn explain(&self, cycles: &[Vec<String>]) -> String {
        let mut text = String::from("modules of src/ that import each other in a circle:\n");
        for cycle in cycles {
            writeln!(text, "\n  {}", cycle.join(", ")).unwrap();
            for ((from, to), places) in &self.edges {
                if cycle.contains(from) && cycle.contains(to) {
                    writeln!(text, "    {from} → {to}").unwrap();
                    for place in places {
                        writeln!(text, "      {place}").unwrap();
                    }
                }
            }
        }
        text
    }
}

/// The library's files.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // A package's binaries (`src/bin/`) are crates of their own.
            if path.file_name().is_some_and(|name| name == "bin") {
                continue;
            }
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn parse(file: &Path) -> syn::File {
    let text = std::fs::read_to_string(file).unwrap();
    syn::parse_file(&text).unwrap_or_else(|err| panic!("{}: {err}", file.display()))
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `["a", "b"]`; `src/lib.rs` is `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(path.last().map(String::as_str), Some("mod" | "lib")) {
        path.pop();
    }
    path
}

/// The node a module belongs to: its top-level module, or the root.
fn node(module: &[String]) -> String {
    module.first().cloned().unwrap_or_else(|| ROOT.to_owned())
}

/// The root's top-level modules and `pub use` items.
fn root_names(root: &syn::File) -> Root {
    fn walk(tree: &syn::UseTree, top: Option<&str>, map: &mut BTreeMap<String, String>) {
        match tree {
            syn::UseTree::Path(path) => {
                let name = path.ident.to_string();
                walk(&path.tree, Some(top.unwrap_or(&name)), map);
            }
            syn::UseTree::Name(name) => {
                if let Some(top) = top {
                    map.insert(name.ident.to_string(), top.to_owned());
                }
            }
            syn::UseTree::Rename(rename) => {
                if let Some(top) = top {
                    map.insert(rename.rename.to_string(), top.to_owned());
                }
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    walk(tree, top, map);
                }
            }
            syn::UseTree::Glob(_) => {}
        }
    }
    let mut names = Root {
        modules: BTreeSet::new(),
        reexports: BTreeMap::new(),
    };
    for item in &root.items {
        match item {
            syn::Item::Use(item) => walk(&item.tree, None, &mut names.reexports),
            syn::Item::Mod(item) => {
                names.modules.insert(item.ident.to_string());
            }
            _ => {}
        }
    }
    names
}

/// The root's names: its top-level modules, and what it re-exports (the
/// exported name → the top-level module that defines it).
struct Root {
    modules: BTreeSet<String>,
    reexports: BTreeMap<String, String>,
}

/// The node `path`, written in `module`, leads to; `None` for a path
/// outside the crate (std, a dependency, a local name).
fn resolve(module: &[String], path: &[String], root: &Root) -> Option<String> {
    let mut at: Vec<String> = module.to_vec();
    let mut rest = path;
    let from_root = match rest.first().map(String::as_str) {
        Some("crate") => {
            at.clear();
            rest = &rest[1..];
            true
        }
        Some("super" | "self") => {
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        at.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            at.is_empty()
        }
        // A plain name leads into the crate only when written in the root
        // (`registry::x` in lib.rs); elsewhere it is an import counted
        // where it was made, or not a path of the crate.
        _ => false,
    };
    if let Some(top) = at.first() {
        return Some(top.clone());
    }
    let first = rest.first()?;
    if root.modules.contains(first) {
        Some(first.clone())
    } else if let Some(module) = root
        .reexports
        .get(first)
        .filter(|module| root.modules.contains(*module))
    {
        // (`use std::sync::Arc` in the root is no module of the crate.)
        Some(module.clone())
    } else if from_root {
        Some(ROOT.to_owned()) // an item defined in lib.rs
    } else {
        None
    }
}

/// Collects every path in a file with the module it is written in.
struct Paths {
    module: Vec<String>,
    found: Vec<(Vec<String>, Vec<String>)>,
}

impl Paths {
    fn found(&mut self, path: Vec<String>) {
        if !path.is_empty() {
            self.found.push((self.module.clone(), path));
        }
    }

    /// `crate :: a :: b` (and `super`, `self`) inside a macro's tokens.
    fn in_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => self.in_tokens(group.stream()),
                TokenTree::Ident(ident)
                    if matches!(ident.to_string().as_str(), "crate" | "super" | "self") =>
                {
                    let mut path = vec![ident.to_string()];
                    let mut j = i + 1;
                    while let (
                        Some(TokenTree::Punct(a)),
                        Some(TokenTree::Punct(b)),
                        Some(TokenTree::Ident(next)),
                    ) = (tokens.get(j), tokens.get(j + 1), tokens.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        path.push(next.to_string());
                        j += 3;
                    }
                    if path.len() > 1 {
                        self.found(path);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `#[cfg(test)]` or `#[test]`: unit tests are left out of the graph.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("test")
            || (attr.path().is_ident("cfg")
                && attr
                    .parse_args::<syn::Ident>()
                    .is_ok_and(|arg| arg == "test"))
    })
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if is_test(&item.attrs) {
            return;
        }
        if item.content.is_some() {
            self.module.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.module.pop();
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.found(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if is_test(&item.attrs) {
            return;
        }
        fn walk(tree: &syn::UseTree, prefix: &mut Vec<String>, paths: &mut Paths) {
            match tree {
                syn::UseTree::Path(path) => {
                    prefix.push(path.ident.to_string());
                    walk(&path.tree, prefix, paths);
                    prefix.pop();
                }
                syn::UseTree::Name(syn::UseName { ident })
                | syn::UseTree::Rename(syn::UseRename { ident, .. }) => {
                    let mut path = prefix.clone();
                    if ident != "self" {
                        path.push(ident.to_string());
                    }
                    paths.found(path);
                }
                syn::UseTree::Glob(_) => paths.found(prefix.clone()),
                syn::UseTree::Group(group) => {
                    for tree in &group.items {
                        walk(tree, prefix, paths);
                    }
                }
            }
        }
        walk(&item.tree, &mut Vec::new(), self);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.in_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {
        // Doc comments and `cfg`s name no dependency.
    }
}
