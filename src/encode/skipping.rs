//! What lets a reader skip through a file beyond min/max and the page index: split-block bloom
//! filters on the columns that equality filters look up (`bloom_filter_columns`), and rows
//! sorted by the columns that range filters bound (`sort_by`), so that each page's and row
//! group's min/max are narrow.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SortOptions};
use parquet::schema::types::ColumnPath;

use crate::Error;

/// The bloom filters' false-positive rate: parquet-mr's and Iceberg's default
/// (`write.parquet.bloom-filter-fpp`), about 9.6 bits per distinct value.
pub const BLOOM_FPP: f64 = 0.01;

/// A bloom filter is made for at most this many values (256 KiB at [`BLOOM_FPP`]), and a file
/// with filters keeps its row groups to that many rows: each open file holds its filters
/// while its row group is built, and a filter given more values than it was made for loses
/// its false-positive rate.
pub const BLOOM_ROWS: usize = 122_880;

/// The options, as an event or the configuration gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skipping {
    /// Leaf columns (`id`, or `user.id` inside a struct) that get a bloom filter.
    pub bloom_filter_columns: Vec<String>,
    /// The columns each file's rows are sorted by, the first first.
    pub sort_by: Vec<SortKey>,
}

/// One `sort_by` column: `ts`, `ts DESC`, `ts ASC NULLS LAST`; nulls first ascending and last
/// descending unless said, as in Spark SQL and Iceberg.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub column: String,
    pub options: SortOptions,
}

impl Skipping {
    /// Neither option.
    pub const NONE: Skipping = Skipping {
        bloom_filter_columns: Vec::new(),
        sort_by: Vec::new(),
    };

    /// The options from the JSON values of `bloom_filter_columns` and `sort_by` (either may
    /// be absent).
    ///
    /// # Errors
    /// `InvalidEvent` naming the option: not an array of strings, an empty or repeated name,
    /// a `sort_by` entry that is not `column [ASC|DESC] [NULLS FIRST|NULLS LAST]`.
    ///
    /// ```
    /// use rows_to_parquet::encode::skipping::Skipping;
    /// let options = Skipping::parse(Some(r#"["id"]"#), Some(r#"["ts DESC", "id"]"#)).unwrap();
    /// assert_eq!(options.sort_by[0].column, "ts");
    /// assert!(options.sort_by[0].options.descending && !options.sort_by[0].options.nulls_first);
    /// assert!(Skipping::parse(Some(r#"["id", "id"]"#), None).is_err());
    /// assert!(Skipping::parse(None, Some(r#"["ts SIDEWAYS"]"#)).is_err());
    /// ```
    pub fn parse(bloom: Option<&str>, sort_by: Option<&str>) -> Result<Skipping, Error> {
        let bloom_filter_columns = bloom
            .map(|json| names(json, "bloom_filter_columns"))
            .transpose()?
            .unwrap_or_default();
        let sort_by = sort_by
            .map(|json| names(json, "sort_by"))
            .transpose()?
            .unwrap_or_default()
            .iter()
            .map(|entry| SortKey::parse(entry))
            .collect::<Result<_, _>>()?;
        let options = Skipping {
            bloom_filter_columns,
            sort_by,
        };
        let sorted: Vec<&str> = options.sort_by.iter().map(|k| k.column.as_str()).collect();
        match sorted
            .iter()
            .enumerate()
            .find(|(i, c)| sorted[..*i].contains(c))
        {
            Some((_, column)) => Err(Error::InvalidEvent(format!(
                "`sort_by`: `{column}` appears twice"
            ))),
            None => Ok(options),
        }
    }

