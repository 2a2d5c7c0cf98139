//! How far each stream shard (or Kafka topic-partition) has been committed to a table: what
//! makes a stream's records land in it exactly once, whatever Lambda redelivers or re-splits.
//!
//! Each snapshot this function commits from a stream batch records, in its summary, the
//! highest position committed for every shard of every stream that ever fed the table
//! (carried forward from the newest snapshot that recorded them, the batch's own shards
//! raised), so the table's latest marks are in one summary, found without reading a manifest.
//! Snapshots other writers commit (another engine's compaction) do not carry them: the newest
//! snapshot that does is looked for. Expiry may remove every snapshot that does (an engine
//! that knows nothing of them, keeping the last one): each commit also leaves a marker per
//! shard beside the table, read only then. Marks not raised within the exactly-once horizon
//! are dropped when carried, which bounds the summary when shards close (resharding).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use iceberg::table::Table;
use serde::{Deserialize, Serialize};

/// The snapshot summary property holding the marks, as JSON.
pub const MARKS: &str = "rows-to-parquet.streams";

/// Per stream, per shard: the highest position committed, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks(pub BTreeMap<String, BTreeMap<String, Mark>>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The position (sequence number or offset) in decimal.
    #[serde(rename = "p")]
    pub position: String,
    /// When it was committed, in milliseconds since the Unix epoch.
    #[serde(rename = "t")]
    pub committed_ms: i64,
}

impl Marks {
    /// The marks of `table`'s newest snapshot that records them (`None` when none retained
    /// does).
    pub fn carried(table: &Table) -> Option<Marks> {
        let metadata = table.metadata();
        let mut snapshots: Vec<_> = metadata.snapshots().collect();
        snapshots.sort_by_key(|s| std::cmp::Reverse((s.sequence_number(), s.timestamp_ms())));
        snapshots.iter().find_map(|s| {
            let recorded = s.summary().additional_properties.get(MARKS)?;
            serde_json::from_str(recorded).ok()
        })
    }

    /// The position committed for `shard` of `stream`, if any.
    pub fn get(&self, stream: &str, shard: &str) -> Option<&Mark> {
        self.0.get(stream)?.get(shard)
    }

    /// Raises `shard`'s mark to `position` (never lowers it).
    pub fn raise(&mut self, stream: &str, shard: &str, position: &str, committed_ms: i64) {
        let shards = self.0.entry(stream.to_owned()).or_default();
        match shards.get_mut(shard) {
            Some(mark) if compare_positions(&mark.position, position).is_ge() => {}
            _ => {
                shards.insert(
                    shard.to_owned(),
                    Mark {
                        position: position.to_owned(),
                        committed_ms,
                    },
                );
            }
        }
    }

    /// The property's value: the marks raised within `horizon` of `now_ms`.
    pub fn record(&self, horizon: Duration, now_ms: i64) -> String {
        let horizon_ms = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
        let oldest = now_ms.saturating_sub(horizon_ms);
        let kept: BTreeMap<_, BTreeMap<_, _>> = (self.0.iter())
            .map(|(stream, shards)| {
                let fresh = shards.iter().filter(|(_, m)| m.committed_ms >= oldest);
                (stream, fresh.collect())
            })
            .filter(|(_, shards): &(_, BTreeMap<_, _>)| !shards.is_empty())
            .collect();
        serde_json::to_string(&kept).expect("marks serialize")
    }
}

/// Compares two positions' texts (sequence numbers, offsets) as the decimal numbers they are.
pub fn compare_positions(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A stream batch's shard in one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub stream: String,
    pub shard: String,
    /// The mark the batch's records were filtered against: still the table's at the commit,
    /// or the commit is refused.
    pub from: Option<String>,
    /// The highest position the commit holds.
    pub to: String,
}

/// The identity a shard's marker is named for, among the markers of committed work.
pub fn marker_identity(stream: &str, shard: &str) -> String {
    format!("stream {stream} shard {shard}")
}

/// What a shard's marker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMarker {
    pub position: String,
    pub snapshot_id: i64,
    pub committed_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_rise_and_stale_ones_are_dropped_when_recorded() {
        let mut marks = Marks::default();
        marks.raise("s", "shard-1", "100", 1_000);
        marks.raise("s", "shard-1", "99", 2_000);
        assert_eq!(marks.get("s", "shard-1").unwrap().position, "100");
        marks.raise("s", "shard-1", "1000", 3_000);
        assert_eq!(marks.get("s", "shard-1").unwrap().position, "1000");
        marks.raise("s", "shard-0", "5", 10);
        marks.raise("k", "t-0", "7", 3_000);
        let recorded: Marks =
            serde_json::from_str(&marks.record(Duration::from_secs(1), 3_500)).unwrap();
        assert_eq!(recorded.get("s", "shard-1").unwrap().position, "1000");
        assert_eq!(recorded.get("k", "t-0").unwrap().committed_ms, 3_000);
        assert!(
            recorded.get("s", "shard-0").is_none(),
            "older than the horizon"
        );
    }

    #[test]
    fn positions_compare_as_numbers() {
        assert_eq!(compare_positions("99", "100"), Ordering::Less);
        assert_eq!(compare_positions("0100", "100"), Ordering::Equal);
        assert_eq!(
            compare_positions(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
    }
}
