//! Type inference: one deterministic pass over every row decides each column's Arrow type.
//!
//! Rules (docs/event.md's "Types" table): integers that fit i64 are Int64; integers mixed with
//! floats are Float64; booleans Boolean; strings Utf8; objects Structs whose fields merge across
//! rows; arrays Lists of their merged element type; a column that is null or missing everywhere
//! is a nullable Utf8 (never Arrow's Null type, which Spark and Athena cannot read). Columns
//! and struct fields keep the order of their first appearance. Any other mix is an error that
//! names the column path and the first row that conflicts.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use indexmap::IndexMap;

use super::text::TextInference;
use crate::Error;
use crate::rows::{Node, PARALLEL_ROWS, RowRef, Rows, is_integer_text, same_key};

/// What the rows so far say about one column (or struct field, or list element).
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Only nulls (or nothing) seen yet.
    Null,
    Int,
    Float,
    Bool,
    Str,
    Struct(IndexMap<String, Kind>),
    List(Box<Kind>),
}

impl Kind {
    fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Int => "integer",
            Kind::Float => "float",
            Kind::Bool => "boolean",
            Kind::Str => "string",
            Kind::Struct(_) => "object",
            Kind::List(_) => "array",
        }
    }

    fn data_type(&self, path: &mut Vec<String>) -> Result<DataType, Error> {
        Ok(match self {
            Kind::Null | Kind::Str => DataType::Utf8,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::List(element) => {
                path.push("[]".into());
                let element = element.data_type(path)?;
                path.pop();
                DataType::List(Arc::new(Field::new_list_field(element, true)))
            }
            Kind::Struct(fields) if fields.is_empty() => {
                return Err(Error::InvalidEvent(format!(
                    "column `{}` only ever holds empty objects; Parquet cannot store a struct with no fields",
                    path.join(".")
                )));
            }
            Kind::Struct(fields) => DataType::Struct(fields_of(fields, path)?),
        })
    }
}

fn fields_of(fields: &IndexMap<String, Kind>, path: &mut Vec<String>) -> Result<Fields, Error> {
    fields
        .iter()
        .map(|(name, kind)| {
            path.push(name.clone());
            let field = Field::new(name.as_str(), kind.data_type(path)?, true);
            path.pop();
            Ok(field)
        })
        .collect()
}

/// Infers the Arrow schema of `rows`: every column nullable, in first-appearance order.
///
/// # Errors
/// `InvalidEvent` naming the column path and the first conflicting row for a type mix outside
/// the rules, an integer beyond i64, a number beyond f64, or a column holding only empty
/// objects; and when every row is an empty object.
///
/// ```
/// use arrow_schema::DataType;
/// let event = rows_to_parquet::input::event::parse(br#"{"rows": [{"age": 30}, {"age": 30.5, "city": "Chicago"}]}"#).unwrap();
/// let schema = rows_to_parquet::schema::inference::infer(&event.input.rows().unwrap()).unwrap();
/// assert_eq!(schema.field(0).data_type(), &DataType::Float64);
/// assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
/// ```
pub fn infer(rows: &Rows) -> Result<SchemaRef, Error> {
    if rows.is_text() {
        let mut text = TextInference::default();
        text.add(rows);
        return text.finish();
    }
    schema_of(&infer_columns(rows)?)
}

/// The columns of all `rows`, on two threads when there are many.
fn infer_columns(rows: &Rows) -> Result<IndexMap<String, Kind>, Error> {
    match (rows.len() >= PARALLEL_ROWS).then(|| infer_halves(rows)) {
        Some(Some(columns)) => Ok(columns),
        // Few rows, or a half failed or the halves conflict: one pass over all rows names the
        // first bad row exactly.
        _ => infer_part(rows, 0..rows.len()),
    }
}

