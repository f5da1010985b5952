//! The README keeps in step with the code: its example is
//! `examples/01_basic.rs` word for word (so it is compiled), it opens with
//! the two commands a newcomer runs, and its Deploying section is the one in
//! the crate docs (`docs/deploying.md`). Its other code blocks are doctests.

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
fn readme_deploying_section_is_the_crate_docs_one() {
    let deploying = include_str!("../docs/deploying.md");
    assert!(
        README.contains(&format!("## Deploying\n\n{deploying}")),
        "copy docs/deploying.md into the README"
    );
}
