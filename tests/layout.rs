//! The layout the code promises in ARCHITECTURE.md, checked by reading the
//! sources (no build, no device):
//!
//! - every `crate::…` path in src/ (and every `quantdepth::…` path in the
//!   command line) goes to a module on the same or a lower layer of
//!   [`LAYERS`], and no two top-level modules, nor two files inside one of
//!   [`FILE_CYCLE_FOLDERS`], import each other round a cycle;
//! - no source file in src/ or python/src is over [`MAX_LINES`] lines unless
//!   one of its first 15 lines starts with `//! Long because` (the reason);
//! - every shaders/*.wgsl is a shared piece composed into other shaders
//!   ([`SHARED_PIECES`], named in src/) or a stage with a CPU twin and a test
//!   in tests/ whose name carries the shader's stem.
//!
//! Paths are found in code only: comments (doc links included) and string
//! literals are skipped. A module may use its own submodules; a folder's
//! mod.rs may re-export and dispatch to its files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first: a module may use modules of its own layer and of
/// the layers below. The same list, top first, is ARCHITECTURE.md's "Layers".
const LAYERS: &[&[&str]] = &[
    &["error", "gauss", "rng"],
    &["quadrature"],
    &["activation"],
    &["theory"],
    &["setup"],
    &["sim"],
    &["train"],
    &["analysis"],
    &["experiment"],
    &["cli"],
];

/// Folders whose files must not import each other round a cycle (besides
/// the top-level modules, which never may).
const FILE_CYCLE_FOLDERS: &[&str] = &["sim", "theory", "train"];

/// Longest source file without a stated reason.
const MAX_LINES: usize = 600;

/// WGSL pieces that are not stages: the host composes them into the stage
/// shaders (their file name appears in src/).
const SHARED_PIECES: &[&str] = &[
    "mul64",
    "params",
    "phi",
    "rng",
    "train_params",
    "weight_tile",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends in `ext`, sorted, relative to the repository.
fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, ext: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, ext, out);
            } else if p.to_string_lossy().ends_with(ext) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), ext, &mut out);
    let mut out: Vec<PathBuf> = out
        .into_iter()
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------- lexing

/// A token of Rust code: an identifier or keyword, `::`, or one other
/// character; with its line (1-based).
#[derive(Clone, Debug, PartialEq)]
struct Tok {
    text: String,
    line: usize,
}