    /// `batches` (one schema) as one batch in `sort_by`'s order; as they are without it.
    ///
    /// # Errors
    /// As [`Skipping::sorted`].
    pub fn sorted_batches(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, Error> {
        let one = match batches.len() {
            _ if self.sort_by.is_empty() => return Ok(batches),
            0 => return Ok(batches),
            1 => batches.into_iter().next().expect("one"),
            _ => arrow_select::concat::concat_batches(&batches[0].schema(), &batches)
                .map_err(|e| Error::InvalidEvent(format!("the rows could not be sorted: {e}")))?,
        };
        Ok(vec![self.sorted(one)?])
    }

    /// `batch`'s rows in `sort_by`'s order (the batch itself without `sort_by`).
    ///
    /// # Errors
    /// `InvalidEvent` naming a `sort_by` column the rows do not have, or one of a type with
    /// no order (a struct, a list, a map).
    pub fn sorted(&self, batch: RecordBatch) -> Result<RecordBatch, Error> {
        if self.sort_by.is_empty() {
            return Ok(batch);
        }
        let columns = self
            .sort_by
            .iter()
            .map(|key| {
                let column = batch.column_by_name(&key.column).ok_or_else(|| {
                    Error::InvalidEvent(format!(
                        "`sort_by`: the rows have no column `{}`",
                        key.column
                    ))
                })?;
                if column.data_type().is_nested() {
                    return Err(Error::InvalidEvent(format!(
                        "`sort_by`: `{}` is a {} column, which files are not sorted by",
                        key.column,
                        column.data_type()
                    )));
                }
                Ok(arrow_ord::sort::SortColumn {
                    values: column.clone(),
                    options: Some(key.options),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if batch.num_rows() < 2 {
            return Ok(batch);
        }
        let unorderable = |key: &SortKey, e: arrow_schema::ArrowError| {
            Error::InvalidEvent(format!(
                "`sort_by`: the column `{}` cannot be sorted: {e}",
                key.column
            ))
        };
        let indices = arrow_ord::sort::lexsort_to_indices(&columns, None)
            .map_err(|e| unorderable(&self.sort_by[0], e))?;
        let columns = batch
            .columns()
            .iter()
            .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(|e| unorderable(&self.sort_by[0], e))?;
        Ok(RecordBatch::try_new(batch.schema(), columns).expect("the same schema"))
    }

    /// Each `bloom_filter_columns` leaf's path in `batches` (one schema), with the number of
    /// rows: the most distinct values its filter can be asked to hold. parquet-rs sizes the
    /// filter for that many, then folds it, once written, to the smallest size that keeps
    /// [`BLOOM_FPP`] for the values it holds.
    ///
    /// # Errors
    /// `InvalidEvent` naming a column the rows do not have, or one that is not a leaf of
    /// strings, binary, numbers, dates or timestamps outside lists and maps.
    pub fn bloom_columns(&self, batches: &[RecordBatch]) -> Result<Vec<(ColumnPath, u64)>, Error> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let invalid = |name: &str, why: &str| {
            Error::InvalidEvent(format!("`bloom_filter_columns`: `{name}` {why}"))
        };
        self.bloom_filter_columns
            .iter()
            .map(|name| {
                let column = batches
                    .first()
                    .and_then(|batch| leaf(batch, name))
                    .ok_or_else(|| invalid(name, "is not a column of the rows"))?;
                let kind = column.data_type();
                if !has_bloom_filter(kind) {
                    return Err(invalid(name, &format!("is a {kind} column: only strings, binary, numbers, dates and timestamps outside lists and maps get a bloom filter")));
                }
                let path = ColumnPath::new(name.split('.').map(str::to_owned).collect());
                Ok((path, rows.max(1) as u64))
            })
            .collect()
    }
}

impl SortKey {
    fn parse(entry: &str) -> Result<SortKey, Error> {
        let invalid = || {
            Error::InvalidEvent(format!(
                "`sort_by`: `{entry}` is not `column [ASC|DESC] [NULLS FIRST|NULLS LAST]`"
            ))
        };
        let words: Vec<&str> = entry.split_whitespace().collect();
        let (column, rest) = words.split_first().ok_or_else(invalid)?;
        let upper: Vec<String> = rest.iter().map(|w| w.to_ascii_uppercase()).collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        let (descending, nulls) = match upper.as_slice() {
            [] => (false, &[][..]),
            ["ASC", nulls @ ..] => (false, nulls),
            ["DESC", nulls @ ..] => (true, nulls),
            nulls @ ["NULLS", ..] => (false, nulls),
            _ => return Err(invalid()),
        };
        let nulls_first = match nulls {
            [] => !descending,
            ["NULLS", "FIRST"] => true,
            ["NULLS", "LAST"] => false,
            _ => return Err(invalid()),
        };
        Ok(SortKey {
            column: (*column).to_owned(),
            options: SortOptions {
                descending,
                nulls_first,
            },
        })
    }
}

/// The names in `json`, an array of distinct non-empty strings.
fn names(json: &str, option: &str) -> Result<Vec<String>, Error> {
    let invalid = |why: String| Error::InvalidEvent(format!("`{option}`: {why}"));
    let names: Vec<String> = serde_json::from_str(json)
        .map_err(|_| invalid("must be an array of column names, such as [\"id\"]".into()))?;
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(invalid(format!("entry {i} is empty")));
        }
        if names[..i].contains(name) {
            return Err(invalid(format!("`{name}` appears twice")));
        }
    }
    Ok(names)
}

/// The column `name` (`a.b`: `b` inside the struct `a`) of `batch`.
fn leaf(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    let mut parts = name.split('.');
    let mut column = batch.column_by_name(parts.next()?)?.clone();
    for part in parts {
        column = column.as_struct_opt()?.column_by_name(part)?.clone();
    }
    Some(column)
}

/// Whether a column of `kind` gets a bloom filter here: not booleans (two values), nor
/// nested types.
fn has_bloom_filter(kind: &DataType) -> bool {
    matches!(
        kind,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
    ) || (kind != &DataType::Boolean && kind.primitive_width().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::writer::tests::batches_of;
    use arrow_array::types::Int64Type;

    #[test]
    fn sort_keys_read_as_spark_sql_and_iceberg_write_them() {
        let keys = |json: &str| {
            Skipping::parse(None, Some(json)).map(|s| {
                s.sort_by
                    .into_iter()
                    .map(|k| (k.column, k.options))
                    .collect::<Vec<_>>()
            })
        };
        let options = |descending, nulls_first| SortOptions {
            descending,
            nulls_first,
        };
        assert_eq!(
            keys(r#"["a", "b DESC", "c asc nulls last", "d NULLS FIRST", "e desc NULLS first"]"#)
                .unwrap(),
            [
                ("a".into(), options(false, true)),
                ("b".into(), options(true, false)),
                ("c".into(), options(false, false)),
                ("d".into(), options(false, true)),
                ("e".into(), options(true, true)),
            ]
        );
        for (bad, says) in [
            (r#"["a DESC DESC"]"#, "`a DESC DESC` is not"),
            (r#"["a NULLS"]"#, "is not `column"),
            (r#"[" "]"#, "entry 0 is empty"),
            (r#"["a", "a DESC"]"#, "`a` appears twice"),
            (r#""a""#, "must be an array"),
        ] {
            let e = keys(bad).unwrap_err().to_string();
            assert!(e.contains("`sort_by`") && e.contains(says), "{bad}: {e}");
        }
        let e = Skipping::parse(Some("[1]"), None).unwrap_err().to_string();
        assert!(
            e.contains("`bloom_filter_columns`: must be an array"),
            "{e}"
        );
    }

    #[test]
    fn rows_are_sorted_by_every_key_in_turn_with_nulls_where_asked() {
        let batch = batches_of(
            r#"[{"g": 2, "t": 5}, {"g": 1, "t": null}, {"g": null, "t": 1}, {"g": 2, "t": 9}, {"g": 1, "t": 3}]"#,
        )
        .remove(0);
        let order = |sort_by: &str| {
            let skipping = Skipping::parse(None, Some(sort_by)).unwrap();
            let sorted = skipping.sorted(batch.clone()).unwrap();
            let column = |name| {
                let c = sorted
                    .column_by_name(name)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone();
                c.iter().collect::<Vec<_>>()
            };
            column("g").into_iter().zip(column("t")).collect::<Vec<_>>()
        };
        assert_eq!(
            order(r#"["g", "t DESC"]"#),
            [
                (None, Some(1)),
                (Some(1), Some(3)),
                (Some(1), None),
                (Some(2), Some(9)),
                (Some(2), Some(5))
            ]
        );
        assert_eq!(
            order(r#"["g DESC NULLS FIRST", "t"]"#),
            [
                (None, Some(1)),
                (Some(2), Some(5)),
                (Some(2), Some(9)),
                (Some(1), None),
                (Some(1), Some(3))
            ]
        );
        let e = Skipping::parse(None, Some(r#"["nope"]"#))
            .unwrap()
            .sorted(batch)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("`sort_by`: the rows have no column `nope`"),
            "{e}"
        );
        // Checked however few the rows.
        let one = batches_of(r#"[{"g": 1, "l": [1], "u": {"k": 1}}]"#).remove(0);
        for (key, says) in [
            ("nope", "no column `nope`"),
            ("l", "`l` is a List"),
            ("u", "`u` is a Struct"),
        ] {
            let skipping = Skipping::parse(None, Some(&format!(r#"["{key}"]"#))).unwrap();
            let e = skipping.sorted(one.clone()).unwrap_err().to_string();
            assert!(e.contains("`sort_by`: ") && e.contains(says), "{key}: {e}");
        }
    }

    #[test]
    fn bloom_columns_are_leaves_sized_for_every_row() {
        let batches = [
            batches_of(r#"[{"id": 1, "s": "a", "u": {"k": "x"}, "ok": true, "l": [1]}, {"id": 2, "s": "a", "u": null}]"#),
            batches_of(r#"[{"id": 2, "s": "b", "u": {"k": "y"}, "ok": false, "l": []}, {"id": null, "s": null, "u": {"k": "x"}}]"#),
        ]
        .concat();
        let bloom = |names: &str| {
            Skipping::parse(Some(names), None)
                .unwrap()
                .bloom_columns(&batches)
                .map(|c| {
                    c.into_iter()
                        .map(|(p, n)| (p.string(), n))
                        .collect::<Vec<_>>()
                })
        };
        let counts = bloom(r#"["id", "s", "u.k"]"#).unwrap();
        assert_eq!(
            counts,
            [("id".into(), 4), ("s".into(), 4), ("u.k".into(), 4)]
        );
        for (names, says) in [
            (r#"["nope"]"#, "`nope` is not a column"),
            (r#"["u.nope"]"#, "`u.nope` is not a column"),
            (r#"["ok"]"#, "`ok` is a Boolean column"),
            (r#"["l"]"#, "`l` is a List"),
            (r#"["u"]"#, "`u` is a Struct"),
        ] {
            let e = bloom(names).unwrap_err().to_string();
            assert!(
                e.contains("`bloom_filter_columns`: ") && e.contains(says),
                "{names}: {e}"
            );
        }
    }
}
