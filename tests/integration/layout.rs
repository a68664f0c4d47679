//! The layout rule of issue 8: a platform's code lives in its four places —
//! `src/platforms/<name>/` (API client, payloads, config section), `src/ingest/<name>/`
//! (decoders, webhook receiver, poller), `src/channels/<name>/` (the push side) and
//! `src/sandbox/<name>/` (the simulator) — plus one line in each registry. Any other module
//! that names a platform (a `shopify::` path, a `Shopify…` type, a variable called
//! `shopify`) fails this test.
//!
//! Known exceptions are listed in [`KNOWN_DEBTS`] with their reason; the test also fails when
//! one of them no longer names the platform, so the list only shrinks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The platforms, as their module names.
const PLATFORMS: [&str; 4] = ["shopify", "woocommerce", "bolcom", "amazon"];

/// The four folders of a platform, under `src/`.
const HOMES: [&str; 4] = ["platforms", "ingest", "channels", "sandbox"];

/// The registries: one line (or one match arm) per platform is their job.
const REGISTRIES: [&str; 5] = [
    "src/platforms/mod.rs",
    "src/ingest/mod.rs",
    "src/channels/mod.rs",
    "src/sandbox/mod.rs",
    "src/config/channels.rs",
];

/// Files outside the homes and registries that still name a platform, and why.
const KNOWN_DEBTS: &[(&str, &str)] = &[];

fn source_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// Drops string literals (one line at a time) and `//` comments.
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match (in_string, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => in_string = false,
            (true, _) => {}
            (false, '"') => in_string = true,
            (false, '/') if chars.peek() == Some(&'/') => break,
            (false, _) => code.push(c),
        }
    }
    code
}

/// The platforms a file's non-test code names.
fn platforms_named(source: &str) -> Vec<&'static str> {
    let mut named = Vec::new();
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        let code = code_of(trimmed);
        for token in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            for platform in PLATFORMS {
                let type_prefix = platform[..1].to_uppercase() + &platform[1..];
                if (token == platform || token.starts_with(&type_prefix))
                    && !named.contains(&platform)
                {
                    named.push(platform);
                }
            }
        }
    }
    named
}

#[test]
fn a_platform_is_named_only_in_its_four_places_and_the_registries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    source_files(&root.join("src"), &mut files);
    let mut strays: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut debts_in_use = Vec::new();
    for path in files {
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let name = path.file_name().unwrap().to_string_lossy();
        // Test-only modules (`tests.rs`, `proptests.rs`, `*_tests.rs`) may drive every
        // platform's simulator at once.
        let test_only = name == "tests.rs" || name == "proptests.rs" || name.ends_with("_tests.rs");
        if test_only || REGISTRIES.contains(&relative.as_str()) {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for platform in platforms_named(&source) {
            let at_home = HOMES
                .iter()
                .any(|home| relative.starts_with(&format!("src/{home}/{platform}/")));
            if at_home {
                continue;
            }
            if KNOWN_DEBTS.iter().any(|(file, _)| *file == relative) {
                debts_in_use.push(relative.clone());
                continue;
            }
            strays.entry(relative.clone()).or_default().push(platform);
        }
    }
    assert!(
        strays.is_empty(),
        "platform code outside its four places and the registries: {strays:?}"
    );
    for (file, reason) in KNOWN_DEBTS {
        assert!(
            debts_in_use.iter().any(|used| used == file),
            "{file} no longer names a platform ({reason}): remove it from KNOWN_DEBTS"
        );
    }
}

#[test]
fn the_scan_sees_paths_types_and_variables_but_not_comments_or_strings() {
    let source = "use crate::channels::shopify::config::ListingMap;\n\
                  let kind = ChannelKind::Bolcom; // an amazon comment\n\
                  let woocommerce = 1;\n\
                  let label = \"amazon\";\n\
                  #[cfg(test)]\n\
                  mod tests { use crate::sandbox::amazon::AmazonSimulator; }\n";
    assert_eq!(
        platforms_named(source),
        vec!["shopify", "bolcom", "woocommerce"]
    );
}
