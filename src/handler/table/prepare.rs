//! A table target read, or planned from `TABLE_WAREHOUSE`, before anything is written: its
//! schema decided for the rows (columns added, types widened as Iceberg allows), its
//! partition spec checked, its codec chosen; then created once every check passed.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::io::FileIO;
use iceberg::spec::{
    FormatVersion, NestedField, NestedFieldRef, TableMetadataBuilder, Transform, Type,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, Runtime, TableCreation, TableIdent};

use crate::Error;
use crate::catalog::append::{catalog_error, table_codec};
use crate::catalog::glue::{GlueCatalog, table_ident};
use crate::encode::partition::PartitionBy;
use crate::handler::Function;
use crate::handler::conversion::Conversion;
use crate::input::event::Evolution;
use crate::input::target::TableTarget;

use super::{Prepared, arrow_of};

impl Function {
    /// Reads the table, or plans it from `TABLE_WAREHOUSE` and `shape` (the rows' schema);
    /// every refusal comes here, before anything is written.
    pub(super) async fn prepare(
        &self,
        catalog: &GlueCatalog,
        target: &TableTarget,
        shape: Option<&SchemaRef>,
        job: &Conversion<'_>,
    ) -> Result<Prepared, Error> {
        let (evolution, partition_by) = (job.evolution, job.partitioning.by);
        let ident = table_ident(target);
        let (table, planned) = match catalog.load_table(&ident).await {
            Ok(table) => (table, None),
            Err(e) if e.kind() == ErrorKind::TableNotFound => {
                self.plan(&ident, shape, partition_by)?
            }
            Err(e) => return Err(catalog_error(&ident, e)),
        };
        if let Some(asked) = partition_by {
            let spec = identity_columns(&table);
            if spec.as_deref() != Some(asked.columns()) {
                return Err(Error::InvalidEvent(format!(
                    "`partition_by` {:?} disagrees with table {ident}'s partition spec ({}): the table's spec decides its layout; nothing was written",
                    asked.columns(),
                    describe_spec(&table)
                )));
            }
        }
        let evolved = match (evolution, shape) {
            (Evolution::AddColumns, Some(shape)) => {
                evolved(&ident, &table, shape, job.schema.as_deref())?
            }
            _ => Evolved {
                schema: table.metadata().current_schema().clone(),
                adds: Vec::new(),
                promoted: None,
            },
        };
        let Evolved {
            schema,
            adds,
            promoted,
        } = evolved;
        let arrow = arrow_of(&ident, &schema)?;
        let codec = table_codec(&table, target.codec);
        Ok(Prepared {
            ident,
            table,
            planned,
            created: false,
            schema,
            arrow,
            adds,
            codec,
            promoted,
            dry_run: false,
            advances: Vec::new(),
        })
        .and_then(|table| match job.dry_run {
            true => table.dry_run(),
            false => Ok(table),
        })
    }

