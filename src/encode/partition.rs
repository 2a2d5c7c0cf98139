//! Hive-style partitioning (`partition_by`): each distinct combination of the partition
//! columns' values becomes its own folder, `dt=2024-01-01/region=eu/`, and the columns are left
//! out of the files, as Spark's `partitionBy` writes them and Athena, Spark, DuckDB and pyarrow
//! read them back.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::Error;
use crate::rows::RowRef;

/// The folder name Hive and Spark give a null or empty partition value.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// The default `MAX_PARTITIONS`: distinct partitions one event or source object may write.
pub const MAX_PARTITIONS: usize = 1_000;

/// The validated `partition_by` of an event: one or more distinct column names, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBy(Vec<String>);

impl PartitionBy {
    /// The columns, in order.
    pub fn columns(&self) -> &[String] {
        &self.0
    }

    /// Parses the JSON value of `partition_by`.
    ///
    /// # Errors
    /// `InvalidEvent` for anything but a non-empty array of distinct, non-empty strings.
    ///
    /// ```
    /// use rows_to_parquet::encode::partition::PartitionBy;
    /// assert!(PartitionBy::parse(r#"["dt", "region"]"#).is_ok());
    /// assert!(PartitionBy::parse(r#"["dt", "dt"]"#).is_err());
    /// ```
    pub fn parse(json: &str) -> Result<PartitionBy, Error> {
        let invalid = |why: &str| Error::InvalidEvent(format!("`partition_by`: {why}"));
        let names: Vec<String> = serde_json::from_str(json)
            .map_err(|_| invalid("must be an array of column names, such as [\"dt\"]"))?;
        if names.is_empty() {
            return Err(invalid("names no column"));
        }
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(&format!("entry {i} is empty")));
            }
            if names[..i].contains(name) {
                return Err(invalid(&format!("`{name}` appears twice")));
            }
        }
        Ok(PartitionBy(names))
    }

    /// Where the partition columns are in `schema`, and the schema of the files (the other
    /// columns).
    ///
    /// # Errors
    /// `InvalidEvent` naming a column that is missing, that is not a top-level string,
    /// integer, boolean or date, or when no column would be left for the files.
    pub fn layout(&self, schema: &Schema) -> Result<Layout, Error> {
        let mut columns = Vec::with_capacity(self.0.len());
        for name in &self.0 {
            let invalid =
                |why: String| Error::InvalidEvent(format!("`partition_by`: column `{name}` {why}"));
            let (index, field) = schema.column_with_name(name).ok_or_else(|| {
                invalid("is not a column of the rows (partition columns are top-level keys, matched exactly)".into())
            })?;
            if !partitionable(field.data_type()) {
                return Err(invalid(format!(
                    "is {}; a partition column must be a string, integer, boolean or date",
                    crate::schema::ddl::spark_type(field.data_type())
                )));
            }
            let mut folder = String::new();
            escape_into(&mut folder, name);
            folder.push('=');
            columns.push(Column {
                index,
                name: name.clone(),
                folder,
            });
        }
        let kept: Vec<Arc<Field>> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !columns.iter().any(|c| c.index == *i))
            .map(|(_, f)| f.clone())
            .collect();
        if kept.is_empty() {
            return Err(Error::InvalidEvent(
                "`partition_by` names every column: the files would hold none".into(),
            ));
        }
        let partition_fields = columns
            .iter()
            .map(|c| schema.field(c.index).clone())
            .collect();
        Ok(Layout {
            columns,
            partition_fields,
            files: Arc::new(Schema::new(kept)),
        })
    }
}

/// Types Spark and Athena accept as partition columns and whose text form is exact. A column
/// that is null in every row so far (`Null`) is accepted: its rows go to the default partition.
fn partitionable(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::Boolean
            | DataType::Date32
            | DataType::Null
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

/// `partition_by` checked against a schema.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The partition columns, in `partition_by` order.
    columns: Vec<Column>,
    /// The partition columns' fields, in order (for the Athena DDL).
    pub partition_fields: Vec<Field>,
    /// The schema of the files: every other column, in order.
    pub files: SchemaRef,
}

/// A partition column.
#[derive(Debug, Clone)]
struct Column {
    /// Its index in the full schema.
    index: usize,
    name: String,
    /// Its folder names' start: the name escaped, and `=`.
    folder: String,
}

