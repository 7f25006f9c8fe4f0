//! Keeps the in-process tier coherent with Redis: client tracking in
//! broadcast mode, on a RESP3 connection of its own.
//!
//! `CLIENT TRACKING ON BCAST PREFIX {ns}: PREFIX {ns}#tag:` makes Redis push
//! the name of every key under those prefixes that changes: written,
//! deleted, expired or evicted, by any client, this process's included. A
//! `FLUSHALL`/`FLUSHDB` pushes a null instead of names. Each push flags the
//! tier's deps in the push sender itself, as the connection manager hands
//! it over (through its own channel; there is no queue of ours).
//!
//! The connection is a `ConnectionManager` (it reconnects by itself). A lost
//! connection pushes `Disconnection`: the tier is flushed and bypassed at
//! once, and tracking is enabled again on the new connection before the tier
//! is trusted again. A heartbeat (`CLIENT TRACKINGINFO`, every
//! [`HEARTBEAT`]) catches a connection that stopped tracking without
//! dropping.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::Notify;

use crate::l1::Local;
use crate::BackendError;

/// How often the tracking connection is checked while it works.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often tracking is retried while it is off.
const RETRY: Duration = Duration::from_millis(200);

/// Starts keeping `local` coherent with the Redis behind `client`, for the
/// keys of `namespace`. Returns once tracking is on, or has failed once (the
/// tier is then bypassed, and tracking retried in the background); runs
/// until `local` is dropped.
pub(crate) async fn track(
    client: &redis::Client,
    namespace: &str,
    local: &Arc<Local>,
    connect_timeout: Duration,
    op_timeout: Duration,
) -> Result<(), BackendError> {
    let info = client.get_connection_info().clone();
    let resp3 = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(resp3))?;
    let wake = Arc::new(Notify::new());
    let on_push = {
        let (local, wake) = (Arc::downgrade(local), wake.clone());
        move |push: PushInfo| -> Result<(), ()> {
            let local = local.upgrade().ok_or(())?;
            pushed(&local, push, &wake);
            Ok(())
        }
    };
    let config = ConnectionManagerConfig::new()
        .set_push_sender(on_push)
        .set_max_delay(Duration::from_secs(1))
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(op_timeout));
    // Lazy: if Redis is not there yet, enabling fails below and is retried.
    let mut conn = ConnectionManager::new_lazy_with_config(client, config)?;
    let prefixes = [format!("{namespace}:"), format!("{namespace}#tag:")];
    let mut on = enable(&mut conn, &prefixes, local, op_timeout).await;
    if !on {
        tracing::warn!("aside: Redis client tracking is off; the in-process tier is bypassed until it is on");
    }
    let local = Arc::downgrade(local);
    tokio::spawn(async move {
        loop {
            let pause = if on { HEARTBEAT } else { RETRY };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // A disconnection: the tier is already flushed.
                () = wake.notified() => on = false,
            }
            let Some(local) = local.upgrade() else { return };
            if on && !tracking_on(&mut conn, op_timeout).await {
                local.lost();
                on = false;
            }
            if !on {
                on = enable(&mut conn, &prefixes, &local, op_timeout).await;
            }
        }
    });
    Ok(())
}

/// One push from Redis.
fn pushed(local: &Local, push: PushInfo, wake: &Notify) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(names)) => local.changed(names.iter().filter_map(|name| match name {
                Value::BulkString(name) => std::str::from_utf8(name).ok(),
                _ => None,
            })),
            // FLUSHALL or FLUSHDB.
            _ => local.changed_all(),
        },
        PushKind::Disconnection => {
            local.lost();
            wake.notify_one();
        }
        _ => {}
    }
}

/// Turns tracking on; once Redis has acknowledged it, the tier is trusted
/// again, unless coherence was lost meanwhile.
///
/// Off first, in the same round trip: an earlier attempt that timed out
/// here may still have reached Redis and turned tracking on, and Redis
/// refuses to turn it on again with the same prefixes ("overlaps with an
/// existing prefix"), which would leave the tier bypassed for good. The
/// pushes missed between off and on do not matter: the tier is bypassed
/// until this returns.
async fn enable(
    conn: &mut ConnectionManager,
    prefixes: &[String; 2],
    local: &Local,
    op_timeout: Duration,
) -> bool {
    let epoch = local.epoch();
    let mut on = redis::cmd("CLIENT");
    on.arg("TRACKING").arg("ON").arg("BCAST");
    for prefix in prefixes {
        on.arg("PREFIX").arg(prefix);
    }
    let mut pipe = redis::pipe();
    pipe.cmd("CLIENT")
        .arg("TRACKING")
        .arg("OFF")
        .ignore()
        .add_command(on)
        .ignore();
    match tokio::time::timeout(op_timeout, pipe.query_async::<()>(conn)).await {
        Ok(Ok(())) => {
            local.restored(epoch);
            true
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "aside: enabling Redis client tracking failed");
            false
        }
        Err(_) => false,
    }
}

/// Whether the connection still tracks (`CLIENT TRACKINGINFO` lists the
/// flag `on`).
async fn tracking_on(conn: &mut ConnectionManager, op_timeout: Duration) -> bool {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("TRACKINGINFO");
    match tokio::time::timeout(op_timeout, cmd.query_async::<Value>(conn)).await {
        Ok(Ok(info)) => flags_on(&info),
        _ => false,
    }
}

fn flags_on(info: &Value) -> bool {
    let Value::Map(fields) = info else {
        return false;
    };
    let is = |value: &Value, text: &str| match value {
        Value::BulkString(b) => b == text.as_bytes(),
        Value::SimpleString(s) => s == text,
        _ => false,
    };
    fields.iter().any(|(name, flags)| {
        is(name, "flags")
            && match flags {
                Value::Array(flags) | Value::Set(flags) => flags.iter().any(|flag| is(flag, "on")),
                _ => false,
            }
    })
}
