//! A whole-prefix job's plan: the objects under a prefix listed once and grouped, in key
//! order, into batches of about `batch_bytes` of input each (as Glue's `groupSize` groups
//! small files), written as one JSON array that the Distributed Map reads with its
//! `ItemReader` (`s3:getObject`, JSON): each element is one child execution's `Items`. A batch
//! writes one file per partition per target for all its objects, so the plan decides the
//! files' sizes. Beside the plan go the batches' identities, which the job's finish step reads
//! to find every batch's manifest.

use std::time::SystemTime;

use serde::Serialize;

use super::Function;
use super::conversion::make_visible;
use super::reply::{Planned, Reply};
use super::stream::batch_identity;
use crate::Error;
use crate::input::plan::Plan;
use crate::input::target::S3Prefix;
use crate::store::s3::{Listed, S3Store};
use crate::store::transaction::{PART_BYTES, Transaction, with_leftovers};

/// The plan's name in the run's folder.
pub const PLAN_FILE: &str = "plan.json";

/// The planned batches' identities (a JSON array), in the run's folder: what the finish
/// step reads, small whatever the plan holds.
pub const IDS_FILE: &str = "batch-ids.json";

/// The batches' manifests' folder in the run's folder.
pub const BATCHES: &str = "batches/";

/// A planned batch's `Items` as JSON at most: a child execution's input (its items and the
/// `BatchInput`) may not pass 256 KiB, and the `BatchInput` needs the rest.
const ITEMS_JSON_LIMIT: usize = 192 << 10;

/// One object of a planned batch, as the Distributed Map's own S3 listing names its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedItem {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Etag", skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(rename = "Size")]
    pub size: u64,
}

/// One element of the plan: one child execution's input, with the map's `BatchInput`.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct PlannedBatch {
    #[serde(rename = "Items")]
    pub items: Vec<PlannedItem>,
}

impl PlannedBatch {
    /// The batch's identity, as the batch computes it from its items (see
    /// [`batch_identity`]).
    pub fn identity(&self, bucket: &str) -> String {
        let uris = self.items.iter().map(|item| {
            let uri = format!("s3://{bucket}/{}", item.key);
            (uri, item.etag.as_deref())
        });
        batch_identity(uris)
    }
}

/// Groups objects, in the order pushed, into batches: a batch is closed before the next
/// object would take it past `batch_bytes` (an object larger than that is a batch of its
/// own), `max_items` objects, or 192 KiB of item JSON. It holds one open batch only.
///
/// ```
/// use rows_to_parquet::handler::plan::{Grouper, PlannedItem};
/// let item = |key: &str, size| PlannedItem { key: key.into(), etag: None, size };
/// let mut grouper = Grouper::new(100, 10);
/// let objects = [item("a", 60), item("b", 30), item("c", 200), item("e", 1)];
/// let mut batches: Vec<_> = objects.into_iter().filter_map(|o| grouper.push(o)).collect();
/// batches.extend(grouper.finish());
/// let keys: Vec<Vec<&str>> = batches.iter().map(|b| b.items.iter().map(|i| i.key.as_str()).collect()).collect();
/// assert_eq!(keys, [vec!["a", "b"], vec!["c"], vec!["e"]]);
/// ```
pub struct Grouper {
    batch_bytes: u64,
    max_items: usize,
    items: Vec<PlannedItem>,
    bytes: u64,
    json: usize,
}

impl Grouper {
    pub fn new(batch_bytes: u64, max_items: usize) -> Grouper {
        Grouper {
            batch_bytes,
            max_items,
            items: Vec::new(),
            bytes: 0,
            json: 0,
        }
    }

    /// Adds `item` to the open batch; the batch closed first, when it would not fit.
    pub fn push(&mut self, item: PlannedItem) -> Option<PlannedBatch> {
        let item_json = serde_json::to_vec(&item).map_or(0, |v| v.len()) + 1;
        let full = !self.items.is_empty()
            && (self.bytes.saturating_add(item.size) > self.batch_bytes
                || self.items.len() >= self.max_items
                || self.json + item_json > ITEMS_JSON_LIMIT);
        let closed = full.then(|| {
            (self.bytes, self.json) = (0, 0);
            PlannedBatch {
                items: std::mem::take(&mut self.items),
            }
        });
        self.bytes = self.bytes.saturating_add(item.size);
        self.json += item_json;
        self.items.push(item);
        closed
    }

    /// The open batch, if it holds an object.
    pub fn finish(self) -> Option<PlannedBatch> {
        (!self.items.is_empty()).then_some(PlannedBatch { items: self.items })
    }
}

/// A part of the plan and the batch that passes it: allocated once a part, not grown.
const PLAN_BUFFER: usize = PART_BYTES + ITEMS_JSON_LIMIT + 1024;

