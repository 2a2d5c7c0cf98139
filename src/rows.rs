//! The event's rows as a flat tape of JSON nodes, built in the same pass that parses the event.
//!
//! serde_json does the lexing (escapes, surrogates, nesting limits); this module keeps what it
//! finds as a `Vec` of small nodes instead of a `serde_json::Value` tree: no map per row,
//! strings borrowed from the event wherever they have no escapes, and numbers other than
//! plain i64 kept as written, so a decimal never passes through f64. Objects are checked for
//! duplicate keys here, once.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The key under which serde_json (feature `arbitrary_precision`) hands over a number's text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Objects with more members than this are checked for duplicate keys with a hash set.
const SMALL_OBJECT: usize = 16;

/// One JSON value, or the start of a container whose contents follow it on the tape.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// Any other number, exactly as written: with a fraction or exponent, `-0`, or an integer
    /// beyond i64.
    Number(Cow<'a, str>),
    Str(Cow<'a, str>),
    /// An object; `Key`, value pairs follow, up to node `end` (exclusive).
    Object {
        end: u32,
    },
    Key(Cow<'a, str>),
    /// An array; its elements follow, up to node `end` (exclusive).
    Array {
        end: u32,
    },
}

impl Node<'_> {
    /// The JSON type, for messages that must not quote the value.
    pub fn json_type(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "boolean",
            Node::Int(_) => "integer",
            Node::Number(text) if is_integer_text(text) => "integer",
            Node::Number(_) => "float",
            Node::Str(_) | Node::Key(_) => "string",
            Node::Object { .. } => "object",
            Node::Array { .. } => "array",
        }
    }
}

/// Whether a JSON number's text is an integer literal (no fraction, no exponent).
pub fn is_integer_text(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// Every row of an event, each an object on one shared tape.
#[derive(Debug, Default)]
pub struct Rows<'a> {
    nodes: Vec<Node<'a>>,
    /// The tape index of each row's `Object` node.
    starts: Vec<u32>,
}

impl<'a> Rows<'a> {
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub fn node(&self, at: usize) -> &Node<'a> {
        &self.nodes[at]
    }

    /// The tape index of each row's object, in row order.
    pub fn starts(&self) -> impl Iterator<Item = usize> + '_ {
        self.starts.iter().map(|&s| s as usize)
    }

    /// The index just past the value that starts at `at`.
    pub fn skip(&self, at: usize) -> usize {
        match self.nodes[at] {
            Node::Object { end } | Node::Array { end } => end as usize,
            _ => at + 1,
        }
    }

    /// The `(key, value index)` pairs of the object at `at`.
    pub fn members(&self, at: usize) -> impl Iterator<Item = (&str, usize)> + '_ {
        let end = self.skip(at);
        let mut next = at + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let Node::Key(key) = &self.nodes[next] else {
                unreachable!("an object's members start with a key")
            };
            let value = next + 1;
            next = self.skip(value);
            Some((key.as_ref(), value))
        })
    }

    /// The value indices of the array at `at`.
    pub fn elements(&self, at: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.skip(at);
        let mut next = at + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let element = next;
            next = self.skip(element);
            Some(element)
        })
    }

    /// Parses a JSON array of objects into rows (used as the seed of the event's `rows`).
    pub fn seed() -> RowsSeed<'a> {
        RowsSeed(std::marker::PhantomData)
    }

    fn push(&mut self, node: Node<'a>) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Closes the container opened at `start`, now that its contents are on the tape.
    fn close(&mut self, start: usize) {
        let end = self.nodes.len() as u32;
        match &mut self.nodes[start] {
            Node::Object { end: e } | Node::Array { end: e } => *e = end,
            _ => unreachable!("only containers are closed"),
        }
    }

    fn duplicate_key(&self, object: usize) -> Option<&str> {
        let keys: Vec<&str> = self.members(object).map(|(k, _)| k).collect();
        if keys.len() <= SMALL_OBJECT {
            return keys
                .iter()
                .enumerate()
                .find(|(i, k)| keys[..*i].contains(k))
                .map(|(_, k)| *k);
        }
        let mut seen = HashSet::with_capacity(keys.len());
        keys.into_iter().find(|k| !seen.insert(*k))
    }
}

/// Deserializes the `rows` array onto a fresh tape.
pub struct RowsSeed<'a>(std::marker::PhantomData<&'a ()>);

impl<'de> DeserializeSeed<'de> for RowsSeed<'de> {
    type Value = Rows<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Rows<'de>, D::Error> {
        deserializer.deserialize_any(RowsVisitor)
    }
}

struct RowsVisitor;

impl RowsVisitor {
    fn not_an_array<E: de::Error>(what: &str) -> Result<Rows<'static>, E> {
        Err(E::custom(format_args!(
            "`rows` must be an array of objects, not {what}"
        )))
    }
}

