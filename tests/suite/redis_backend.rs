//! What only the Redis backend can show: round trips, the stored layout,
//! raw corruption, and calls that still succeed while Redis is failing.

use crate::support;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::{Cache, Error, Policy};
use redis::AsyncCommands;
use support::{bounded, Loader, RedisServer};
use tokio::sync::Notify;

/// Commands executed since `before`, sorted by name, leaving out the `INFO` that measured them.
fn delta(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut delta: Vec<_> = after
        .iter()
        .filter(|(name, _)| name != "info")
        .filter_map(|(name, calls)| {
            let was = before.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
            (*calls > was).then(|| (name.clone(), calls - was))
        })
        .collect();
    delta.sort();
    delta
}

#[tokio::test]
async fn a_hit_is_exactly_one_round_trip() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let db = Loader::new();
    let _: u32 = cache
        .get_or_load("product:1", &Policy::new(), || db.ready::<u32>(1))
        .await
        .unwrap();

    let before = server.command_calls().await;
    let hit: u32 = cache
        .get_or_load("product:1", &Policy::new(), || db.ready::<u32>(2))
        .await
        .unwrap();
    let after = server.command_calls().await;

    assert_eq!(hit, 1);
    assert_eq!(
        delta(&before, &after),
        vec![("get".to_owned(), 1)],
        "an untagged hit sends one GET and nothing else"
    );
}

#[tokio::test]
async fn a_miss_is_a_read_and_a_guarded_write_under_the_namespace() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("shop")
        .build()
        .await
        .unwrap();
    let db = Loader::new();
    let before = server.command_calls().await;
    let policy = Policy::new().ttl(Duration::from_secs(90));
    let _: u32 = cache
        .get_or_load("product:1", &policy, || db.ready::<u32>(1))
        .await
        .unwrap();
    let after = server.command_calls().await;
    // The default (lock) mode, three round trips: the GET; a script that
    // takes the lock (SET NX), reads the entry again (another process may
    // have stored it meanwhile) with the key's guard, and creates the missing
    // guard (MGET, SET); a script that checks the guard, writes the entry
    // and releases the lock (MGET of the guard and the lock, SET, DEL; no
    // PUBLISH, as nobody waited for it).
    let expected =
        [("del", 1), ("evalsha", 2), ("get", 1), ("mget", 2), ("set", 3)].map(|(c, n)| (c.to_owned(), n));
    assert_eq!(delta(&before, &after), expected);

    let mut raw = server.raw().await;
    let pttl: i64 = raw.pttl("shop:{product:1}").await.unwrap();
    assert!(
        (85_000..=90_000).contains(&pttl),
        "stored with the policy's TTL in ms, got PTTL {pttl}"
    );
    let commands: Vec<String> = server
        .command_calls()
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(
        !commands.iter().any(|c| c == "keys" || c == "scan"),
        "never KEYS or SCAN: {commands:?}"
    );
}

#[tokio::test]
async fn corrupt_bytes_are_a_counted_miss_and_are_repaired() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let mut raw = server.raw().await;
    let db = Loader::new();
    let garbage: [&[u8]; 4] = [
        b"",
        b"\xff\x00garbage",
        b"as\x01",
        b"as\x09 an entry from a future version.....",
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        let key = format!("k{i}");
        let _: () = raw.set(format!("aside:{{{key}}}"), *bytes).await.unwrap();
        let got: u32 = cache
            .get_or_load(&key, &Policy::new(), || db.ready::<u32>(7))
            .await
            .unwrap();
        assert_eq!(got, 7);
        let repaired: u32 = cache
            .get_or_load(&key, &Policy::new(), || db.ready::<u32>(8))
            .await
            .unwrap();
        assert_eq!(repaired, 7, "the load overwrote the corrupt entry");
    }
    let stats = cache.stats();
    assert_eq!((stats.corrupt, stats.loads, stats.hits), (4, 4, 4), "{stats:?}");
}

