//! The identity of a unit of work (an invocation's inline rows, an SQS message, a source
//! object, a whole-prefix job) as a table's snapshot summaries record it: what makes an
//! append exactly once. Expiring snapshots (this function's step, Athena's `VACUUM`, the Glue
//! Data Catalog's retention) removes their summaries, so each commit also leaves a small
//! marker per identity beside the table, kept for the exactly-once horizon: a table whose
//! retained snapshots no longer cover the horizon is asked for those too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iceberg::table::Table;

/// The snapshot summary property holding the identities of the work a snapshot committed,
/// one per line (an SQS batch's messages share one snapshot).
pub const IDENTITY: &str = "rows-to-parquet.identity";

/// The snapshot of `table` that committed the work `identity`, if any.
pub fn committed(table: &Table, identity: &str) -> Option<i64> {
    table
        .metadata()
        .snapshots()
        .find(|s| {
            s.summary()
                .additional_properties
                .get(IDENTITY)
                .is_some_and(|recorded| recorded.lines().any(|r| r == identity))
        })
        .map(|s| s.snapshot_id())
}

/// The property's value for a snapshot of all of `identities`.
pub fn record<'a>(identities: impl IntoIterator<Item = &'a str>) -> String {
    identities.into_iter().collect::<Vec<_>>().join("\n")
}

/// How long work stays recognised after its commit (`EXACTLY_ONCE_DAYS`): SQS's longest
/// retention, so any redelivery falls inside it.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(14 * 24 * 3600);

/// Where a table's markers of committed work live: beside its location, not under it, so no
/// engine's orphan-file clean-up (this function's, Athena's `VACUUM`, the Glue Data Catalog's
/// optimizer) takes them for files of the table.
pub fn markers_folder(location: &str) -> String {
    format!(
        "{}.rows-to-parquet/committed/",
        location.trim_end_matches('/')
    )
}

/// The marker of the work `identity` in a table at `location`: named for the SHA-256 of the
/// identity (any identity is then a valid key).
pub fn marker(location: &str, identity: &str) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, identity.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{}{hex}", markers_folder(location))
}

/// Whether `table`'s retained snapshots alone tell what it committed within `horizon` of
/// `now`: its first snapshot is still there (sequence number 1; not a parent that is absent,
/// which an engine's expiry may clear), or its oldest retained one is older than the horizon.
/// Otherwise snapshots within the horizon were expired, and the markers tell the rest (always
/// for a format v1 table, whose snapshots carry no sequence number).
pub fn covered(table: &Table, horizon: Duration, now: SystemTime) -> bool {
    let metadata = table.metadata();
    let Some(oldest) = metadata.snapshots().min_by_key(|s| s.sequence_number()) else {
        return true;
    };
    let bound = now
        .checked_sub(horizon)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    oldest.sequence_number() == 1 || oldest.timestamp_ms() < bound
}

/// What a marker holds: the snapshot that committed the work, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marked {
    pub snapshot_id: i64,
    pub committed_ms: i64,
}
