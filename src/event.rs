//! The event contract: `{"rows": [...], "targets": [...]}`, validated into typed values.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::Error;
use crate::error::json_type;
use crate::target::{Target, parse_targets};

/// One row: column name to JSON value, in the order the event gave the keys.
pub type Row = Map<String, Value>;

/// A validated event: at least one row, every row an object.
#[derive(Debug)]
pub struct Event {
    pub rows: Vec<Row>,
    /// `None` when the event has no `targets`: the function's `DEFAULT_TARGETS` apply.
    pub targets: Option<Vec<Target>>,
}

/// Parses and validates an event's bytes.
///
/// # Errors
/// `InvalidEvent` for malformed JSON (with line and column), a body that is not an object, an
/// unknown top-level field, and `rows` that is missing, not an array, empty, or holds a
/// non-object (naming its index); target errors as [`parse_targets`].
///
/// ```
/// let event = rows_to_parquet::event::parse(
///     br#"{"rows": [{"name": "John Doe", "age": 30}],
///          "targets": [{"prefix": "s3://my-bucket/out/", "compression": "snappy"}]}"#,
/// ).unwrap();
/// assert_eq!(event.rows.len(), 1);
/// assert_eq!(event.targets.unwrap()[0].prefix.key_prefix, "out/");
/// ```
pub fn parse(bytes: &[u8]) -> Result<Event, Error> {
    // A map (not a derived struct, which serde would also fill from a JSON array) of raw
    // fields: one pass checks the syntax and leaves each field for its own parser.
    let mut fields: BTreeMap<String, &RawValue> = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidEvent(format!("the event is not a valid JSON object: {e}")))?;
    let rows = fields.remove("rows");
    let targets = fields.remove("targets");
    // Unknown fields are rejected so a typo such as `target` fails loudly instead of silently
    // writing to the default targets.
    if let Some(unknown) = fields.keys().next() {
        return Err(Error::InvalidEvent(format!(
            "unknown field `{unknown}` in the event (expected `rows` and optionally `targets`)"
        )));
    }
    let rows = rows
        .filter(|r| r.get() != "null")
        .ok_or_else(|| Error::InvalidEvent("the event has no `rows` array".into()))?;
    let rows = match serde_json::from_str::<Value>(rows.get()) {
        Ok(Value::Array(rows)) => rows,
        Ok(other) => {
            return Err(Error::InvalidEvent(format!(
                "`rows` must be an array of objects, not a JSON {}",
                json_type(&other)
            )));
        }
        Err(e) => return Err(Error::InvalidEvent(format!("`rows`: {e}"))),
    };
    if rows.is_empty() {
        return Err(Error::InvalidEvent(
            "`rows` is empty: there is nothing to write".into(),
        ));
    }
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| match row {
            Value::Object(map) => Ok(map),
            other => Err(Error::InvalidEvent(format!(
                "row {i} is a JSON {}, not an object",
                json_type(&other)
            ))),
        })
        .collect::<Result<Vec<Row>, Error>>()?;
    let targets = targets
        .filter(|t| t.get() != "null")
        .map(|t| parse_targets(t.get(), "targets"))
        .transpose()?;
    Ok(Event { rows, targets })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> Error {
        parse(json.as_bytes()).expect_err(json)
    }

    #[test]
    fn keeps_key_order_and_optional_targets() {
        let e = parse(br#"{"rows":[{"z":1,"a":2,"m":3}]}"#).unwrap();
        assert!(e.targets.is_none());
        assert_eq!(e.rows[0].keys().collect::<Vec<_>>(), ["z", "a", "m"]);
    }

    #[test]
    fn bad_events_are_invalid_event_with_a_clear_message() {
        for (json, word) in [
            ("", "not a valid JSON"),
            ("{\"rows\": [", "not a valid JSON"),
            ("[1,2]", "not a valid JSON object"),
            ("{}", "no `rows`"),
            (r#"{"rows": null}"#, "no `rows`"),
            (r#"{"rows": {"a": 1}}"#, "not a JSON object"),
            (r#"{"rows": []}"#, "empty"),
            (r#"{"rows": [{"a": 1}, [1]]}"#, "row 1 is a JSON array"),
            (
                r#"{"rows": [{"a": 1}, {"a": 2}, "x"]}"#,
                "row 2 is a JSON string",
            ),
            (
                r#"{"rows": [{"a": 1}], "target": []}"#,
                "unknown field `target`",
            ),
        ] {
            let e = err(json);
            assert_eq!(e.error_type(), "InvalidEvent", "{json}: {e}");
            assert!(e.to_string().contains(word), "{json}: {e}");
        }
    }

    #[test]
    fn target_errors_surface_as_invalid_target() {
        let e =
            err(r#"{"rows":[{"a":1}],"targets":[{"prefix":"s3://b-1/x","compression":"lzo"}]}"#);
        assert_eq!(e.error_type(), "InvalidTarget");
        assert!(e.to_string().contains("lzo"), "{e}");
    }

    #[test]
    fn row_values_never_appear_in_messages() {
        let e = err(r#"{"rows":[{"a":1},"top-secret-value"]}"#);
        assert!(!e.to_string().contains("top-secret-value"), "{e}");
    }
}
