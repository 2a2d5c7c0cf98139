//! Arrow columns built straight from the rows' tape: one builder per column, nested for
//! structs, lists and maps, filled in a single pass over the rows.
//!
//! Conversions are exact or an error naming the column, the row, the expected type and the
//! JSON type found (never the value): integers are range-checked for their width, decimals
//! come from the number's text, dates and timestamps from ISO-8601 text (timestamps also from
//! epoch seconds), binary from base64.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, LargeBinaryBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, MapArray, RecordBatch, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer};
use arrow_schema::{DataType, FieldRef, Fields, SchemaRef, TimeUnit};

use crate::Error;
use crate::rows::{Node, PARALLEL_ROWS, RowRef, Rows, same_key};
use crate::schema::{convert, ddl};

/// The zone iceberg-rust gives `timestamptz` columns in Arrow.
const ICEBERG_UTC: &str = "+00:00";

/// What to do with a row key that the schema does not name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownKeys {
    /// Refuse the event (the default: a typo in a key would otherwise lose data).
    #[default]
    Error,
    /// Leave the key out.
    Drop,
    /// Refuse it as a column the target table lacks (`TableSchemaMismatch`).
    NotInTable,
}

/// Builds the rows into one batch of `schema`.
///
/// # Errors
/// `InvalidEvent` naming the column and row of a value that does not convert exactly to its
/// column's type, a null or missing value in a `NOT NULL` column, or (with
/// [`UnknownKeys::Error`]) a key the schema lacks.
/// With [`PARALLEL_ROWS`] rows or more, the two halves of the rows are built on two threads
/// into two batches (the Parquet writer puts both in one row group); the first half's error
/// wins, so the row named is the first bad one either way.
pub fn build(
    rows: &Rows,
    schema: SchemaRef,
    unknown: UnknownKeys,
) -> Result<Vec<RecordBatch>, Error> {
    if rows.len() < PARALLEL_ROWS {
        return Ok(vec![build_part(rows, &schema, unknown, 0..rows.len())?]);
    }
    let (first, second) = rows.on_halves(|part| build_part(rows, &schema, unknown, part));
    Ok(vec![first?, second?])
}

fn build_part(
    rows: &Rows,
    schema: &SchemaRef,
    unknown: UnknownKeys,
    part: std::ops::Range<usize>,
) -> Result<RecordBatch, Error> {
    let mut root = StructColumn::new(schema.fields(), "", part.len(), unknown)?;
    if rows.is_text() {
        // CSV records: the column of each position found once, not per row and key.
        let first = rows.row_ref(part.start);
        let positions = (rows.text_names())
            .map(|name| root.child(name, first))
            .collect::<Result<Vec<_>, Error>>()?;
        for (row, start) in rows.rows_in(part) {
            root.append_record(rows, start, row, &positions)?;
        }
    } else {
        for (row, start) in rows.rows_in(part) {
            root.append_object(rows, start, row)?;
        }
    }
    let columns = root
        .children
        .into_iter()
        .map(Column::finish)
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error)
}

fn arrow_error(e: arrow_schema::ArrowError) -> Error {
    Error::InvalidEvent(format!("the rows could not be assembled into Arrow: {e}"))
}

/// A column being built, with its path (`addr.geo.lat`, `tags.[]`) and type for messages.
///
/// Kept whole: `new`, `append`, `push_null` and `finish` are each one match over the
/// [`Builder`]s, so a type's cases are found under the same variant in each; split by type
/// instead, every value would go through a trait object in the hottest loop of a conversion.
/// Structs, which hold columns of their own, are [`StructColumn`].
struct Column {
    path: String,
    data_type: DataType,
    nullable: bool,
    builder: Builder,
}

