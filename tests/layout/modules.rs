//! The module tree of src/ for tests/layout.rs: which file is which module,
//! what each import reaches (through re-exports), the layer rule, and the
//! import graph with its cycles.

use super::source::paths_in;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One library or binary source file and the module it is.
pub struct SourceFile {
    pub path: PathBuf,
    /// Module path: src/sim/gpu/mod.rs is ["sim", "gpu"]; the binary's files
    /// are under ["cli"] (main.rs is ["cli"] itself).
    pub module: Vec<String>,
    pub binary: bool,
    pub text: String,
}

pub fn module_of(rel: &Path) -> (Vec<String>, bool) {
    let s = rel.strip_prefix("src").unwrap().with_extension("");
    let mut segs: Vec<String> = s
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segs.last().is_some_and(|l| l == "mod" || l == "lib") {
        segs.pop();
    }
    if segs == ["main"] {
        return (vec!["cli".into()], true);
    }
    let binary = segs.first().is_some_and(|s| s == "cli");
    (segs, binary)
}

/// An import resolved to the module (file) it reaches.
#[derive(Clone, Debug)]
pub struct Import {
    pub from_file: PathBuf,
    pub from: Vec<String>,
    pub line: usize,
    /// The path as written after its root, e.g. `crate::sim::gpu::GpuContext`.
    pub written: String,
    pub to: Vec<String>,
}

/// The library's module files, the binary's, and what each mod.rs re-exports
/// from which file: (module, exported name) → module.
pub struct Tree {
    pub modules: BTreeSet<Vec<String>>,
    pub reexports: BTreeMap<(Vec<String>, String), Vec<String>>,
}

impl Tree {
    /// The module a path reaches: its longest prefix that is a module file,
    /// followed through re-exports (`crate::sim::SimSpec` is sim::spec's).
    pub fn resolve(&self, full: &[String]) -> Vec<String> {
        let mut m: Vec<String> = Vec::new();
        for s in full {
            let mut next = m.clone();
            next.push(s.clone());
            if self.modules.contains(&next) {
                m = next;
                continue;
            }
            return match self.reexports.get(&(m.clone(), s.clone())) {
                Some(to) => to.clone(),
                None => m,
            };
        }
        m
    }

    pub fn build(files: &[SourceFile]) -> Tree {
        let modules: BTreeSet<Vec<String>> = files
            .iter()
            .filter(|f| !f.binary)
            .map(|f| f.module.clone())
            .collect();
        let mut tree = Tree {
            modules,
            reexports: BTreeMap::new(),
        };
        // Re-exports point at files; resolving them needs the others, so
        // repeat until nothing changes (chains are short).
        for _ in 0..4 {
            for f in files.iter().filter(|f| !f.binary) {
                for p in paths_in(&f.text, &f.module, false, &tree.children(&f.module)) {
                    if !p.reexport || p.segs.is_empty() {
                        continue;
                    }
                    let full: Vec<String> = p.base.iter().chain(&p.segs).cloned().collect();
                    let name = full.last().unwrap();
                    let to = tree.resolve(&full);
                    tree.reexports.insert((f.module.clone(), name.clone()), to);
                }
            }
        }
        tree
    }

    pub fn children(&self, m: &[String]) -> Vec<String> {
        self.modules
            .iter()
            .filter(|c| c.len() == m.len() + 1 && c.starts_with(m))
            .map(|c| c[m.len()].clone())
            .collect()
    }
}

/// Every import of every file, resolved. Paths of the binary into itself
/// (`crate::outln`, `super::progress_bar`) are the command line's own.
pub fn imports(files: &[SourceFile], tree: &Tree) -> Vec<Import> {
    let mut out = Vec::new();
    for f in files {
        let children = if f.binary {
            Vec::new()
        } else {
            tree.children(&f.module)
        };
        for p in paths_in(&f.text, &f.module, f.binary, &children) {
            if p.binary_local || p.segs.first().is_some_and(|s| s == "*") {
                continue;
            }
            let full: Vec<String> = p.base.iter().chain(&p.segs).cloned().collect();
            out.push(Import {
                from_file: f.path.clone(),
                from: f.module.clone(),
                line: p.line,
                written: p.written,
                to: tree.resolve(&full),
            });
        }
    }
    out
}

pub fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|l| l.contains(&module))
}

