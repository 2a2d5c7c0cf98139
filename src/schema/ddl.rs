//! Spark DDL schemas (`name STRING, age INT, tags ARRAY<STRING>`), as a Glue/PySpark user
//! writes them: parsed into an Arrow schema, and Arrow schemas printed back as DDL.
//!
//! Types (case-insensitive): `STRING` (`VARCHAR(n)`, `CHAR(n)`), `BOOLEAN`, `TINYINT`/`BYTE`,
//! `SMALLINT`/`SHORT`, `INT`/`INTEGER`, `BIGINT`/`LONG`, `FLOAT`/`REAL`, `DOUBLE`,
//! `DECIMAL(p,s)` (`DEC`, `NUMERIC`; `DECIMAL` alone is Spark's `DECIMAL(10,0)`), `DATE`,
//! `TIMESTAMP`, `BINARY`, `ARRAY<t>`, `STRUCT<name: t, ...>` and `MAP<k, v>`. A field may end
//! in `NOT NULL`; names may be quoted with backticks.

use std::fmt::Write;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};

/// The time zone of every timestamp column: instants, stored as UTC microseconds (Parquet's
/// `isAdjustedToUTC = true`). An offset rather than the name `UTC`, which Arrow can only
/// resolve with a time-zone database.
pub const UTC: &str = "+00:00";

/// Parses a Spark DDL field list.
///
/// # Errors
/// A message naming what was expected and where (the character offset), e.g. for an unknown
/// type or unbalanced `<` `>`.
///
/// ```
/// use arrow_schema::DataType;
/// let schema = rows_to_parquet::schema::ddl::parse("name STRING NOT NULL, price DECIMAL(10,2)").unwrap();
/// assert!(!schema.field(0).is_nullable());
/// assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(10, 2));
/// ```
pub fn parse(ddl: &str) -> Result<Schema, String> {
    let mut parser = Parser { text: ddl, at: 0 };
    let fields = parser.fields(None)?;
    parser.skip_space();
    if parser.at < ddl.len() {
        return Err(parser.error("`,` or the end of the schema"));
    }
    Ok(Schema::new(fields))
}