enum Builder {
    Bool(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    /// Iceberg's `binary`.
    LargeBinary(LargeBinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    List(Nested),
    Map(Nested),
    Struct(StructColumn),
}

/// A list or map: offsets into its child (the elements, or the key/value entries).
struct Nested {
    field: FieldRef,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    child: Box<Column>,
}

impl Column {
    fn new(
        field: &arrow_schema::Field,
        path: String,
        capacity: usize,
        unknown: UnknownKeys,
    ) -> Result<Column, Error> {
        let nested = |child_field: &FieldRef, child_path: String| -> Result<Nested, Error> {
            let mut offsets = Vec::with_capacity(capacity + 1);
            offsets.push(0);
            Ok(Nested {
                field: child_field.clone(),
                offsets,
                nulls: NullBufferBuilder::new(capacity),
                child: Box::new(Column::new(child_field, child_path, capacity, unknown)?),
            })
        };
        let builder = match field.data_type() {
            DataType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            DataType::Int8 => Builder::Int8(Int8Builder::with_capacity(capacity)),
            DataType::Int16 => Builder::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Builder::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float32 => Builder::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Decimal128(p, s) => Builder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(*p, *s)
                    .map_err(arrow_error)?,
            ),
            DataType::Utf8 => Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 8)),
            DataType::Binary => {
                Builder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 8))
            }
            DataType::Date32 => Builder::Date(Date32Builder::with_capacity(capacity)),
            DataType::LargeBinary => {
                Builder::LargeBinary(LargeBinaryBuilder::with_capacity(capacity, capacity * 8))
            }
            // Spark's and Iceberg's (`timestamptz`) instants in UTC, and Iceberg's `timestamp`
            // without a zone (a string's offset, if it has one, is applied: the UTC wall clock).
            DataType::Timestamp(TimeUnit::Microsecond, tz)
                if tz
                    .as_deref()
                    .is_none_or(|tz| tz == ddl::UTC || tz == ICEBERG_UTC) =>
            {
                Builder::Timestamp(
                    TimestampMicrosecondBuilder::with_capacity(capacity)
                        .with_timezone_opt(tz.clone()),
                )
            }
            DataType::List(element) => Builder::List(nested(element, format!("{path}.[]"))?),
            DataType::Map(entries, _) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    unreachable!("map entries are a struct")
                };
                if !matches!(
                    kv[0].data_type(),
                    DataType::Utf8
                        | DataType::Int8
                        | DataType::Int16
                        | DataType::Int32
                        | DataType::Int64
                ) {
                    return Err(Error::InvalidEvent(format!(
                        "column `{path}`: map keys come from JSON object keys, so they must be STRING or an integer type"
                    )));
                }
                Builder::Map(nested(entries, path.clone())?)
            }
            DataType::Struct(fields) => {
                Builder::Struct(StructColumn::new(fields, &path, capacity, unknown)?)
            }
            other => {
                return Err(Error::InvalidEvent(format!(
                    "column `{path}`: type {other} is not supported"
                )));
            }
        };
        Ok(Column {
            path,
            data_type: field.data_type().clone(),
            nullable: field.is_nullable(),
            builder,
        })
    }

    fn append(&mut self, rows: &Rows, at: usize, row: RowRef) -> Result<(), Error> {
        let node = &rows.node(at);
        if let Node::Null = node {
            return self.append_null(row, "null");
        }
        if let (true, Node::Str(text)) = (rows.is_text(), node) {
            return self.append_text(text, row);
        }
        let Column {
            path,
            data_type,
            builder,
            ..
        } = self;
        let unfit = |why: &str| {
            let found = node.json_type();
            column_error(
                path,
                row,
                &format!(
                    "expected {}, found a JSON {found} that {why}",
                    ddl::spark_type(data_type)
                ),
            )
        };
        match (builder, node) {
            (Builder::Bool(b), Node::Bool(v)) => b.append_value(*v),
            (Builder::Int8(b), _) => b.append_value(
                integer(node)
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| unfit("is not an integer in range"))?,
            ),
            (Builder::Int16(b), _) => b.append_value(
                integer(node)
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| unfit("is not an integer in range"))?,
            ),
            (Builder::Int32(b), _) => b.append_value(
                integer(node)
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| unfit("is not an integer in range"))?,
            ),
            (Builder::Int64(b), _) => {
                b.append_value(integer(node).ok_or_else(|| unfit("is not an integer in range"))?)
            }
            // Integers in a float column: the inference rule for mixed numbers, and what a
            // FLOAT/DOUBLE schema column accepts.
            (Builder::Float32(b), _) => b.append_value(
                float(node)
                    .map(|v| v as f32)
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| unfit("is not a number in range"))?,
            ),
            (Builder::Float64(b), _) => {
                b.append_value(float(node).ok_or_else(|| unfit("is not a number in range"))?)
            }
            (Builder::Decimal(b), _) => {
                let (DataType::Decimal128(p, s), Some(text)) =
                    (&*data_type, number_or_string(node))
                else {
                    return Err(unfit("is not a number or numeric string"));
                };
                b.append_value(convert::decimal(&text, *p, *s).map_err(&unfit)?);
            }
            (Builder::Utf8(b), Node::Str(s)) => b.append_value(s),
            (Builder::Binary(b), Node::Str(s)) => {
                b.append_value(convert::binary(s).map_err(&unfit)?)
            }
            (Builder::LargeBinary(b), Node::Str(s)) => {
                b.append_value(convert::binary(s).map_err(&unfit)?)
            }
            (Builder::Date(b), Node::Str(s)) => b.append_value(convert::date(s).map_err(&unfit)?),
            (Builder::Timestamp(b), Node::Str(s)) => {
                b.append_value(convert::timestamp(s).map_err(&unfit)?)
            }
            (Builder::Timestamp(b), Node::Int(_) | Node::Number(_)) => {
                let text = number_or_string(node).expect("a number has text");
                b.append_value(convert::epoch_seconds(&text).map_err(&unfit)?);
            }
            (Builder::List(list), Node::Array { .. }) => {
                for item in rows.elements(at) {
                    list.child.append(rows, item, row)?;
                }
                list.close(path)?;
            }
            (Builder::Map(map), Node::Object { .. }) => {
                let Builder::Struct(entries) = &mut map.child.builder else {
                    unreachable!("map entries are a struct")
                };
                for (key, value) in rows.members(at) {
                    entries.children[0].append_key(key, row)?;
                    entries.children[1].append(rows, value, row)?;
                    entries.nulls.append_non_null();
                }
                map.close(path)?;
            }
            (Builder::Struct(s), Node::Object { .. }) => {
                s.append_object(rows, at, row)?;
                s.nulls.append_non_null();
            }
            _ => return Err(unfit("does not convert")),
        }
        Ok(())
    }

    /// A CSV field: its text converted to the column's type, as Spark converts it.
    fn append_text(&mut self, text: &str, row: RowRef) -> Result<(), Error> {
        let int = || text.parse::<i64>().ok();
        let fits: Result<(), &str> = match &mut self.builder {
            Builder::Utf8(b) => {
                b.append_value(text);
                Ok(())
            }
            Builder::Bool(b) => ["false", "true"]
                .iter()
                .position(|word| text.eq_ignore_ascii_case(word))
                .map(|v| b.append_value(v == 1))
                .ok_or("is not true or false"),
            Builder::Int8(b) => int()
                .and_then(|v| v.try_into().ok())
                .map(|v| b.append_value(v))
                .ok_or("is not an integer in range"),
            Builder::Int16(b) => int()
                .and_then(|v| v.try_into().ok())
                .map(|v| b.append_value(v))
                .ok_or("is not an integer in range"),
            Builder::Int32(b) => int()
                .and_then(|v| v.try_into().ok())
                .map(|v| b.append_value(v))
                .ok_or("is not an integer in range"),
            Builder::Int64(b) => int()
                .map(|v| b.append_value(v))
                .ok_or("is not an integer in range"),
            Builder::Float32(b) => text
                .parse::<f32>()
                .map(|v| b.append_value(v))
                .map_err(|_| "is not a number"),
            Builder::Float64(b) => text
                .parse::<f64>()
                .map(|v| b.append_value(v))
                .map_err(|_| "is not a number"),
            Builder::Decimal(b) => match &self.data_type {
                DataType::Decimal128(p, s) => {
                    convert::decimal(text, *p, *s).map(|v| b.append_value(v))
                }
                _ => unreachable!("a decimal builder has a decimal type"),
            },
            Builder::Date(b) => convert::date(text).map(|v| b.append_value(v)),
            Builder::Timestamp(b) => convert::timestamp(text).map(|v| b.append_value(v)),
            // Spark reads a CSV field into a binary column as its bytes.
            Builder::Binary(b) => {
                b.append_value(text);
                Ok(())
            }
            Builder::LargeBinary(b) => {
                b.append_value(text);
                Ok(())
            }
            Builder::List(_) | Builder::Map(_) | Builder::Struct(_) => {
                Err("cannot fill a nested column (a CSV field is text)")
            }
        };
        fits.map_err(|why| {
            let expected = ddl::spark_type(&self.data_type);
            self.error(
                row,
                &format!("expected {expected}, found a field that {why}"),
            )
        })
    }

    /// A map key (always a JSON string) into the entries' key column.
    fn append_key(&mut self, key: &str, row: RowRef) -> Result<(), Error> {
        let int = || key.parse::<i64>().ok();
        let fits = match &mut self.builder {
            Builder::Utf8(b) => {
                b.append_value(key);
                Some(())
            }
            Builder::Int8(b) => int()
                .and_then(|v| v.try_into().ok())
                .map(|v| b.append_value(v)),
            Builder::Int16(b) => int()
                .and_then(|v| v.try_into().ok())
                .map(|v| b.append_value(v)),
            Builder::Int32(b) => int()
                .and_then(|v| v.try_into().ok())
                .map(|v| b.append_value(v)),
            Builder::Int64(b) => int().map(|v| b.append_value(v)),
            _ => None,
        };
        fits.ok_or_else(|| {
            self.error(
                row,
                &format!(
                    "a map key does not convert to {}",
                    ddl::spark_type(&self.data_type)
                ),
            )
        })
    }

    /// A null (or, with `why` = "missing", an absent key) in this column.
    fn append_null(&mut self, row: RowRef, why: &str) -> Result<(), Error> {
        if !self.nullable {
            let expected = ddl::spark_type(&self.data_type);
            return Err(self.error(row, &format!("{why} in a NOT NULL {expected} column")));
        }
        self.push_null();
        Ok(())
    }

    /// A null below a null parent: allowed even in a NOT NULL child.
    fn push_null(&mut self) {
        match &mut self.builder {
            Builder::Bool(b) => b.append_null(),
            Builder::Int8(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::LargeBinary(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::List(n) | Builder::Map(n) => {
                n.offsets
                    .push(*n.offsets.last().expect("offsets start with 0"));
                n.nulls.append_null();
            }
            Builder::Struct(s) => {
                for child in &mut s.children {
                    child.push_null();
                }
                s.nulls.append_null();
            }
        }
    }

    fn len(&self) -> usize {
        match &self.builder {
            Builder::Bool(b) => b.len(),
            Builder::Int8(b) => b.len(),
            Builder::Int16(b) => b.len(),
            Builder::Int32(b) => b.len(),
            Builder::Int64(b) => b.len(),
            Builder::Float32(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Decimal(b) => b.len(),
            Builder::Utf8(b) => b.len(),
            Builder::Binary(b) => b.len(),
            Builder::LargeBinary(b) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Timestamp(b) => b.len(),
            Builder::List(n) | Builder::Map(n) => n.offsets.len() - 1,
            Builder::Struct(s) => s.nulls.len(),
        }
    }

    fn error(&self, row: RowRef, why: &str) -> Error {
        column_error(&self.path, row, why)
    }

    fn finish(self) -> Result<ArrayRef, Error> {
        Ok(match self.builder {
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Int8(mut b) => Arc::new(b.finish()),
            Builder::Int16(mut b) => Arc::new(b.finish()),
            Builder::Int32(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Float32(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Decimal(mut b) => Arc::new(b.finish()),
            Builder::Utf8(mut b) => Arc::new(b.finish()),
            Builder::Binary(mut b) => Arc::new(b.finish()),
            Builder::LargeBinary(mut b) => Arc::new(b.finish()),
            Builder::Date(mut b) => Arc::new(b.finish()),
            Builder::Timestamp(mut b) => Arc::new(b.finish()),
            Builder::List(n) => {
                let (field, offsets, nulls, child) = n.into_parts()?;
                Arc::new(ListArray::try_new(field, offsets, child, nulls).map_err(arrow_error)?)
            }
            Builder::Map(n) => {
                let (field, offsets, nulls, child) = n.into_parts()?;
                let entries = child
                    .as_any()
                    .downcast_ref::<StructArray>()
                    .expect("map entries are a struct")
                    .clone();
                Arc::new(
                    MapArray::try_new(field, offsets, entries, nulls, false)
                        .map_err(arrow_error)?,
                )
            }
            Builder::Struct(s) => Arc::new(s.finish()?),
        })
    }
}

impl Nested {
    /// Ends the current list or map at the child's length.
    fn close(&mut self, path: &str) -> Result<(), Error> {
        let end = i32::try_from(self.child.len())
            .map_err(|_| Error::InvalidEvent(format!("column `{path}`: too many list elements")))?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn into_parts(
        mut self,
    ) -> Result<
        (
            FieldRef,
            OffsetBuffer<i32>,
            Option<arrow_buffer::NullBuffer>,
            ArrayRef,
        ),
        Error,
    > {
        let nulls = self.nulls.finish();
        Ok((
            self.field,
            OffsetBuffer::new(self.offsets.into()),
            nulls,
            self.child.finish()?,
        ))
    }
}

fn column_error(path: &str, row: RowRef, why: &str) -> Error {
    Error::InvalidEvent(format!("column `{path}` at {row}: {why}"))
}

/// An integer node's value: plain i64, or `-0`.
fn integer(node: &Node) -> Option<i64> {
    match node {
        Node::Int(v) => Some(*v),
        Node::Number(text) if *text == "-0" => Some(0),
        _ => None,
    }
}

/// A number node's value as a finite f64.
fn float(node: &Node) -> Option<f64> {
    match node {
        Node::Int(v) => Some(*v as f64),
        Node::Number(text) => text.parse::<f64>().ok().filter(|v| v.is_finite()),
        _ => None,
    }
}

/// The text of a number or string node (decimals and epoch seconds read either).
fn number_or_string<'n>(node: &'n Node) -> Option<Cow<'n, str>> {
    match node {
        Node::Number(text) | Node::Str(text) => Some(Cow::Borrowed(*text)),
        Node::Int(v) => Some(Cow::Owned(v.to_string())),
        _ => None,
    }
}

/// An object column (or the row itself): children by field, found by name.
struct StructColumn {
    /// Empty for the row itself.
    path: String,
    fields: Fields,
    children: Vec<Column>,
    index: HashMap<String, usize>,
    nulls: NullBufferBuilder,
    unknown: UnknownKeys,
    /// Which children received a value from the object being appended.
    filled: Vec<bool>,
}

impl StructColumn {
    fn new(
        fields: &Fields,
        path: &str,
        capacity: usize,
        unknown: UnknownKeys,
    ) -> Result<StructColumn, Error> {
        let children = fields
            .iter()
            .map(|f| {
                let child = if path.is_empty() {
                    f.name().clone()
                } else {
                    format!("{path}.{}", f.name())
                };
                Column::new(f, child, capacity, unknown)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StructColumn {
            path: path.to_owned(),
            fields: fields.clone(),
            index: fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().clone(), i))
                .collect(),
            filled: vec![false; children.len()],
            children,
            nulls: NullBufferBuilder::new(capacity),
            unknown,
        })
    }

    /// The child a key fills: `None` for a key dropped (`UnknownKeys::Drop`).
    ///
    /// # Errors
    /// `InvalidEvent` (`TableSchemaMismatch` for a table) for a key the schema lacks.
    fn child(&self, key: &str, row: RowRef) -> Result<Option<usize>, Error> {
        match (self.index.get(key), self.unknown) {
            (Some(&child), _) => Ok(Some(child)),
            (None, UnknownKeys::Drop) => Ok(None),
            (None, UnknownKeys::Error | UnknownKeys::NotInTable) => Err(self.unknown_key(key, row)),
        }
    }

    /// A CSV record whose `i`-th value fills child `positions[i]`.
    fn append_record(
        &mut self,
        rows: &Rows,
        at: usize,
        row: RowRef,
        positions: &[Option<usize>],
    ) -> Result<(), Error> {
        self.filled.fill(false);
        for (position, value) in positions.iter().zip(rows.record_values(at)) {
            if let Some(child) = *position {
                self.children[child].append(rows, value, row)?;
                self.filled[child] = true;
            }
        }
        self.fill_missing(row)
    }

    /// Appends the members of the object at `at`; children it lacks get a null.
    fn append_object(&mut self, rows: &Rows, at: usize, row: RowRef) -> Result<(), Error> {
        self.filled.fill(false);
        for (ordinal, (key, value)) in rows.members(at).enumerate() {
            // Rows usually repeat the previous row's key order: try that position first.
            let child = match self.fields.get(ordinal) {
                Some(f) if same_key(f.name(), key) => ordinal,
                _ => match self.child(key, row)? {
                    Some(child) => child,
                    None => continue,
                },
            };
            self.children[child].append(rows, value, row)?;
            self.filled[child] = true;
        }
        self.fill_missing(row)
    }

    /// Nulls in the children the row left out.
    fn fill_missing(&mut self, row: RowRef) -> Result<(), Error> {
        for (child, filled) in self.children.iter_mut().zip(&self.filled) {
            if !filled {
                child.append_null(row, "missing")?;
            }
        }
        Ok(())
    }

    fn unknown_key(&self, key: &str, row: RowRef) -> Error {
        let within = if self.path.is_empty() {
            String::new()
        } else {
            format!(" of `{}`", self.path)
        };
        match self.unknown {
            UnknownKeys::NotInTable => Error::TableSchemaMismatch(format!(
                "{row}: the table has no column `{key}`{within}; nothing was written"
            )),
            _ => Error::InvalidEvent(format!(
                "{row}: key `{key}`{within} is not in the schema (set \"unknown_keys\": \"drop\" to leave such keys out)"
            )),
        }
    }

    fn finish(mut self) -> Result<StructArray, Error> {
        let nulls = self.nulls.finish();
        let children = self
            .children
            .into_iter()
            .map(Column::finish)
            .collect::<Result<Vec<_>, _>>()?;
        StructArray::try_new(self.fields, children, nulls).map_err(arrow_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Date32Type, Decimal128Type, Float32Type, Int8Type, Int16Type, Int32Type, Int64Type,
        TimestampMicrosecondType,
    };

    const SCHEMA: &str = "name STRING NOT NULL, age INT, tiny TINYINT, small SMALLINT, big BIGINT, ratio FLOAT, \
        price DECIMAL(10,2), born DATE, seen TIMESTAMP, blob BINARY, ok BOOLEAN, tags ARRAY<STRING>, \
        addr STRUCT<zip: STRING, geo: STRUCT<lat: DOUBLE>>, attrs MAP<STRING, BIGINT>";

    fn build_json(schema: &str, rows: &str, unknown: UnknownKeys) -> Result<RecordBatch, Error> {
        let rows = crate::rows::rows_of(rows);
        build(&rows, Arc::new(ddl::parse(schema).unwrap()), unknown).map(|mut b| b.remove(0))
    }

    #[test]
    fn iceberg_timestamps_and_binaries_are_built_in_their_own_arrow_types() {
        use arrow_schema::{Field, Schema};
        let schema = Schema::new(vec![
            Field::new(
                "local",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new(
                "instant",
                DataType::Timestamp(TimeUnit::Microsecond, Some(ICEBERG_UTC.into())),
                true,
            ),
            Field::new("blob", DataType::LargeBinary, true),
        ]);
        let rows = crate::rows::rows_of(
            r#"[{"local": "2024-01-02T03:04:05", "instant": "2024-01-02T03:04:05+01:00", "blob": "aGk="}]"#,
        );
        let batch = build(&rows, Arc::new(schema.clone()), UnknownKeys::Error)
            .unwrap()
            .remove(0);
        assert_eq!(batch.schema().as_ref(), &schema);
        let micros = |i: usize| {
            batch
                .column(i)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0)
        };
        assert_eq!(micros(0), 1_704_164_645_000_000);
        assert_eq!(micros(1), micros(0) - 3_600_000_000);
        assert_eq!(batch.column(2).as_binary::<i64>().value(0), b"hi");
    }

    #[test]
    fn declared_types_convert_exactly() {
        let batch = build_json(
            SCHEMA,
            r#"[{"name": "John Doe", "age": 30, "tiny": -128, "small": 32767, "big": -9223372036854775808,
                 "ratio": 0.5, "price": "0.10", "born": "1990-05-17", "seen": "2025-11-27T14:00:00+02:00",
                 "blob": "aGk=", "ok": true, "tags": ["a", null], "addr": {"zip": "10001", "geo": {"lat": 40}},
                 "attrs": {"x": 1, "y": null}},
                {"name": "Jane", "price": 12345678.99, "seen": 1764244800.5, "attrs": {}},
                {"name": "Mike", "price": -1e-2, "age": -0, "addr": null}]"#,
            UnknownKeys::Error,
        )
        .unwrap();
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        assert_eq!(col("age").as_primitive::<Int32Type>().value(0), 30);
        assert_eq!(col("age").as_primitive::<Int32Type>().value(2), 0);
        assert!(col("age").is_null(1));
        assert_eq!(col("tiny").as_primitive::<Int8Type>().value(0), -128);
        assert_eq!(col("small").as_primitive::<Int16Type>().value(0), 32767);
        assert_eq!(col("big").as_primitive::<Int64Type>().value(0), i64::MIN);
        assert_eq!(col("ratio").as_primitive::<Float32Type>().value(0), 0.5);
        let price = col("price");
        let price = price.as_primitive::<Decimal128Type>();
        assert_eq!(
            (price.value(0), price.value(1), price.value(2)),
            (10, 1_234_567_899, -1)
        );
        assert_eq!(col("born").as_primitive::<Date32Type>().value(0), 7_441);
        let seen = col("seen");
        let seen = seen.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            (seen.value(0), seen.value(1)),
            (1_764_244_800_000_000, 1_764_244_800_500_000)
        );
        assert_eq!(col("blob").as_binary::<i32>().value(0), b"hi");
        assert!(col("ok").as_boolean().value(0));
        let tags = col("tags");
        assert_eq!(tags.as_list::<i32>().value(0).len(), 2);
        assert!(tags.is_null(1));
        let addr = col("addr");
        assert!(addr.is_valid(0) && addr.is_null(1) && addr.is_null(2));
        let attrs = col("attrs");
        let attrs = attrs.as_map();
        assert_eq!((attrs.value_length(0), attrs.value_length(1)), (2, 0));
        assert_eq!(attrs.keys().as_string::<i32>().value(1), "y");
        assert!(attrs.values().is_null(1));
        assert!(attrs.is_null(2));
    }

    /// CSV `text` (a header, then records) built into one batch of `schema`.
    fn build_csv(schema: &str, text: &str) -> Result<RecordBatch, Error> {
        use crate::rows::csv::{Dialect, Layout, record_fields};
        let (header, records) = text.split_once('\n').unwrap();
        let layout = Layout {
            dialect: Dialect::default(),
            names: record_fields(header, &Dialect::default(), 1).unwrap(),
            null_value: String::new(),
            permissive: false,
        };
        let rows = Rows::parse_csv(records, &layout, 2)?;
        build(
            &rows,
            Arc::new(ddl::parse(schema).unwrap()),
            UnknownKeys::Error,
        )
        .map(|mut b| b.remove(0))
    }

    #[test]
    fn csv_fields_convert_to_every_flat_type_and_errors_name_the_line() {
        let batch = build_csv(
            "b BOOLEAN, t TINYINT, i INT, l BIGINT, f FLOAT, d DOUBLE, p DECIMAL(10,2), day DATE, ts TIMESTAMP, s STRING, bin BINARY",
            "b,t,i,l,f,d,p,day,ts,s,bin\nTRUE,-128,7,9007199254740993,1.5,NaN,12.5,2024-05-01,2024-05-01 10:00,\"x,y\",hi\nfalse,,,,,,,,,,\n",
        )
        .unwrap();
        assert!(batch.column(0).as_boolean().value(0) && !batch.column(0).as_boolean().value(1));
        assert_eq!(batch.column(1).as_primitive::<Int8Type>().value(0), -128);
        assert_eq!(batch.column(2).as_primitive::<Int32Type>().value(0), 7);
        assert_eq!(
            batch.column(3).as_primitive::<Int64Type>().value(0),
            9_007_199_254_740_993
        );
        assert_eq!(batch.column(4).as_primitive::<Float32Type>().value(0), 1.5);
        assert!(
            batch
                .column(5)
                .as_primitive::<arrow_array::types::Float64Type>()
                .value(0)
                .is_nan()
        );
        assert_eq!(
            batch.column(6).as_primitive::<Decimal128Type>().value(0),
            1250
        );
        assert_eq!(
            batch.column(7).as_primitive::<Date32Type>().value(0),
            19_844
        );
        assert_eq!(
            batch
                .column(8)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_714_557_600_000_000
        );
        assert_eq!(batch.column(9).as_string::<i32>().value(0), "x,y");
        assert_eq!(batch.column(10).as_binary::<i32>().value(0), b"hi");
        assert!((1..11).all(|c| batch.column(c).is_null(1)));
        for (schema, text, word) in [
            (
                "i INT",
                "i\n1\n2147483648\n",
                "column `i` at line 3: expected INT, found a field that is not an integer in range",
            ),
            (
                "b BOOLEAN",
                "b\nyes\n",
                "column `b` at line 2: expected BOOLEAN, found a field that is not true or false",
            ),
            (
                "p DECIMAL(4,1)",
                "p\n1.25\n",
                "column `p` at line 2: expected DECIMAL(4,1), found a field that has more decimal places",
            ),
            (
                "d DATE",
                "d\n01/05/2024\n",
                "column `d` at line 2: expected DATE, found a field that is not an ISO-8601 date",
            ),
            ("a ARRAY<STRING>", "a\nx\n", "cannot fill a nested column"),
            (
                "i INT NOT NULL",
                "i\n\"\"\n",
                "null in a NOT NULL INT column",
            ),
        ] {
            let e = build_csv(schema, text).unwrap_err();
            assert!(e.to_string().contains(word), "{schema}: {e}");
        }
    }

    #[test]
    fn conversion_errors_name_column_row_and_types_but_not_values() {
        for (schema, rows, words) in [
            (
                "t TINYINT",
                r#"[{"t": 1}, {"t": 128}]"#,
                &["`t` at row 1", "expected TINYINT", "JSON integer"][..],
            ),
            ("n INT", r#"[{"n": "5"}]"#, &["expected INT", "JSON string"]),
            ("n INT", r#"[{"n": 1.5}]"#, &["expected INT", "JSON float"]),
            (
                "p DECIMAL(4,2)",
                r#"[{"p": 123.4}]"#,
                &["`p` at row 0", "DECIMAL(4,2)", "precision"],
            ),
            ("p DECIMAL(4,2)", r#"[{"p": "0.125"}]"#, &["scale"]),
            (
                "d DATE",
                r#"[{"d": "2026-02-30"}]"#,
                &["expected DATE", "ISO-8601 date"],
            ),
            (
                "s TIMESTAMP",
                r#"[{"s": "noon"}]"#,
                &["expected TIMESTAMP", "ISO-8601 timestamp"],
            ),
            ("b BINARY", r#"[{"b": "%%%"}]"#, &["base64"]),
            (
                "s STRING",
                r#"[{"s": 5}]"#,
                &["expected STRING", "JSON integer"],
            ),
            (
                "n STRING NOT NULL",
                r#"[{"n": "a"}, {"n": null}]"#,
                &["`n` at row 1", "null in a NOT NULL STRING column"],
            ),
            (
                "n STRING NOT NULL",
                r#"[{"m": "a"}]"#,
                &["key `m`", "not in the schema"],
            ),
            (
                "n STRING NOT NULL, m STRING",
                r#"[{"m": "a"}]"#,
                &["`n` at row 0", "missing in a NOT NULL STRING column"],
            ),
            (
                "a STRUCT<x: INT>",
                r#"[{"a": {"y": 1}}]"#,
                &["key `y` of `a`"],
            ),
            (
                "m MAP<INT, STRING>",
                r#"[{"m": {"1": "a", "one": "b"}}]"#,
                &["`m.key` at row 0", "does not convert to INT"],
            ),
            (
                "l ARRAY<INT>",
                r#"[{"l": [1, "x"]}]"#,
                &["`l.[]` at row 0", "expected INT"],
            ),
        ] {
            let err = build_json(schema, rows, UnknownKeys::Error).expect_err(rows);
            assert_eq!(err.error_type(), "InvalidEvent");
            for word in words {
                assert!(
                    err.to_string().contains(word),
                    "{schema} {rows}: `{err}` lacks `{word}`"
                );
            }
            for value in ["128", "\"5\"", "0.125", "2026-02-30", "noon", "%%%"] {
                assert!(!err.to_string().contains(value), "{err} quotes a value");
            }
        }
        assert!(matches!(
            build_json("m MAP<DATE, STRING>", r#"[{"m": {}}]"#, UnknownKeys::Error),
            Err(Error::InvalidEvent(msg)) if msg.contains("STRING or an integer")
        ));
    }

    #[test]
    fn unknown_keys_can_be_dropped_and_null_parents_hide_not_null_children() {
        let batch = build_json(
            "a STRUCT<x: INT NOT NULL>",
            r#"[{"a": {"x": 1, "y": 2}, "extra": true}, {"a": null}]"#,
            UnknownKeys::Drop,
        )
        .unwrap();
        assert_eq!(batch.num_columns(), 1);
        assert!(batch.column(0).is_null(1));
    }
}