impl<'de> Visitor<'de> for RowsVisitor {
    type Value = Rows<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`rows`: an array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows<'de>, A::Error> {
        let mut rows = Rows::default();
        loop {
            let row = rows.starts.len();
            let start = rows.nodes.len();
            let seed = NodeSeed {
                rows: &mut rows,
                row,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
            if !matches!(rows.nodes[start], Node::Object { .. }) {
                return Err(de::Error::custom(format_args!(
                    "row {row} is a JSON {}, not an object",
                    rows.nodes[start].json_type()
                )));
            }
            rows.starts.push(start as u32);
        }
        Ok(rows)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Rows<'de>, A::Error> {
        Self::not_an_array("a JSON object or number")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Rows<'de>, E> {
        Self::not_an_array("null")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Rows<'de>, E> {
        Self::not_an_array("a JSON boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Rows<'de>, E> {
        Self::not_an_array("a JSON number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Rows<'de>, E> {
        Self::not_an_array("a JSON number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Rows<'de>, E> {
        Self::not_an_array("a JSON number")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Rows<'de>, E> {
        Self::not_an_array("a JSON string")
    }
}

/// Appends one value (and everything inside it) to the tape.
struct NodeSeed<'t, 'de> {
    rows: &'t mut Rows<'de>,
    /// For messages.
    row: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.rows.push(Node::Null);
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.rows.push(Node::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.rows.push(Node::Int(v));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.rows.push(match i64::try_from(v) {
            Ok(v) => Node::Int(v),
            Err(_) => Node::Number(Cow::Owned(v.to_string())),
        });
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // Only reached without serde_json's `arbitrary_precision`; Rust prints the shortest
        // text that reads back as the same f64.
        self.rows.push(Node::Number(Cow::Owned(format!("{v:?}"))));
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.rows.push(Node::Str(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.rows.push(Node::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.rows.push(Node::Str(Cow::Owned(v)));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let start = self.rows.push(Node::Array { end: 0 });
        while seq
            .next_element_seed(NodeSeed {
                rows: &mut *self.rows,
                row: self.row,
            })?
            .is_some()
        {}
        self.rows.close(start);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(first) = map.next_key_seed(CowStr)? else {
            let start = self.rows.push(Node::Object { end: 0 });
            self.rows.close(start);
            return Ok(());
        };
        if first == NUMBER_TOKEN {
            let text = map.next_value_seed(CowStr)?;
            self.rows.push(Node::Number(text));
            return Ok(());
        }
        let start = self.rows.push(Node::Object { end: 0 });
        let mut key = Some(first);
        while let Some(k) = key {
            self.rows.push(Node::Key(k));
            map.next_value_seed(NodeSeed {
                rows: &mut *self.rows,
                row: self.row,
            })?;
            key = map.next_key_seed(CowStr)?;
        }
        self.rows.close(start);
        if let Some(key) = self.rows.duplicate_key(start) {
            // Keys are column names, not row values: safe to show.
            return Err(de::Error::custom(format_args!(
                "row {}: key `{key}` appears twice in one object",
                self.row
            )));
        }
        Ok(())
    }
}

/// A string borrowed from the input when it has no escapes (serde's own `Cow` always copies).
struct CowStr;

impl<'de> DeserializeSeed<'de> for CowStr {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for CowStr {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(json: &str) -> Result<Rows<'_>, serde_json::Error> {
        Rows::seed().deserialize(&mut serde_json::Deserializer::from_str(json))
    }

    #[test]
    fn tape_keeps_order_borrows_strings_and_number_text() {
        let json = r#"[{"a": 1, "b": "x\ny", "c": [1.50, null, true], "d": {"e": 12345678901234567890.12}},
                       {"b": "plain", "n": -0, "big": 18446744073709551616}]"#;
        let rows = rows(json).unwrap();
        assert_eq!(rows.len(), 2);
        let starts: Vec<_> = rows.starts().collect();
        let first: Vec<_> = rows
            .members(starts[0])
            .map(|(k, v)| (k, rows.node(v).clone()))
            .collect();
        assert_eq!(first[0], ("a", Node::Int(1)));
        assert_eq!(first[1], ("b", Node::Str(Cow::Owned("x\ny".into()))));
        let c = rows
            .elements(member(&rows, starts[0], "c"))
            .collect::<Vec<_>>();
        assert_eq!(
            c.iter().map(|&i| rows.node(i).clone()).collect::<Vec<_>>(),
            [Node::Number("1.50".into()), Node::Null, Node::Bool(true)]
        );
        let second: Vec<_> = rows
            .members(starts[1])
            .map(|(k, v)| (k, rows.node(v).clone()))
            .collect();
        assert!(matches!(second[0].1, Node::Str(Cow::Borrowed("plain"))));
        assert_eq!(second[1].1, Node::Number("-0".into()));
        assert_eq!(second[2].1, Node::Number("18446744073709551616".into()));
        assert_eq!(second[2].1.json_type(), "integer");
        let e: Vec<_> = rows
            .members(member(&rows, starts[0], "d"))
            .map(|(k, v)| (k, rows.node(v).clone()))
            .collect();
        assert_eq!(e, [("e", Node::Number("12345678901234567890.12".into()))]);
    }

    fn member(rows: &Rows, object: usize, key: &str) -> usize {
        rows.members(object).find(|(k, _)| *k == key).unwrap().1
    }

    #[test]
    fn rejects_non_arrays_non_objects_and_duplicate_keys() {
        for (json, word) in [
            (r#"{"a": 1}"#, "must be an array"),
            ("null", "not null"),
            (r#""x""#, "not a JSON string"),
            (r#"[{"a": 1}, [1]]"#, "row 1 is a JSON array"),
            (r#"[{"a": 1}, 2]"#, "row 1 is a JSON integer"),
            (r#"[{"a": 1, "a": 2}]"#, "row 0: key `a` appears twice"),
            (
                r#"[{"x": {"b": 1, "c": 2, "b": 3}}]"#,
                "key `b` appears twice",
            ),
        ] {
            let err = rows(json).expect_err(json).to_string();
            assert!(err.contains(word), "{json}: {err}");
        }
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        let json = format!("[{{{}, \"k7\": 0}}]", many.join(","));
        assert!(
            rows(&json)
                .unwrap_err()
                .to_string()
                .contains("`k7` appears twice")
        );
        assert_eq!(rows(&format!("[{{{}}}]", many.join(","))).unwrap().len(), 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let json = format!(
            "[{{\"a\": {}{}}}]",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(
            rows(&json)
                .unwrap_err()
                .to_string()
                .contains("recursion limit")
        );
    }
}
