//! Shared by the benchmarks: this run's criterion estimates, for ratios.

/// The mean of one benchmark in this run, in ns, from criterion's estimates.
pub fn mean_ns(group: &str, bench: &str) -> f64 {
    // Where criterion writes: $CRITERION_HOME, else the target directory's
    // `criterion`. The bench runs in its package's directory, not the
    // workspace's: the target directory is the one this executable is in
    // (`target/release/deps/<bench>`), unless $CARGO_TARGET_DIR says.
    let home = std::env::var("CRITERION_HOME").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| {
            let exe = std::env::current_exe().expect("the bench's path");
            let target = exe.ancestors().nth(3).expect("target/release/deps/<bench>");
            target.display().to_string()
        });
        format!("{target}/criterion")
    });
    let path = format!("{home}/{group}/{bench}/new/estimates.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let estimates: serde_json::Value = serde_json::from_str(&text).unwrap();
    estimates["mean"]["point_estimate"]
        .as_f64()
        .expect("a mean estimate")
}