/// Parses one type name, as used by the JSON form of a schema (`{"name", "type"}`).
///
/// # Errors
/// As [`parse`].
pub fn parse_type(text: &str) -> Result<DataType, String> {
    let mut parser = Parser { text, at: 0 };
    let data_type = parser.data_type()?;
    parser.skip_space();
    if parser.at < text.len() {
        return Err(parser.error("the end of the type"));
    }
    Ok(data_type)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn error(&self, expected: &str) -> String {
        let found: String = self.rest().chars().take(12).collect();
        if found.is_empty() {
            format!("schema: expected {expected} at the end")
        } else {
            format!(
                "schema: expected {expected} at character {}, found `{found}`",
                self.at
            )
        }
    }

    /// Consumes `symbol` (after spaces) if it is next.
    fn eat(&mut self, symbol: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(symbol) {
            self.at += symbol.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, symbol: &str) -> Result<(), String> {
        if self.eat(symbol) {
            Ok(())
        } else {
            Err(self.error(&format!("`{symbol}`")))
        }
    }

    /// A bare word (letters, digits, `_`), or a backtick-quoted name with `` ` `` doubled.
    fn word(&mut self) -> Result<String, String> {
        self.skip_space();
        if let Some(quoted) = self.rest().strip_prefix('`') {
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                if c == '`' {
                    if quoted[i + 1..].starts_with('`') {
                        chars.next();
                    } else {
                        self.at += 1 + i + 1;
                        return Ok(name);
                    }
                }
                name.push(c);
            }
            return Err(self.error("a closing backtick"));
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("a name"));
        }
        let word = self.rest()[..len].to_owned();
        self.at += len;
        Ok(word)
    }

    fn number(&mut self) -> Result<u8, String> {
        self.skip_space();
        let len = self
            .rest()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest().len());
        let value = self.rest()[..len]
            .parse()
            .map_err(|_| self.error("a number"))?;
        self.at += len;
        Ok(value)
    }

    /// `name [:] type [NOT NULL] [COMMENT '...']`, comma-separated, up to `close` (or the end).
    fn fields(&mut self, close: Option<&str>) -> Result<Vec<Field>, String> {
        let mut fields = Vec::new();
        loop {
            let name = self.word()?;
            self.eat(":");
            let data_type = self.data_type()?;
            let nullable = !self.not_null()?;
            if fields
                .iter()
                .any(|f: &Field| f.name().eq_ignore_ascii_case(&name))
            {
                return Err(format!("schema: field `{name}` appears twice"));
            }
            fields.push(Field::new(name, data_type, nullable));
            if !self.eat(",") {
                break;
            }
        }
        if let Some(close) = close {
            self.expect(close)?;
        }
        Ok(fields)
    }

    fn not_null(&mut self) -> Result<bool, String> {
        self.skip_space();
        let save = self.at;
        match self.word() {
            Ok(w) if w.eq_ignore_ascii_case("not") => match self.word() {
                Ok(w) if w.eq_ignore_ascii_case("null") => Ok(true),
                _ => Err(self.error("NULL after NOT")),
            },
            _ => {
                self.at = save;
                Ok(false)
            }
        }
    }

    fn data_type(&mut self) -> Result<DataType, String> {
        let start = self.at;
        let name = self
            .word()
            .map_err(|_| self.error("a type"))?
            .to_ascii_uppercase();
        Ok(match name.as_str() {
            "STRING" => DataType::Utf8,
            "VARCHAR" | "CHAR" => {
                self.expect("(")?;
                self.number()?;
                self.expect(")")?;
                DataType::Utf8
            }
            "BOOLEAN" => DataType::Boolean,
            "TINYINT" | "BYTE" => DataType::Int8,
            "SMALLINT" | "SHORT" => DataType::Int16,
            "INT" | "INTEGER" => DataType::Int32,
            "BIGINT" | "LONG" => DataType::Int64,
            "FLOAT" | "REAL" => DataType::Float32,
            "DOUBLE" => DataType::Float64,
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let (precision, scale) = if self.eat("(") {
                    let precision = self.number()?;
                    let scale = if self.eat(",") { self.number()? } else { 0 };
                    self.expect(")")?;
                    (precision, scale)
                } else {
                    (10, 0)
                };
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(format!(
                        "schema: DECIMAL({precision},{scale}) needs 1 <= precision <= 38 and scale <= precision"
                    ));
                }
                DataType::Decimal128(precision, scale as i8)
            }
            "DATE" => DataType::Date32,
            "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            "BINARY" => DataType::Binary,
            "ARRAY" => {
                self.expect("<")?;
                let element = self.data_type()?;
                self.expect(">")?;
                DataType::List(Arc::new(Field::new_list_field(element, true)))
            }
            "STRUCT" => {
                self.expect("<")?;
                DataType::Struct(Fields::from(self.fields(Some(">"))?))
            }
            "MAP" => {
                self.expect("<")?;
                let key = self.data_type()?;
                self.expect(",")?;
                let value = self.data_type()?;
                self.expect(">")?;
                map_type(key, value)
            }
            _ => {
                self.at = start;
                self.skip_space();
                return Err(self.error("a type (STRING, INT, BIGINT, DOUBLE, DECIMAL(p,s), DATE, TIMESTAMP, ARRAY<...>, STRUCT<...>, MAP<...>, ...)"));
            }
        })
    }
}

/// Arrow's map layout as Parquet and Spark expect it: `key_value` entries with a required key.
pub fn map_type(key: DataType, value: DataType) -> DataType {
    let entries = Fields::from(vec![
        Field::new("key", key, false),
        Field::new("value", value, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("key_value", DataType::Struct(entries), false)),
        false,
    )
}

/// Spark DDL for a schema: `name STRING, age BIGINT NOT NULL, ...` (what [`parse`] reads).
pub fn to_spark(schema: &Schema) -> String {
    let mut out = String::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "{} {}",
            quote(field.name(), '`'),
            spark_type(field.data_type())
        );
        if !field.is_nullable() {
            out.push_str(" NOT NULL");
        }
    }
    out
}

