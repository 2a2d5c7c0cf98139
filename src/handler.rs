//! One invocation: validate the whole event, build every object in memory, then write them
//! all or none.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_schema::Schema;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::Config;
use crate::store::{Object, S3Store, Stored};
use crate::target::Target;
use crate::{Error, ddl, encode, event};

/// S3's limit on a key's length in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Time kept back from the invocation deadline to delete partial output and answer.
pub const CLEANUP_RESERVE: Duration = Duration::from_secs(3);

/// The invocation's deadline from the runtime's milliseconds since the Unix epoch. `0`, or a
/// time already past on arrival (from a tool that does not model deadlines, such as cargo
/// lambda's emulator; Lambda's is always ahead), means none.
fn deadline_from(deadline_ms: u64, now: SystemTime) -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_millis(deadline_ms)).filter(|deadline| *deadline > now)
}

/// How long the PUTs may take: the time left before the deadline less [`CLEANUP_RESERVE`];
/// `None` without a deadline.
fn write_budget(deadline: Option<SystemTime>, now: SystemTime) -> Result<Option<Duration>, Error> {
    let Some(deadline) = deadline else {
        return Ok(None);
    };
    let left = deadline.duration_since(now).unwrap_or_default();
    match left.checked_sub(CLEANUP_RESERVE) {
        Some(budget) if !budget.is_zero() => Ok(Some(budget)),
        _ => Err(Error::S3WriteFailed(format!(
            "only {} ms were left before the invocation deadline, less than the {} ms kept to clean up; nothing was written (raise the function's timeout)",
            left.as_millis(),
            CLEANUP_RESERVE.as_millis()
        ))),
    }
}

/// The function's state, built once in `main` and shared by every invocation.
#[derive(Debug)]
pub struct Function {
    store: S3Store,
    config: Config,
}

/// What a successful invocation returns.
#[derive(Debug, Serialize)]
pub struct Response {
    pub rows: usize,
    pub objects: Vec<Written>,
    /// Only for `"dry_run": true`, when nothing was written.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The schema written (declared or inferred); only for a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaDescription>,
}

/// A schema as Spark DDL and as the JSON list form an event's `schema` also accepts.
#[derive(Debug, Serialize)]
pub struct SchemaDescription {
    pub ddl: String,
    pub fields: Vec<SchemaField>,
}

#[derive(Debug, Serialize)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

impl SchemaDescription {
    fn of(schema: &Schema) -> SchemaDescription {
        SchemaDescription {
            ddl: ddl::to_spark(schema),
            fields: schema
                .fields()
                .iter()
                .map(|f| SchemaField {
                    name: f.name().clone(),
                    data_type: ddl::spark_type(f.data_type()),
                    nullable: f.is_nullable(),
                })
                .collect(),
        }
    }
}

/// One object written, in the order of the targets.
#[derive(Debug, Serialize)]
pub struct Written {
    pub uri: String,
    pub bucket: String,
    pub key: String,
    pub compression: &'static str,
    pub bytes: usize,
    pub rows: usize,
    /// `None` in a dry run.
    pub etag: Option<String>,
    /// The CRC32C (base64) sent with the PUT and verified by S3; `None` in a dry run.
    pub checksum_crc32c: Option<String>,
    /// An Athena `CREATE EXTERNAL TABLE` for the target's folder; only in a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub athena_ddl: Option<String>,
}

impl Function {
    pub fn new(store: S3Store, config: Config) -> Function {
        Function { store, config }
    }

    /// Handles one event. The payload is taken raw so that every shape error is ours to
    /// report (as `InvalidEvent`) rather than the runtime's.
    ///
    /// # Errors
    /// Any [`Error`]; for all but `S3WriteFailed` nothing was written, and for that one what
    /// was written has been removed.
    pub async fn handle(&self, event: LambdaEvent<Box<RawValue>>) -> Result<Response, Error> {
        let context = &event.context;
        self.invoke(
            event.payload.get().as_bytes(),
            &context.request_id,
            context.deadline,
        )
        .await
    }

