//! Field-by-field JSON decoding with errors that name the field, and
//! byte-preserving rewrites of a top-level object.

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
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
///
/// Fields stay in body order with their names borrowed from the body when
/// they hold no escapes (every request goes through here, so one
/// allocation per field name showed in profiles). A name given twice keeps
/// its last value, as `serde_json` does for maps.
pub struct RawObject<'a> {
    input: &'a str,
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// One field name, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The fields of a top-level object, in order.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8).min(32));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    fields.push((k, v));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
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
        let Fields(fields) = serde_json::from_str(input).map_err(|e| {
            if e.is_data() {
                DecodeError::body("expected a JSON object")
            } else {
                DecodeError::body(format!("malformed JSON: {e}"))
            }
        })?;
        Ok(RawObject { input, fields })
    }

    /// A field's raw value; the last one when the name is given twice.
    fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| *v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// Decodes a field; `null` and absence are both `None`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DecodeError> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        if raw.get() == "null" {
            return Ok(None);
        }
        decode_field(key, raw.get()).map(Some)
    }

    /// Decodes a required field into a type that may borrow from the body.
    pub fn require_borrowed<T: Deserialize<'a>>(&self, key: &str) -> Result<T, DecodeError> {
        match self.raw(key).map(RawValue::get) {
            None | Some("null") => Err(DecodeError::new(key, "this field is required")),
            Some(text) => decode_field(key, text),
        }
    }

    /// Decodes a required field.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, DecodeError> {
        self.get(key)?
            .ok_or_else(|| DecodeError::new(key, "this field is required"))
    }

    /// The required `model` field as a string (blank allowed).
    pub fn model(&self) -> Result<String, DecodeError> {
        // A plain string is copied straight out of the body; anything else
        // (escapes, a wrong type) takes the general path and its errors.
        match self.raw("model").map(RawValue::get) {
            Some(t)
                if t.len() >= 2
                    && t.starts_with('"')
                    && t.ends_with('"')
                    && !t[1..t.len() - 1].contains('\\') =>
            {
                Ok(t[1..t.len() - 1].to_string())
            }
            _ => self.require("model"),
        }
    }

    /// The required, non-blank `model` field every request names.
    pub fn require_model(&self) -> Result<String, DecodeError> {
        let model = self.model()?;
        if model.trim().is_empty() {
            return Err(DecodeError::new("model", "must not be empty"));
        }
        Ok(model)
    }

    /// Every field not in `known`, as JSON values.
    pub fn rest(&self, known: &[&str]) -> Map<String, Value> {
        // Later values of a name given twice replace earlier ones.
        self.fields
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_ref()))
            .filter_map(|(k, v)| {
                serde_json::from_str::<Value>(v.get())
                    .ok()
                    .map(|v| (k.to_string(), v))
            })
            .collect()
    }

    /// Byte offsets of a top-level field's value within the input.
    fn span(&self, key: &str) -> Option<(usize, usize)> {
        let raw = self.raw(key)?.get();
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
pub fn decode_field<'a, T: Deserialize<'a>>(key: &str, text: &'a str) -> Result<T, DecodeError> {
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
    fn a_name_given_twice_keeps_its_last_value() {
        let obj = RawObject::parse(br#"{"model":"a","n":1,"model":"b"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj.model().ok().as_deref(), Some("b"));
        assert_eq!(obj.rest(&["model"]).get("n"), Some(&serde_json::json!(1)));
        assert_eq!(obj.rest(&[]).len(), 2);
        let out = obj.with_field("model", "\"c\"");
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"model":"a","n":1,"model":"c"}"#
        );
    }

    #[test]
    fn escaped_names_and_models_decode() {
        let obj = RawObject::parse(br#"{"mo\u0064el":"x\"y","\u006e":2}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj.model().ok().as_deref(), Some("x\"y"));
        assert_eq!(obj.get::<u32>("n").ok().flatten(), Some(2));
        let obj = RawObject::parse(br#"{"model":"caf\u00e9"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj.model().ok().as_deref(), Some("café"));
        let obj = RawObject::parse(br#"{"model":7}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            obj.model().err().map(|e| e.field),
            Some("model".to_string())
        );
        let obj = RawObject::parse(br#"{"model":" "}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj.model().ok().as_deref(), Some(" "));
        assert!(obj.require_model().is_err());
    }

    #[test]
    fn rejects_non_objects() {
        assert!(RawObject::parse(b"[1]").is_err());
        assert!(RawObject::parse(b"").is_err());
        assert!(RawObject::parse(b"{\"a\":").is_err());
    }
}
