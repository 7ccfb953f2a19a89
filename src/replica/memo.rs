//! Which bucket meta.json each live set was last compared with, so that a
//! run's listing needs no GET for a set this replica already holds.

use crate::store::Store;

fn seen_path(name: &str) -> String {
    format!("replica/{name}.etag")
}

/// `s3://bucket/key etag serial`: the bucket's meta.json for `name` when
/// this replica last read it (and found it not newer, or installed it) or
/// published it, and the serial of the local live set then. With the
/// object in it, another target's record never passes for the
/// coordination bucket's; with the serial, a local set damaged or replaced
/// since is pulled again.
pub(super) fn seen(store: &Store, name: &str) -> Option<String> {
    let bytes = store.read_state(&seen_path(name)).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// A lost or wrong record only costs one GET at the next run.
pub fn remember_etag(store: &Store, name: &str, object: &str, etag: &str, serial: &str) {
    let line = format!("{object} {etag} {serial}");
    if !etag.is_empty()
        && seen(store, name).as_deref() != Some(line.as_str())
        && let Err(e) = store.write_state(&seen_path(name), line.as_bytes())
    {
        tracing::warn!(event = "replica.etag.unsaved", cert = %name, error = %e);
    }
}