/// The plan's JSON array as it grows, uploaded a part at a time: memory holds about a part
/// and a listing page, however many objects the prefix holds.
struct PlanFile {
    transaction: Transaction,
    index: usize,
    /// Where the identities go, beside the plan.
    ids_bucket: String,
    ids_key: String,
    body: Vec<u8>,
    /// Each batch's identity, for the finish step (see [`IDS_FILE`]).
    ids: Vec<String>,
    batches: usize,
    objects: usize,
    bytes: u64,
}

impl PlanFile {
    /// The plan at `s3://bucket/key`, its identities at `ids_key` in the same bucket;
    /// nothing sent yet.
    fn new(store: &S3Store, bucket: &str, key: &str, ids_key: &str) -> PlanFile {
        let mut transaction = Transaction::new(store);
        let index = transaction.add(bucket.to_owned(), key.to_owned());
        PlanFile {
            transaction,
            index,
            ids_bucket: bucket.to_owned(),
            ids_key: ids_key.to_owned(),
            body: Vec::with_capacity(PLAN_BUFFER),
            ids: Vec::new(),
            batches: 0,
            objects: 0,
            bytes: 0,
        }
    }

    /// Adds `batch` of objects in `bucket`.
    async fn add(&mut self, batch: PlannedBatch, bucket: &str) -> Result<(), Error> {
        self.ids.push(batch.identity(bucket));
        self.body.push(if self.batches == 0 { b'[' } else { b',' });
        serde_json::to_writer(&mut self.body, &batch).expect("a batch serializes");
        self.batches += 1;
        self.objects += batch.items.len();
        self.bytes += batch.items.iter().map(|i| i.size).sum::<u64>();
        if self.body.len() >= PART_BYTES {
            let part = std::mem::replace(&mut self.body, Vec::with_capacity(PLAN_BUFFER));
            self.transaction.part(self.index, part.into()).await?;
        }
        Ok(())
    }

    /// The array closed, and its last bytes handed to the transaction, with the identities
    /// beside it.
    async fn close(&mut self) -> Result<(), Error> {
        if self.batches == 0 {
            self.body.push(b'[');
        }
        self.body.push(b']');
        let last = std::mem::take(&mut self.body);
        self.transaction.last(self.index, last.into()).await?;
        let ids = serde_json::to_vec(&self.ids).expect("strings serialize");
        let index = self
            .transaction
            .add(self.ids_bucket.clone(), self.ids_key.clone());
        self.transaction.last(index, ids.into()).await
    }
}

/// Whether a listed object is planned: not a folder marker (a key ending in `/`), not empty
/// (nothing to convert), and not a file that Spark and Hive take for hidden (a name starting
/// with `_` or `.`, such as an upstream job's `_SUCCESS`).
pub fn planned(key: &str, size: u64) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    size > 0 && !name.is_empty() && !name.starts_with(['_', '.'])
}

impl Function {
    /// Lists the plan's prefix, groups its objects and writes the plan (see the module docs).
    ///
    /// # Errors
    /// `SourceNotAllowed` for a prefix outside `ALLOWED_SOURCES`; `TargetNotAllowed` for an
    /// output outside `ALLOWED_PREFIXES`; `InvalidEvent` for an output inside the listed
    /// prefix (a rerun would read the plan as input); `SourceReadFailed` when the listing
    /// fails; `S3WriteFailed` when the plan cannot be written.
    pub(super) async fn plan_job(
        &self,
        plan: Plan,
        deadline: Option<SystemTime>,
    ) -> Result<Reply, Error> {
        let source = plan.source();
        if let Some(allowed) = &self.config.allowed_sources
            && !allowed.allows_object(&plan.bucket, &plan.prefix)
        {
            return Err(Error::SourceNotAllowed(format!(
                "`plan` lists {source}, which is not inside ALLOWED_SOURCES ({}); nothing was listed",
                allowed.describe()
            )));
        }
        if let Some(allowed) = &self.config.allowed {
            allowed.check_folder(&plan.output, "`plan.output`")?;
        }
        if plan.output.bucket == plan.bucket && plan.output.key_prefix.starts_with(&plan.prefix) {
            return Err(Error::InvalidEvent(format!(
                "`plan.output` ({}) lies inside the listed {source}: a later run would read the plan and the manifests as input",
                plan.output
            )));
        }
        let key = format!("{}{PLAN_FILE}", plan.output.key_prefix);
        let ids = format!("{}{IDS_FILE}", plan.output.key_prefix);
        let mut file = PlanFile::new(&self.store, &plan.output.bucket, &key, &ids);
        let skipped = match self.write_plan(&plan, &mut file).await {
            Ok(skipped) => skipped,
            Err(e) => {
                let left = file.transaction.abort().await;
                return Err(with_leftovers(e, &left));
            }
        };
        make_visible(&mut file.transaction, false, deadline).await?;
        let manifests = S3Prefix {
            bucket: plan.output.bucket.clone(),
            key_prefix: format!("{}{BATCHES}", plan.output.key_prefix),
        };
        Ok(Reply::Planned {
            plan: Planned {
                bucket: plan.output.bucket,
                key,
                ids,
                source,
                manifests: manifests.to_string(),
                batches: file.batches,
                objects: file.objects,
                bytes: file.bytes,
                skipped,
            },
        })
    }