/// The code's tokens, without comments, string, byte-string and char
/// literals, and lifetimes.
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied().unwrap_or('\0');
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if (ch == 'r' || (ch == 'b' && next == 'r'))
            && !c[..i].last().is_some_and(|&p| ident(p))
            && {
                let j = if ch == 'b' { i + 2 } else { i + 1 };
                let hashes = c[j..].iter().take_while(|&&h| h == '#').count();
                c.get(j + hashes) == Some(&'"')
            }
        {
            // Raw string r"…", r#"…"#, br"…": ends at '"' and as many '#'.
            let j = if ch == 'b' { i + 2 } else { i + 1 };
            let hashes = c[j..].iter().take_while(|&&h| h == '#').count();
            i = j + hashes + 1;
            while i < c.len() {
                if c[i] == '"'
                    && c[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(c[i] == '\n');
                i += 1;
            }
        } else if ch == '"'
            || (ch == 'b' && next == '"' && !c[..i].last().is_some_and(|&p| ident(p)))
        {
            i += if ch == 'b' { 2 } else { 1 };
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                line += usize::from(c.get(i) == Some(&'\n'));
                i += 1;
            }
            i += 1;
        } else if ch == '\'' {
            // A char literal ('a', '\n', '\u{1F600}', '\'') or a lifetime ('a).
            if next == '\\' {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && ident(c[i]) {
                    i += 1;
                }
            }
        } else if ident(ch) {
            let start = i;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
            out.push(Tok {
                text: c[start..i].iter().collect(),
                line,
            });
        } else if ch == ':' && next == ':' {
            out.push(Tok {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Tok {
                text: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The paths of a use tree starting at `toks[i]` (`a::b`, `a::{b, c::d}`,
/// `a::*`, `a as b`), each as its segments, and the index after it.
fn use_tree(toks: &[Tok], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let at = |k: usize| toks.get(k).map_or("", |t| t.text.as_str());
    if at(i) == "{" {
        let mut all = Vec::new();
        i += 1;
        while i < toks.len() && at(i) != "}" {
            let (paths, j) = use_tree(toks, i);
            all.extend(paths);
            i = j;
            if at(i) == "," {
                i += 1;
            } else if at(i) != "}" {
                // Not a use tree after all (e.g. a struct literal): stop here.
                break;
            }
        }
        return (all, i + 1);
    }
    if at(i) == "*" {
        return (vec![vec!["*".into()]], i + 1);
    }
    if !is_ident(at(i)) {
        return (Vec::new(), i);
    }
    let head = at(i).to_string();
    if at(i + 1) == "::" && (is_ident(at(i + 2)) || at(i + 2) == "{" || at(i + 2) == "*") {
        let (rest, j) = use_tree(toks, i + 2);
        let paths = rest
            .into_iter()
            .map(|mut p| {
                p.insert(0, head.clone());
                p
            })
            .collect();
        return (paths, j);
    }
    let mut j = i + 1;
    if at(j) == "as" {
        j += 2;
    }
    (vec![vec![head]], j)
}

/// A path in a file: `root` (crate, quantdepth, super, self, or a child
/// module's name in a `use`), its segments after the root, and its line.
#[derive(Clone, Debug, PartialEq)]
struct RawPath {
    /// The module path the path is relative to (for `crate`: empty).
    base: Vec<String>,
    /// The library crate (`crate` in the library, `quantdepth` in the binary) or the binary's own.
    binary_local: bool,
    segs: Vec<String>,
    /// The path as written, root included (`super::spec::SimSpec`).
    written: String,
    line: usize,
    /// Part of a `pub use` (a re-export).
    reexport: bool,
}

/// Every path in the code of a file whose module path is `module` (inline
/// `mod x { … }` blocks extend it, so `super::` in a test module is the
/// file's module). `binary`: the file belongs to the `quantdepth` binary,
/// where `crate::` is the binary and `quantdepth::` the library. `children`:
/// the names of the module's own submodule files, for relative `use` paths.
fn paths_in(src: &str, module: &[String], binary: bool, children: &[String]) -> Vec<RawPath> {
    let toks = tokens(src);
    let at = |k: usize| toks.get(k).map_or("", |t| t.text.as_str());
    let mut out = Vec::new();
    // Inline modules: (name, brace depth at which its block closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let t = at(i);
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if is_ident(at(i + 1)) && at(i + 2) == "{" => {
                inline.push((at(i + 1).to_string(), depth));
            }
            _ => {}
        }
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        let prev = if i == 0 { "" } else { at(i - 1) };
        let in_use = prev == "use";
        let reexport = in_use && {
            // `pub use` or `pub(crate) use`.
            let k = i - 1;
            at(k.wrapping_sub(1)) == "pub"
                || (at(k.wrapping_sub(1)) == ")" && at(k.wrapping_sub(4)) == "pub")
        };
        // A path starts at a root keyword not preceded by `::` (that would
        // be a later segment) or `$` (`$crate` in a macro).
        let starts = prev != "::" && prev != "$" && at(i + 1) == "::";
        if starts && (in_use || matches!(t, "crate" | "quantdepth" | "super" | "self")) {
            let (trees, j) = use_tree(&toks, i);
            for mut segs in trees {
                let written = segs.join("::");
                let first = segs.remove(0);
                let (base, binary_local) = match first.as_str() {
                    "crate" => (Vec::new(), binary),
                    "quantdepth" if binary => (Vec::new(), false),
                    "super" | "self" => {
                        let mut b = here.clone();
                        if first == "super" {
                            b.pop();
                        }
                        while segs.first().is_some_and(|s| s == "super") {
                            segs.remove(0);
                            b.pop();
                        }
                        (b, binary)
                    }
                    child if in_use && inline.is_empty() && children.iter().any(|c| c == child) => {
                        segs.insert(0, child.to_string());
                        (module.to_vec(), binary)
                    }
                    _ => continue,
                };
                out.push(RawPath {
                    base,
                    binary_local,
                    segs,
                    written,
                    line: toks[i].line,
                    reexport,
                });
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

// ---------------------------------------------------------------- the module tree

/// One library or binary source file and the module it is.
struct SourceFile {
    path: PathBuf,
    /// Module path: src/sim/gpu/mod.rs is ["sim", "gpu"]; the binary's files
    /// are under ["cli"] (main.rs is ["cli"] itself).
    module: Vec<String>,
    binary: bool,
    text: String,
}

fn module_of(rel: &Path) -> (Vec<String>, bool) {
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

fn sources() -> Vec<SourceFile> {
    files("src", ".rs")
        .into_iter()
        .map(|path| {
            let (module, binary) = module_of(&path);
            let text = read(&path);
            SourceFile {
                path,
                module,
                binary,
                text,
            }
        })
        .collect()
}

/// An import resolved to the module (file) it reaches.
#[derive(Clone, Debug)]
struct Import {
    from_file: PathBuf,
    from: Vec<String>,
    line: usize,
    /// The path as written after its root, e.g. `crate::sim::gpu::GpuContext`.
    written: String,
    to: Vec<String>,
}

/// The library's module files, the binary's, and what each mod.rs re-exports
/// from which file: (module, exported name) → module.
struct Tree {
    modules: BTreeSet<Vec<String>>,
    reexports: BTreeMap<(Vec<String>, String), Vec<String>>,
}

impl Tree {
    /// The module a path reaches: its longest prefix that is a module file,
    /// followed through re-exports (`crate::sim::SimSpec` is sim::spec's).
    fn resolve(&self, full: &[String]) -> Vec<String> {
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

    fn build(files: &[SourceFile]) -> Tree {
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

    fn children(&self, m: &[String]) -> Vec<String> {
        self.modules
            .iter()
            .filter(|c| c.len() == m.len() + 1 && c.starts_with(m))
            .map(|c| c[m.len()].clone())
            .collect()
    }
}

/// Every import of every file, resolved. Paths of the binary into itself
/// (`crate::outln`, `super::progress_bar`) are the command line's own.
fn imports(files: &[SourceFile], tree: &Tree) -> Vec<Import> {
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

fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|l| l.contains(&module))
}

/// Imports that reach a module on a higher layer, or a module in no layer.
fn upward_imports(imports: &[Import], layers: &[&[&str]]) -> Vec<String> {
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
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// A knot of nodes that reach each other, and one cycle through it (nodes in
/// order round it, each with the import that leads to the next).
#[derive(Debug)]
struct Knot {
    members: Vec<String>,
    ring: Vec<(String, String)>,
}

/// Every knot: the strongly connected components of more than one node
/// (Tarjan's algorithm), each with a shortest cycle through its first node.
fn cycles(g: &Graph) -> Vec<Knot> {
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        sccs: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut St<'a>, v: &'a str) {
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

fn describe_cycle(what: &str, knot: &Knot) -> String {
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

fn evidence(imp: &Import) -> String {
    format!("{}:{} `{}`", imp.from_file.display(), imp.line, imp.written)
}

/// The graph between top-level modules.
fn module_graph(imports: &[Import]) -> Graph {
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
fn file_graph(imports: &[Import], folder: &str) -> Graph {
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

// ---------------------------------------------------------------- the checks

#[test]
fn no_module_imports_one_on_a_higher_layer() {
    let files = sources();
    let tree = Tree::build(&files);
    let imports = imports(&files, &tree);
    assert!(
        imports.len() > 100,
        "only {} imports found in src/: the path scanner is broken",
        imports.len()
    );
    let mut problems = upward_imports(&imports, LAYERS);
    for f in &files {
        if let Some(top) = f.module.first() {
            if layer_of(LAYERS, top).is_none() {
                problems.push(format!(
                    "{}: module `{top}` is on no layer: add it to LAYERS in tests/layout.rs and \
                     to the Layers list in ARCHITECTURE.md",
                    f.path.display()
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} upward import(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn no_import_cycles_between_modules_or_between_files_of_a_folder() {
    let files = sources();
    let tree = Tree::build(&files);
    let imports = imports(&files, &tree);
    let mut problems: Vec<String> = cycles(&module_graph(&imports))
        .iter()
        .map(|r| describe_cycle("top-level modules", r))
        .collect();
    for folder in FILE_CYCLE_FOLDERS {
        problems.extend(
            cycles(&file_graph(&imports, folder))
                .iter()
                .map(|r| describe_cycle(&format!("files of src/{folder}/"), r)),
        );
    }
    assert!(
        problems.is_empty(),
        "{} import cycle(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Files over `max` lines without a `//! Long because` line in their first 15 lines.
fn long_files(files: &[(PathBuf, String)], max: usize) -> Vec<String> {
    files
        .iter()
        .filter_map(|(p, text)| {
            let n = text.lines().count();
            let reason = text
                .lines()
                .take(15)
                .any(|l| l.trim_start().starts_with("//! Long because"));
            (n > max && !reason).then(|| {
                format!(
                    "{}: {n} lines, over {max}: split it by role, or say why it is one file in a \
                     line starting `//! Long because` among its first 15 lines",
                    p.display()
                )
            })
        })
        .collect()
}

#[test]
fn no_source_file_is_over_600_lines_without_a_reason_at_its_top() {
    let all: Vec<(PathBuf, String)> = files("src", ".rs")
        .into_iter()
        .chain(files("python/src", ".rs"))
        .map(|p| {
            let t = read(&p);
            (p, t)
        })
        .collect();
    assert!(all.len() > 20, "only {} source files found", all.len());
    let problems = long_files(&all, MAX_LINES);
    assert!(
        problems.is_empty(),
        "{} long file(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A `#[test]` function in tests/.
struct TestFn {
    name: String,
    /// It reaches the GPU: its body, or a function of its file it calls
    /// (`backend()` returning a `GpuBackend`), names an identifier that
    /// contains `gpu` (any case).
    drives_gpu: bool,
}

/// The `#[test]` functions of a test file's code.
fn test_functions_in(src: &str) -> Vec<TestFn> {
    let toks = tokens(src);
    // Every `fn`: its name, whether it is a test, and its identifiers from
    // the name to the end of its body.
    let mut fns: Vec<(String, bool, Vec<&str>)> = Vec::new();
    for (f, t) in toks.iter().enumerate() {
        if t.text != "fn" || !toks.get(f + 1).is_some_and(|n| is_ident(&n.text)) {
            continue;
        }
        // #[test] among the attributes just before it.
        let mut k = f;
        let mut is_test = false;
        while k >= 1 && matches!(toks[k - 1].text.as_str(), "]" | "pub") {
            if toks[k - 1].text == "pub" {
                k -= 1;
                continue;
            }
            let Some(open) = toks[..k].iter().rposition(|t| t.text == "#") else {
                break;
            };
            is_test |= toks.get(open + 2).is_some_and(|t| t.text == "test")
                && toks.get(open + 3).is_some_and(|t| t.text == "]");
            k = open;
        }
        let Some(open) = toks[f..].iter().position(|t| t.text == "{").map(|o| f + o) else {
            continue;
        };
        let mut depth = 0;
        let mut idents = Vec::new();
        for t in &toks[open..] {
            match t.text.as_str() {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                s if is_ident(s) => idents.push(s),
                _ => {}
            }
        }
        idents.extend(toks[f + 2..open].iter().map(|t| t.text.as_str()));
        fns.push((toks[f + 1].text.clone(), is_test, idents));
    }
    let mut gpu: BTreeSet<&str> = BTreeSet::new();
    for _ in 0..4 {
        for (name, _, idents) in &fns {
            if idents
                .iter()
                .any(|i| i.to_ascii_lowercase().contains("gpu") || gpu.contains(i))
            {
                gpu.insert(name.as_str());
            }
        }
    }
    fns.iter()
        .filter(|(_, is_test, _)| *is_test)
        .map(|(name, _, _)| TestFn {
            name: name.clone(),
            drives_gpu: gpu.contains(name.as_str()),
        })
        .collect()
}

/// The `#[test]` functions of tests/*.rs (this file's own excluded: its
/// names speak of layers and stages without testing any).
fn test_functions() -> Vec<TestFn> {
    files("tests", ".rs")
        .iter()
        .filter(|p| !p.ends_with("layout.rs"))
        .flat_map(|p| test_functions_in(&read(p)))
        .collect()
}

/// Whether `name`'s words (split at `_`) contain `stem`'s words in a row:
/// `layer` is in `gpu_layer_equals_cpu`, not in `transposed_layers`.
fn names_stage(name: &str, stem: &str) -> bool {
    let words: Vec<&str> = name.split('_').collect();
    let stem: Vec<&str> = stem.split('_').collect();
    words.windows(stem.len()).any(|w| w == stem.as_slice())
}

#[test]
fn every_shader_is_a_shared_piece_or_a_stage_with_a_twin_test() {
    let shaders = files("shaders", ".wgsl");
    assert!(!shaders.is_empty(), "no shaders/*.wgsl found");
    let src: String = files("src", ".rs").iter().map(|p| read(p)).collect();
    let tests = test_functions();
    let mut problems = Vec::new();
    for s in &shaders {
        let stem = s.file_stem().unwrap().to_string_lossy().into_owned();
        let file = format!("{stem}.wgsl");
        if !src.contains(&file) {
            problems.push(format!(
                "{}: no file in src/ names {file}: a shader nothing loads or composes is dead; \
                 load it, or delete it",
                s.display()
            ));
        }
        if SHARED_PIECES.contains(&stem.as_str()) {
            continue;
        }
        if !tests
            .iter()
            .any(|t| t.drives_gpu && names_stage(&t.name, &stem))
        {
            problems.push(format!(
                "{}: a stage shader without a twin test: no #[test] fn in tests/ that drives the \
                 GPU has `{stem}` in its name; name the test that holds the GPU stage equal to \
                 its CPU twin after it (e.g. `{stem}_gpu_equals_cpu`), or, if {file} is a piece \
                 composed into other shaders, add `{stem}` to SHARED_PIECES in tests/layout.rs",
                s.display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} shader(s) break the stage-twin rule:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// ARCHITECTURE.md's "Layers" block (lines `N  module, module  …`, top
/// first) is LAYERS, so the page and the check say the same.
#[test]
fn architecture_md_lists_the_layers_this_test_checks() {
    let text = read(Path::new("ARCHITECTURE.md"));
    let section = text
        .split("\n## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has no '## Layers' section");
    let section = section.split("\n## ").next().unwrap();
    let mut listed: Vec<(usize, Vec<String>)> = Vec::new();
    for line in section.lines() {
        let t = line.trim_start();
        let Some(num) = t
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<usize>().ok())
        else {
            continue;
        };
        // "N  a, b   what they hold": the module names run up to a double space.
        let rest = t[t.find(char::is_whitespace).unwrap()..].trim_start();
        let names = rest.split("  ").next().unwrap();
        listed.push((
            num,
            names.split(',').map(|s| s.trim().to_string()).collect(),
        ));
    }
    listed.sort_by_key(|(n, _)| *n);
    let expected: Vec<(usize, Vec<String>)> = LAYERS
        .iter()
        .enumerate()
        .map(|(k, l)| (k, l.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(
        listed, expected,
        "ARCHITECTURE.md's Layers list (left) differs from LAYERS in tests/layout.rs (right): \
         change both together"
    );
}

// ---------------------------------------------------------------- the checker's own tests

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
        (
            "src/sim/c.rs",
            "// crate::sim::b is only mentioned\nuse super::a::A;\n",
        ),
    ]);
    let imps = imports(&files, &tree);
    let found = cycles(&file_graph(&imps, "sim"));
    assert_eq!(found.len(), 1, "{found:?}");
    let names: BTreeSet<&str> = found[0].ring.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["sim::a", "sim::b", "sim::c"]));
    let msg = describe_cycle("files of src/sim/", &found[0]);
    // b reaches c through sim/mod.rs's re-export of Thing.
    assert!(
        msg.contains("src/sim/b.rs:1 `crate::sim::Thing::new`"),
        "{msg}"
    );
    assert!(msg.contains("src/sim/c.rs:2 `super::a::A`"), "{msg}");
    // Without c's import of a, no cycle (the comment in c.rs is not an import).
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
        ("src/sim/c.rs", "// crate::sim::b is only mentioned\n"),
    ]);
    assert!(cycles(&file_graph(&imports(&files, &tree), "sim")).is_empty());
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

#[test]
fn checker_skips_strings_comments_chars_and_lifetimes() {
    let src = r##"
        // crate::a
        /* crate::b /* nested crate::c */ */
        fn f<'a>(x: &'a str) -> char { let _ = "crate::d \" crate::e"; let _ = r#"crate::f"#; '"' }
        use crate::g::G;
    "##;
    let found = paths_in(src, &[], false, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].segs, strs(&["g", "G"]));
    assert_eq!(found[0].line, 5);
}

#[test]
fn checker_flags_long_files_unless_they_say_why() {
    let long = "fn f() {}\n".repeat(601);
    let why = format!("//! The stage.\n//! Long because the table is one.\n{long}");
    let ok = "fn f() {}\n".repeat(600);
    let files = vec![
        (PathBuf::from("src/a.rs"), long.clone()),
        (PathBuf::from("src/b.rs"), why),
        (PathBuf::from("src/c.rs"), ok),
    ];
    let problems = long_files(&files, 600);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("src/a.rs: 601 lines, over 600"));
}

#[test]
fn checker_finds_test_functions_and_whether_they_drive_the_gpu() {
    let src = r##"
        #[test]
        fn layer_gpu_equals_cpu() {
            let Some(b) = gpu_backend() else { return };
            if true { b.run(); }
        }
        fn helper() { let _ = "#[test] fn fake() {}"; }
        #[test]
        #[ignore]
        fn layer_cpu_only() { let x = { 1 }; }
        #[test]
        fn stats_on_the_device() { let ctx = GpuContext::new(); }
        fn backend() -> Option<Device> { device::<GpuBackend>() }
        #[test]
        pub fn backward_through_a_helper() { let b = backend(); }
    "##;
    let found: Vec<(String, bool)> = test_functions_in(src)
        .into_iter()
        .map(|t| (t.name, t.drives_gpu))
        .collect();
    assert_eq!(
        found,
        vec![
            ("layer_gpu_equals_cpu".to_string(), true),
            ("layer_cpu_only".to_string(), false),
            ("stats_on_the_device".to_string(), true),
            ("backward_through_a_helper".to_string(), true),
        ]
    );
}

#[test]
fn checker_matches_stage_names_by_whole_words() {
    assert!(names_stage("gpu_layer_equals_cpu", "layer"));
    assert!(names_stage("train_gemm_gpu_equals_cpu", "train_gemm"));
    assert!(!names_stage(
        "transposed_layers_are_the_transposes",
        "layer"
    ));
    assert!(!names_stage("gemm_train", "train_gemm"));
}
