//! Compile-time behaviour of the attributes: every `tests/ui/fail` case must
//! fail with exactly the error in its `.stderr`, every `tests/ui/pass` case
//! must compile and run. Regenerate the `.stderr` files after a deliberate
//! change with `TRYBUILD=overwrite cargo test -p aside-ui-tests`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("fail/*.rs");
    t.pass("pass/*.rs");
}
