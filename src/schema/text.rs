//! Type inference over text values (CSV fields), by Spark's `inferSchema` rules
//! (`CSVInferSchema`, Spark 3.5, default options): each value is tried as the narrowest type
//! the column's values so far allow, in the order int, bigint, decimal (integers beyond
//! bigint), double, date (`yyyy-MM-dd`), timestamp, boolean, and the column takes the type
//! both fit; where none does, the column is a string. Nulls decide nothing; a column of nulls
//! only is a string. Where this differs from Spark, docs/csv.md says so.

use std::ops::Range;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use indexmap::IndexMap;

use super::{convert, ddl};
use crate::Error;
use crate::rows::{Node, PARALLEL_ROWS, Rows};

/// What the values so far say about one column, in the order Spark tries the types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Null,
    Int,
    Long,
    /// An integer beyond bigint, of this many digits (at most 38).
    Decimal(u8),
    Double,
    Date,
    Timestamp,
    Bool,
    Str,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Null | Kind::Str => DataType::Utf8,
            Kind::Int => DataType::Int32,
            Kind::Long => DataType::Int64,
            Kind::Decimal(digits) => DataType::Decimal128(digits, 0),
            Kind::Double => DataType::Float64,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(ddl::UTC.into())),
            Kind::Bool => DataType::Boolean,
        }
    }

    /// The type of `text` in a column of kind `so_far`: the first of the types from
    /// `so_far`'s on that reads it (Spark starts where the column stands, so a value is
    /// never narrower than the column).
    fn of(so_far: Kind, text: &str) -> Kind {
        if so_far <= Kind::Int && text.parse::<i32>().is_ok() {
            Kind::Int
        } else if so_far <= Kind::Long && text.parse::<i64>().is_ok() {
            Kind::Long
        } else if let Some(digits) = integer_digits(text).filter(|_| so_far <= Kind::Decimal(38)) {
            Kind::Decimal(digits)
        } else if so_far <= Kind::Double && is_double(text) {
            Kind::Double
        } else if so_far <= Kind::Date && is_date(text) {
            Kind::Date
        } else if so_far <= Kind::Timestamp && convert::timestamp(text).is_ok() {
            Kind::Timestamp
        } else if so_far <= Kind::Bool
            && (text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false"))
        {
            Kind::Bool
        } else {
            Kind::Str
        }
    }

    /// The type both kinds fit (Spark's `compatibleType`), else a string.
    fn join(self, other: Kind) -> Kind {
        use Kind::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, k) | (k, Null) => k,
            (Int, Long) | (Long, Int) => Long,
            (Int | Long | Decimal(_), Double) | (Double, Int | Long | Decimal(_)) => Double,
            // An int is a decimal(10,0), a bigint a decimal(20,0).
            (Int, Decimal(d)) | (Decimal(d), Int) => Decimal(d.max(10)),
            (Long, Decimal(d)) | (Decimal(d), Long) => Decimal(d.max(20)),
            (Decimal(a), Decimal(b)) => Decimal(a.max(b)),
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            _ => Str,
        }
    }
}

/// The digits of an integer literal of up to 38 digits (Spark's decimal with scale 0; its
/// precision does not count leading zeros).
fn integer_digits(text: &str) -> Option<u8> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0').len().max(1);
    u8::try_from(significant).ok().filter(|&d| d <= 38)
}

/// Spark's default `dateFormat`, `yyyy-MM-dd`, strictly: zero-padded (`2024-1-5` is a
/// timestamp to Spark, as to [`convert::timestamp`]).
fn is_date(text: &str) -> bool {
    convert::padded_date(text).is_some()
}

/// Java's `Double.parseDouble` on decimal text (sign, digits, fraction, exponent), or Spark's
/// `NaN`, `Inf`, `Infinity` with a sign.
fn is_double(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, "NaN" | "Inf" | "Infinity") {
        return true;
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    !(whole.is_empty() && fraction.is_empty()) && digits(whole) && digits(fraction) && exponent_ok
}

/// Text columns inferred chunk after chunk, in first-appearance order (the header's).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TextInference {
    columns: IndexMap<String, Kind>,
}

impl TextInference {
    /// Merges the values of `rows` (a tape of CSV fields), on two threads when there are
    /// many: the halves' kinds joined are what one pass gives (a value's kind in a column is
    /// joined with the column's either way, and joins are associative).
    pub fn add(&mut self, rows: &Rows) {
        if rows.len() < PARALLEL_ROWS {
            return self.add_part(rows, 0..rows.len());
        }
        let (first, second) = rows.on_halves(|part| {
            let mut half = TextInference::default();
            half.add_part(rows, part);
            half
        });
        for half in [first, second] {
            for (name, kind) in half.columns {
                let slot = self.columns.entry(name).or_insert(Kind::Null);
                *slot = slot.join(kind);
            }
        }
    }