/// An Athena (Hive DDL) `CREATE EXTERNAL TABLE` over the Parquet objects in the folder
/// `location` (`s3://bucket/path/`), named after the folder's last segment; `partitions` (the
/// `partition_by` columns, which the files leave out) become its `PARTITIONED BY`.
pub fn athena_create_table(schema: &Schema, partitions: &[Field], location: &str) -> String {
    let folder = location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("rows");
    let mut table: String = folder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !table.starts_with(|c: char| c.is_ascii_lowercase()) {
        table.insert_str(0, "t_");
    }
    let columns = |fields: &mut dyn Iterator<Item = &Field>| {
        fields
            .map(|f| format!("  {} {}", quote(f.name(), '`'), athena_type(f.data_type())))
            .collect::<Vec<_>>()
            .join(",\n")
    };
    let partitioned = match partitions {
        [] => String::new(),
        _ => format!("\nPARTITIONED BY (\n{}\n)", columns(&mut partitions.iter())),
    };
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{table}` (\n{}\n){partitioned}\nSTORED AS PARQUET\nLOCATION '{}'",
        columns(&mut schema.fields().iter().map(|f| f.as_ref())),
        location.replace('\'', "''")
    )
}

/// The Spark SQL name of a type produced by this crate.
pub fn spark_type(data_type: &DataType) -> String {
    type_name(data_type, true)
}

/// The Hive/Athena name of a type produced by this crate (lower case, `struct<a:int>`).
pub fn athena_type(data_type: &DataType) -> String {
    type_name(data_type, false)
}

fn type_name(data_type: &DataType, spark: bool) -> String {
    let name = |spark_name: &str| {
        if spark {
            spark_name.to_owned()
        } else {
            spark_name.to_ascii_lowercase()
        }
    };
    match data_type {
        DataType::Utf8 | DataType::Null => name("STRING"),
        DataType::Boolean => name("BOOLEAN"),
        DataType::Int8 => name("TINYINT"),
        DataType::Int16 => name("SMALLINT"),
        DataType::Int32 => name("INT"),
        DataType::Int64 => name("BIGINT"),
        DataType::Float32 => name("FLOAT"),
        DataType::Float64 => name("DOUBLE"),
        DataType::Decimal128(p, s) => name(&format!("DECIMAL({p},{s})")),
        DataType::Date32 => name("DATE"),
        DataType::Timestamp(..) => name("TIMESTAMP"),
        DataType::Binary => name("BINARY"),
        DataType::List(element) => format!(
            "{}<{}>",
            name("ARRAY"),
            type_name(element.data_type(), spark)
        ),
        DataType::Struct(fields) => {
            let members: Vec<String> = fields
                .iter()
                .map(|f| {
                    let field = if spark {
                        quote(f.name(), '`')
                    } else {
                        f.name().to_ascii_lowercase()
                    };
                    let sep = if spark { ": " } else { ":" };
                    format!("{field}{sep}{}", type_name(f.data_type(), spark))
                })
                .collect();
            format!(
                "{}<{}>",
                name("STRUCT"),
                members.join(if spark { ", " } else { "," })
            )
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                unreachable!("map entries are a struct")
            };
            let sep = if spark { ", " } else { "," };
            format!(
                "{}<{}{sep}{}>",
                name("MAP"),
                type_name(kv[0].data_type(), spark),
                type_name(kv[1].data_type(), spark)
            )
        }
        other => unreachable!("this crate never builds {other}"),
    }
}

