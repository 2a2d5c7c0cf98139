//! A sweep: `{"sweep": {}}`, as a schedule sends it, asks the function to abort the multipart
//! uploads left under its folders by attempts that were killed and never redelivered (what
//! the handler's `sweep` module does with it).

use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// What a sweep event asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sweep {
    /// Uploads younger than this are left alone; never less than the invocation's timeout
    /// (an upload that young may belong to an invocation still running).
    pub min_age: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    min_age_seconds: Option<u64>,
}

impl Sweep {
    /// Parses the `sweep` field.
    ///
    /// # Errors
    /// `InvalidEvent` for another shape.
    pub fn parse(json: &str) -> Result<Sweep, Error> {
        let raw: RawSweep = serde_json::from_str(json).map_err(|e| {
            Error::InvalidEvent(format!(
                r#"`sweep` must be {{}} or {{"min_age_seconds": <seconds>}}: {e}"#
            ))
        })?;
        Ok(Sweep {
            min_age: raw.min_age_seconds.map(Duration::from_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_events_parse_and_bad_ones_say_why() {
        assert_eq!(Sweep::parse("{}").unwrap(), Sweep::default());
        assert_eq!(
            Sweep::parse(r#"{"min_age_seconds": 900}"#).unwrap().min_age,
            Some(Duration::from_secs(900))
        );
        for bad in [r#"{"min_age": 1}"#, r#"{"min_age_seconds": -1}"#, "[]"] {
            let e = Sweep::parse(bad).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent");
            assert!(e.to_string().contains("`sweep` must be"), "{bad}: {e}");
        }
    }
}