#[tokio::test]
async fn calls_succeed_when_redis_is_gone() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    drop(server); // killed
    let db = Loader::new();
    for i in 0..3 {
        let got: u32 = bounded("a call with Redis down", Duration::from_secs(5), async {
            cache
                .get_or_load("k", &Policy::new(), || db.ready::<u32>(i))
                .await
                .unwrap()
        })
        .await;
        assert_eq!(got, i, "the loader's own result, every time");
    }
    assert!(
        cache.stats().errors >= 3,
        "failures are counted: {:?}",
        cache.stats()
    );
    assert!(
        cache.get::<u32>("k").await.is_err(),
        "the manual API reports the failure"
    );
}

#[tokio::test]
async fn calls_succeed_within_the_timeout_when_redis_hangs() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(100);
    let cache = Cache::builder()
        .redis(server.url())
        .op_timeout(timeout)
        .build()
        .await
        .unwrap();
    server.signal("STOP");
    let db = Loader::new();
    let started = Instant::now();
    let got: u32 = bounded("a call with Redis hung", Duration::from_secs(5), async {
        cache
            .get_or_load("k", &Policy::new(), || db.ready::<u32>(5))
            .await
            .unwrap()
    })
    .await;
    let took = started.elapsed();
    server.signal("CONT");
    assert_eq!(got, 5);
    let stats = cache.stats();
    // The read is cut off at the timeout; with no tokens read, nothing is stored.
    assert_eq!(stats.errors, 1, "cut off, the call took {took:?}: {stats:?}");
}

#[tokio::test]
async fn configuration_errors_are_typed() {
    let bad_url = Cache::builder().redis("http://example").build().await;
    assert!(matches!(bad_url, Err(Error::Config(_))), "{bad_url:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed_port = format!("redis://127.0.0.1:{port}");
    let required = Cache::builder()
        .redis(&closed_port)
        .require_connection(true)
        .build()
        .await;
    assert!(matches!(required, Err(Error::Connect { .. })), "{required:?}");
    // The message says where and why.
    let message = required.unwrap_err().to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("refused"),
        "{message}"
    );
    // By default, fail-open from the start: built, and calls run through,
    // without asking a Redis known to be down (its breaker is open).
    let cache = Cache::builder().redis(&closed_port).build().await.unwrap();
    let policy = Policy::new();
    for _ in 0..2 {
        let got = cache.get_or_load("k", &policy, || async { Ok::<_, ()>(7) }).await;
        assert_eq!(got, Ok(7));
    }
    let stats = cache.stats();
    assert_eq!(stats.loads, 2);
    assert_eq!(
        (stats.errors, stats.breaker),
        (0, aside::stats::BreakerState::Open),
        "{stats:?}"
    );
    // A name that does not resolve (yet) is an unreachable Redis too.
    let unresolved = Cache::builder()
        .redis("redis://aside-test.invalid:6379")
        .connect_timeout(Duration::from_secs(1))
        .build()
        .await;
    assert!(unresolved.is_ok(), "{unresolved:?}");
    let zero = Cache::builder().op_timeout(Duration::ZERO).build().await;
    assert!(matches!(zero, Err(Error::Config(_))));
}

#[tokio::test]
async fn the_password_never_appears_in_debug_output() {
    let builder = Cache::builder()
        .redis("redis://user:hunter2@127.0.0.1:1/0")
        .require_connection(true);
    assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
    let error = builder.build().await.unwrap_err();
    assert!(!format!("{error:?} {error}").contains("hunter2"), "{error:?}");
}

