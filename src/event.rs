//! The event contract: `{"rows": [...], "targets": [...]}`, validated into typed values.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::Error;
use crate::rows::Rows;
use crate::target::{Target, parse_targets};

/// A validated event: at least one row, every row an object, borrowing the event's bytes.
#[derive(Debug)]
pub struct Event<'a> {
    pub rows: Rows<'a>,
    /// `None` when the event has no `targets`: the function's `DEFAULT_TARGETS` apply.
    pub targets: Option<Vec<Target>>,
}

/// Parses and validates an event's bytes in one pass (the rows go straight onto a tape).
///
/// # Errors
/// `InvalidEvent` for malformed JSON (with line and column), a body that is not an object, an
/// unknown or repeated top-level field, and `rows` that is missing, not an array, empty, or
/// holds a non-object (naming its index) or an object with a repeated key; target errors as
/// [`parse_targets`].
///
/// ```
/// let event = rows_to_parquet::event::parse(
///     br#"{"rows": [{"name": "John Doe", "age": 30}],
///          "targets": [{"prefix": "s3://my-bucket/out/", "compression": "snappy"}]}"#,
/// ).unwrap();
/// assert_eq!(event.rows.len(), 1);
/// assert_eq!(event.targets.unwrap()[0].prefix.key_prefix, "out/");
/// ```
pub fn parse(bytes: &[u8]) -> Result<Event<'_>, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parts = EventVisitor
        .deserialize(&mut deserializer)
        .and_then(|parts| deserializer.end().map(|()| parts))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Error::InvalidEvent(e.to_string()),
            _ => Error::InvalidEvent(format!("the event is not valid JSON: {e}")),
        })?;
    let rows = parts
        .rows
        .ok_or_else(|| Error::InvalidEvent("the event has no `rows` array".into()))?;
    if rows.is_empty() {
        return Err(Error::InvalidEvent(
            "`rows` is empty: there is nothing to write".into(),
        ));
    }
    let targets = parts
        .targets
        .filter(|t| t.get() != "null")
        .map(|t| parse_targets(t.get(), "targets"))
        .transpose()?;
    Ok(Event { rows, targets })
}

/// The top-level fields, each left to its own parser.
struct Parts<'a> {
    rows: Option<Rows<'a>>,
    targets: Option<&'a RawValue>,
}

struct EventVisitor;

impl<'de> DeserializeSeed<'de> for EventVisitor {
    type Value = Parts<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parts<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Parts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the event: a JSON object with `rows` and optionally `targets`")
    }

    // Other JSON types are refused here rather than by serde, whose message would quote them.
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Parts<'de>, A::Error> {
        not_an_object("an array")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Parts<'de>, E> {
        not_an_object("null")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Parts<'de>, E> {
        not_an_object("a boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Parts<'de>, E> {
        not_an_object("a number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Parts<'de>, E> {
        not_an_object("a number")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Parts<'de>, E> {
        not_an_object("a string")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parts<'de>, A::Error> {
        let mut parts = Parts {
            rows: None,
            targets: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "rows" if parts.rows.is_some() => return Err(twice("rows")),
                "rows" => parts.rows = Some(map.next_value_seed(Rows::seed())?),
                "targets" if parts.targets.is_some() => return Err(twice("targets")),
                "targets" => parts.targets = Some(map.next_value()?),
                // Rejected so a typo such as `target` fails loudly instead of silently
                // writing to the default targets.
                other => {
                    return Err(de::Error::custom(format_args!(
                        "unknown field `{other}` in the event (expected `rows` and optionally `targets`)"
                    )));
                }
            }
        }
        Ok(parts)
    }
}

fn not_an_object<'de, E: de::Error>(what: &str) -> Result<Parts<'de>, E> {
    Err(E::custom(format_args!(
        "the event must be a JSON object with `rows` and optionally `targets`, not {what}"
    )))
}

fn twice<E: de::Error>(field: &str) -> E {
    E::custom(format_args!("the event has `{field}` twice"))
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
        let row = e.rows.starts().next().unwrap();
        assert_eq!(
            e.rows.members(row).map(|(k, _)| k).collect::<Vec<_>>(),
            ["z", "a", "m"]
        );
    }

    #[test]
    fn bad_events_are_invalid_event_with_a_clear_message() {
        for (json, word) in [
            ("", "not valid JSON"),
            ("{\"rows\": [", "not valid JSON"),
            (r#"{"rows": [{"a": 1}]} x"#, "not valid JSON"),
            ("[1,2]", "must be a JSON object with `rows`"),
            (r#""secret""#, "not a string"),
            ("{}", "no `rows`"),
            (r#"{"rows": null}"#, "not null"),
            (r#"{"rows": {"a": 1}}"#, "must be an array of objects"),
            (
                r#"{"rows": [{"a": 1}], "rows": [{"a": 1}]}"#,
                "`rows` twice",
            ),
            (
                r#"{"rows": [{"a": 1, "a": 2}]}"#,
                "row 0: key `a` appears twice",
            ),
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
