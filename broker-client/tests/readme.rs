//! The README's broker snippet is this crate's doctest, character for character, so
//! the README's block compiles as written.

fn block_after(text: &str, start: &str) -> String {
    text.lines()
        .skip_while(|l| !l.starts_with(start))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_snippet_is_the_doctest() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## One machine, many VMMs")
        .expect("README section")..];
    let in_readme = block_after(section, "```rust,no_run");
    let lib = include_str!("../src/lib.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let in_doc = block_after(&lib, "```rust,no_run");
    assert!(!in_doc.is_empty());
    assert_eq!(in_readme, in_doc);
}
