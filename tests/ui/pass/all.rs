//! Every pass case as one program, one crate to build instead of sixteen:
//! each case is a module (`cases/*.rs`) that must compile as it stands,
//! warnings denied, and whose `main` must run. The cases use the global
//! cache, which is cleared between them, so that none sees another's
//! entries.

#[path = "cases/async-trait.rs"]
mod async_trait_case;
#[path = "cases/background-refresh.rs"]
mod background_refresh;
#[path = "cases/compound-durations.rs"]
mod compound_durations;
#[path = "cases/constant-policies.rs"]
mod constant_policies;
#[path = "cases/duration-expressions.rs"]
mod duration_expressions;
#[path = "cases/entries.rs"]
mod entries;
#[path = "cases/fail-safe.rs"]
mod fail_safe;
#[path = "cases/free-fn.rs"]
mod free_fn;
#[path = "cases/hard-timeout.rs"]
mod hard_timeout;
#[path = "cases/methods.rs"]
mod methods;
#[path = "cases/options-from-arguments.rs"]
mod options_from_arguments;
#[path = "cases/references-and-generics.rs"]
mod references_and_generics;
#[path = "cases/send-futures.rs"]
mod send_futures;
#[path = "cases/single-expression-bodies.rs"]
mod single_expression_bodies;
#[path = "cases/stampede-modes.rs"]
mod stampede_modes;
#[path = "cases/write-through-and-invalidate.rs"]
mod write_through_and_invalidate;

fn main() {
    let cases: [(&str, fn()); 16] = [
        ("async-trait", async_trait_case::main),
        ("background-refresh", background_refresh::main),
        ("compound-durations", compound_durations::main),
        ("constant-policies", constant_policies::main),
        ("duration-expressions", duration_expressions::main),
        ("entries", entries::main),
        ("fail-safe", fail_safe::main),
        ("free-fn", free_fn::main),
        ("hard-timeout", hard_timeout::main),
        ("methods", methods::main),
        ("options-from-arguments", options_from_arguments::main),
        ("references-and-generics", references_and_generics::main),
        ("send-futures", send_futures::main),
        ("single-expression-bodies", single_expression_bodies::main),
        ("stampede-modes", stampede_modes::main),
        ("write-through-and-invalidate", write_through_and_invalidate::main),
    ];
    for (name, case) in cases {
        case();
        let clear = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        clear
            .block_on(aside::global().clear())
            .unwrap_or_else(|e| panic!("clearing the global cache after {name}: {e}"));
    }
}
