//! Compile-time behaviour of the attributes: every `tests/ui/fail` case must
//! fail with exactly the error in its `.stderr`, every `tests/ui/pass` case
//! must compile and run. Regenerate the `.stderr` files after a deliberate
//! change with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
