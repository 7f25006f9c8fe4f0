//! Shared by the benchmarks: this run's criterion estimates, for ratios.

/// The mean of one benchmark in this run, in ns, from criterion's estimates.
pub fn mean_ns(group: &str, bench: &str) -> f64 {
    // Where criterion writes, found as criterion finds it: $CRITERION_HOME,
    // else the target directory's `criterion`, the target directory being
    // $CARGO_TARGET_DIR or what `cargo metadata` says (the bench runs in its
    // package's directory, not the workspace's), else `target`.
    let home = std::env::var("CRITERION_HOME").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").ok().or_else(|| {
            let cargo = std::env::var_os("CARGO")?;
            let output = std::process::Command::new(cargo)
                .args(["metadata", "--format-version", "1"])
                .output()
                .ok()?;
            let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
            Some(metadata["target_directory"].as_str()?.to_owned())
        });
        format!("{}/criterion", target.unwrap_or_else(|| "target".into()))
    });
    let path = format!("{home}/{group}/{bench}/new/estimates.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let estimates: serde_json::Value = serde_json::from_str(&text).unwrap();
    estimates["mean"]["point_estimate"]
        .as_f64()
        .expect("a mean estimate")
}
