//! The Kinesis Producer Library's aggregated records: many user records in one Kinesis
//! record, as the KPL (and the Kinesis Agent, Fluent Bit's aggregation) writes them.
//!
//! The layout: the magic bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`
//! (`repeated string partition_key_table = 1; repeated string explicit_hash_key_table = 2;
//! repeated Record records = 3`, each `Record` with its `data` in field 3), then the MD5 of
//! the protobuf bytes. Consumers unpack the user records in order; the digest is checked, so a
//! truncated or altered record is refused rather than half read.

use md5::{Digest, Md5};

/// What an aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The user records' data of an aggregated record, in order; `None` when `bytes` is not one
/// (no magic bytes: a plain record).
///
/// # Errors
/// Why the aggregate cannot be read: a digest that does not match, or a protobuf that ends
/// early or has a field of the wrong wire type.
pub fn user_records(bytes: &[u8]) -> Option<Result<Vec<&[u8]>, String>> {
    let rest = bytes.strip_prefix(&MAGIC)?;
    let Some(split) = rest.len().checked_sub(16) else {
        return Some(Err("a KPL aggregated record shorter than its digest".into()));
    };
    let (message, digest) = rest.split_at(split);
    if Md5::digest(message).as_slice() != digest {
        return Some(Err(
            "a KPL aggregated record whose MD5 digest does not match its contents".into(),
        ));
    }
    Some(records(message))
}

fn records(mut message: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !message.is_empty() {
        let (field, wire) = key(&mut message)?;
        let value = skip(&mut message, wire)?;
        if field == 3 {
            let inner = value.ok_or("the aggregate's `records` is not a message")?;
            out.push(data(inner)?);
        }
    }
    Ok(out)
}

/// A `Record`'s `data` (field 3).
fn data(mut record: &[u8]) -> Result<&[u8], String> {
    let mut found = None;
    while !record.is_empty() {
        let (field, wire) = key(&mut record)?;
        let value = skip(&mut record, wire)?;
        if field == 3 {
            found = Some(value.ok_or("a user record's `data` is not bytes")?);
        }
    }
    found.ok_or_else(|| "a user record without `data`".into())
}

fn key(bytes: &mut &[u8]) -> Result<(u64, u8), String> {
    let key = varint(bytes)?;
    Ok((key >> 3, (key & 7) as u8))
}

/// Moves past one field's value of wire type `wire`; a length-delimited one is returned.
fn skip<'a>(bytes: &mut &'a [u8], wire: u8) -> Result<Option<&'a [u8]>, String> {
    let take = |bytes: &mut &'a [u8], n: usize| -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err("a KPL aggregated record that ends inside a field".into());
        }
        let (value, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(value)
    };
    match wire {
        0 => varint(bytes).map(|_| None),
        1 => take(bytes, 8).map(|_| None),
        2 => {
            let len = usize::try_from(varint(bytes)?).map_err(|_| "a field too long")?;
            take(bytes, len).map(Some)
        }
        5 => take(bytes, 4).map(|_| None),
        other => Err(format!(
            "a KPL aggregated record with a field of wire type {other}"
        )),
    }
}

fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes
            .split_first()
            .ok_or("a KPL aggregated record that ends inside a number")?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a KPL aggregated record with a number over 64 bits".into())
}

/// An aggregated record of `datas`, as the KPL writes it (for tests and the sample events).
pub fn aggregate(partition_key: &str, datas: &[&[u8]]) -> Vec<u8> {
    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        put_varint(out, field << 3 | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut message = Vec::new();
    put_bytes(&mut message, 1, partition_key.as_bytes());
    for data in datas {
        let mut record = Vec::new();
        put_varint(&mut record, 1 << 3);
        put_varint(&mut record, 0);
        put_bytes(&mut record, 3, data);
        put_bytes(&mut message, 3, &record);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&message);
    out.extend_from_slice(Md5::digest(&message).as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_unpack_in_order_and_their_digest_is_checked() {
        let datas: [&[u8]; 3] = [b"{\"a\": 1}", b"", &[7u8; 300]];
        let bytes = aggregate("pk", &datas);
        assert_eq!(user_records(&bytes).unwrap().unwrap(), datas);
        assert!(user_records(b"{\"a\": 1}").is_none());

        let mut altered = bytes.clone();
        altered[10] ^= 1;
        let e = user_records(&altered).unwrap().unwrap_err();
        assert!(e.contains("MD5"), "{e}");
        assert!(user_records(&bytes[..3]).is_none());
        for cut in [5, bytes.len() - 17] {
            // A correct digest over a message cut short.
            let mut truncated = bytes[..cut].to_vec();
            let message = truncated[4..].to_vec();
            truncated.extend_from_slice(Md5::digest(&message).as_slice());
            let result = user_records(&truncated);
            assert!(matches!(result, Some(Err(_))), "cut at {cut}: {result:?}");
        }
    }
}