fn schema_of(columns: &IndexMap<String, Kind>) -> Result<SchemaRef, Error> {
    if columns.is_empty() {
        return Err(Error::InvalidEvent(
            "every row is an empty object: there are no columns to write".into(),
        ));
    }
    let fields = fields_of(columns, &mut Vec::new())?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Inference over rows that arrive in chunks (a source object read as a stream): the same
/// types, column order and messages as [`infer`] over all the rows at once.
#[derive(Debug, Default)]
pub struct Inference {
    columns: IndexMap<String, Kind>,
    /// Rows of CSV fields are inferred by their own rules.
    text: Option<TextInference>,
}

impl Inference {
    /// Merges the next chunk's rows into what the earlier chunks said.
    ///
    /// # Errors
    /// As [`infer`], naming the first row (or line) that conflicts with any earlier one.
    pub fn add(&mut self, rows: &Rows) -> Result<(), Error> {
        if rows.is_text() {
            self.text.get_or_insert_default().add(rows);
            return Ok(());
        }
        let mut joined = self.columns.clone();
        let chunk = infer_columns(rows)?;
        let conflict = chunk
            .into_iter()
            .any(|(name, kind)| join(joined.entry(name).or_insert(Kind::Null), kind).is_err());
        if conflict {
            // One pass over this chunk on top of the earlier ones names the first bad row.
            let mut path = Vec::new();
            for (row, start) in rows.rows_in(0..rows.len()) {
                merge_object(&mut self.columns, rows, start, row, &mut path)?;
            }
            return Ok(());
        }
        self.columns = joined;
        Ok(())
    }

    /// The schema of every row added.
    ///
    /// # Errors
    /// As [`infer`]: no columns at all, or a column holding only empty objects.
    pub fn finish(&self) -> Result<SchemaRef, Error> {
        if let Some(text) = &self.text {
            return text.finish();
        }
        schema_of(&self.columns)
    }
}

/// The columns of the rows in `part`, in first-appearance order.
fn infer_part(rows: &Rows, part: Range<usize>) -> Result<IndexMap<String, Kind>, Error> {
    let mut columns = IndexMap::new();
    let mut path = Vec::new();
    for (index, start) in rows.rows_in(part) {
        merge_object(&mut columns, rows, start, index, &mut path)?;
    }
    Ok(columns)
}

/// Both halves of the rows inferred on two threads and joined, as one pass would; `None` if
/// either half fails or they conflict.
fn infer_halves(rows: &Rows) -> Option<IndexMap<String, Kind>> {
    let (first, second) = rows.on_halves(|part| infer_part(rows, part));
    let mut columns = first.ok()?;
    for (name, kind) in second.ok()? {
        join(columns.entry(name).or_insert(Kind::Null), kind).ok()?;
    }
    Some(columns)
}

/// Merges `other` (the kind of later rows) into `slot` by the same rules as merging those
/// rows one by one; `Err` where that would be a type conflict.
fn join(slot: &mut Kind, other: Kind) -> Result<(), ()> {
    match (&mut *slot, other) {
        (_, Kind::Null) | (Kind::Float, Kind::Int) => Ok(()),
        (Kind::Struct(fields), Kind::Struct(others)) => {
            for (name, kind) in others {
                join(fields.entry(name).or_insert(Kind::Null), kind)?;
            }
            Ok(())
        }
        (Kind::List(element), Kind::List(other)) => join(element, *other),
        (Kind::Null, other) | (Kind::Int, other @ Kind::Float) => {
            *slot = other;
            Ok(())
        }
        (seen, other) if *seen == other => Ok(()),
        _ => Err(()),
    }
}

/// Longest column or field name accepted, in bytes (the Glue Data Catalog's limit).
pub const MAX_NAME_BYTES: usize = 255;

/// Most columns accepted, counting every leaf of nested types (wider tables are beyond what
/// Athena and Spark handle well, and a 6 MB event of them is almost surely a mistake).
pub const MAX_COLUMNS: usize = 10_000;

/// Checks that every reader can use the names and the width: names non-empty, at most
/// [`MAX_NAME_BYTES`], unique among their siblings ignoring case (Athena, Hive and Spark fold
/// case, so `Name` and `name` would be one column), and at most [`MAX_COLUMNS`] leaves.
///
/// # Errors
/// `InvalidEvent` naming the offending field path.
pub fn check_names(fields: &Fields) -> Result<(), Error> {
    let leaves = check_level(fields, "")?;
    if leaves > MAX_COLUMNS {
        return Err(Error::InvalidEvent(format!(
            "the rows have {leaves} columns (counting nested fields); at most {MAX_COLUMNS} are written"
        )));
    }
    Ok(())
}

/// Checks one level of fields and those below; returns the number of leaf columns.
fn check_level(fields: &Fields, parent: &str) -> Result<usize, Error> {
    let mut seen: HashMap<String, &str> = HashMap::with_capacity(fields.len());
    let mut leaves = 0;
    for field in fields {
        let name = field.name().as_str();
        let path = if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        };
        if name.is_empty() {
            let within = if parent.is_empty() {
                String::new()
            } else {
                format!(" in `{parent}`")
            };
            return Err(Error::InvalidEvent(format!(
                "an empty column name{within}: every key needs a name"
            )));
        }
        if name.len() > MAX_NAME_BYTES {
            let start: String = name.chars().take(20).collect();
            return Err(Error::InvalidEvent(format!(
                "column `{start}…` is {} bytes long, longer than {MAX_NAME_BYTES}",
                name.len()
            )));
        }
        if let Some(first) = seen.insert(name.to_lowercase(), name) {
            return Err(Error::InvalidEvent(format!(
                "columns `{first}` and `{name}`{} differ only in case; Athena and Spark would read them as one",
                if parent.is_empty() {
                    String::new()
                } else {
                    format!(" in `{parent}`")
                }
            )));
        }
        leaves += match field.data_type() {
            DataType::Struct(children) => check_level(children, &path)?,
            DataType::List(element) => check_nested(element.data_type(), &path)?,
            DataType::Map(entries, _) => check_nested(entries.data_type(), &path)?,
            _ => 1,
        };
    }
    Ok(leaves)
}

