//! Arrow columns built straight from the rows' tape: one builder per column, nested for
//! structs and lists, filled in a single pass over the rows.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer};
use arrow_schema::{DataType, FieldRef, Fields, SchemaRef};

use crate::Error;
use crate::rows::{Node, Rows};

/// Builds the rows into one batch of `schema`.
///
/// # Errors
/// `InvalidEvent` naming the column and row of a value that does not fit its column's type
/// (not expected for a schema inferred from the same rows), or a type this builder lacks.
pub fn build(rows: &Rows, schema: SchemaRef) -> Result<RecordBatch, Error> {
    let mut root = StructColumn::new(schema.fields(), "", rows.len())?;
    for (row, start) in rows.starts().enumerate() {
        root.append_object(rows, start, row)?;
    }
    let columns = root
        .children
        .into_iter()
        .map(Column::finish)
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns).map_err(arrow_error)
}

fn arrow_error(e: arrow_schema::ArrowError) -> Error {
    Error::InvalidEvent(format!("the rows could not be assembled into Arrow: {e}"))
}

/// A column being built, and its path (`addr.geo.lat`, `tags.[]`) for messages.
struct Column {
    path: String,
    builder: Builder,
}

enum Builder {
    Bool(BooleanBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        element: Box<Column>,
    },
    Struct(StructColumn),
}

impl Column {
    fn new(data_type: &DataType, path: String, capacity: usize) -> Result<Column, Error> {
        let builder = match data_type {
            DataType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Utf8 => Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 8)),
            DataType::List(field) => {
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Builder::List {
                    field: field.clone(),
                    offsets,
                    nulls: NullBufferBuilder::new(capacity),
                    element: Box::new(Column::new(
                        field.data_type(),
                        format!("{path}.[]"),
                        capacity,
                    )?),
                }
            }
            DataType::Struct(fields) => {
                Builder::Struct(StructColumn::new(fields, &path, capacity)?)
            }
            other => {
                return Err(Error::InvalidEvent(format!(
                    "column `{path}`: type {other} is not supported"
                )));
            }
        };
        Ok(Column { path, builder })
    }

    fn append(&mut self, rows: &Rows, at: usize, row: usize) -> Result<(), Error> {
        let node = rows.node(at);
        match (&mut self.builder, node) {
            (_, Node::Null) => self.append_null(),
            (Builder::Bool(b), Node::Bool(v)) => b.append_value(*v),
            (Builder::Int64(b), Node::Int(v)) => b.append_value(*v),
            (Builder::Int64(b), Node::Number(text)) if text == "-0" => b.append_value(0),
            // Integers in a float column (the inference rule for mixed numbers).
            (Builder::Float64(b), Node::Int(v)) => b.append_value(*v as f64),
            (Builder::Float64(b), Node::Number(text)) => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => b.append_value(v),
                _ => return Err(self.error(row, "number beyond the range of a 64-bit float")),
            },
            (Builder::Utf8(b), Node::Str(s)) => b.append_value(s),
            (
                Builder::List {
                    offsets,
                    nulls,
                    element,
                    ..
                },
                Node::Array { .. },
            ) => {
                for item in rows.elements(at) {
                    element.append(rows, item, row)?;
                }
                let end = i32::try_from(element.len()).map_err(|_| {
                    Error::InvalidEvent(format!("column `{}`: too many list elements", self.path))
                })?;
                offsets.push(end);
                nulls.append_non_null();
            }
            (Builder::Struct(s), Node::Object { .. }) => {
                s.append_object(rows, at, row)?;
                s.nulls.append_non_null();
            }
            (_, node) => {
                let why = format!(
                    "a JSON {} does not fit a column of {}",
                    node.json_type(),
                    self.type_name()
                );
                return Err(self.error(row, &why));
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match &mut self.builder {
            Builder::Bool(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::List { offsets, nulls, .. } => {
                offsets.push(*offsets.last().expect("offsets start with 0"));
                nulls.append_null();
            }
            Builder::Struct(s) => {
                for child in &mut s.children {
                    child.append_null();
                }
                s.nulls.append_null();
            }
        }
    }

    fn len(&self) -> usize {
        match &self.builder {
            Builder::Bool(b) => b.len(),
            Builder::Int64(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Utf8(b) => b.len(),
            Builder::List { offsets, .. } => offsets.len() - 1,
            Builder::Struct(s) => s.nulls.len(),
        }
    }

    fn type_name(&self) -> &'static str {
        match &self.builder {
            Builder::Bool(_) => "booleans",
            Builder::Int64(_) => "64-bit integers",
            Builder::Float64(_) => "64-bit floats",
            Builder::Utf8(_) => "strings",
            Builder::List { .. } => "arrays",
            Builder::Struct(_) => "objects",
        }
    }

    fn error(&self, row: usize, why: &str) -> Error {
        Error::InvalidEvent(format!("column `{}` at row {row}: {why}", self.path))
    }

    fn finish(self) -> Result<ArrayRef, Error> {
        Ok(match self.builder {
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Utf8(mut b) => Arc::new(b.finish()),
            Builder::List {
                field,
                offsets,
                mut nulls,
                element,
            } => Arc::new(
                ListArray::try_new(
                    field,
                    OffsetBuffer::new(offsets.into()),
                    element.finish()?,
                    nulls.finish(),
                )
                .map_err(arrow_error)?,
            ),
            Builder::Struct(s) => Arc::new(s.finish()?),
        })
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
    /// Which children received a value from the object being appended.
    filled: Vec<bool>,
}

impl StructColumn {
    fn new(fields: &Fields, path: &str, capacity: usize) -> Result<StructColumn, Error> {
        let children = fields
            .iter()
            .map(|f| {
                let child = if path.is_empty() {
                    f.name().clone()
                } else {
                    format!("{path}.{}", f.name())
                };
                Column::new(f.data_type(), child, capacity)
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
        })
    }

    /// Appends the members of the object at `at`; children it lacks get a null.
    fn append_object(&mut self, rows: &Rows, at: usize, row: usize) -> Result<(), Error> {
        self.filled.fill(false);
        for (ordinal, (key, value)) in rows.members(at).enumerate() {
            // Rows usually repeat the previous row's key order: try that position first.
            let child = match self.fields.get(ordinal) {
                Some(f) if f.name() == key => ordinal,
                _ => *self
                    .index
                    .get(key)
                    .ok_or_else(|| self.unknown_key(key, row))?,
            };
            self.children[child].append(rows, value, row)?;
            self.filled[child] = true;
        }
        for (child, filled) in self.children.iter_mut().zip(&self.filled) {
            if !filled {
                child.append_null();
            }
        }
        Ok(())
    }

    fn unknown_key(&self, key: &str, row: usize) -> Error {
        let within = if self.path.is_empty() {
            String::new()
        } else {
            format!(" of `{}`", self.path)
        };
        Error::InvalidEvent(format!(
            "row {row}: key `{key}`{within} is not in the schema"
        ))
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
