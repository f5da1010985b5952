//! The README keeps in step with the code: its example is
//! `examples/01_basic.rs` word for word (so it is compiled), it opens with
//! the two commands a newcomer runs, it stays short (under 250 lines,
//! Configure in its first 120) and links the guides in docs/. Its other
//! code blocks are doctests.

const README: &str = include_str!("../README.md");

#[test]
fn readme_example_is_examples_01_basic() {
    let example = include_str!("../examples/01_basic.rs");
    let fence = "```rust,no_run\n";
    let start = README.find(fence).expect("a rust block in the README") + fence.len();
    let end = start + README[start..].find("\n```\n").expect("the block ends") + 1;
    assert_eq!(
        &README[start..end],
        example,
        "update the README's example from examples/01_basic.rs"
    );
}

#[test]
fn readme_starts_with_the_two_commands() {
    let block: Vec<&str> = README
        .lines()
        .skip_while(|l| *l != "```sh")
        .skip(1)
        .take(2)
        .collect();
    assert!(
        block[0].starts_with("cargo run --example http_server "),
        "{block:?}"
    );
    assert!(block[1].starts_with("cargo test "), "{block:?}");
}

#[test]
fn readme_links_the_guides_it_leaves_out() {
    // The README is a page a newcomer reads to the end: the deploying
    // guide (also in the crate docs), the servers' and the reliability
    // details live in docs/ and are linked.
    for guide in [
        "docs/deploying.md",
        "docs/servers.md",
        "docs/recipes.md",
        "docs/reliability.md",
        "BENCHMARKS.md",
    ] {
        assert!(README.contains(&format!("]({guide})")), "link {guide}");
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(guide)
                .exists(),
            "{guide}"
        );
    }
}

#[test]
fn readme_is_short_and_configure_comes_early() {
    let lines = README.lines().count();
    assert!(lines < 250, "{lines} lines: move the details to docs/");
    let configure = README.lines().position(|l| l == "## Configure");
    assert!(configure.is_some_and(|at| at < 120), "{configure:?}");
}