/// The rows of one partition.
pub struct Part {
    /// `dt=2024-01-01/region=eu/` (escaped, ending in `/`); empty without `partition_by`.
    pub path: String,
    /// Without the partition columns.
    pub batches: Vec<RecordBatch>,
}

/// `batches` (the rows in order, as built) as the parts a conversion writes: split by
/// `layout` as [`Layout::split`], or, without one, whole under an empty path.
///
/// # Errors
/// As [`Layout::split`].
pub fn parts(
    layout: Option<&Layout>,
    batches: Vec<RecordBatch>,
    max: usize,
    row_ref: impl Fn(usize) -> RowRef,
) -> Result<Vec<Part>, Error> {
    match layout {
        None => Ok(vec![Part {
            path: String::new(),
            batches,
        }]),
        Some(layout) => layout.split(&batches, max, row_ref),
    }
}

impl Layout {
    /// Splits `batches` (the rows in order, as built) into one batch per partition, in the
    /// order each partition first appears, without the partition columns. `row_ref` names the
    /// row at an index across the batches, for messages.
    ///
    /// # Errors
    /// `InvalidEvent` for a value that cannot name a folder (a NUL character), naming the
    /// column and the row, or for more than `max` partitions.
    pub fn split(
        &self,
        batches: &[RecordBatch],
        max: usize,
        row_ref: impl Fn(usize) -> RowRef,
    ) -> Result<Vec<Part>, Error> {
        // Each partition's path and its rows in each batch, in order of appearance.
        let mut found: Vec<(String, Vec<Vec<u32>>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut path = String::new();
        let mut first = 0;
        for (b, batch) in batches.iter().enumerate() {
            let values: Vec<&ArrayRef> =
                self.columns.iter().map(|c| batch.column(c.index)).collect();
            for row in 0..batch.num_rows() {
                path.clear();
                for (column, values) in self.columns.iter().zip(&values) {
                    path.push_str(&column.folder);
                    if !append_value(&mut path, values.as_ref(), row) {
                        return Err(Error::InvalidEvent(format!(
                            "partition column `{}` at {}: a NUL character cannot be part of an S3 folder name",
                            column.name,
                            row_ref(first + row)
                        )));
                    }
                    path.push('/');
                }
                let at = match index.get(&path) {
                    Some(&at) => at,
                    None if found.len() == max => return Err(too_many(max)),
                    None => {
                        index.insert(path.clone(), found.len());
                        found.push((path.clone(), vec![Vec::new(); batches.len()]));
                        found.len() - 1
                    }
                };
                found[at].1[b].push(row as u32);
            }
            first += batch.num_rows();
        }
        let whole = found.len() == 1;
        found
            .into_iter()
            .map(|(path, rows)| {
                // One batch per built batch the partition has rows in, not concatenated: the
                // writers take several, and `concat` alone was 0.5 MB of the binary.
                let batches = batches
                    .iter()
                    .zip(&rows)
                    .filter(|(_, rows)| !rows.is_empty())
                    .map(|(batch, rows)| self.take(batch, (!whole).then_some(rows)))
                    .collect::<Result<_, _>>()?;
                Ok(Part { path, batches })
            })
            .collect()
    }

    /// `rows` of `batch` (all of them for `None`), without the partition columns.
    fn take(&self, batch: &RecordBatch, rows: Option<&Vec<u32>>) -> Result<RecordBatch, Error> {
        let indices = rows.map(|rows| UInt32Array::from(rows.clone()));
        let columns = batch
            .columns()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.columns.iter().any(|c| c.index == *i))
            .map(|(_, column)| match &indices {
                None => Ok(column.clone()),
                Some(indices) => arrow_select::take::take(column.as_ref(), indices, None),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow_error)?;
        RecordBatch::try_new(self.files.clone(), columns).map_err(arrow_error)
    }
}

/// The error for rows that fall into more than `max` partitions.
pub fn too_many(max: usize) -> Error {
    Error::InvalidEvent(format!(
        "`partition_by`: the rows fall into more than MAX_PARTITIONS ({max}) partitions; nothing was written (partition by coarser columns, or raise MAX_PARTITIONS)"
    ))
}

fn arrow_error(e: arrow_schema::ArrowError) -> Error {
    Error::InvalidEvent(format!("the rows could not be split into partitions: {e}"))
}

/// Appends the value's text in a folder name, as Spark writes it (escaped; null or empty as
/// [`DEFAULT_PARTITION`]); `false`, appending nothing, for a string holding a NUL. Numbers,
/// booleans and dates need no escaping.
fn append_value(out: &mut String, column: &dyn Array, row: usize) -> bool {
    if column.is_null(row) {
        out.push_str(DEFAULT_PARTITION);
        return true;
    }
    let _ = match column.data_type() {
        DataType::Utf8 => {
            let text = column.as_string::<i32>().value(row);
            if text.contains('\0') {
                return false;
            }
            match text {
                "" => out.push_str(DEFAULT_PARTITION),
                text => escape_into(out, text),
            }
            Ok(())
        }
        DataType::Boolean => write!(out, "{}", column.as_boolean().value(row)),
        DataType::Date32 => {
            let days = column.as_primitive::<Date32Type>().value(row);
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
            write!(
                out,
                "{}",
                (epoch + chrono::Duration::days(days.into())).format("%Y-%m-%d")
            )
        }
        DataType::Int8 => write!(out, "{}", column.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => write!(out, "{}", column.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write!(out, "{}", column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write!(out, "{}", column.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => write!(out, "{}", column.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => write!(out, "{}", column.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => write!(out, "{}", column.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => write!(out, "{}", column.as_primitive::<UInt64Type>().value(row)),
        other => unreachable!("{other} is refused by PartitionBy::layout"),
    };
    true
}

/// Appends `text` escaped as Spark's `ExternalCatalogUtils.escapePathName` escapes folder
/// names (checked against Spark's own function in the e2e tests): `%XX`, upper-case hex, for
/// the control characters 0x01-0x1F and 0x7F and for `"#%'*/:=?[\]^{`; everything else,
/// non-ASCII included, as is.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(
            c,
            '\u{1}'
                ..='\u{1f}'
                    | '\u{7f}'
                    | '"'
                    | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '['
                    | '\\'
                    | ']'
                    | '^'
                    | '{'
        ) {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(text: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, text);
        out
    }

    #[test]
    fn escapes_as_spark_does() {
        assert_eq!(escape("2024-01-01"), "2024-01-01");
        assert_eq!(escape("a/b=c:d%e"), "a%2Fb%3Dc%3Ad%25e");
        assert_eq!(escape("\"#'*?[\\]^{}"), "%22%23%27%2A%3F%5B%5C%5D%5E%7B}");
        assert_eq!(escape("\u{1}\t\u{1f}\u{7f} é 🚀"), "%01%09%1F%7F é 🚀");
    }

    fn built(json: &str, schema: Option<&str>) -> (RecordBatch, SchemaRef) {
        let event = match schema {
            Some(ddl) => format!(r#"{{"rows": {json}, "schema": "{ddl}"}}"#),
            None => format!(r#"{{"rows": {json}}}"#),
        };
        let event = crate::input::event::parse(event.as_bytes()).unwrap();
        let rows = event.input.rows().unwrap();
        let schema = event
            .schema
            .unwrap_or_else(|| crate::schema::inference::infer(&rows).unwrap());
        let batch = crate::encode::columns::build(&rows, schema.clone(), Default::default())
            .unwrap()
            .remove(0);
        (batch, schema)
    }

    #[test]
    fn rows_split_by_value_in_first_seen_order_without_the_columns() {
        let (batch, schema) = built(
            r#"[{"dt": "2024-01-02", "n": 1, "region": "eu"}, {"dt": "2024-01-01", "n": 2, "region": "us/east"},
                {"dt": "2024-01-02", "n": 3, "region": "eu"}, {"dt": null, "n": 4, "region": ""}]"#,
            None,
        );
        let by = PartitionBy::parse(r#"["dt", "region"]"#).unwrap();
        let layout = by.layout(&schema).unwrap();
        assert_eq!(layout.files.fields().len(), 1);
        let parts = layout
            .split(&[batch], MAX_PARTITIONS, RowRef::Index)
            .unwrap();
        let paths: Vec<&str> = parts.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dt=2024-01-02/region=eu/",
                "dt=2024-01-01/region=us%2Feast/",
                "dt=__HIVE_DEFAULT_PARTITION__/region=__HIVE_DEFAULT_PARTITION__/"
            ]
        );
        let n = |p: &Part| -> Vec<i64> {
            p.batches[0]
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        assert_eq!(n(&parts[0]), [1, 3]);
        assert_eq!(n(&parts[1]), [2]);
        assert_eq!(n(&parts[2]), [4]);
        let (batch, _) = built(
            r#"[{"dt": "a", "n": 1}, {"dt": "b", "n": 2}, {"dt": "a", "n": 3}]"#,
            None,
        );
        assert_eq!(
            layout_of("dt", &batch)
                .split(std::slice::from_ref(&batch), 2, RowRef::Index)
                .unwrap()
                .len(),
            2
        );
        // Rows built in two halves: a partition with rows in both keeps one batch of each, in
        // order (the writers take several; nothing is concatenated).
        let (second, _) = built(r#"[{"dt": "a", "n": 4}, {"dt": "a", "n": 5}]"#, None);
        let halves = layout_of("dt", &batch)
            .split(&[batch.clone(), second], 2, RowRef::Index)
            .unwrap();
        let numbers = |p: &Part| -> Vec<Vec<i64>> {
            p.batches
                .iter()
                .map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect()
        };
        assert_eq!(numbers(&halves[0]), [vec![1, 3], vec![4, 5]]);
        assert_eq!(numbers(&halves[1]), [vec![2]]);
        let e = layout_of("dt", &batch)
            .split(&[batch], 1, RowRef::Index)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("more than MAX_PARTITIONS (1)"),
            "{e}"
        );
    }

    fn layout_of(column: &str, batch: &RecordBatch) -> Layout {
        PartitionBy(vec![column.into()])
            .layout(&batch.schema())
            .unwrap()
    }

    #[test]
    fn declared_dates_integers_and_booleans_name_folders_as_text() {
        let (batch, schema) = built(
            r#"[{"d": "2024-02-29", "i": -7, "b": true, "v": "x"}]"#,
            Some("d DATE, i INT, b BOOLEAN, v STRING"),
        );
        let layout = PartitionBy::parse(r#"["d", "i", "b"]"#)
            .unwrap()
            .layout(&schema)
            .unwrap();
        let parts = layout
            .split(&[batch], MAX_PARTITIONS, RowRef::Index)
            .unwrap();
        assert_eq!(parts[0].path, "d=2024-02-29/i=-7/b=true/");
        assert_eq!(layout.partition_fields.len(), 3);
    }

    #[test]
    fn bad_partitioning_is_invalid_event_naming_the_column() {
        let (_, schema) = built(r#"[{"a": 1.5, "s": {"x": 1}, "t": "x"}]"#, None);
        for (by, word) in [
            (r#"["zz"]"#, "column `zz` is not a column"),
            (r#"["a"]"#, "column `a` is DOUBLE"),
            (r#"["s"]"#, "column `s` is STRUCT"),
            (r#"["a", "s", "t"]"#, "column `a`"),
        ] {
            let e = PartitionBy::parse(by).unwrap().layout(&schema).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent");
            assert!(e.to_string().contains(word), "{by}: {e}");
        }
        let (_, only) = built(r#"[{"t": "x"}]"#, None);
        let e = PartitionBy::parse(r#"["t"]"#)
            .unwrap()
            .layout(&only)
            .unwrap_err();
        assert!(e.to_string().contains("names every column"), "{e}");
        for bad in ["[]", r#""dt""#, r#"[""]"#, "[1]"] {
            assert!(PartitionBy::parse(bad).is_err(), "{bad}");
        }
        let (batch, schema) = built(r#"[{"t": "ok", "v": 1}, {"t": "a\u0000b", "v": 2}]"#, None);
        let layout = PartitionBy::parse(r#"["t"]"#)
            .unwrap()
            .layout(&schema)
            .unwrap();
        let e = layout
            .split(&[batch], 10, |i| RowRef::Line(i + 1))
            .err()
            .unwrap();
        assert!(e.to_string().contains("`t` at line 2"), "{e}");
    }
}