fn check_nested(data_type: &DataType, path: &str) -> Result<usize, Error> {
    match data_type {
        DataType::Struct(children) => check_level(children, path),
        DataType::List(element) => check_nested(element.data_type(), path),
        _ => Ok(1),
    }
}

fn merge_object<'a>(
    fields: &mut IndexMap<String, Kind>,
    rows: &'a Rows,
    object: usize,
    row: RowRef,
    path: &mut Vec<&'a str>,
) -> Result<(), Error> {
    for (ordinal, (name, value)) in rows.members(object).enumerate() {
        // Rows usually repeat the previous row's key order: try that position before hashing,
        // and look up before inserting so a known column allocates nothing.
        let index = match fields.get_index(ordinal) {
            Some((known, _)) if same_key(known, name) => Some(ordinal),
            _ => fields.get_index_of(name),
        };
        let slot = match index {
            Some(i) => &mut fields[i],
            None => fields.entry(name.to_owned()).or_insert(Kind::Null),
        };
        path.push(name);
        merge(slot, rows, value, row, path)?;
        path.pop();
    }
    Ok(())
}

fn merge<'a>(
    slot: &mut Kind,
    rows: &'a Rows,
    at: usize,
    row: RowRef,
    path: &mut Vec<&'a str>,
) -> Result<(), Error> {
    let node = &rows.node(at);
    let scalar = match node {
        Node::Null => return Ok(()),
        Node::Bool(_) => Kind::Bool,
        Node::Str(_) | Node::Key(_) => Kind::Str,
        Node::Int(_) => Kind::Int,
        Node::Number(text) => number_kind(text).map_err(|why| {
            Error::InvalidEvent(format!("column `{}` at {row}: {why}", path.join(".")))
        })?,
        Node::Object { .. } => {
            if *slot == Kind::Null {
                *slot = Kind::Struct(IndexMap::new());
            }
            return match &mut *slot {
                Kind::Struct(fields) => merge_object(fields, rows, at, row, path),
                _ => Err(conflict(slot, node, row, path)),
            };
        }
        Node::Array { .. } => {
            if *slot == Kind::Null {
                *slot = Kind::List(Box::new(Kind::Null));
            }
            let Kind::List(element) = &mut *slot else {
                return Err(conflict(slot, node, row, path));
            };
            path.push("[]");
            for item in rows.elements(at) {
                merge(element, rows, item, row, path)?;
            }
            path.pop();
            return Ok(());
        }
    };
    match (&*slot, &scalar) {
        (Kind::Null, _) | (Kind::Int, Kind::Float) => *slot = scalar,
        (Kind::Float, Kind::Int) => {}
        (seen, new) if seen == new => {}
        _ => return Err(conflict(slot, node, row, path)),
    }
    Ok(())
}

/// The kind of a number that is not a plain i64: a float if it has a fraction or exponent
/// and is finite as f64, an integer if it is `-0`; anything else cannot be stored.
fn number_kind(text: &str) -> Result<Kind, String> {
    if !is_integer_text(text) {
        return match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Kind::Float),
            _ => Err("number beyond the range of a 64-bit float".into()),
        };
    }
    if text == "-0" {
        return Ok(Kind::Int);
    }
    Err("integer beyond the 64-bit signed range (max 9223372036854775807)".into())
}

