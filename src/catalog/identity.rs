//! The identity of a unit of work (an invocation's inline rows, an SQS message, a source
//! object, a whole-prefix job) as a table's snapshot summaries record it: what makes an
//! append exactly once.

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