    /// Lists the plan's prefix a page at a time into `file`'s batches, and closes it; the
    /// objects left out.
    async fn write_plan(&self, plan: &Plan, file: &mut PlanFile) -> Result<usize, Error> {
        let failed = |why: String| {
            Error::SourceReadFailed(format!("listing {} failed: {why}", plan.source()))
        };
        let mut listing = self.store.listing(&plan.bucket, &plan.prefix);
        let mut grouper = Grouper::new(plan.batch_bytes, plan.max_items);
        let mut skipped = 0;
        while let Some(page) = listing.next_page().await.map_err(failed)? {
            for Listed {
                key, size, etag, ..
            } in page
            {
                if !planned(&key, size) {
                    skipped += 1;
                    continue;
                }
                if let Some(batch) = grouper.push(PlannedItem { key, etag, size }) {
                    file.add(batch, &plan.bucket).await?;
                }
            }
        }
        if let Some(batch) = grouper.finish() {
            file.add(batch, &plan.bucket).await?;
        }
        file.close().await?;
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, size: u64) -> PlannedItem {
        PlannedItem {
            key: key.into(),
            etag: Some(format!("\"{key}\"")),
            size,
        }
    }

    fn group(objects: Vec<PlannedItem>, batch_bytes: u64, max_items: usize) -> Vec<PlannedBatch> {
        let mut grouper = Grouper::new(batch_bytes, max_items);
        let mut batches: Vec<PlannedBatch> = objects
            .into_iter()
            .filter_map(|o| grouper.push(o))
            .collect();
        batches.extend(grouper.finish());
        batches
    }

    #[test]
    fn batches_follow_the_key_order_and_close_at_bytes_items_or_json() {
        let objects: Vec<PlannedItem> = (0..10).map(|i| item(&format!("k{i}"), 30)).collect();
        let sizes =
            |batches: &[PlannedBatch]| batches.iter().map(|b| b.items.len()).collect::<Vec<_>>();
        assert_eq!(sizes(&group(objects.clone(), 100, 100)), [3, 3, 3, 1]);
        assert_eq!(sizes(&group(objects.clone(), 1000, 4)), [4, 4, 2]);
        let all = group(objects.clone(), 1000, 100);
        assert_eq!(all[0].items, objects, "every object once, in order");
        // Keys of 1,000 bytes: the items' JSON closes a batch long before 1,000 items.
        let long: Vec<PlannedItem> = (0..1000).map(|i| item(&format!("{i:01000}"), 1)).collect();
        let batches = group(long, u64::MAX, 1000);
        assert!(batches.len() > 1);
        for batch in &batches {
            let json = serde_json::to_vec(batch).unwrap().len();
            assert!(json <= ITEMS_JSON_LIMIT + 16, "{json}");
        }
        assert_eq!(batches.iter().map(|b| b.items.len()).sum::<usize>(), 1000);
    }

    #[test]
    fn folder_markers_empty_objects_and_hidden_files_are_not_planned() {
        assert!(planned("in/2024/a.ndjson", 1));
        assert!(planned("a.ndjson", 1));
        assert!(
            planned("in/_dir/a.ndjson", 1),
            "only the name itself counts"
        );
        for (key, size) in [
            ("in/2024/", 0),
            ("in/2024/a.ndjson", 0),
            ("in/2024/_SUCCESS", 0),
            ("in/2024/_committed_1", 10),
            ("in/2024/.a.ndjson.crc", 10),
        ] {
            assert!(!planned(key, size), "{key}");
        }
    }

    #[test]
    fn a_planned_batch_has_the_identity_its_batch_computes() {
        let batch = PlannedBatch {
            items: vec![item("in/a", 1), item("in/b", 2)],
        };
        let listed = [
            ("s3://in/in/a".to_string(), Some("\"in/a\"")),
            ("s3://in/in/b".to_string(), Some("\"in/b\"")),
        ];
        assert_eq!(batch.identity("in"), batch_identity(listed));
        let other = PlannedBatch {
            items: vec![item("in/a", 1)],
        };
        assert_ne!(other.identity("in"), batch.identity("in"));
    }
}
