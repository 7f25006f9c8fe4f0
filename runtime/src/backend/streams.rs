//! What the backend layer offers the features above the cache that talk to
//! Redis directly (write-behind's logs): commands and scripts, within the
//! cache's operation timeout. Defined here, so that the backends implement
//! it without knowing who uses it.

use redis::{Script, Value};

use crate::backend::BoxFuture;
use crate::error::BackendError;

/// Commands and scripts on Redis. Implemented by the Redis backends,
/// single-node and cluster.
pub(crate) trait Streams: Send + Sync + 'static {
    /// Sends `cmd` (routed by its first key on a cluster), within the
    /// cache's operation timeout.
    fn command(&self, cmd: redis::Cmd) -> BoxFuture<'_, Result<Value, BackendError>>;

    /// Runs `script` with `keys` and `args`, within the operation timeout.
    fn script(
        &self,
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    ) -> BoxFuture<'_, Result<Value, BackendError>>;
}
