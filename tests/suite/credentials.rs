//! Connecting as an ACL user (`redis://user:pass@`) and over TLS (`rediss://`),
//! and keeping the password
//! out of errors, `Debug` output and logs.

use crate::support;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use aside::{Cache, Error, Policy};
use support::logs::Logs;
use support::RedisServer;

const PASSWORD: &str = "s3cret-pw-for-app";

async fn with_user(server: &RedisServer) -> String {
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "app",
            "on",
            &format!(">{PASSWORD}"),
            "~aside*",
            "+@all",
        ])
        .query_async::<()>(&mut server.raw().await)
        .await
        .unwrap();
    format!("redis://app:{PASSWORD}@127.0.0.1:{}", server.port())
}

/// Calls the cache twice for one key; returns how many times the body ran.
async fn miss_then_hit(cache: &Cache) -> u64 {
    let runs = AtomicU64::new(0);
    for _ in 0..2 {
        let got: Result<u32, io::Error> = cache
            .get_or_load("k", &Policy::new(), || async {
                runs.fetch_add(1, SeqCst);
                Ok(1)
            })
            .await;
        assert_eq!(got.unwrap(), 1);
    }
    runs.into_inner()
}

/// An error and its causes, as a user could print them.
fn shown(error: &Error) -> String {
    let mut shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    shown
}

#[tokio::test]
async fn an_acl_user_connects_with_its_password() {
    let server = RedisServer::start();
    let url = with_user(&server).await;
    let cache = Cache::builder().redis(&url).build().await.unwrap();
    let runs = miss_then_hit(&cache).await;
    let stats = cache.stats();
    // The user may use no pub/sub channel (Redis 7's default for a new
    // user): the lock's release is not published, and nothing fails.
    assert_eq!(
        (runs, stats.errors),
        (1, 0),
        "stored as the ACL user, then a hit: {stats:?}"
    );
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    assert!(clients.contains("user=app"), "{clients}");
    assert!(!format!("{cache:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_wrong_password_is_a_connect_error_that_does_not_show_it() {
    let server = RedisServer::start();
    with_user(&server).await;
    let wrong = "not-the-password-42";
    let url = format!("redis://app:{wrong}@127.0.0.1:{}", server.port());
    let error = Cache::builder().redis(url).build().await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let shown = shown(&error);
    assert!(!shown.contains(wrong), "{shown}");
}

#[tokio::test]
async fn backend_failures_are_logged_without_the_password() {
    let server = RedisServer::start();
    let url = with_user(&server).await;
    let cache = Cache::builder().redis(&url).build().await.unwrap();
    // Take reads away from the user: every lookup now fails (NOPERM).
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "-get", "-mget"])
        .query_async::<()>(&mut server.raw().await)
        .await
        .unwrap();
    let logs = Logs::default();
    let got: Result<u32, io::Error> = {
        let _logging = logs.capture();
        cache.get_or_load("k", &Policy::new(), || async { Ok(3) }).await
    };
    assert_eq!(got.unwrap(), 3, "the call still succeeds");
    let logged = logs.text();
    assert!(
        logged.contains("no permissions"),
        "the failure is logged: {logged}"
    );
    assert!(!logged.contains(PASSWORD), "{logged}");
}

#[tokio::test]
async fn rediss_connects_to_a_server_signed_by_the_given_ca() {
    let server = RedisServer::start_tls();
    let cache = Cache::builder()
        .redis(server.tls_url())
        .tls_root_certificate(server.tls_ca())
        .build()
        .await
        .unwrap();
    let runs = miss_then_hit(&cache).await;
    let stats = cache.stats();
    assert_eq!((runs, stats.hits, stats.errors), (1, 1, 0), "{stats:?}");
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg("aside:{k}")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    assert!(stored.is_some(), "written over TLS, read back over plain TCP");
}

#[tokio::test]
async fn rediss_refuses_a_server_it_cannot_verify() {
    let server = RedisServer::start_tls();
    // The system's roots do not include the test CA.
    let refused = Cache::builder()
        .redis(server.tls_url())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Connect { .. }), "{refused:?}");
    assert!(shown(&refused).contains("UnknownIssuer"), "{}", shown(&refused));
    // Nor does plain TCP speak to the TLS port: it never answers, which
    // looks like a server not there yet, so only a required connection fails.
    let plain = server.tls_url().replace("rediss://", "redis://");
    let refused = Cache::builder()
        .redis(plain)
        .require_connection(true)
        .connect_timeout(std::time::Duration::from_secs(1))
        .build()
        .await;
    assert!(matches!(refused, Err(Error::Connect { .. })), "{refused:?}");
}

/// Reads `k` until the in-process tier answers (the first fill may be dropped
/// by the push of the cache's own write); false if it never does within 2 s.
async fn tier_answers(cache: &Cache) -> bool {
    let answered = async {
        while cache.stats().l1_hits == 0 {
            miss_then_hit(cache).await;
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), answered)
        .await
        .is_ok()
}

#[tokio::test]
async fn the_in_process_tier_tracks_as_the_acl_user_and_over_tls() {
    let server = RedisServer::start();
    let url = with_user(&server).await;
    let cache = Cache::builder()
        .redis(&url)
        .l1(aside::L1::default())
        .build()
        .await
        .unwrap();
    assert!(
        tier_answers(&cache).await,
        "tracking on as `app`: {:?}",
        cache.stats()
    );

    let tls = RedisServer::start_tls();
    let cache = Cache::builder()
        .redis(tls.tls_url())
        .tls_root_certificate(tls.tls_ca())
        .l1(aside::L1::default())
        .build()
        .await
        .unwrap();
    assert!(
        tier_answers(&cache).await,
        "tracking on over TLS: {:?}",
        cache.stats()
    );
}

#[tokio::test]
async fn without_the_right_to_track_the_tier_is_bypassed() {
    let server = RedisServer::start();
    let url = with_user(&server).await;
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "-client"])
        .query_async::<()>(&mut server.raw().await)
        .await
        .unwrap();
    let cache = Cache::builder()
        .redis(&url)
        .l1(aside::L1::default())
        .build()
        .await
        .unwrap();
    assert!(
        !tier_answers(&cache).await,
        "never served from a tier Redis does not track"
    );
    let stats = cache.stats();
    assert!(
        stats.hits > 0 && stats.errors == 0,
        "Redis alone still caches: {stats:?}"
    );
}
