//! Field-by-field JSON decoding with errors that name the field, and
//! byte-preserving rewrites of a top-level object.

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// A request body that could not be decoded, with the path of the bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Dotted path of the offending field (`messages[0].role`); empty for the
    /// body as a whole.
    pub field: String,
    pub message: String,
}

impl DecodeError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> DecodeError {
        DecodeError {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn body(message: impl Into<String>) -> DecodeError {
        DecodeError::new("", message)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid request body: {}", self.message)
        } else {
            write!(f, "invalid field `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for DecodeError {}

/// The top level of a JSON object, each value kept as its raw text.
pub struct RawObject<'a> {
    input: &'a str,
    fields: BTreeMap<String, &'a RawValue>,
}

impl<'a> RawObject<'a> {
    pub fn parse(input: &'a [u8]) -> Result<RawObject<'a>, DecodeError> {
        let input = std::str::from_utf8(input)
            .map_err(|_| DecodeError::body("the body is not valid UTF-8"))?;
        if input.trim().is_empty() {
            return Err(DecodeError::body(
                "the body is empty; expected a JSON object",
            ));
        }
        let fields: BTreeMap<String, &'a RawValue> = serde_json::from_str(input).map_err(|e| {
            if e.is_data() {
                DecodeError::body("expected a JSON object")
            } else {
                DecodeError::body(format!("malformed JSON: {e}"))
            }
        })?;
        Ok(RawObject { input, fields })
    }

    pub fn has(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    /// Decodes a field; `null` and absence are both `None`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DecodeError> {
        let Some(raw) = self.fields.get(key) else {
            return Ok(None);
        };
        if raw.get() == "null" {
            return Ok(None);
        }
        decode_field(key, raw.get()).map(Some)
    }

    /// Decodes a required field.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, DecodeError> {
        self.get(key)?
            .ok_or_else(|| DecodeError::new(key, "this field is required"))
    }

    /// The required, non-blank `model` field every request names.
    pub fn require_model(&self) -> Result<String, DecodeError> {
        let model: String = self.require("model")?;
        if model.trim().is_empty() {
            return Err(DecodeError::new("model", "must not be empty"));
        }
        Ok(model)
    }

    /// Every field not in `known`, as JSON values.
    pub fn rest(&self, known: &[&str]) -> Map<String, Value> {
        self.fields
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .filter_map(|(k, v)| {
                serde_json::from_str::<Value>(v.get())
                    .ok()
                    .map(|v| (k.clone(), v))
            })
            .collect()
    }

    /// Byte offsets of a top-level field's value within the input.
    fn span(&self, key: &str) -> Option<(usize, usize)> {
        let raw = self.fields.get(key)?.get();
        let start = (raw.as_ptr() as usize).checked_sub(self.input.as_ptr() as usize)?;
        let end = start + raw.len();
        (end <= self.input.len()).then_some((start, end))
    }

    /// The input with `key`'s value replaced by `new_json` (or the field added
    /// when absent); every other byte is kept as it was.
    pub fn with_field(&self, key: &str, new_json: &str) -> Vec<u8> {
        match self.span(key) {
            Some((start, end)) => {
                let mut out = Vec::with_capacity(self.input.len() - (end - start) + new_json.len());
                out.extend_from_slice(&self.input.as_bytes()[..start]);
                out.extend_from_slice(new_json.as_bytes());
                out.extend_from_slice(&self.input.as_bytes()[end..]);
                out
            }
            None => {
                let trimmed = self.input.trim_end();
                let body = trimmed.strip_suffix('}').unwrap_or(trimmed).trim_end();
                let mut out = Vec::with_capacity(self.input.len() + key.len() + new_json.len() + 8);
                out.extend_from_slice(body.as_bytes());
                if !self.fields.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
                out.push(b':');
                out.extend_from_slice(new_json.as_bytes());
                out.push(b'}');
                out
            }
        }
    }
}

/// Decodes `text` as `T`, naming `key` plus the inner path in errors.
pub fn decode_field<T: DeserializeOwned>(key: &str, text: &str) -> Result<T, DecodeError> {
    // Plain serde first (every request goes through here; path tracking
    // costs on each value); only a failure is decoded again for its path.
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| path_error(key, e))
}

/// A decoding failure as a [`DecodeError`] whose field is `key` plus the
/// path inside it (`messages[0].role`); a missing field is named itself.
pub(crate) fn path_error(
    key: &str,
    e: serde_path_to_error::Error<serde_json::Error>,
) -> DecodeError {
    let inner = e.path().to_string();
    let field = if inner == "." || inner.is_empty() {
        key.to_string()
    } else if inner.starts_with('[') || key.is_empty() {
        format!("{key}{inner}")
    } else {
        format!("{key}.{inner}")
    };
    let msg = e.into_inner().to_string();
    // serde_json appends " at line L column C"; the path says more.
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    // Name the missing field itself, not its parent.
    if let Some(name) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return DecodeError::new(format!("{field}.{name}"), "this field is required");
    }
    DecodeError::new(field, msg)
}

/// Why tool-call arguments text is not a JSON object.
pub(crate) enum ArgumentsError {
    /// Valid JSON, but not an object.
    NotAnObject,
    Invalid(serde_json::Error),
}

/// Tool-call arguments (JSON text) as an object; blank text is `{}`.
pub(crate) fn arguments_object(text: &str) -> Result<Map<String, Value>, ArgumentsError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ArgumentsError::NotAnObject),
        Err(e) => Err(ArgumentsError::Invalid(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_field_keeps_other_bytes() {
        let input = br#"{ "model" : "a",  "x_unknown": {"k": [1, 2.50]}, "messages": [] }"#;
        let obj = RawObject::parse(input).unwrap_or_else(|e| panic!("{e}"));
        let out = obj.with_field("model", "\"b\"");
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{ "model" : "b",  "x_unknown": {"k": [1, 2.50]}, "messages": [] }"#
        );
        let out = obj.with_field("stream", "true");
        let v: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["stream"], Value::Bool(true));
        assert_eq!(v["x_unknown"]["k"][1], serde_json::json!(2.5));
    }

    #[test]
    fn errors_name_the_field() {
        let input = br#"{"messages": [{"role": "user", "content": 5}]}"#;
        let obj = RawObject::parse(input).unwrap_or_else(|e| panic!("{e}"));
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct M {
            role: String,
            content: String,
        }
        let err = obj.get::<Vec<M>>("messages").err();
        assert_eq!(
            err.map(|e| e.field),
            Some("messages[0].content".to_string())
        );
        assert!(obj.require::<String>("model").is_err());
    }

    #[test]
    fn rejects_non_objects() {
        assert!(RawObject::parse(b"[1]").is_err());
        assert!(RawObject::parse(b"").is_err());
        assert!(RawObject::parse(b"{\"a\":").is_err());
    }
}
