//! Which columns are written without a dictionary: those whose values would take fewer bytes
//! plain, judged from a sample spread over the column.

use std::collections::HashSet;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::schema::types::ColumnPath;

/// How many values, spread evenly over a column, are sampled to choose its encoding.
const DICTIONARY_SAMPLE: usize = 1024;

/// The leaf columns of `batch` that a dictionary would make larger (ids, timestamps, free
/// text, measurements: mostly distinct values), written plain to save that size and the hash
/// per value a dictionary costs. Columns inside lists and maps keep the default.
pub(super) fn plain_columns(batch: &RecordBatch) -> Vec<ColumnPath> {
    fn visit(path: &mut Vec<String>, array: &dyn Array, out: &mut Vec<ColumnPath>) {
        if let Some(strukt) = array.as_struct_opt() {
            for (field, child) in strukt.fields().iter().zip(strukt.columns()) {
                path.push(field.name().clone());
                visit(path, child.as_ref(), out);
                path.pop();
            }
        } else if plain_is_smaller(array) {
            out.push(ColumnPath::new(path.clone()));
        }
    }
    let mut out = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        visit(&mut vec![field.name().clone()], column.as_ref(), &mut out);
    }
    out
}

/// Whether a column's values written plain take fewer bytes than a dictionary (each distinct
/// value once, plus a bit-packed index per value), judged from [`DICTIONARY_SAMPLE`] non-null
/// values spread over the column. Distinctness alone misjudges short strings: 1,000 values
/// repeated over 29,000 rows look mostly distinct in a sample of 1,024, yet their 10-bit
/// indices are far smaller than 4-byte lengths plus the values. False below 64 sampled
/// values, or for a type without fixed-width or string values.
fn plain_is_smaller(array: &dyn Array) -> bool {
    let data = array.to_data();
    let stride = data.len().div_ceil(DICTIONARY_SAMPLE).max(1);
    let rows = (0..data.len())
        .step_by(stride)
        .filter(|&i| data.is_valid(i));
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(DICTIONARY_SAMPLE);
    let mut sampled = 0;
    // Bytes of one plain value: 4 for a string's length, plus its bytes.
    let mut plain_bytes = 0;
    match data.data_type() {
        DataType::Utf8 | DataType::Binary => {
            let offsets = data.buffer::<i32>(0);
            let values = data.buffers()[1].as_slice();
            for i in rows {
                let value = &values[offsets[i] as usize..offsets[i + 1] as usize];
                plain_bytes += 4 + value.len();
                seen.insert(value);
                sampled += 1;
            }
        }
        DataType::Boolean => return false,
        other => {
            let Some(width) = other.primitive_width() else {
                return false;
            };
            let values = &data.buffers()[0].as_slice()[data.offset() * width..];
            for i in rows {
                seen.insert(&values[i * width..(i + 1) * width]);
                plain_bytes += width;
                sampled += 1;
            }
        }
    }
    if sampled < 64 {
        return false;
    }
    let values = data.len() - data.null_count();
    let distinct = estimated_distinct(seen.len(), sampled, values);
    let value_bytes = plain_bytes as f64 / sampled as f64;
    let index_bits = (usize::BITS - distinct.saturating_sub(1).leading_zeros()).max(1);
    let plain = values as f64 * value_bytes;
    let dictionary = distinct as f64 * value_bytes + values as f64 * f64::from(index_bits) / 8.0;
    plain < dictionary
}

/// The number of distinct values among `values` that would show `seen` distinct ones in a
/// sample of `sampled`, were they drawn uniformly: the `d` solving
/// `d * (1 - exp(-sampled / d)) = seen`, at most `values` (a sample with no repeat says every
/// value may differ).
fn estimated_distinct(seen: usize, sampled: usize, values: usize) -> usize {
    let expected_seen = |d: f64| d * (1.0 - (-(sampled as f64) / d).exp());
    let (mut low, mut high) = (seen.max(1), values.max(seen).max(1));
    if expected_seen(high as f64) <= seen as f64 {
        return high;
    }
    while low < high {
        let middle = low + (high - low) / 2;
        if expected_seen(middle as f64) < seen as f64 {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_values_are_estimated_from_the_sample() {
        assert_eq!(estimated_distinct(10, 1024, 29_000), 10);
        assert_eq!(estimated_distinct(1024, 1024, 29_000), 29_000);
        let thousand = estimated_distinct(641, 1024, 29_000);
        assert!((950..=1050).contains(&thousand), "{thousand}");
        // Never more than the values there are.
        assert_eq!(estimated_distinct(1000, 1024, 1024), 1024);
    }
}