    /// Handles one event's bytes as they arrived, logging one summary line. The runtime only
    /// passes well-formed JSON to [`Function::handle`]; this takes any bytes, so tests can show
    /// what any input does.
    ///
    /// # Errors
    /// As [`Function::handle`].
    ///
    /// `deadline_ms` is the invocation's deadline in milliseconds since the Unix epoch (0, or a
    /// time already past, for none): the PUTs get the time left minus [`CLEANUP_RESERVE`].
    pub async fn invoke(
        &self,
        payload: &[u8],
        request_id: &str,
        deadline_ms: u64,
    ) -> Result<Response, Error> {
        let started = Instant::now();
        let deadline = deadline_from(deadline_ms, SystemTime::now());
        let result = self.run(payload, request_id, deadline).await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(response) => tracing::info!(
                request_id,
                rows = response.rows,
                objects = response.objects.len(),
                dry_run = response.dry_run,
                bytes = ?response.objects.iter().map(|o| o.bytes).collect::<Vec<_>>(),
                keys = ?response.objects.iter().map(|o| o.uri.as_str()).collect::<Vec<_>>(),
                ms,
                "built parquet"
            ),
            Err(e) => {
                tracing::warn!(request_id, error_type = e.error_type(), error = %e, ms, "invocation failed")
            }
        }
        crate::memory::release_freed();
        result
    }

    async fn run(
        &self,
        payload: &[u8],
        request_id: &str,
        deadline: Option<SystemTime>,
    ) -> Result<Response, Error> {
        let started = Instant::now();
        let event = event::parse(payload)?;
        let parse_time = started.elapsed();
        let targets = self.config.resolve_targets(event.targets)?;
        let keys = targets
            .iter()
            .enumerate()
            .map(|(i, t)| object_key(t, i, request_id))
            .collect::<Result<Vec<_>, _>>()?;
        let codecs: Vec<_> = targets.iter().map(|t| t.codec).collect();
        let dry_run = event.dry_run;
        let encoded =
            encode::rows_to_parquet(event.rows, event.schema, event.unknown_keys, &codecs)?;
        tracing::debug!(
            request_id,
            parse_ms = parse_time.as_secs_f64() * 1e3,
            build_ms = encoded.build_time.as_secs_f64() * 1e3,
            encode_ms = encoded.encode_time.as_secs_f64() * 1e3,
            "converted"
        );
        let objects: Vec<Object> = targets
            .iter()
            .zip(keys)
            .map(|(target, key)| Object {
                bucket: target.prefix.bucket.clone(),
                key,
                body: encoded
                    .file(target.codec)
                    .expect("every target's codec was encoded")
                    .clone(),
            })
            .collect();
        let rows = encoded.rows;
        let schema = encoded.schema.clone();
        drop(encoded);
        if dry_run {
            let objects = objects
                .into_iter()
                .zip(&targets)
                .map(|(object, target)| {
                    let athena = ddl::athena_create_table(&schema, &target.prefix.to_string());
                    Written::new(object, target, rows, Stored::default(), Some(athena))
                })
                .collect();
            return Ok(Response {
                rows,
                objects,
                dry_run,
                schema: Some(SchemaDescription::of(&schema)),
            });
        }
        let budget = write_budget(deadline, SystemTime::now())?;
        let stored = self.store.put_all(&objects, budget).await?;
        let objects = objects
            .into_iter()
            .zip(stored)
            .zip(&targets)
            .map(|((object, stored), target)| Written::new(object, target, rows, stored, None))
            .collect();
        Ok(Response {
            rows,
            objects,
            dry_run,
            schema: None,
        })
    }
}

impl Written {
    fn new(
        object: Object,
        target: &Target,
        rows: usize,
        stored: Stored,
        athena_ddl: Option<String>,
    ) -> Written {
        Written {
            uri: object.uri(),
            bytes: object.body.len(),
            bucket: object.bucket,
            key: object.key,
            compression: target.codec.name(),
            rows,
            etag: stored.etag,
            checksum_crc32c: stored.checksum_crc32c,
            athena_ddl,
        }
    }
}

/// `<prefix>part-00000-<request id>-c000<suffix>`: Spark's naming for a single-partition
/// write; the request id makes a retried invocation overwrite its own objects.
fn object_key(target: &Target, index: usize, request_id: &str) -> Result<String, Error> {
    let key = format!(
        "{}part-00000-{request_id}-c000{}",
        target.prefix.key_prefix,
        target.codec.file_suffix()
    );
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidTarget(format!(
            "targets[{index}].prefix: the object key would be {} bytes, over S3's {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(key)
}

impl From<Error> for Diagnostic {
    fn from(error: Error) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type().into(),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_budget_keeps_time_to_clean_up() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs: u64| Some(now + Duration::from_secs(secs));
        assert_eq!(write_budget(None, now).unwrap(), None);
        assert_eq!(
            write_budget(at(60), now).unwrap(),
            Some(Duration::from_secs(57))
        );
        // A deadline that passes while the objects are built leaves no time either.
        let passed = Some(now - Duration::from_millis(5));
        for deadline in [at(3), at(1), passed] {
            let err = write_budget(deadline, now).unwrap_err();
            assert_eq!(err.error_type(), "S3WriteFailed");
            assert!(err.to_string().contains("nothing was written"), "{err}");
        }
    }

    #[test]
    fn no_deadline_or_one_already_past_on_arrival_means_none() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(deadline_from(0, now), None);
        assert_eq!(deadline_from(1_000_000 * 1000, now), None);
        assert_eq!(
            deadline_from(1_000_060 * 1000, now),
            Some(now + Duration::from_secs(60))
        );
    }
}
