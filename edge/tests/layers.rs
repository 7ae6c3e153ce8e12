//! The crate's layering, checked against the code: every module of `edge/src` imports only the
//! modules listed before it in the layer list of `lib.rs`, and no file of `edge/src` imports
//! another that (transitively) imports it back.
//!
//! An import is any path the code names: `crate::a::b` (also inside `use crate::{..}` groups),
//! `super::x`, and a child module's path used by its parent (`child::f`). Comments, string
//! literals and `#[cfg(test)]` modules are not imports; `tests.rs` files are test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its module path (`["pipeline", "guard"]`; `[]` for lib.rs) and its code
/// with comments, strings and test modules blanked out.
struct SourceFile {
    module: Vec<String>,
    code: String,
}

/// Blank out comments, string and char literals (keeping line structure), so that only code
/// is searched for paths.
fn strip_comments_and_strings(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_') {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &skipped in &chars[i..j.min(chars.len())] {
                out.push(blank(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a): only the former is skipped.
            let end = if next == Some('\\') {
                chars.get(i + 3..).and_then(|rest| rest.iter().position(|&ch| ch == '\'')).map(|p| i + 3 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Remove `#[cfg(test)] mod name { ... }` blocks (the code must already be stripped).
fn strip_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(start) = out.find("#[cfg(test)]") {
        let after = &out[start + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let trimmed = trimmed.strip_prefix("pub(crate) ").or_else(|| trimmed.strip_prefix("pub ")).unwrap_or(trimmed);
        let is_inline_module = trimmed.starts_with("mod ") && trimmed.split('{').next().is_some_and(|head| !head.contains(';'));
        let end = if is_inline_module {
            let open = start + "#[cfg(test)]".len() + after.find('{').expect("a module body");
            let mut depth = 0;
            let mut end = out.len();
            for (offset, ch) in out[open..].char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + offset + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end
        } else {
            // `#[cfg(test)] mod tests;` or a test-only item: drop the attribute's line.
            start + out[start..].find('\n').unwrap_or(out.len() - start)
        };
        out.replace_range(start..end, "");
    }
    out
}

fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).expect("under the root").with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

fn read_sources(root: &Path) -> Vec<(PathBuf, SourceFile)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
                let source = std::fs::read_to_string(&path).expect("readable source");
                let code = strip_test_modules(&strip_comments_and_strings(&source));
                files.push((path.clone(), SourceFile { module: module_path(root, &path), code }));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every module path the code names, absolute from the crate root, before resolution to a file.
fn referenced_paths(file: &SourceFile) -> Vec<Vec<String>> {
    let code = &file.code;
    let mut paths = Vec::new();
    let children: BTreeSet<String> = code
        .split(['\n', ';', '{', '}'])
        .filter_map(|item| {
            let words: Vec<&str> = item.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "mod")?;
            (words.len() == at + 2).then(|| words[at + 1].to_string())
        })
        .collect();
    let bytes: Vec<char> = code.chars().collect();
    let inline = inline_modules(&bytes);
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident_char(bytes[i]) || (i > 0 && (is_ident_char(bytes[i - 1]) || bytes[i - 1] == ':')) {
            i += 1;
            continue;
        }
        // Read a path `a::b::c` (stopping at a group `{`, a glob or the end).
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && is_ident_char(bytes[j]) {
                j += 1;
            }
            segments.push(bytes[start..j].iter().collect::<String>());
            if bytes.get(j) == Some(&':') && bytes.get(j + 1) == Some(&':') && bytes.get(j + 2).is_some_and(|c| is_ident_char(*c)) {
                j += 2;
            } else {
                break;
            }
        }
        let group = bytes.get(j) == Some(&':') && bytes.get(j + 2) == Some(&'{');
        if segments.len() < 2 && !group {
            // `pub(crate)`, `pub(super)`, a plain name: not a path into another module.
            i = j.max(i + 1);
            continue;
        }
        let module = inline_module_at(&inline, &file.module, i);
        let absolute = match segments[0].as_str() {
            "crate" => Some(segments[1..].to_vec()),
            "super" => {
                let mut base = module.clone();
                let mut rest = &segments[..];
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                Some(base.into_iter().chain(rest.iter().cloned()).collect())
            }
            "self" => Some(module.iter().cloned().chain(segments[1..].iter().cloned()).collect()),
            first if children.contains(first) && segments.len() > 1 => {
                Some(file.module.iter().cloned().chain(segments.iter().cloned()).collect())
            }
            _ => None,
        };
        if let Some(absolute) = absolute {
            if group {
                // `prefix::{a::X, b, c::{..}}`: each top-level item of the group extends the prefix.
                let open = j + 2;
                let mut depth = 0;
                let mut item = String::new();
                for &ch in &bytes[open..] {
                    match ch {
                        '{' => {
                            depth += 1;
                            if depth > 1 {
                                item.push(ch);
                            }
                        }
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            item.push(ch);
                        }
                        ',' if depth == 1 => {
                            push_group_item(&absolute, &item, &mut paths);
                            item.clear();
                        }
                        _ => item.push(ch),
                    }
                }
                push_group_item(&absolute, &item, &mut paths);
            }
            paths.push(absolute);
        }
        i = j.max(i + 1);
    }
    paths
}

