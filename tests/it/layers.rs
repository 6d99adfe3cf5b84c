//! The library's layers (docs/architecture.md): every `crate::` and
//! `super::` path in `src/` (in `use` lines, groups and inline paths alike)
//! points to a module of the same layer or one below, and no files import
//! each other, directly or round a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of the library, lowest layer first; a module may use
/// its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["error", "fsutil"],
    &["nn"],
    &["data", "models"],
    &["density"],
    &["sampler"],
    &["train", "run"],
    &["eval", "viz", "serve"],
    // the binary's own modules (`src/main.rs` declares them; the library
    // does not export them)
    &["cli"],
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`nn/fast/mod.rs` -> `[nn, fast]`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file that defines the deepest module named by a prefix of `path`.
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    let mut best = None;
    let mut dir = src.to_path_buf();
    for seg in path {
        let (file, sub) = (dir.join(format!("{seg}.rs")), dir.join(seg).join("mod.rs"));
        if file.is_file() {
            best = Some(file);
        } else if sub.is_file() {
            best = Some(sub);
        } else {
            break;
        }
        dir = dir.join(seg);
    }
    best.map(|p| p.strip_prefix(src).unwrap().to_path_buf())
}

/// Source without comments and string literals (their text is not code).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // a raw string's `r#"` is rare in src and never holds `crate::`
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // a char literal such as '"' or '{'
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.trim_end_matches("::").to_string()
            } else {
                format!("{prefix}{p}")
            }
        })
        .collect()
}

/// Every `crate::`/`super::` path of a file's code, as module paths from
/// the crate root.
fn paths_of(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut raw: Vec<String> = Vec::new();
    // use trees, with their groups
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(end) = rest.find(';') {
            let tree = &rest[..end];
            if tree.starts_with("crate::") || tree.starts_with("super::") {
                raw.extend(expand(tree));
            }
        }
    }
    // inline paths
    for key in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(key) {
            let at = from + i;
            from = at + key.len();
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            raw.push(code[at..end].trim_end_matches(':').to_string());
        }
    }
    raw.into_iter()
        .filter_map(|p| {
            let segs: Vec<&str> = p.split("::").map(str::trim).collect();
            let mut base: Vec<String> = Vec::new();
            let mut i = 0;
            if segs[0] == "crate" {
                i = 1;
            } else {
                // `super` of `a/b.rs` and of `a/b/mod.rs` alike is `a`
                base = module.to_vec();
                while segs.get(i) == Some(&"super") {
                    base.pop()?;
                    i += 1;
                }
            }
            base.extend(segs[i..].iter().map(|s| s.to_string()));
            Some(base)
        })
        .collect()
}

#[test]
fn no_module_imports_one_above_it_and_no_files_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut up = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_path_buf();
        if rel == Path::new("main.rs") {
            continue; // the binary, above every layer
        }
        let module = module_of(&rel);
        let code = code_only(&std::fs::read_to_string(f).unwrap());
        let own = module.first().map(String::as_str).unwrap_or("");
        for path in paths_of(&code, &module) {
            let Some(top) = path.first() else { continue };
            if let (Some(a), Some(b)) = (layer_of(own), layer_of(top)) {
                if b > a {
                    up.push(format!("{} -> {}", rel.display(), path.join("::")));
                }
            } else if own != "lib" && !own.is_empty() {
                assert!(
                    layer_of(own).is_some(),
                    "{}: module {own} is in no layer of this test",
                    rel.display()
                );
            }
            if let Some(target) = file_of(&src, &path) {
                if target != rel {
                    edges.entry(rel.clone()).or_default().insert(target);
                }
            }
        }
    }
    up.sort();
    up.dedup();
    assert!(up.is_empty(), "paths up the layers:\n{}", up.join("\n"));
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "files that import each other (directly or round a circle):\n{}",
        cycles.join("\n")
    );
}

/// The circles of the file graph: its strongly connected parts of more
/// than one file (Tarjan's algorithm), each as the list of its files.
fn cycles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<String> {
    struct State<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a Path, usize>,
        low: BTreeMap<&'a Path, usize>,
        stack: Vec<&'a Path>,
        on: BTreeSet<&'a Path>,
        found: Vec<String>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Path) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            let w = w.as_path();
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
        if s.low[v] == s.index[v] {
            let mut part = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                part.push(w.display().to_string());
                if w == v {
                    break;
                }
            }
            if part.len() > 1 {
                part.reverse();
                s.found.push(part.join(" , "));
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_path()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn the_layer_check_reads_groups_inline_paths_and_super() {
    let code = code_only(
        "use crate::{nn::fast::{Net, kernels::Act}, data};\n\
         // use crate::eval::x;\n\
         fn f() { let s = \"crate::cli\"; crate::sampler::run(); super::sibling::g(); }",
    );
    let module = ["density".to_string(), "prior".to_string()];
    let got: Vec<String> = paths_of(&code, &module)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    for want in [
        "nn::fast::Net",
        "nn::fast::kernels::Act",
        "data",
        "sampler::run",
        "density::sibling::g",
    ] {
        assert!(got.contains(&want.to_string()), "{want} not in {got:?}");
    }
    assert!(!got
        .iter()
        .any(|p| p.starts_with("eval") || p.starts_with("cli")));
}

/// `(name, first line, lines)` of every `fn` in `code` (brace matching on
/// code without comments and strings).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or(t.strip_prefix("pub(super) "))
            .unwrap_or(t);
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut started) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            for ch in l.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        started = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if !started && l.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            if started && depth == 0 {
                out.push((name.clone(), i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

/// The size limits of docs/architecture.md: no function in `src/` longer
/// than 80 lines, no file longer than 500, the CLI under 1,750 in all.
#[test]
fn functions_files_and_the_cli_stay_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let (mut long, mut cli) = (Vec::new(), 0);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        let n = text.lines().count();
        if n > 500 {
            long.push(format!("{rel}: {n} lines"));
        }
        if rel.starts_with("cli/") {
            cli += n;
        }
        for (name, at, len) in functions(&code_only(&text)) {
            if len > 80 {
                long.push(format!("{rel}:{at} fn {name}: {len} lines"));
            }
        }
    }
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
    assert!(cli < 1750, "the CLI (src/cli/) is {cli} lines");
}

#[test]
fn the_size_check_measures_functions() {
    let code = "fn a() {\n    let x = 1;\n}\npub fn b(\n    y: u8,\n) -> u8 {\n    if y > 0 { y } else { 0 }\n}\n";
    assert_eq!(
        functions(code),
        vec![("a".to_string(), 1, 3), ("b".to_string(), 4, 5)]
    );
}