    /// A missing table's creation under `TABLE_WAREHOUSE` (format v2, with identity partitions
    /// on `partition_by`'s columns), from `shape`, and its metadata as it will be.
    fn plan(
        &self,
        ident: &TableIdent,
        shape: Option<&SchemaRef>,
        partition_by: Option<&PartitionBy>,
    ) -> Result<(Table, Option<TableCreation>), Error> {
        let Some(warehouse) = &self.config.table_warehouse else {
            return Err(Error::TableNotFound(format!(
                "table {ident} does not exist in the Glue Data Catalog, and TABLE_WAREHOUSE is not set to create it; nothing was written"
            )));
        };
        let Some(shape) = shape else {
            return Err(Error::TableNotFound(format!(
                "table {ident} does not exist: give the event a `schema` to create it from a source object; nothing was written"
            )));
        };
        let schema = arrow_schema_to_schema_auto_assign_ids(shape).map_err(|e| {
            Error::TableSchemaMismatch(format!(
                "table {ident}: the rows' schema has no Iceberg form: {e}"
            ))
        })?;
        let location = format!(
            "{warehouse}{}.db/{}",
            ident.namespace().as_ref()[0],
            ident.name()
        );
        let mut spec = UnboundPartitionSpec::builder();
        for column in partition_by.map(PartitionBy::columns).unwrap_or_default() {
            let field = schema
                .field_by_name(column)
                .filter(|f| matches!(*f.field_type, Type::Primitive(_)))
                .ok_or_else(|| {
                    Error::InvalidEvent(format!(
                        "`partition_by`: `{column}` is not a column of a plain type among the rows' columns"
                    ))
                })?;
            spec = spec
                .add_partition_field(field.id, column, Transform::Identity)
                .map_err(|e| catalog_error(ident, e))?;
        }
        let spec = spec.build();
        let creation = || {
            TableCreation::builder()
                .name(ident.name().to_owned())
                .location(location.clone())
                .schema(schema.clone())
                .partition_spec(spec.clone())
                .format_version(FormatVersion::V2)
                .properties(HashMap::new())
                .build()
        };
        let metadata = TableMetadataBuilder::from_table_creation(creation())
            .and_then(|b| b.build())
            .map_err(|e| catalog_error(ident, e))?
            .metadata;
        let table = Table::builder()
            .metadata(metadata)
            .identifier(ident.clone())
            .file_io(FileIO::new_with_memory())
            .runtime(Runtime::current())
            .build()
            .map_err(|e| catalog_error(ident, e))?;
        Ok((table, Some(creation())))
    }

    /// Creates a planned table (or takes another writer's, created meanwhile); whether its
    /// schema then differs from the one planned.
    pub(super) async fn create(
        &self,
        catalog: &GlueCatalog,
        prepared: &mut Prepared,
    ) -> Result<bool, Error> {
        if prepared.dry_run {
            return Ok(false);
        }
        if let Some(schema) = prepared.promoted.take() {
            let ident = &prepared.ident;
            prepared.table = catalog.set_schema(ident, schema).await.map_err(|e| match e.kind() {
                ErrorKind::CatalogCommitConflicts => Error::CommitConflict(format!(
                    "{ident} changed while this invocation widened its columns' types; nothing was written (a retry widens them anew)"
                )),
                _ => catalog_error(ident, e),
            })?;
        }
        let Some(creation) = prepared.planned.take() else {
            return Ok(false);
        };
        let ident = &prepared.ident;
        let table = match catalog.create_table(ident.namespace(), creation).await {
            Ok(table) => {
                prepared.created = true;
                table
            }
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => catalog
                .load_table(ident)
                .await
                .map_err(|e| catalog_error(ident, e))?,
            Err(e) => return Err(catalog_error(ident, e)),
        };
        let schema = table.metadata().current_schema().clone();
        let arrow = arrow_of(ident, &schema)?;
        let changed = arrow != prepared.arrow;
        prepared.table = table;
        prepared.schema = schema;
        prepared.arrow = arrow;
        Ok(changed)
    }
}

/// What `schema_evolution` makes of a table's schema for some rows.
struct Evolved {
    /// The schema the data files are written in.
    schema: iceberg::spec::SchemaRef,
    /// Columns the data's commit adds.
    adds: Vec<NestedFieldRef>,
    /// The table's schema with widened types, committed before the data.
    promoted: Option<iceberg::spec::Schema>,
}