    fn add_part(&mut self, rows: &Rows, part: Range<usize>) {
        // Every record's values follow the names' order: each column found once a chunk.
        let columns: Vec<usize> = (rows.text_names())
            .map(|name| match self.columns.get_index_of(name) {
                Some(index) => index,
                None => self.columns.insert_full(name.to_owned(), Kind::Null).0,
            })
            .collect();
        for (_, start) in rows.rows_in(part) {
            for (column, value) in columns.iter().zip(rows.record_values(start)) {
                let kind = &mut self.columns[*column];
                if let (Node::Str(text), false) = (rows.node(value), *kind == Kind::Str) {
                    *kind = kind.join(Kind::of(*kind, text));
                }
            }
        }
    }

    /// The schema of every value added.
    ///
    /// # Errors
    /// `InvalidEvent` when no column was seen.
    pub fn finish(&self) -> Result<SchemaRef, Error> {
        if self.columns.is_empty() {
            return Err(Error::InvalidEvent("the object has no columns".into()));
        }
        let fields: Vec<Field> = (self.columns.iter())
            .map(|(name, kind)| Field::new(name, kind.data_type(), true))
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(values: &[&str]) -> Kind {
        values.iter().fold(Kind::Null, |so_far, text| {
            so_far.join(Kind::of(so_far, text))
        })
    }

    #[test]
    fn each_value_is_the_narrowest_type_spark_tries() {
        let cases: &[(&[&str], Kind)] = &[
            (&["1", "-2147483648", "+7", "007"], Kind::Int),
            (&["1", "2147483648"], Kind::Long),
            (&["9223372036854775808"], Kind::Decimal(19)),
            (&["1", "-123456789012345678901234"], Kind::Decimal(24)),
            (&["1", "1.5"], Kind::Double),
            (&["9223372036854775808", "1e3"], Kind::Double),
            (&[&"9".repeat(39)], Kind::Double),
            (&["NaN", "-Infinity", "2"], Kind::Double),
            (&["2024-05-01", "1999-12-31"], Kind::Date),
            (&["2024-05-01", "2024-05-01T10:00:00Z"], Kind::Timestamp),
            (&["2024-1-5", "2024-01-05"], Kind::Timestamp),
            (&["2024-05-01T10:00"], Kind::Timestamp),
            (&["2024-05-01T10:00:00.1234567"], Kind::Str),
            (
                &["2024-05-01 10:00:00", "2024-05-01T10:00:00.123456+02:00"],
                Kind::Timestamp,
            ),
            (&["true", "FALSE", "True"], Kind::Bool),
            (&["1", "true"], Kind::Str),
            (&["1.5", "2024-05-01"], Kind::Str),
            (&["2024-05-01", "yes"], Kind::Str),
            (&["1", "1,5"], Kind::Str),
            (&["inf"], Kind::Str),
            (&["2024-13-01"], Kind::Str),
            (&[], Kind::Null),
        ];
        for (values, kind) in cases {
            assert_eq!(column(values), *kind, "{values:?}");
        }
        assert_eq!(Kind::Decimal(24).data_type(), DataType::Decimal128(24, 0));
        assert_eq!(Kind::Null.data_type(), DataType::Utf8);
    }

    #[test]
    fn many_rows_are_inferred_in_two_halves_as_one_pass_would() {
        use crate::rows::csv::{Dialect, Layout};
        // The first half holds ints, dates and nulls only; the second widens each column.
        let n = PARALLEL_ROWS + 10;
        let mut text = String::new();
        for i in 0..n {
            let late = i >= n / 2;
            let (num, day, flag) = match (late, i % 2) {
                (false, _) => (i.to_string(), "2024-05-01".to_string(), String::new()),
                (true, 0) => (
                    format!("{i}.5"),
                    "2024-05-01T10:00:00Z".into(),
                    "true".into(),
                ),
                (true, _) => (
                    "9223372036854775808".into(),
                    "2024-05-02".into(),
                    "1".into(),
                ),
            };
            text.push_str(&format!("{num},{day},{flag}\n"));
        }
        let layout = Layout {
            dialect: Dialect::default(),
            names: vec!["num".into(), "day".into(), "flag".into()],
            null_value: String::new(),
            permissive: false,
        };
        let rows = Rows::parse_csv(&text, &layout, 1).unwrap();
        let mut halves = TextInference::default();
        halves.add(&rows);
        let mut one = TextInference::default();
        one.add_part(&rows, 0..rows.len());
        assert_eq!(halves, one);
        let kinds: Vec<Kind> = one.columns.values().copied().collect();
        assert_eq!(kinds, [Kind::Double, Kind::Timestamp, Kind::Str]);
    }

    #[test]
    fn a_string_column_stays_a_string() {
        // Once a string, a column never tries another type (Spark's order of trial).
        assert_eq!(Kind::of(Kind::Str, "1"), Kind::Str);
        assert_eq!(Kind::of(Kind::Double, "1"), Kind::Double);
        assert_eq!(Kind::of(Kind::Bool, "1"), Kind::Str);
        assert_eq!(Kind::of(Kind::Long, "5"), Kind::Long);
    }
}