#[tokio::test]
async fn a_tagged_hit_is_one_round_trip_too() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let db = Loader::new();
    let policy = Policy::new().tag("product:1").tag("category:7");
    let _: u32 = cache
        .get_or_load("product:1", &policy, || db.ready::<u32>(1))
        .await
        .unwrap();
    let before = server.command_calls().await;
    let hit: u32 = cache
        .get_or_load("product:1", &policy, || db.ready::<u32>(2))
        .await
        .unwrap();
    let after = server.command_calls().await;
    assert_eq!(hit, 1);
    let expected = vec![("mget".to_owned(), 1)];
    assert_eq!(
        delta(&before, &after),
        expected,
        "the entry and both tags' tokens in one MGET"
    );
}

#[tokio::test]
async fn tokens_live_under_the_namespace_with_the_documented_lifetimes() {
    let server = RedisServer::start();
    let window = Duration::from_secs(120);
    let cache = Cache::builder()
        .redis(server.url())
        .namespace("shop")
        .invalidation_window(window)
        .build()
        .await
        .unwrap();
    let db = Loader::new();
    let policy = Policy::new().tag("category:7");
    let _: u32 = cache
        .get_or_load("product:1", &policy, || db.ready::<u32>(1))
        .await
        .unwrap();
    cache.invalidate("product:1").await.unwrap();
    let mut raw = server.raw().await;
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut raw).await.unwrap();
    keys.sort();
    assert_eq!(
        keys,
        ["shop#guard:{product:1}", "shop#tag:category:7"],
        "the entry is gone, two tokens remain"
    );
    let guard_ttl: i64 = raw.pttl("shop#guard:{product:1}").await.unwrap();
    assert!(
        (110_000..=120_000).contains(&guard_ttl),
        "a guard lives for the invalidation window: {guard_ttl}"
    );
    let tag_ttl: i64 = raw.pttl("shop#tag:category:7").await.unwrap();
    // Twice what an entry that records it may need: the default TTL,
    // 5 min, jittered up at most 1.9 times, plus the window.
    assert!(
        (1_370_000..=1_380_000).contains(&tag_ttl),
        "a tag token lives as long as an entry that records it may: {tag_ttl}"
    );
    // A load whose entry the token outlives already leaves its TTL alone:
    // a change of TTL is pushed to every process's in-process tier.
    let before = server.command_calls().await;
    let _: u32 = cache
        .get_or_load("product:2", &policy, || db.ready::<u32>(2))
        .await
        .unwrap();
    let calls = delta(&before, &server.command_calls().await);
    assert!(
        !calls.iter().any(|(command, _)| command == "pexpire"),
        "{calls:?}"
    );
    let token: String = raw.get("shop#tag:category:7").await.unwrap();
    assert!(
        token.parse::<u64>().is_ok(),
        "a token is a decimal number: {token:?}"
    );
}

#[tokio::test]
async fn an_evicted_guard_refuses_the_slow_load_rather_than_accepting_it() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let slow = {
        let (cache, started, release) = (cache.clone(), started.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", &Policy::new(), || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, io::Error>("old".to_owned())
                })
                .await
        })
    };
    started.notified().await;
    cache.invalidate("k").await.unwrap();
    // Redis evicts the guard (volatile-* policies evict keys with a TTL first).
    let _: () = server.raw().await.del("aside#guard:{k}").await.unwrap();
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap(), "old");
    let next: String = cache
        .get_or_load("k", &Policy::new(), || async { Ok::<_, io::Error>("new".into()) })
        .await
        .unwrap();
    assert_eq!(next, "new", "the old value was not stored");
}

#[tokio::test]
async fn an_evicted_tag_token_only_causes_a_miss() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let db = Loader::new();
    let policy = Policy::new().tag("t");
    let _: u32 = cache
        .get_or_load("k", &policy, || db.ready::<u32>(1))
        .await
        .unwrap();
    let _: () = server.raw().await.del("aside#tag:t").await.unwrap();
    let got: u32 = cache
        .get_or_load("k", &policy, || db.ready::<u32>(2))
        .await
        .unwrap();
    assert_eq!(got, 2, "an entry whose tag token is gone is a miss");
    let again: u32 = cache
        .get_or_load("k", &policy, || db.ready::<u32>(3))
        .await
        .unwrap();
    assert_eq!(again, 2, "and the reload is cached under a fresh token");
}