/// The table's schema with the types `declared` widens as Iceberg allows (int to long, float
/// to double, a decimal's precision up; any other difference leaves the table's type, which
/// the values must then fit), and the columns of `shape` it lacks added after its own
/// (optional, ids from the table's last column id on, as Iceberg's schema update assigns
/// them).
///
/// # Errors
/// `TableSchemaMismatch` for a new column of a nested type (add those to the table first).
fn evolved(
    ident: &TableIdent,
    table: &Table,
    shape: &Schema,
    declared: Option<&Schema>,
) -> Result<Evolved, Error> {
    let current = table.metadata().current_schema();
    let promoted = match declared {
        Some(declared) => widened(current, declared).map_err(|e| catalog_error(ident, e))?,
        None => None,
    };
    let base = promoted.as_ref().unwrap_or(current);
    let mut next_id = table.metadata().last_column_id();
    let mut adds = Vec::new();
    for field in shape.fields() {
        if base.field_by_name(field.name()).is_some() {
            continue;
        }
        let field_type = iceberg::arrow::arrow_type_to_type(field.data_type())
            .ok()
            .filter(|t| matches!(t, Type::Primitive(_)))
            .ok_or_else(|| {
                Error::TableSchemaMismatch(format!(
                    "table {ident} has no column `{}`, and a nested column is not added by schema_evolution: add it to the table first; nothing was written",
                    field.name()
                ))
            })?;
        next_id += 1;
        adds.push(Arc::new(NestedField::optional(
            next_id,
            field.name(),
            field_type,
        )));
    }
    let schema = with_columns(base, &adds).map_err(|e| catalog_error(ident, e))?;
    Ok(Evolved {
        schema: Arc::new(schema),
        adds,
        promoted,
    })
}

/// `current` with the types of the columns `declared` widens (`None`: it widens none).
fn widened(
    current: &iceberg::spec::Schema,
    declared: &Schema,
) -> iceberg::Result<Option<iceberg::spec::Schema>> {
    let mut changed = false;
    let fields: Vec<NestedFieldRef> = current
        .as_struct()
        .fields()
        .iter()
        .map(|field| {
            let wider = declared
                .field_with_name(&field.name)
                .ok()
                .and_then(|d| iceberg::arrow::arrow_type_to_type(d.data_type()).ok())
                .filter(|to| widens(&field.field_type, to));
            match wider {
                Some(to) => {
                    changed = true;
                    let mut field = (**field).clone();
                    field.field_type = Box::new(to);
                    Arc::new(field)
                }
                None => field.clone(),
            }
        })
        .collect();
    if !changed {
        return Ok(None);
    }
    iceberg::spec::Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(fields)
        .with_identifier_field_ids(current.identifier_field_ids())
        .build()
        .map(Some)
}

/// Iceberg's allowed type promotions.
fn widens(from: &Type, to: &Type) -> bool {
    use iceberg::spec::PrimitiveType::{Decimal, Double, Float, Int, Long};
    match (from, to) {
        (Type::Primitive(from), Type::Primitive(to)) => match (from, to) {
            (Int, Long) | (Float, Double) => true,
            (
                Decimal {
                    precision: p,
                    scale: s,
                },
                Decimal {
                    precision: q,
                    scale: t,
                },
            ) => s == t && q > p,
            _ => false,
        },
        _ => false,
    }
}

/// `current` with the optional columns `adds` after its own, as the commit adding them makes
/// it.
pub(super) fn with_columns(
    current: &iceberg::spec::Schema,
    adds: &[NestedFieldRef],
) -> iceberg::Result<iceberg::spec::Schema> {
    if adds.is_empty() {
        return Ok(current.clone());
    }
    let fields = current
        .as_struct()
        .fields()
        .iter()
        .cloned()
        .chain(adds.iter().cloned());
    iceberg::spec::Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(fields)
        .with_identifier_field_ids(current.identifier_field_ids())
        .build()
}

/// The source columns of the table's partition spec, if every field is an identity one.
fn identity_columns(table: &Table) -> Option<Vec<String>> {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| match f.transform {
            Transform::Identity => schema.name_by_field_id(f.source_id).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// The table's partition spec as `transform(column)`s, for messages.
fn describe_spec(table: &Table) -> String {
    let metadata = table.metadata();
    let fields: Vec<String> = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| {
            let column = metadata.current_schema().name_by_field_id(f.source_id);
            format!("{}({})", f.transform, column.unwrap_or("?"))
        })
        .collect();
    match fields.is_empty() {
        true => "unpartitioned".into(),
        false => fields.join(", "),
    }
}
