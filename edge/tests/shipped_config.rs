//! The configuration documents shipped in wrangler.toml and spin.toml are valid, and the same.

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("{start} not found")) + start.len();
    let to = from + text[from..].find(end).unwrap_or_else(|| panic!("{end} not found"));
    &text[from..to]
}

#[test]
fn shipped_configs_are_valid_and_identical() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let wrangler = std::fs::read_to_string(format!("{root}/wrangler.toml")).unwrap();
    let spin = std::fs::read_to_string(format!("{root}/spin.toml")).unwrap();
    let worker_doc = between(&wrangler, "GATEWAY_CONFIG = '''", "'''");
    let spin_doc = between(&spin, "default = '''", "'''");
    for (name, doc) in [("wrangler.toml", worker_doc), ("spin.toml", spin_doc)] {
        if let Err(errors) = edge::Config::parse(doc) {
            panic!("{name}: {errors}");
        }
    }
    let parse = |doc: &str| serde_json::from_str::<serde_json::Value>(doc).unwrap();
    assert_eq!(parse(worker_doc), parse(spin_doc), "the Worker and Spin ship the same default configuration");
}