/// Inline modules (`mod name { .. }`) of a file: each one's name and the span of its body.
fn inline_modules(code: &[char]) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    let mut open: Vec<(String, usize, i64)> = Vec::new(); // name, body start, brace depth inside
    let mut depth: i64 = 0;
    let mut pending: Option<String> = None;
    let mut i = 0;
    while i < code.len() {
        let c = code[i];
        let word_start = is_ident_char(c) && (i == 0 || !is_ident_char(code[i - 1]));
        if word_start {
            let end = (i..code.len()).find(|&k| !is_ident_char(code[k])).unwrap_or(code.len());
            let word: String = code[i..end].iter().collect();
            if word == "mod" {
                let rest: String = code[end..].iter().take(200).collect();
                let name: String = rest.trim_start().chars().take_while(|ch| is_ident_char(*ch)).collect();
                let after = rest.trim_start()[name.len()..].trim_start();
                if !name.is_empty() && after.starts_with('{') {
                    pending = Some(name);
                }
            }
            i = end;
            continue;
        }
        match c {
            '{' => {
                depth += 1;
                if let Some(name) = pending.take() {
                    open.push((name, i, depth));
                }
            }
            '}' => {
                if open.last().is_some_and(|(_, _, d)| *d == depth) {
                    let (name, start, _) = open.pop().expect("checked");
                    found.push((name, start, i));
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The module path at `position`: the file's, extended by the inline modules around it.
fn inline_module_at(inline: &[(String, usize, usize)], file_module: &[String], position: usize) -> Vec<String> {
    let mut around: Vec<&(String, usize, usize)> = inline.iter().filter(|(_, start, end)| *start < position && position < *end).collect();
    around.sort_by_key(|(_, start, _)| *start);
    file_module.iter().cloned().chain(around.into_iter().map(|(name, _, _)| name.clone())).collect()
}

fn push_group_item(prefix: &[String], item: &str, paths: &mut Vec<Vec<String>>) {
    let head = item.trim().split(['{', ' ']).next().unwrap_or("").trim_end_matches("::");
    if head.is_empty() || head == "self" {
        return;
    }
    let mut path = prefix.to_vec();
    path.extend(head.split("::").map(str::to_string));
    paths.push(path);
}

/// The file a module path lands in: its longest prefix that is a file's module. A path that
/// names no module (`crate::Config`, a re-export of lib.rs) lands nowhere here; the layer check
/// refuses those.
fn resolve<'a>(path: &[String], modules: &'a BTreeMap<Vec<String>, String>) -> Option<&'a String> {
    (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

/// File-level import graph: file -> files it imports (excluding itself).
fn import_graph(files: &[(String, SourceFile)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, String> = files.iter().map(|(name, f)| (f.module.clone(), name.clone())).collect();
    let mut graph = BTreeMap::new();
    for (name, file) in files {
        let targets: BTreeSet<String> = referenced_paths(file)
            .iter()
            .filter_map(|path| resolve(path, &modules))
            .filter(|target| *target != name)
            .cloned()
            .collect();
        graph.insert(name.clone(), targets);
    }
    graph
}

/// Every file that lies on an import cycle, with the cycle found through it.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // Depth-first search for a path from `start` back to `start`.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    reported.extend(path.iter().cloned());
                    found.push(path.clone());
                    stack.clear();
                    break;
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found
}

/// The layer list of `lib.rs`: module name -> its position, bottom first.
fn layer_order(lib: &str) -> BTreeMap<String, usize> {
    let mut order = BTreeMap::new();
    let mut in_list = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else { continue };
        let doc = doc.trim();
        if doc == "# Layers" {
            in_list = true;
            continue;
        }
        if !in_list {
            continue;
        }
        let Some((number, rest)) = doc.split_once(". ") else { continue };
        if number.parse::<u32>().is_err() {
            continue;
        }
        let names = rest.split('—').next().unwrap_or(rest);
        for name in names.split(',').map(|n| n.trim().trim_matches('`')).filter(|n| !n.is_empty()) {
            let position = order.len();
            order.insert(name.to_string(), position);
        }
    }
    order
}

fn crate_files() -> (Vec<(String, SourceFile)>, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_sources(&root)
        .into_iter()
        .map(|(path, file)| (path.strip_prefix(&root).expect("under src").display().to_string(), file))
        .collect();
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("lib.rs");
    (files, lib)
}

#[test]
fn no_import_cycle_among_the_files_of_edge_src() {
    let (files, _) = crate_files();
    let graph = import_graph(&files);
    assert!(graph.len() > 40, "the checker read too few files ({}): is it looking in the right place?", graph.len());
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles among edge/src files:\n{}", found.iter().map(|c| c.join(" -> ")).collect::<Vec<_>>().join("\n"));
}

#[test]
fn every_module_imports_only_modules_listed_before_it_in_lib_rs() {
    let (files, lib) = crate_files();
    let order = layer_order(&lib);
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").and_then(|r| r.strip_suffix(';')).map(str::to_string))
        .collect();
    let listed: BTreeSet<String> = order.keys().cloned().collect();
    assert_eq!(declared, listed, "the layer list in lib.rs must name every module lib.rs declares, and only those");
    let mut violations = Vec::new();
    for (name, file) in &files {
        let Some(own) = file.module.first() else { continue };
        for path in referenced_paths(file) {
            let Some(target) = path.first() else { continue };
            if target == own {
                continue;
            }
            match (order.get(own), order.get(target)) {
                (Some(mine), Some(theirs)) if theirs > mine => violations.push(format!("{name} imports `{}` (listed above `{own}`)", path.join("::"))),
                (Some(_), None) if target.starts_with(char::is_uppercase) => {
                    violations.push(format!("{name} imports `crate::{target}` through lib.rs's re-exports; name the module"))
                }
                _ => {}
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layer list of lib.rs:\n{}", violations.join("\n"));
}

/// The checker itself finds what it must: paths in use groups, `super`, child modules, and a
/// cycle; and it ignores comments, strings and test modules.
#[test]
fn the_checker_sees_cycles_and_ignores_comments_strings_and_tests() {
    let file = |module: &[&str], source: &str| SourceFile {
        module: module.iter().map(|s| s.to_string()).collect(),
        code: strip_test_modules(&strip_comments_and_strings(source)),
    };
    let files = vec![
        ("a.rs".to_string(), file(&["a"], "use crate::{b::{X, Y}, c};\n// crate::d::Z\nconst S: &str = \"crate::d\";\n#[cfg(test)]\nmod tests { use crate::d::W; }\n")),
        ("b.rs".to_string(), file(&["b"], "pub struct X; pub struct Y; fn f() -> char { '{' }\n")),
        ("c/mod.rs".to_string(), file(&["c"], "mod inner;\npub use inner::Z;\n")),
        ("c/inner.rs".to_string(), file(&["c", "inner"], "use super::super::a::thing;\npub struct Z;\n")),
        ("d.rs".to_string(), file(&["d"], "pub struct Z;\n")),
    ];
    let graph = import_graph(&files);
    assert_eq!(graph["a.rs"], BTreeSet::from(["b.rs".to_string(), "c/mod.rs".to_string()]));
    assert_eq!(graph["c/mod.rs"], BTreeSet::from(["c/inner.rs".to_string()]));
    assert_eq!(graph["c/inner.rs"], BTreeSet::from(["a.rs".to_string()]));
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].len(), 3);
    let order = layer_order("//! # Layers\n//!\n//! 1. `b`, `d` — bottom\n//! 2. `a` — top\npub mod a;\n");
    assert_eq!(order, BTreeMap::from([("b".to_string(), 0), ("d".to_string(), 1), ("a".to_string(), 2)]));
}
