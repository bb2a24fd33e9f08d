//! A moment as the API and events show it: RFC 3339 in UTC with milliseconds
//! (`2026-11-22T21:30:00.123Z`), kept as Unix milliseconds.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::{borrow::Cow, fmt, time::{Duration, UNIX_EPOCH}};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(unix_now_ms())
    }

    pub fn from_unix_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    pub fn unix_ms(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.0)))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// RFC 3339, or Unix milliseconds as records written before 0.2 hold them.
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time or Unix milliseconds")
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(ms))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                let t = humantime::parse_rfc3339(s).map_err(|e| E::custom(format!("`{s}`: {e}")))?;
                let since = t.duration_since(UNIX_EPOCH).map_err(|_| E::custom(format!("`{s}` is before 1970")))?;
                Ok(Timestamp(since.as_millis() as u64))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 in UTC with milliseconds, e.g. 2026-11-22T21:30:00.123Z"
        })
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_rfc3339_and_read_back_from_either_form() {
        let t = Timestamp(1_795_383_000_123);
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, "\"2026-11-22T21:30:00.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&text).unwrap(), t);
        assert_eq!(serde_json::from_str::<Timestamp>("1795383000123").unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err().to_string().contains("yesterday"));
    }
}
