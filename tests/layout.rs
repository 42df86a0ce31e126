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
//! mod.rs may re-export and dispatch to its files. The reading of Rust code
//! is in layout/source.rs, the module tree and import graph in
//! layout/modules.rs, each with tests of its own on synthetic code.

#[path = "layout/modules.rs"]
mod modules;
#[path = "layout/source.rs"]
mod source;

use modules::{
    cycles, describe_cycle, file_graph, imports, layer_of, module_graph, module_of, upward_imports,
    SourceFile, Tree,
};
use source::{test_functions_in, TestFn};
use std::path::{Path, PathBuf};

/// The layers, bottom first: a module may use modules of its own layer and of
/// the layers below. The same list, top first, is ARCHITECTURE.md's "Layers".
const LAYERS: &[&[&str]] = &[
    &["error", "gauss", "rng", "safe_fs"],
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
const FILE_CYCLE_FOLDERS: &[&str] = &["cli", "experiment", "sim", "theory", "train"];

/// Longest source file without a stated reason.
const MAX_LINES: usize = 600;

/// WGSL pieces that are not stages: the host composes them into the stage
/// shaders (their file name appears in src/).
const SHARED_PIECES: &[&str] = &[
    "input_tile",
    "layer_store",
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

/// Every .rs file of src/, with the module it is.
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

/// The `#[test]` functions of tests/*.rs (this file's own excluded: its
/// names speak of layers and stages without testing any).
fn test_functions() -> Vec<TestFn> {
    files("tests", ".rs")
        .iter()
        .filter(|p| !p.starts_with("tests/layout"))
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
fn checker_matches_stage_names_by_whole_words() {
    assert!(names_stage("gpu_layer_equals_cpu", "layer"));
    assert!(names_stage("train_gemm_gpu_equals_cpu", "train_gemm"));
    assert!(!names_stage(
        "transposed_layers_are_the_transposes",
        "layer"
    ));
    assert!(!names_stage("gemm_train", "train_gemm"));
}
