//! Connecting as an ACL user (`redis://user:pass@`), and keeping the password
//! out of errors, `Debug` output and logs.

mod support;

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use aside::{Cache, Error, Policy};
use support::RedisServer;
use tracing_subscriber::util::SubscriberInitExt;

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

/// Log lines, captured.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn an_acl_user_connects_with_its_password() {
    let server = RedisServer::start();
    let url = with_user(&server).await;
    let cache = Cache::builder().redis(&url).build().await.unwrap();
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
    assert_eq!(
        runs.load(SeqCst),
        1,
        "stored as the ACL user, then a hit: {:?}",
        cache.stats()
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
    assert!(matches!(error, Error::Connect(_)), "{error:?}");
    let mut shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!shown.contains(wrong), "{shown}");
}

#[tokio::test]
async fn backend_failures_are_logged_without_the_password() {
    let server = RedisServer::start();
    let url = with_user(&server).await;
    let cache = Cache::builder().redis(&url).build().await.unwrap();
    // Take reads away from the user: every lookup now fails (NOPERM).
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "-mget"])
        .query_async::<()>(&mut server.raw().await)
        .await
        .unwrap();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let got: Result<u32, io::Error> = {
        let _logging = subscriber.set_default();
        cache.get_or_load("k", &Policy::new(), || async { Ok(3) }).await
    };
    assert_eq!(got.unwrap(), 3, "the call still succeeds");
    let logged = logs.text();
    assert!(logged.contains("no permissions"), "the failure is logged: {logged}");
    assert!(!logged.contains(PASSWORD), "{logged}");
}
