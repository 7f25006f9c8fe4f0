//! Compile-time behaviour of the attributes: every `tests/ui/fail` case must
//! fail with exactly the error in its `.stderr`, every `tests/ui/pass` case
//! must compile and run. Regenerate the `.stderr` files after a deliberate
//! change with `TRYBUILD=overwrite cargo test -p aside-ui-tests`.
//!
//! Each case is a crate to compile, about 2 s each here, so the mistakes
//! the attribute itself reports (no type checking involved) are grouped,
//! one module per mistake: `fail/templates.rs`, `options.rs`,
//! `signatures.rs`, `writers.rs`, `batch.rs`. A mistake rustc reports after
//! type checking has a file of its own, where no other error can hide it.
//! The pass cases are one program, `pass/all.rs`, a module per case
//! (`pass/cases/*.rs`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("fail/*.rs");
    t.pass("pass/*.rs");
}
