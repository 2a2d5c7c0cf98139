//! The identity of a unit of work (an invocation's inline rows, an SQS message, a source
//! object) as a table's snapshot summaries record it: what makes an append exactly once.

use iceberg::table::Table;

/// The snapshot summary property holding the identity of the work a snapshot committed.
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
                .map(String::as_str)
                == Some(identity)
        })
        .map(|s| s.snapshot_id())
}
