//! Argument values that would break a naive key scheme: separators, glob
//! characters, whitespace, protocol bytes, unicode and 1 MB strings. Each
//! distinct argument gets its own entry, and stored names stay short.

use crate::support;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use aside::{Cache, KeyBuilder};
use support::{Kind, TestCache};

#[aside::cached(cache = cache, key = "search:<q>:<page>", ttl = 60, tags = ["q:<q>"])]
async fn search(cache: &Cache, runs: &AtomicU64, q: &str, page: u32) -> Result<String, io::Error> {
    runs.fetch_add(1, SeqCst);
    Ok(format!("{}|{page}", q.len()))
}

#[aside::cached(cache = cache, key = "pair:<a>:<b>", ttl = 60)]
async fn pair(cache: &Cache, runs: &AtomicU64, a: &str, b: &str) -> Result<(String, String), io::Error> {
    runs.fetch_add(1, SeqCst);
    Ok((a.to_owned(), b.to_owned()))
}

fn hostile() -> Vec<String> {
    let mb = "a".repeat(1 << 20);
    vec![
        String::new(),
        "plain".into(),
        "a:b".into(),
        ":".into(),
        "*".into(),
        "a*b?[c]".into(),
        " ".into(),
        "with space".into(),
        "line\nbreak".into(),
        "\r\n*1\r\n$8\r\nFLUSHALL\r\n".into(),
        "\0nul".into(),
        "日本語 🦀".into(),
        "\\".into(),
        "\\:".into(),
        "#sha256=".into(),
        "x#tag:y".into(),
        // Redis Cluster hash tags.
        "{".into(),
        "}".into(),
        "{}".into(),
        "}{".into(),
        "a}b{c}".into(),
        mb.clone(),
        // Differs from the one before only past the part a long key keeps.
        format!("{mb}b"),
        format!("b{mb}"),
    ]
}

async fn every_distinct_argument_gets_its_own_entry(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let runs = AtomicU64::new(0);
    let values = hostile();
    for q in &values {
        for page in [1, 2] {
            let want = format!("{}|{page}", q.len());
            assert_eq!(search(&cache, &runs, q, page).await.unwrap(), want);
            assert_eq!(search(&cache, &runs, q, page).await.unwrap(), want, "a hit");
        }
    }
    let distinct = 2 * values.len() as u64;
    assert_eq!(
        runs.load(SeqCst),
        distinct,
        "one load per distinct argument tuple"
    );
    for q in &values {
        assert_eq!(
            search(&cache, &runs, q, 1).await.unwrap(),
            format!("{}|1", q.len())
        );
    }
    assert_eq!(runs.load(SeqCst), distinct, "none overwrote another");

    // Invalidating the tag of one 1 MB value drops its entries only.
    let long = &values[values.len() - 2];
    cache
        .invalidate_tag(&KeyBuilder::new("q:").arg(long.as_str()).finish())
        .await
        .unwrap();
    search(&cache, &runs, long, 1).await.unwrap();
    search(&cache, &runs, &values[values.len() - 3], 1).await.unwrap();
    assert_eq!(
        runs.load(SeqCst),
        distinct + 1,
        "only the invalidated value reloads"
    );
}

async fn separators_in_values_cannot_shift_between_arguments(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let runs = AtomicU64::new(0);
    let pairs = [
        ("a:b", "c"),
        ("a", "b:c"),
        ("a\\", ":b"),
        ("a\\:", "b"),
        ("", ":"),
        (":", ""),
    ];
    for (a, b) in pairs {
        assert_eq!(
            pair(&cache, &runs, a, b).await.unwrap(),
            (a.to_owned(), b.to_owned())
        );
    }
    for (a, b) in pairs {
        assert_eq!(
            pair(&cache, &runs, a, b).await.unwrap(),
            (a.to_owned(), b.to_owned())
        );
    }
    assert_eq!(runs.load(SeqCst), pairs.len() as u64);
}

/// Keys and tags that would break a Redis Cluster hash tag (empty, braces,
/// a leading `}`) go through every script: on a cluster, one that touched
/// two slots would fail with `CROSSSLOT` and count as a backend error.
async fn keys_made_of_braces_load_hit_and_invalidate(kind: Kind) {
    let cache = TestCache::new(kind).await;
    let keys = ["", "}", "{", "{}", "}{", "}a{b}", "a}b{c}", "{a}"];
    let policy = aside::Policy::new().tag("}").tag("{t}").tag("");
    for (i, key) in keys.iter().enumerate() {
        let loaded = cache.get_or_load(key, &policy, || async move { Ok::<_, io::Error>(i) });
        assert_eq!(loaded.await.unwrap(), i);
        let hit = cache.get_or_load(key, &policy, || async { Ok::<_, io::Error>(usize::MAX) });
        assert_eq!(hit.await.unwrap(), i, "a hit for {key:?}");
    }
    cache.invalidate(keys[1]).await.unwrap();
    let reloaded = cache.get_or_load(keys[1], &policy, || async { Ok::<_, io::Error>(100) });
    assert_eq!(reloaded.await.unwrap(), 100);
    cache.invalidate_tag("}").await.unwrap();
    let reloaded = cache.get_or_load(keys[2], &policy, || async { Ok::<_, io::Error>(200) });
    assert_eq!(reloaded.await.unwrap(), 200);
    assert_eq!(cache.stats().errors, 0, "no backend operation failed");
}

on_both_backends!(
    every_distinct_argument_gets_its_own_entry,
    separators_in_values_cannot_shift_between_arguments,
    keys_made_of_braces_load_hit_and_invalidate,
);

#[tokio::test]
async fn stored_names_stay_short_whatever_the_arguments() {
    let cache = TestCache::new(Kind::Redis).await;
    let runs = AtomicU64::new(0);
    for q in hostile() {
        search(&cache, &runs, &q, 1).await.unwrap();
    }
    let names: Vec<Vec<u8>> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut cache.server().raw().await)
        .await
        .unwrap();
    let longest = names.iter().map(Vec::len).max().unwrap();
    assert!(
        longest <= 300,
        "the longest of {} stored names is {longest} bytes",
        names.len()
    );
}
