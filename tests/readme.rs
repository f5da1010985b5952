//! The README's example is `examples/01_basic.rs` word for word, so it is compiled.

#[test]
fn readme_example_is_examples_01_basic() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/01_basic.rs");
    let start = readme
        .find("```rust\n")
        .expect("a rust block in the README")
        + "```rust\n".len();
    let end = start + readme[start..].find("\n```\n").expect("the block ends") + 1;
    assert_eq!(
        &readme[start..end],
        example,
        "update the README's example from examples/01_basic.rs"
    );
}

#[test]
fn readme_starts_with_the_two_commands() {
    let readme = include_str!("../README.md");
    let block: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "```sh")
        .skip(1)
        .take(2)
        .collect();
    assert!(
        block[0].starts_with("cargo run --example 01_basic"),
        "{block:?}"
    );
    assert!(block[1].starts_with("cargo test "), "{block:?}");
}