/// Imports that reach a module on a higher layer, or a module in no layer.
pub fn upward_imports(imports: &[Import], layers: &[&[&str]]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for imp in imports {
        let (Some(from), Some(to)) = (imp.from.first(), imp.to.first()) else {
            continue; // the crate root (lib.rs) declares and re-exports every module
        };
        // One message per line and module reached (a grouped `use` may name it twice).
        if from == to || !seen.insert((&imp.from_file, imp.line, to)) {
            continue;
        }
        let lf = layer_of(layers, from);
        let lt = layer_of(layers, to);
        match (lf, lt) {
            (Some(a), Some(b)) if b > a => problems.push(format!(
                "{}:{}: `{}` makes {from} (layer {a}: {}) use {to} (layer {b}: {}): a module may use only \
                 its own layer and those below; move what {from} needs down to layer {a} or lower, \
                 or the code that needs it up to layer {b} or higher",
                imp.from_file.display(),
                imp.line,
                imp.written,
                layers[a].join(", "),
                layers[b].join(", ")
            )),
            (None, _) | (_, None) => {
                let m = if lf.is_none() { from } else { to };
                problems.push(format!(
                    "{}:{}: module `{m}` is on no layer: add it to LAYERS in tests/layout.rs \
                     and to the Layers list in ARCHITECTURE.md",
                    imp.from_file.display(),
                    imp.line
                ));
            }
            _ => {}
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// A directed graph: node → (node → the import that makes the edge).
pub type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// A knot of nodes that reach each other, and one cycle through it (nodes in
/// order round it, each with the import that leads to the next).
#[derive(Debug)]
pub struct Knot {
    pub members: Vec<String>,
    pub ring: Vec<(String, String)>,
}

/// Every knot: the strongly connected components of more than one node
/// (Tarjan's algorithm), each with a shortest cycle through its first node.
pub fn cycles(g: &Graph) -> Vec<Knot> {
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        sccs: Vec<Vec<&'a str>>,
    }
    pub fn visit<'a>(s: &mut St<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        if let Some(out) = s.g.get(v) {
            for w in out.keys() {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            s.sccs.push(scc);
        }
    }
    let mut s = St {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        sccs: Vec::new(),
    };
    let nodes: Vec<&str> = g
        .iter()
        .flat_map(|(a, out)| std::iter::once(a.as_str()).chain(out.keys().map(|b| b.as_str())))
        .collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    let mut out = Vec::new();
    for scc in s.sccs.iter().filter(|c| c.len() > 1) {
        // One cycle through the component: a shortest way back to its first
        // node (breadth-first inside the component).
        let inside: BTreeSet<&str> = scc.iter().copied().collect();
        let start = *inside.iter().next().unwrap();
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        'bfs: while let Some(v) = queue.pop_front() {
            for w in g.get(v).into_iter().flat_map(|o| o.keys()) {
                let w = w.as_str();
                if !inside.contains(w) {
                    continue;
                }
                if w == start {
                    last = Some(v);
                    break 'bfs;
                }
                if !prev.contains_key(w) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut path = vec![start];
        let mut v = last.unwrap();
        while v != start {
            path.push(v);
            v = prev[v];
        }
        path[1..].reverse();
        let ring: Vec<(String, String)> = path
            .iter()
            .enumerate()
            .map(|(k, a)| {
                let b = path[(k + 1) % path.len()];
                (a.to_string(), g[*a][b].clone())
            })
            .collect();
        out.push(Knot {
            members: inside.iter().map(|m| m.to_string()).collect(),
            ring,
        });
    }
    out
}

pub fn describe_cycle(what: &str, knot: &Knot) -> String {
    let ring = &knot.ring;
    let names: Vec<&str> = ring.iter().map(|(a, _)| a.as_str()).collect();
    let edges: Vec<String> = ring
        .iter()
        .enumerate()
        .map(|(k, (a, why))| format!("{a} → {} ({why})", names[(k + 1) % names.len()]))
        .collect();
    let others: Vec<&str> = knot
        .members
        .iter()
        .map(|m| m.as_str())
        .filter(|m| !names.contains(m))
        .collect();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!(" ({} in the same knot)", others.join(", "))
    };
    format!(
        "{what} import each other round a cycle {} → {}{also}: {}; break it by moving what \
         they share into a module that imports none of them",
        names.join(" → "),
        names[0],
        edges.join("; ")
    )
}

pub fn evidence(imp: &Import) -> String {
    format!("{}:{} `{}`", imp.from_file.display(), imp.line, imp.written)
}

/// The graph between top-level modules.
pub fn module_graph(imports: &[Import]) -> Graph {
    let mut g = Graph::new();
    for imp in imports {
        if let (Some(a), Some(b)) = (imp.from.first(), imp.to.first()) {
            if a != b {
                g.entry(a.clone())
                    .or_default()
                    .entry(b.clone())
                    .or_insert_with(|| evidence(imp));
            }
        }
    }
    g
}

/// The graph between the files inside `folder`: an edge from a file to the
/// file it imports, except from a module to its own submodules (a folder's
/// mod.rs may re-export and dispatch to its files).
pub fn file_graph(imports: &[Import], folder: &str) -> Graph {
    let mut g = Graph::new();
    for imp in imports {
        let inside = |m: &[String]| m.first().is_some_and(|f| f == folder);
        if !inside(&imp.from) || !inside(&imp.to) || imp.to.starts_with(&imp.from) {
            continue;
        }
        g.entry(imp.from.join("::"))
            .or_default()
            .entry(imp.to.join("::"))
            .or_insert_with(|| evidence(imp));
    }
    g
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn synthetic(files: &[(&str, &str)]) -> (Vec<SourceFile>, Tree) {
    let files: Vec<SourceFile> = files
        .iter()
        .map(|(p, text)| {
            let path = PathBuf::from(p);
            let (module, binary) = module_of(&path);
            SourceFile {
                path,
                module,
                binary,
                text: text.to_string(),
            }
        })
        .collect();
    let tree = Tree::build(&files);
    (files, tree)
}

#[test]
fn checker_finds_a_synthetic_cycle_between_files_and_names_its_imports() {
    // a → b → c (through sim/mod.rs's re-export of Thing), and c → a when
    // `c_rs` imports a.
    let sim_graph = |c_rs: &str| {
        let (files, tree) = synthetic(&[
            (
                "src/sim/mod.rs",
                "pub mod a;\npub mod b;\npub mod c;\npub use c::Thing;\n",
            ),
            ("src/sim/a.rs", "use crate::sim::b::B;\n"),
            (
                "src/sim/b.rs",
                "fn f() { let x = crate::sim::Thing::new(); }\n",
            ),
            ("src/sim/c.rs", c_rs),
        ]);
        file_graph(&imports(&files, &tree), "sim")
    };
    let found = cycles(&sim_graph(
        "// crate::sim::b is only mentioned\nuse super::a::A;\n",
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    let names: BTreeSet<&str> = found[0].ring.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["sim::a", "sim::b", "sim::c"]));
    let msg = describe_cycle("files of src/sim/", &found[0]);
    assert!(
        msg.contains("src/sim/b.rs:1 `crate::sim::Thing::new`"),
        "{msg}"
    );
    assert!(msg.contains("src/sim/c.rs:2 `super::a::A`"), "{msg}");
    // Without c's import of a, no cycle (the comment in c.rs is not an import).
    assert!(cycles(&sim_graph("// crate::sim::b is only mentioned\n")).is_empty());
}

#[test]
fn checker_lets_a_module_use_its_own_submodules_and_test_modules_use_their_file() {
    let (files, tree) = synthetic(&[
        (
            "src/sim/mod.rs",
            "pub mod cpu;\npub mod gpu;\npub trait Backend {}\npub fn open() { cpu::Cpu; gpu::Gpu; }\n",
        ),
        ("src/sim/cpu.rs", "use crate::sim::Backend;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"),
        ("src/sim/gpu.rs", "use super::Backend;\n"),
    ]);
    let imports = imports(&files, &tree);
    assert!(
        cycles(&file_graph(&imports, "sim")).is_empty(),
        "{imports:?}"
    );
    assert!(cycles(&module_graph(&imports)).is_empty());
}

#[test]
fn checker_finds_an_upward_import_and_a_module_on_no_layer() {
    let (files, tree) = synthetic(&[
        ("src/theory/mod.rs", "pub mod maps;\n"),
        (
            "src/theory/maps.rs",
            "use crate::{error::Result, sim::{spec::SimSpec, Backend}};\n",
        ),
        ("src/sim/mod.rs", "pub mod spec;\npub trait Backend {}\n"),
        (
            "src/sim/spec.rs",
            "use crate::theory::maps;\nuse crate::nowhere::X;\n",
        ),
        ("src/error.rs", "pub type Result = ();\n"),
        ("src/nowhere.rs", "pub struct X;\n"),
    ]);
    let imports = imports(&files, &tree);
    let layers: &[&[&str]] = &[&["error"], &["theory"], &["sim"]];
    let problems = upward_imports(&imports, layers);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("src/sim/spec.rs:2: module `nowhere` is on no layer"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with(
            "src/theory/maps.rs:1: `crate::sim::spec::SimSpec` makes theory (layer 1: theory) use sim (layer 2: sim)"
        ),
        "{problems:#?}"
    );
    // The grouped import names sim twice (spec::SimSpec and Backend): one
    // message per import line and target, the first path of it.
    assert_eq!(
        problems.iter().filter(|p| p.contains("maps.rs")).count(),
        1,
        "{problems:#?}"
    );
    // Top-level graph: theory ↔ sim is a cycle too.
    let knots = cycles(&module_graph(&imports));
    assert_eq!(knots.len(), 1, "{knots:?}");
    assert_eq!(knots[0].members, strs(&["sim", "theory"]));
}

#[test]
fn checker_reads_the_binary_through_its_library_paths() {
    let (files, tree) = synthetic(&[
        ("src/main.rs", "mod cli;\nuse cli::Cli;\n"),
        (
            "src/cli/mod.rs",
            "use quantdepth::sim::Backend;\nuse crate::outln;\nuse super::x;\n",
        ),
        ("src/sim/mod.rs", "pub trait Backend {}\n"),
    ]);
    let imports = imports(&files, &tree);
    let to: Vec<(Vec<String>, Vec<String>)> = imports
        .iter()
        .map(|i| (i.from.clone(), i.to.clone()))
        .collect();
    assert_eq!(to, vec![(strs(&["cli"]), strs(&["sim"]))], "{imports:?}");
}
