//! Property tests: random rows within the type rules go to Parquet in every codec and read
//! back (with the `parquet` crate) equal to the input; random rows of any shape either do
//! that or are refused with `InvalidEvent`, and never panic.

mod common;

use common::{read_parquet, same_data};
use proptest::prelude::*;
use rows_to_parquet::encode::codec::Codec;
use rows_to_parquet::encode::writer::{Partitioning, rows_to_parquet};
use rows_to_parquet::input::event;
use serde_json::{Map, Value, json};

/// A value of one column kind (or null), so every row fits the same inferred type.
fn value_of(kind: u8) -> BoxedStrategy<Value> {
    let value = match kind {
        0 => any::<i64>().prop_map(Value::from).boxed(),
        1 => (-1e12f64..1e12).prop_map(|f| json!(f)).boxed(),
        2 => any::<bool>().prop_map(Value::from).boxed(),
        3 => "\\PC{0,12}".prop_map(Value::from).boxed(),
        4 => prop::collection::vec(any::<i32>().prop_map(Value::from), 0..4)
            .prop_map(Value::from)
            .boxed(),
        _ => (any::<i16>(), "[a-z]{0,6}")
            .prop_map(|(n, s)| json!({"n": n, "s": s}))
            .boxed(),
    };
    prop_oneof![1 => Just(Value::Null), 4 => value].boxed()
}

/// Rows over up to 5 columns of fixed kinds; a column may be missing from a row.
fn typed_rows() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(0u8..6, 1..5).prop_flat_map(|kinds| {
        let row = kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| {
                (
                    Just(format!("c{i}")),
                    prop::option::weighted(0.9, value_of(kind)),
                )
            })
            .collect::<Vec<_>>();
        prop::collection::vec(row, 1..20).prop_map(|rows| {
            rows.into_iter()
                .map(|cells| {
                    let object: Map<String, Value> = cells
                        .into_iter()
                        .filter_map(|(name, value)| value.map(|v| (name, v)))
                        .collect();
                    Value::Object(object)
                })
                .collect()
        })
    })
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn convert(rows: &[Value]) -> Result<Vec<(Codec, bytes::Bytes)>, rows_to_parquet::Error> {
    let body = json!({ "rows": rows }).to_string();
    let event = event::parse(body.as_bytes())?;
    let rows = event.input.rows().expect("inline rows");
    let mut encoded = rows_to_parquet(
        rows,
        event.schema,
        event.unknown_keys,
        &Codec::ALL,
        Partitioning::NONE,
    )?;
    Ok(encoded.partitions.remove(0).files)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn typed_rows_round_trip_in_every_codec(rows in typed_rows()) {
        let all_empty = rows.iter().all(|r| r.as_object().is_some_and(Map::is_empty));
        match convert(&rows) {
            Ok(files) => {
                prop_assert_eq!(files.len(), Codec::ALL.len());
                for (codec, bytes) in files {
                    let (back, _) = read_parquet(bytes);
                    prop_assert!(same_data(&Value::Array(back.clone()), &Value::Array(rows.clone())),
                        "{:?}: {:?} read back as {:?}", codec, rows, back);
                }
            }
            // The one refusal within the rules: no row has any key, so there is no column.
            Err(e) => prop_assert!(all_empty && e.to_string().contains("no columns"), "{}", e),
        }
    }

    #[test]
    fn any_rows_convert_or_are_refused_without_panicking(rows in prop::collection::vec(any_json(), 1..6)) {
        match convert(&rows) {
            Ok(files) => {
                for (_, bytes) in files {
                    let (back, _) = read_parquet(bytes);
                    prop_assert_eq!(back.len(), rows.len());
                }
            }
            Err(e) => prop_assert_eq!(e.error_type(), "InvalidEvent"),
        }
    }
}
