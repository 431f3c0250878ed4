//! Datasets in Parquet, the format the Hugging Face hub publishes datasets
//! in: each row read into the same JSON shape a JSONL row has, so both go
//! through one parser ([`super::parse_row`]).
//!
//! Only the columns a format needs are decoded (WildChat's shards carry
//! large moderation columns nobody trains on). Strings, booleans, numbers,
//! lists and structs are read; a needed column of another type is refused
//! by name.

use super::{Columns, DataKind, Example};
use anyhow::{bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::{Map, Value};
use std::path::Path;

/// Rows decoded per batch.
const BATCH_ROWS: usize = 1024;

/// Load a Parquet dataset; a missing column names the columns there are,
/// and a bad row names the file and the row (counting from 0, as
/// `dataset[i]` does).
pub fn load_parquet(path: &Path, kind: DataKind, columns: &Columns) -> Result<Vec<Example>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the dataset {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let wanted = needed_columns(&names, kind, columns)
        .with_context(|| format!("in the dataset {}", path.display()))?;
    // Top-level columns by position (a struct column is one root).
    let roots: Vec<usize> = wanted
        .iter()
        .filter_map(|(_, col)| names.iter().position(|n| n == col))
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    let mut row_no = 0usize;
    for batch in reader {
        let batch = batch.with_context(|| {
            format!(
                "{}: cannot decode the rows after row {row_no}",
                path.display()
            )
        })?;
        for row in batch_rows(&batch, &wanted)
            .with_context(|| format!("in the dataset {}", path.display()))?
        {
            let examples = super::parse_row(&row, kind)
                .with_context(|| format!("{}, row {row_no} (0-based)", path.display()))?;
            out.extend(examples);
            row_no += 1;
        }
    }
    if out.is_empty() {
        bail!("the dataset {} has no rows", path.display());
    }
    Ok(out)
}

/// The (field, column) pairs a dataset of these columns is read through:
/// the format is told from the field names present after the `columns`
/// mapping, as [`super::parse_row`] tells it from a row's keys. A mapped
/// column that is not there, or a format missing one of its fields, is an
/// error listing the columns there are.
pub fn needed_columns(
    names: &[String],
    kind: DataKind,
    columns: &Columns,
) -> Result<Vec<(String, String)>> {
    let listing = || format!("its columns are: {}", names.join(", "));
    for (field, col) in columns.iter() {
        if !names.iter().any(|n| n == col) {
            bail!(
                "missing the column \"{col}\" (mapped to \"{field}\" in the phase's columns); {}",
                listing()
            );
        }
    }
    // What each field is read from: the mapped column, else the field's name.
    let source = |field: &str| -> Option<String> {
        match columns.column_of(field) {
            Some(c) => Some(c.to_string()),
            None => names
                .iter()
                .any(|n| n == field && !columns.maps_column(n))
                .then(|| field.to_string()),
        }
    };
    let has = |f: &str| source(f).is_some();
    let (required, optional): (&[&str], &[&str]) = if has("chosen") || has("rejected") {
        (&["chosen", "rejected"], &["prompt"])
    } else if has("label") {
        (&["prompt", "completion", "label"], &[])
    } else if has("messages") {
        (&["messages"], &[])
    } else if has("instruction") || has("output") {
        (&["instruction", "output"], &["input"])
    } else if has("completion") {
        (&["prompt", "completion"], &[])
    } else if has("text") {
        (&["text"], &[])
    } else {
        bail!(
            "cannot tell the dataset's format: {}; expected {} (map other names with the \
             phase's `columns`, e.g. columns = {{ messages = \"conversation\" }})",
            listing(),
            kind.describe()
        );
    };
    let mut out = Vec::new();
    for f in required {
        match source(f) {
            Some(c) => out.push((f.to_string(), c)),
            None => bail!("missing the column \"{f}\"; {}", listing()),
        }
    }
    for f in optional {
        if let Some(c) = source(f) {
            out.push((f.to_string(), c));
        }
    }
    Ok(out)
}

/// The rows of a batch as JSON objects keyed by field name.
fn batch_rows(batch: &RecordBatch, wanted: &[(String, String)]) -> Result<Vec<Map<String, Value>>> {
    let mut cols: Vec<(&str, &str, &ArrayRef)> = Vec::new();
    for (field, col) in wanted {
        let arr = batch
            .column_by_name(col)
            .with_context(|| format!("the column \"{col}\" is not in the decoded rows"))?;
        cols.push((field.as_str(), col.as_str(), arr));
    }
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut row = Map::new();
        for (field, col, arr) in &cols {
            let v = value_at(arr.as_ref(), i, false)
                .with_context(|| format!("the column \"{col}\""))?;
            row.insert(field.to_string(), v);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Row `i` of an Arrow array as JSON. Inside a list or struct (`nested`),
/// a type driftui does not read (a WildChat turn's timestamp) is null: no
/// field driftui reads is of such a type, and a field it does read then
/// fails with the row's own error.
fn value_at(arr: &dyn Array, i: usize, nested: bool) -> Result<Value> {
    if arr.is_null(i) {
        return Ok(Value::Null);
    }
    macro_rules! num {
        ($t:ty) => {
            Value::from(arr.as_primitive::<$t>().value(i))
        };
    }
    Ok(match arr.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(arr.as_boolean().value(i)),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => num!(Float32Type),
        DataType::Float64 => num!(Float64Type),
        DataType::Utf8 => Value::String(arr.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(arr.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::String(arr.as_string_view().value(i).to_string()),
        DataType::List(_) => list(arr.as_list::<i32>().value(i).as_ref())?,
        DataType::LargeList(_) => list(arr.as_list::<i64>().value(i).as_ref())?,
        DataType::FixedSizeList(..) => list(arr.as_fixed_size_list().value(i).as_ref())?,
        DataType::Struct(fields) => {
            let s = arr.as_struct();
            let mut m = Map::new();
            for (f, col) in fields.iter().zip(s.columns()) {
                m.insert(f.name().clone(), value_at(col.as_ref(), i, true)?);
            }
            Value::Object(m)
        }
        DataType::Dictionary(key, _) if key.as_ref() == &DataType::Int32 => {
            let d = arr.as_dictionary::<Int32Type>();
            let k = d.keys().value(i);
            value_at(
                d.values().as_ref(),
                usize::try_from(k).context("a negative dictionary key")?,
                nested,
            )?
        }
        _ if nested => Value::Null,
        other => bail!("holds {other} values, which driftui does not read"),
    })
}

fn list(items: &dyn Array) -> Result<Value> {
    (0..items.len())
        .map(|j| value_at(items, j, true))
        .collect::<Result<Vec<_>>>()
        .map(Value::Array)
}