fn conflict(seen: &Kind, node: &Node, row: RowRef, path: &[&str]) -> Error {
    Error::InvalidEvent(format!(
        "type conflict in column `{}` at {row}: earlier rows hold {} values, this row holds a {}",
        path.join("."),
        seen.describe(),
        node.json_type()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PARALLEL_ROWS + 2` rows: the first half from `early`, the second from `late`, with
    /// `bad_row` (if any) replaced by `bad`.
    fn halves(early: &str, late: &str, bad: Option<(usize, &str)>) -> String {
        let n = PARALLEL_ROWS + 2;
        let rows: Vec<&str> = (0..n)
            .map(|i| match bad {
                Some((row, text)) if row == i => text,
                _ if i < n / 2 => early,
                _ => late,
            })
            .collect();
        format!("[{}]", rows.join(","))
    }

    #[test]
    fn many_rows_are_inferred_in_two_halves_as_one_pass_would() {
        let json = halves(
            r#"{"a": 1, "s": {"x": null}, "l": []}"#,
            r#"{"a": 1.5, "s": {"y": true, "x": "t"}, "l": [2], "b": "new"}"#,
            None,
        );
        let rows = crate::rows::rows_of(&json);
        let joined = infer_halves(&rows).expect("the halves join");
        assert_eq!(joined.keys().collect::<Vec<_>>(), ["a", "s", "l", "b"]);
        let schema = infer(&rows).unwrap();
        let sequential = Schema::new(vec![
            Field::new("a", DataType::Float64, true),
            Field::new(
                "s",
                DataType::Struct(Fields::from(vec![
                    Field::new("x", DataType::Utf8, true),
                    Field::new("y", DataType::Boolean, true),
                ])),
                true,
            ),
            Field::new("l", list(DataType::Int64), true),
            Field::new("b", DataType::Utf8, true),
        ]);
        assert_eq!(*schema, sequential);

        // A conflict between the halves names the first row that conflicts.
        let json = halves(r#"{"a": 1}"#, r#"{"a": "x"}"#, None);
        let rows = crate::rows::rows_of(&json);
        assert!(infer_halves(&rows).is_none());
        let err = infer(&rows).unwrap_err();
        let first_late = (PARALLEL_ROWS + 2) / 2;
        assert!(
            err.to_string()
                .contains(&format!("`a` at row {first_late}:")),
            "{err}"
        );
        // So does a conflict inside the second half that the first half's values make earlier.
        let err = infer_json(&halves(
            r#"{"a": 1}"#,
            r#"{"a": null}"#,
            Some((first_late + 5, r#"{"a": true}"#)),
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("`a` at row {}:", first_late + 5)),
            "{err}"
        );
    }

    fn infer_json(json: &str) -> Result<SchemaRef, Error> {
        infer(&crate::rows::rows_of(json))
    }

    fn types(json: &str) -> Vec<(String, DataType)> {
        infer_json(json)
            .unwrap()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    }

    fn list(dt: DataType) -> DataType {
        DataType::List(Arc::new(Field::new_list_field(dt, true)))
    }

    #[test]
    fn seed_rows() {
        assert_eq!(
            types(r#"[{"name": "John Doe", "age": 30, "city": "New York"}]"#),
            [
                ("name".into(), DataType::Utf8),
                ("age".into(), DataType::Int64),
                ("city".into(), DataType::Utf8)
            ]
        );
    }

    #[test]
    fn scalar_rules_and_first_appearance_order() {
        let t = types(
            r#"[{"b": true, "i": 1, "f": 1},
                {"f": 2.5, "late": "x", "n": null},
                {"i": -9223372036854775808, "n": null}]"#,
        );
        assert_eq!(
            t,
            [
                ("b".into(), DataType::Boolean),
                ("i".into(), DataType::Int64),
                ("f".into(), DataType::Float64),
                ("late".into(), DataType::Utf8),
                ("n".into(), DataType::Utf8),
            ]
        );
    }

    #[test]
    fn nested_structs_merge_fields_and_lists_merge_elements() {
        let t = types(
            r#"[{"addr": {"zip": "10001"}, "tags": [], "m": [[1], null]},
                {"addr": {"geo": {"lat": 1.5}, "zip": null}, "tags": ["a", null], "m": [[2.5]]}]"#,
        );
        let geo = DataType::Struct(vec![Field::new("lat", DataType::Float64, true)].into());
        assert_eq!(
            t[0].1,
            DataType::Struct(
                vec![
                    Field::new("zip", DataType::Utf8, true),
                    Field::new("geo", geo, true)
                ]
                .into()
            )
        );
        assert_eq!(t[1].1, list(DataType::Utf8));
        assert_eq!(t[2].1, list(list(DataType::Float64)));
    }

    #[test]
    fn all_null_columns_and_empty_lists_become_utf8() {
        let t = types(r#"[{"a": null, "l": []}, {"l": [null]}]"#);
        assert_eq!(
            t,
            [
                ("a".into(), DataType::Utf8),
                ("l".into(), list(DataType::Utf8))
            ]
        );
    }

    #[test]
    fn conflicts_name_column_path_and_first_conflicting_row() {
        for (json, words) in [
            (
                r#"[{"age": 30}, {"age": 31}, {"age": "thirty"}]"#,
                &["`age`", "row 2", "integer", "string"][..],
            ),
            (
                r#"[{"a": {"b": "x"}}, {"a": {"b": {"c": 1}}}]"#,
                &["`a.b`", "row 1", "object"],
            ),
            (
                r#"[{"t": [1, 2]}, {"t": [true]}]"#,
                &["`t.[]`", "row 1", "boolean"],
            ),
            (r#"[{"s": "x"}, {"s": {"k": 1}}]"#, &["`s`", "row 1"]),
            (r#"[{"s": [1]}, {"s": 1}]"#, &["`s`", "array", "integer"]),
            (r#"[{"s": 1}, {"s": [1]}]"#, &["`s`", "array"]),
            (r#"[{"b": true}, {"b": 1}]"#, &["`b`", "boolean"]),
        ] {
            let err = infer_json(json).expect_err(json);
            assert_eq!(err.error_type(), "InvalidEvent");
            for word in words {
                assert!(err.to_string().contains(word), "{json}: {err} lacks {word}");
            }
        }
    }

    #[test]
    fn names_must_be_usable_by_every_reader() {
        let check = |json: &str| check_names(infer_json(json).unwrap().fields());
        assert!(check(r#"[{"name": 1, "addr": {"Name": 1, "zip": 2}}]"#).is_ok());
        for (json, word) in [
            (
                r#"[{"Name": "a"}, {"name": "b"}]"#,
                "`Name` and `name` differ only in case",
            ),
            (r#"[{"a": {"X": 1, "x": 2}}]"#, "in `a`"),
            (r#"[{"a": [{"Ü": 1, "ü": 2}]}]"#, "differ only in case"),
            (r#"[{"": 1}]"#, "empty column name"),
            (r#"[{"a": {"": 1}}]"#, "empty column name in `a`"),
        ] {
            let err = check(json).expect_err(json);
            assert_eq!(err.error_type(), "InvalidEvent");
            assert!(err.to_string().contains(word), "{json}: {err}");
        }
        let long = format!(r#"[{{"{}": 1}}]"#, "k".repeat(300));
        assert!(
            check(&long)
                .unwrap_err()
                .to_string()
                .contains("300 bytes long")
        );
        let wide: Vec<String> = (0..10_001).map(|i| format!(r#""c{i}": {i}"#)).collect();
        let err = check(&format!("[{{{}}}]", wide.join(","))).unwrap_err();
        assert!(err.to_string().contains("10001 columns"), "{err}");
    }

    #[test]
    fn conflict_messages_do_not_quote_values() {
        let err = infer_json(r#"[{"a": 1}, {"a": "hunter2-secret"}]"#).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn out_of_range_numbers_and_empty_structs_are_errors() {
        let err = infer_json(r#"[{"big": 18446744073709551615}]"#).unwrap_err();
        assert!(err.to_string().contains("`big` at row 0"), "{err}");
        let err = infer_json(r#"[{"f": 1.5}, {"f": 1e400}]"#).unwrap_err();
        assert!(
            err.to_string().contains("`f` at row 1: number beyond"),
            "{err}"
        );
        assert_eq!(types(r#"[{"z": -0}]"#), [("z".into(), DataType::Int64)]);
        let err = infer_json(r#"[{"e": {}}, {"e": null}]"#).unwrap_err();
        assert!(err.to_string().contains("`e`"), "{err}");
        assert!(infer_json(r#"[{"e": {}}, {"e": {"k": 1}}]"#).is_ok());
        let err = infer_json(r#"[{}, {}]"#).unwrap_err();
        assert!(err.to_string().contains("no columns"), "{err}");
    }
}
