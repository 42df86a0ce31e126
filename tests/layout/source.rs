//! Reading Rust code for tests/layout.rs: its tokens without comments and
//! literals, the module paths it names, and its `#[test]` functions.

use std::collections::BTreeSet;

/// A token of Rust code: an identifier or keyword, `::`, or one other
/// character; with its line (1-based).
#[derive(Clone, Debug, PartialEq)]
pub struct Tok {
    pub text: String,
    pub line: usize,
}

/// The code's tokens, without comments, string, byte-string and char
/// literals, and lifetimes.
pub fn tokens(src: &str) -> Vec<Tok> {
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

pub fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The paths of a use tree starting at `toks[i]` (`a::b`, `a::{b, c::d}`,
/// `a::*`, `a as b`), each as its segments, and the index after it.
pub fn use_tree(toks: &[Tok], mut i: usize) -> (Vec<Vec<String>>, usize) {
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
pub struct RawPath {
    /// The module path the path is relative to (for `crate`: empty).
    pub base: Vec<String>,
    /// The library crate (`crate` in the library, `quantdepth` in the binary) or the binary's own.
    pub binary_local: bool,
    pub segs: Vec<String>,
    /// The path as written, root included (`super::spec::SimSpec`).
    pub written: String,
    pub line: usize,
    /// Part of a `pub use` (a re-export).
    pub reexport: bool,
}

/// Every path in the code of a file whose module path is `module` (inline
/// `mod x { … }` blocks extend it, so `super::` in a test module is the
/// file's module). `binary`: the file belongs to the `quantdepth` binary,
/// where `crate::` is the binary and `quantdepth::` the library. `children`:
/// the names of the module's own submodule files, for relative `use` paths.
pub fn paths_in(src: &str, module: &[String], binary: bool, children: &[String]) -> Vec<RawPath> {
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

/// A `#[test]` function in tests/.
pub struct TestFn {
    pub name: String,
    /// It reaches the GPU: its body, or a function of its file it calls
    /// (`backend()` returning a `GpuBackend`), names an identifier that
    /// contains `gpu` (any case).
    pub drives_gpu: bool,
}

/// The `#[test]` functions of a test file's code.
pub fn test_functions_in(src: &str) -> Vec<TestFn> {
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

#[cfg(test)]
fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
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
