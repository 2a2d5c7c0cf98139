//! DynamoDB JSON (`{"Id": {"N": "101"}, "Tags": {"SS": ["a"]}}`) as a plain JSON row, typed
//! by its attribute types: `S` a string, `N` the number exactly as written (never through
//! f64), `BOOL`, `NULL`, `M` an object, `L` a list, `SS`/`NS` lists, and `B`/`BS` the bytes in
//! base64 (JSON rows carry no binary; the stream's own encoding, so readers decode it as they
//! would the event).

use serde_json::{Map, Value};

/// `image`'s attributes as a JSON object's members (without the braces).
///
/// # Errors
/// The attribute (its path) that is not DynamoDB JSON, or a number that is not one.
pub fn members(image: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    for (i, (name, value)) in image.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(&mut out, name);
        out.push(':');
        attribute(value, name, &mut out)?;
    }
    Ok(out)
}

fn attribute(value: &Value, path: &str, out: &mut String) -> Result<(), String> {
    let bad = || format!("`{path}` is not a DynamoDB attribute value");
    let (kind, inner) = match value.as_object().map(|o| o.iter().next()) {
        Some(Some(pair)) if value.as_object().is_some_and(|o| o.len() == 1) => pair,
        _ => return Err(bad()),
    };
    match (kind.as_str(), inner) {
        ("S" | "B", Value::String(s)) => push_string(out, s),
        ("N", Value::String(n)) => push_number(out, n, path)?,
        ("BOOL", Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        ("NULL", Value::Bool(true)) => out.push_str("null"),
        ("M", Value::Object(map)) => {
            out.push('{');
            for (i, (name, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, name);
                out.push(':');
                attribute(value, &format!("{path}.{name}"), out)?;
            }
            out.push('}');
        }
        ("L", Value::Array(list)) => {
            out.push('[');
            for (i, value) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                attribute(value, &format!("{path}[{i}]"), out)?;
            }
            out.push(']');
        }
        ("SS" | "BS" | "NS", Value::Array(set)) => {
            out.push('[');
            for (i, member) in set.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match (kind.as_str(), member) {
                    ("NS", Value::String(n)) => push_number(out, n, path)?,
                    (_, Value::String(s)) => push_string(out, s),
                    _ => return Err(bad()),
                }
            }
            out.push(']');
        }
        _ => return Err(bad()),
    }
    Ok(())
}

fn push_string(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// DynamoDB's number text as a JSON number, exactly (a leading `+` or `.`, which DynamoDB
/// accepts and JSON does not, is written out).
fn push_number(out: &mut String, n: &str, path: &str) -> Result<(), String> {
    let (sign, digits) = match n.as_bytes().first() {
        Some(b'-') => ("-", &n[1..]),
        Some(b'+') => ("", &n[1..]),
        _ => ("", n),
    };
    let digits = match digits.starts_with('.') {
        true => format!("0{digits}"),
        false => digits.to_owned(),
    };
    let text = format!("{sign}{digits}");
    match serde_json::from_str::<serde_json::Number>(&text) {
        Ok(_) => {
            out.push_str(&text);
            Ok(())
        }
        Err(_) => Err(format!("`{path}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(image: &str) -> Result<String, String> {
        let image: Map<String, Value> = serde_json::from_str(image).unwrap();
        members(&image).map(|m| format!("{{{m}}}"))
    }

    #[test]
    fn attribute_types_become_json_types_and_numbers_stay_exact() {
        let image = r#"{"Id": {"N": "101"}, "Price": {"N": "12345678901234567890.000000001"},
            "Msg": {"S": "hi \"there\""}, "Ok": {"BOOL": true}, "None": {"NULL": true},
            "Tags": {"SS": ["a", "b"]}, "Sizes": {"NS": ["1", "-.5"]}, "Blob": {"B": "AAE="},
            "Nested": {"M": {"L": {"L": [{"N": "+1"}, {"S": "x"}]}}}}"#;
        let text = row(image).unwrap();
        let expected = r#"{"Id":101,"Price":12345678901234567890.000000001,"Msg":"hi \"there\"","Ok":true,"None":null,"Tags":["a","b"],"Sizes":[1,-0.5],"Blob":"AAE=","Nested":{"L":[1,"x"]}}"#;
        let parsed = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        assert_eq!(parsed(&text), parsed(expected));
        assert!(text.contains("12345678901234567890.000000001"), "{text}");
    }

    #[test]
    fn what_is_not_dynamodb_json_is_named() {
        for (image, path) in [
            (r#"{"a": {"N": "1x"}}"#, "`a` is not a number"),
            (r#"{"a": {"Q": "1"}}"#, "`a` is not"),
            (r#"{"a": {"S": "1", "N": "1"}}"#, "`a` is not"),
            (
                r#"{"a": {"M": {"b": {"L": [{"S": 1}]}}}}"#,
                "`a.b[0]` is not",
            ),
            (r#"{"a": 1}"#, "`a` is not"),
        ] {
            let e = row(image).unwrap_err();
            assert!(e.contains(path), "{image}: {e}");
        }
    }
}