/// `name` as is when it is a plain identifier, else quoted with `quote` (doubled inside).
pub fn quote(name: &str, quote: char) -> String {
    let plain = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        name.to_owned()
    } else {
        let doubled = name.replace(quote, &format!("{quote}{quote}"));
        format!("{quote}{doubled}{quote}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = "name STRING, age INT, city STRING, born DATE, seen TIMESTAMP, price DECIMAL(10,2), tags ARRAY<STRING>, addr STRUCT<zip: STRING, geo: STRUCT<lat: DOUBLE, lon: DOUBLE>>, attrs MAP<STRING, BIGINT>";

    #[test]
    fn parses_every_type_of_the_glue_example() {
        let schema = parse(ISSUE_EXAMPLE).unwrap();
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| spark_type(f.data_type()))
            .collect();
        assert_eq!(
            types,
            [
                "STRING",
                "INT",
                "STRING",
                "DATE",
                "TIMESTAMP",
                "DECIMAL(10,2)",
                "ARRAY<STRING>",
                "STRUCT<zip: STRING, geo: STRUCT<lat: DOUBLE, lon: DOUBLE>>",
                "MAP<STRING, BIGINT>"
            ]
        );
        assert_eq!(to_spark(&schema), ISSUE_EXAMPLE);
        assert_eq!(parse(&to_spark(&schema)).unwrap(), schema);
        assert_eq!(
            athena_type(schema.field(7).data_type()),
            "struct<zip:string,geo:struct<lat:double,lon:double>>"
        );
    }

    #[test]
    fn athena_ddl_names_the_table_after_the_folder_and_lists_the_columns() {
        let schema = parse(ISSUE_EXAMPLE).unwrap();
        let ddl = athena_create_table(&schema, &[], "s3://my-bucket/out/parquet-snappy/");
        assert!(
            ddl.starts_with(
                "CREATE EXTERNAL TABLE IF NOT EXISTS `parquet_snappy` (\n  name string,\n  age int,"
            ),
            "{ddl}"
        );
        assert!(
            ddl.ends_with(")\nSTORED AS PARQUET\nLOCATION 's3://my-bucket/out/parquet-snappy/'"),
            "{ddl}"
        );
        // The column list reads back as the schema it describes.
        let columns = &ddl[ddl.find('(').unwrap() + 1..ddl.rfind(')').unwrap()];
        assert_eq!(parse(columns).unwrap(), schema);
        assert!(athena_create_table(&schema, &[], "s3://b-1/2026/").contains("`t_2026`"));
        let dt = Field::new("dt", DataType::Date32, true);
        let partitioned = athena_create_table(&schema, &[dt], "s3://b-1/by-day/");
        assert!(
            partitioned.contains(")\nPARTITIONED BY (\n  dt date\n)\nSTORED AS PARQUET"),
            "{partitioned}"
        );
    }

    #[test]
    fn names_case_aliases_and_not_null() {
        let schema =
            parse(" `first name` string not null,x tinyint, y Short, z LONG , d dec, `a``b` real")
                .unwrap();
        assert_eq!(schema.field(0).name(), "first name");
        assert!(!schema.field(0).is_nullable() && schema.field(1).is_nullable());
        assert_eq!(schema.field(1).data_type(), &DataType::Int8);
        assert_eq!(schema.field(2).data_type(), &DataType::Int16);
        assert_eq!(schema.field(3).data_type(), &DataType::Int64);
        assert_eq!(schema.field(4).data_type(), &DataType::Decimal128(10, 0));
        assert_eq!(schema.field(5).name(), "a`b");
        assert_eq!(
            to_spark(&schema),
            "`first name` STRING NOT NULL, x TINYINT, y SMALLINT, z BIGINT, d DECIMAL(10,0), `a``b` FLOAT"
        );
        let nested = parse_type("array<map<string, array<int>>>").unwrap();
        assert_eq!(spark_type(&nested), "ARRAY<MAP<STRING, ARRAY<INT>>>");
    }

    #[test]
    fn errors_say_what_was_expected_and_where() {
        for (ddl, word) in [
            ("name STRNG", "expected a type"),
            ("name STRING age INT", "`,` or the end"),
            ("tags ARRAY<STRING", "`>`"),
            ("p DECIMAL(40,2)", "precision <= 38"),
            ("p DECIMAL(5,6)", "scale <= precision"),
            ("a INT, A STRING", "appears twice"),
            ("", "a name"),
            ("a INT NOT", "NULL after NOT"),
            ("`a INT", "closing backtick"),
        ] {
            let err = parse(ddl).expect_err(ddl);
            assert!(err.contains(word), "{ddl}: {err}");
        }
    }
}