/// The next message on `pubsub`, within 10 s.
async fn next_message(messages: &mut redis::aio::PubSubStream) -> redis::Msg {
    let next =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *messages), cx));
    bounded("a message", Duration::from_secs(10), next)
        .await
        .expect("the subscription is open")
}

/// Subscribers of the pub/sub channel `channel`.
async fn subscribers(server: &RedisServer, channel: &str) -> u32 {
    let (_, n): (String, u32) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    n
}

/// A lock's release is published on the lock's name when a caller in
/// another process waits for it: with `1` by the store that wrote the
/// value, with `0` by the unlock of a load that failed. A release nobody
/// waits for publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_release_is_published_to_its_waiters() {
    let server = RedisServer::start();
    let (holder, waiter) = (server.cache().await, server.cache().await);
    let client = redis::Client::open(server.url()).unwrap();
    let (mut sink, mut messages) = client.get_async_pubsub().await.unwrap().split();
    sink.subscribe(&["aside#lock:{stored}", "aside#lock:{failed}"])
        .await
        .unwrap();

    for (key, load, published) in [
        ("stored", Ok(1), 1),
        ("failed", Err(io::Error::other("db down")), 0),
    ] {
        let (db, gate) = Loader::gated();
        let holding = tokio::spawn({
            let (holder, load) = (holder.clone(), db.load(load));
            async move {
                let got: io::Result<u32> = holder.get_or_load(key, &Policy::new(), load).await;
                got
            }
        });
        support::until("the holder to load", || db.runs() == 1).await;
        let waiting = tokio::spawn({
            let waiter = waiter.clone();
            async move {
                waiter
                    .get_or_load(key, &Policy::new(), || async { Ok::<_, io::Error>(0u32) })
                    .await
            }
        });
        let channel = format!("aside#lock:{{{key}}}");
        bounded("the waiter to subscribe", Duration::from_secs(10), async {
            // The test's own subscription, and the waiter's.
            while subscribers(&server, &channel).await < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        gate.notify_one();
        let message = next_message(&mut messages).await;
        assert_eq!(message.get_channel_name(), channel);
        assert_eq!(message.get_payload::<u32>().unwrap(), published, "{key}");
        let _ = bounded("the holder", Duration::from_secs(10), holding).await;
        let _ = bounded("the waiter", Duration::from_secs(10), waiting).await;
    }

    let before = server.command_calls().await;
    let db = Loader::new();
    let _: u32 = holder
        .get_or_load("alone", &Policy::new(), || db.ready::<u32>(1))
        .await
        .unwrap();
    let after = server.command_calls().await;
    assert!(
        !delta(&before, &after).iter().any(|(name, _)| name == "publish"),
        "a release nobody waits for is not published: {:?}",
        delta(&before, &after)
    );
}

/// Callers waiting for another process's load subscribe to its lock while
/// they wait, and unsubscribe once they have the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_waiters_subscribe_while_they_wait_and_unsubscribe_after() {
    let server = RedisServer::start();
    let holder = server.cache().await;
    let waiter = server.cache().await;
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let holding = {
        let (holder, started, release) = (holder.clone(), started.clone(), release.clone());
        tokio::spawn(async move {
            holder
                .get_or_load("k", &Policy::new(), || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, io::Error>(7u32)
                })
                .await
        })
    };
    bounded("the holder to load", Duration::from_secs(10), started.notified()).await;
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            waiter
                .get_or_load("k", &Policy::new(), || async { Ok::<_, io::Error>(0u32) })
                .await
        })
    };
    let mut raw = server.raw().await;
    let subscribers = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        async move {
            let (_, n): (String, u32) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("aside#lock:{k}")
                .query_async(&mut raw)
                .await
                .unwrap();
            n
        }
    };
    bounded("the waiter to subscribe", Duration::from_secs(10), async {
        while subscribers(&mut raw).await == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    release.notify_one();
    assert_eq!(
        bounded("the holder", Duration::from_secs(10), holding)
            .await
            .unwrap()
            .unwrap(),
        7
    );
    assert_eq!(
        bounded("the waiter", Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap(),
        7,
        "the waiter got the holder's value"
    );
    assert!(waiter.stats().lock_waits > 0);
    bounded("the waiter to unsubscribe", Duration::from_secs(10), async {
        while subscribers(&mut raw).await > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    // The waiter's two connections (commands, pub/sub) close with it.
    let clients = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        async move {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut raw)
                .await
                .unwrap();
            list.lines().count()
        }
    };
    let before = clients(&mut raw).await;
    drop(waiter);
    bounded(
        "the dropped cache's connections to close",
        Duration::from_secs(10),
        async {
            while clients(&mut raw).await > before - 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
}

/// Whether `server` holds an entry at `k`.
async fn stored_at_k(server: &RedisServer) -> bool {
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg("aside:{k}")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    stored.is_some()
}

/// `n` reads of one key: the loader's runs, and the cache's stats.
async fn reads(cache: &Cache, n: usize) -> (u64, aside::stats::Stats) {
    let db = Loader::new();
    for _ in 0..n {
        let got: u32 = cache
            .get_or_load("k", &Policy::new(), || db.ready::<u32>(5))
            .await
            .unwrap();
        assert_eq!(got, 5);
    }
    (db.runs(), cache.stats())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_the_program_built_is_used_as_given() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let cache = Cache::builder().redis(client).build().await.unwrap();
    let (runs, stats) = reads(&cache, 2).await;
    assert_eq!((runs, stats.hits), (1, 1), "stored in that Redis, then a hit");
    assert!(stored_at_k(&server).await, "written to that Redis");
}

#[tokio::test]
async fn a_connection_the_program_shares_is_used_as_given() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let shared = redis::aio::ConnectionManager::new(client).await.unwrap();
    // The connection alone: no client for pub/sub or tracking, so the
    // tier asked for is off, and lock waiters would poll.
    let cache = Cache::builder()
        .redis(shared.clone())
        .l1(aside::L1::entries(100))
        .build()
        .await
        .unwrap();
    let (runs, stats) = reads(&cache, 3).await;
    assert_eq!(runs, 1, "stored through that connection, then hits");
    assert_eq!((stats.hits, stats.l1_hits), (2, 0), "{stats:?}");
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg("aside:{k}")
        .query_async(&mut shared.clone())
        .await
        .unwrap();
    assert!(stored.is_some());
}

/// A shared connection with the client it came from: the tier asked for
/// is on (tracking has a connection of its own), and commands go through the
/// program's connection.
#[tokio::test]
async fn a_shared_connection_with_its_client_keeps_the_tier() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let shared = redis::aio::ConnectionManager::new(client.clone()).await.unwrap();
    let cache = Cache::builder()
        .redis(aside::Redis::shared(shared.clone(), client))
        .l1(aside::L1::entries(100))
        .build()
        .await
        .unwrap();
    let (runs, stats) = reads(&cache, 3).await;
    assert_eq!((runs, stats.hits), (1, 2), "{stats:?}");
    // The first read after the store may go to Redis; the tier answers after.
    assert!(stats.l1_hits >= 1, "the tier is on: {stats:?}");
}

/// A `redis::ConnectionInfo` the program parsed is used as a URL would be.
#[tokio::test]
async fn connection_info_is_a_way_in() {
    use redis::IntoConnectionInfo;
    let server = RedisServer::start();
    let info = server.url().into_connection_info().unwrap();
    let cache = Cache::builder()
        .redis(info)
        .require_connection(true)
        .build()
        .await
        .unwrap();
    cache.set("k", &7u32, None).await.unwrap();
    assert!(stored_at_k(&server).await, "written to that Redis");
}

/// Every key aside writes has a TTL, tag tokens included (a tag per user or
/// per order must not grow Redis forever), and once every entry has expired
/// none is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_aside_writes_expires() {
    use aside::Stampede;
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .invalidation_window(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let ttl = Duration::from_millis(300);
    let tagged = |stampede| {
        Policy::new()
            .ttl(ttl)
            .tag("user:1")
            .tag("order:7")
            .stampede(stampede)
    };
    let modes = [Stampede::default(), Stampede::None, Stampede::Swr { stale: ttl }];
    let db = Loader::new();
    for (i, mode) in modes.into_iter().enumerate() {
        let key = format!("product:{i}");
        let _: u32 = cache
            .get_or_load(&key, &tagged(mode), || db.ready::<u32>(1))
            .await
            .unwrap();
    }
    // Early keeps its entries for a refresh's lock TTL past their own:
    // checked for a TTL, then invalidated.
    let early = Policy::new().ttl(ttl).stampede(Stampede::Early { beta: 1.0 });
    let _: u32 = cache
        .get_or_load("early", &early, || db.ready::<u32>(1))
        .await
        .unwrap();
    let _: u32 = cache
        .put("product:9", &tagged(Stampede::None), || db.ready::<u32>(2))
        .await
        .unwrap();
    cache.invalidate_tag("user:1").await.unwrap();
    let _: u32 = cache
        .get_or_load("product:0", &tagged(Stampede::default()), || db.ready::<u32>(3))
        .await
        .unwrap();
    cache.invalidate("product:1").await.unwrap();
    cache.set("plain", &1, Some(ttl)).await.unwrap();

    let mut raw = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut raw).await.unwrap();
    assert!(keys.iter().any(|k| k.contains("#tag:order")), "{keys:?}");
    for key in &keys {
        let pttl: i64 = raw.pttl(key).await.unwrap();
        assert!(pttl > 0, "{key} has no TTL ({pttl})");
    }
    cache.invalidate("early").await.unwrap();
    // The tags live longest: twice the entries' TTL, jittered (at most 1.9
    // times), plus the invalidation window and swr's stale time: under 2.5 s.
    bounded("every key expired", Duration::from_secs(10), async {
        loop {
            let left: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut raw).await.unwrap();
            if left.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// A cache whose operations wait for a stopped Redis (`SIGSTOP`) for up to 5 s.
async fn patient_cache(server: &RedisServer) -> Cache {
    Cache::builder()
        .redis(server.url())
        .op_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

/// A read of `r:{k}`, whose value (once loaded) is `k`; even keys have two
/// tags (their read is an `MGET` of the entry and its tags' tokens).
async fn read(cache: Cache, db: Loader, k: u32) -> u32 {
    let policy = match k % 2 {
        0 => Policy::new().tag(format!("t:{}", k % 3)).tag("all"),
        _ => Policy::new(),
    };
    cache
        .get_or_load(&format!("r:{k}"), &policy, || db.ready(k))
        .await
        .unwrap()
}

/// `GET` and `MGET` calls between two `command_calls`.
fn reads_sent(before: &[(String, u64)], after: &[(String, u64)]) -> (u64, u64) {
    let delta = delta(before, after);
    let calls = |name: &str| delta.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
    (calls("get"), calls("mget"))
}

#[tokio::test]
async fn hits_that_wait_together_go_as_one_mget() {
    let server = RedisServer::start();
    let cache = patient_cache(&server).await;
    let db = Loader::new();
    for k in 0..21 {
        read(cache.clone(), db.clone(), k).await;
    }
    let before = server.command_calls().await;
    // Redis stopped: the first read is in flight when the others come, so
    // they queue behind it.
    server.signal("STOP");
    let first = tokio::spawn(read(cache.clone(), db.clone(), 0));
    tokio::task::yield_now().await;
    let rest: Vec<_> = (1..21)
        .map(|k| tokio::spawn(read(cache.clone(), db.clone(), k)))
        .collect();
    tokio::task::yield_now().await;
    server.signal("CONT");
    assert_eq!(first.await.unwrap(), 0);
    for (k, read) in (1..).zip(rest) {
        assert_eq!(read.await.unwrap(), k);
    }
    let after = server.command_calls().await;
    assert_eq!(db.runs(), 21, "all 21 were hits");
    assert_eq!(
        reads_sent(&before, &after),
        (0, 2),
        "the first read (tagged) went at once; the 20 that came while it was in flight, \
         tagged or not, went as one MGET"
    );
}

#[tokio::test]
async fn the_queue_goes_out_when_the_first_read_is_abandoned() {
    let server = RedisServer::start();
    let cache = patient_cache(&server).await;
    let db = Loader::new();
    for k in 0..11 {
        read(cache.clone(), db.clone(), k).await;
    }
    let before = server.command_calls().await;
    server.signal("STOP");
    // The caller that went first gives up (its future is dropped) while
    // Redis is stopped: those queued behind it must still be sent.
    let (gave_up, give_up) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move {
            tokio::select! {
                _ = read(cache, db, 0) => false,
                _ = give_up => true,
            }
        }
    });
    tokio::task::yield_now().await;
    let rest: Vec<_> = (1..11)
        .map(|k| tokio::spawn(read(cache.clone(), db.clone(), k)))
        .collect();
    tokio::task::yield_now().await;
    gave_up.send(()).unwrap();
    assert!(first.await.unwrap(), "the first read was abandoned");
    server.signal("CONT");
    for (k, read) in (1..).zip(rest) {
        assert_eq!(
            bounded("a queued read", Duration::from_secs(5), read)
                .await
                .unwrap(),
            k
        );
    }
    let after = server.command_calls().await;
    assert_eq!(db.runs(), 11, "the 10 queued reads were hits");
    assert_eq!(
        reads_sent(&before, &after),
        (0, 2),
        "the first read (an MGET: tagged), then the queued ones as one MGET"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_reads_fail_open_and_resume_after_a_hung_redis() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .op_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let db = Loader::new();
    for k in 0..16 {
        read(cache.clone(), db.clone(), k).await;
    }
    server.signal("STOP");
    let hung: Vec<_> = (0..16)
        .map(|k| tokio::spawn(read(cache.clone(), db.clone(), k)))
        .collect();
    for (k, read) in (0..).zip(hung) {
        let got = bounded("a call while Redis hangs", Duration::from_secs(10), read).await;
        assert_eq!(got.unwrap(), k, "the function's own result");
    }
    server.signal("CONT");
    // Every call has returned; nothing is left in flight or queued, so
    // reads go out again as soon as Redis answers.
    assert!(
        cache.stats().errors > 0,
        "the reads timed out while Redis was stopped"
    );
    // The breaker opened on those timeouts: calls go through until it lets
    // a read by and it is answered. A queue left busy would never be.
    bounded("a hit once Redis answers", Duration::from_secs(10), async {
        loop {
            let loads = db.runs();
            read(cache.clone(), db.clone(), 0).await;
            if db.runs() == loads {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let loads = db.runs();
    let back: Vec<_> = (0..16)
        .map(|k| tokio::spawn(read(cache.clone(), db.clone(), k)))
        .collect();
    for (k, read) in (0..).zip(back) {
        assert_eq!(
            bounded("a call after Redis is back", Duration::from_secs(5), read)
                .await
                .unwrap(),
            k
        );
    }
    assert_eq!(db.runs(), loads, "all 16 were hits once Redis answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_begins_after_an_invalidation_never_gets_the_old_value() {
    let server = RedisServer::start();
    let cache = server.cache_of(support::Kind::Redis).await;
    let background = Loader::new();
    for k in 0..32 {
        read(cache.clone(), background.clone(), k).await;
    }
    // Readers of untagged keys keep the connection busy, so that reads
    // queue and coalesce: every MGET is a batch of queued reads.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|t| {
            let (cache, db, stop) = (cache.clone(), background.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = t;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    read(cache.clone(), db.clone(), (i % 16) * 2 + 1).await;
                    i += 7;
                }
            })
        })
        .collect();
    let before = server.command_calls().await;
    let version = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = || {
        let version = version.clone();
        async move { Ok::<_, io::Error>(version.load(std::sync::atomic::Ordering::SeqCst)) }
    };
    for v in 1..=200 {
        let _: u64 = cache
            .get_or_load("versioned", &Policy::new(), load)
            .await
            .unwrap();
        version.store(v, std::sync::atomic::Ordering::SeqCst);
        cache.invalidate("versioned").await.unwrap();
        let got: u64 = cache
            .get_or_load("versioned", &Policy::new(), load)
            .await
            .unwrap();
        assert_eq!(
            got,
            v,
            "a read after the invalidation of version {} returned",
            v - 1
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let after = server.command_calls().await;
    let (_, mgets) = reads_sent(&before, &after);
    assert!(mgets > 0, "reads coalesced while the versions were read");
}

#[tokio::test]
async fn scripts_redis_forgot_are_loaded_again() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let db = Loader::new();
    // As after a restart or a failover: Redis knows none of the scripts
    // loaded when the cache connected.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    let tagged = Policy::new().tag("t");
    for policy in [Policy::new(), tagged.clone().stampede(aside::Stampede::None)] {
        for _ in 0..2 {
            let got: u32 = cache.get_or_load("k", &policy, || db.ready(5)).await.unwrap();
            assert_eq!(got, 5);
        }
        cache.invalidate("k").await.unwrap();
    }
    let stats = cache.stats();
    assert_eq!((db.runs(), stats.hits, stats.errors), (2, 2, 0), "{stats:?}");
}

#[tokio::test]
async fn a_first_read_whose_caller_stopped_polling_holds_up_no_one() {
    let server = RedisServer::start();
    let limit = Duration::from_millis(200);
    let cache = Cache::builder()
        .redis(server.url())
        .op_timeout(limit)
        .build()
        .await
        .unwrap();
    let db = Loader::new();
    for k in 0..11 {
        read(cache.clone(), db.clone(), k).await;
    }
    // Polled once (its read goes first), then parked: its caller keeps the
    // future and never polls it again.
    let mut parked = Box::pin(read(cache.clone(), db.clone(), 0));
    tokio::select! {
        biased;
        _ = &mut parked => panic!("a read cannot be answered on its first poll"),
        _ = std::future::ready(()) => {}
    }
    // Past the operation timeout the read in flight is presumed parked.
    tokio::time::sleep(limit + Duration::from_millis(50)).await;
    let later: Vec<_> = (1..11)
        .map(|k| tokio::spawn(read(cache.clone(), db.clone(), k)))
        .collect();
    for (k, read) in (1..).zip(later) {
        assert_eq!(
            bounded("a later read", Duration::from_secs(5), read)
                .await
                .unwrap(),
            k
        );
    }
    assert_eq!(
        db.runs(),
        11,
        "the later reads were hits: none waited for the parked one"
    );
    drop(parked);
}

#[tokio::test]
async fn a_tag_given_twice_costs_no_extra_miss() {
    let server = RedisServer::start();
    let cache = server.cache().await;
    let db = Loader::new();
    let twice = Policy::new().tag("t").tag("t");
    for _ in 0..3 {
        let got: u32 = cache.get_or_load("k", &twice, || db.ready(1)).await.unwrap();
        assert_eq!(got, 1);
    }
    assert_eq!(db.runs(), 1, "one load, then hits: {:?}", cache.stats());
}
