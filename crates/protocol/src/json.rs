//! Field-by-field JSON decoding with errors that name the field,
//! byte-preserving rewrites of a top-level object, quick scans of answers
//! and checked bodies, and JSON writing faster than serde_json's for text.

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

    /// A field's JSON text (valid JSON; the last one when the name is given
    /// twice).
    pub fn raw_text(&self, key: &str) -> Option<&'a str> {
        self.raw(key).map(RawValue::get)
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

    /// Checks that a field, when present and not `null`, is an array, as
    /// decoding it into a `Vec` of values would, without building them (the
    /// body is valid JSON already, so the first byte tells).
    pub fn check_array(&self, key: &str) -> Result<(), DecodeError> {
        self.check_shape::<Vec<Value>>(key, b'[')
    }

    /// As [`check_array`](Self::check_array), for an object.
    pub fn check_object(&self, key: &str) -> Result<(), DecodeError> {
        self.check_shape::<Map<String, Value>>(key, b'{')
    }

    /// A value of another type gets `T`'s decoding error.
    fn check_shape<T: DeserializeOwned>(&self, key: &str, open: u8) -> Result<(), DecodeError> {
        match self.raw_text(key) {
            Some(text) if text.as_bytes().first() != Some(&open) => self.get::<T>(key).map(drop),
            _ => Ok(()),
        }
    }

    /// Decodes a required field into a type that may borrow from the body.
    pub fn require_borrowed<T: Deserialize<'a>>(&self, key: &str) -> Result<T, DecodeError> {
        match self.raw_text(key) {
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
        match self.raw_text("model") {
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

    /// The required `messages` array of a chat request, which must hold at
    /// least one message.
    pub fn require_messages<T: DeserializeOwned>(&self) -> Result<Vec<T>, DecodeError> {
        let messages: Vec<T> = self.require("messages")?;
        if messages.is_empty() {
            return Err(DecodeError::new(
                "messages",
                "must contain at least one message",
            ));
        }
        Ok(messages)
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

/// The texts of the named members of a JSON object's top level (each `None`
/// when absent), found without decoding the rest: strings are skipped by
/// searching for their closing quote, nested values by counting brackets.
/// For a large answer whose few wanted members sit beside long strings this
/// costs a fraction of a full parse. It checks the top level's structure,
/// not the syntax of the values it skips; the caller decodes the texts it
/// gets, which checks those.
///
/// `None` when the text is not that simple (not an object, a member name
/// with an escape, a wanted name twice, a broken top level): a full decode
/// must then decide.
pub fn top_members<'a, const N: usize>(
    text: &'a [u8],
    names: [&str; N],
) -> Option<[Option<&'a [u8]>; N]> {
    let mut found = [None; N];
    let complete = walk(text, b'{', b'}', |i| {
        if text.get(i) != Some(&b'"') {
            return None;
        }
        let end = string_end(text, i + 1)?;
        let name = text.get(i + 1..end)?;
        if memchr::memchr(b'\\', name).is_some() {
            return None;
        }
        let i = skip_ws(text, end + 1);
        if text.get(i) != Some(&b':') {
            return None;
        }
        let i = skip_ws(text, i + 1);
        let value_end = value_end(text, i)?;
        if let Some(k) = names.iter().position(|n| n.as_bytes() == name) {
            if found[k].is_some() {
                return None;
            }
            found[k] = text.get(i..value_end);
        }
        Some(Entry::Ends(value_end))
    })?;
    complete.then_some(found)
}

/// Calls `f` with the text of each item of a JSON array, found as
/// [`top_members`] finds members, until `f` returns `false`. `Some(true)`
/// when every item was seen and accepted, `Some(false)` when `f` stopped,
/// `None` when `text` is not an array of that simple structure.
pub fn array_items<'a>(text: &'a [u8], mut f: impl FnMut(&'a [u8]) -> bool) -> Option<bool> {
    walk(text, b'[', b']', |i| {
        let end = value_end(text, i)?;
        Some(if f(text.get(i..end)?) {
            Entry::Ends(end)
        } else {
            Entry::Stop
        })
    })
}

/// What reading one entry of a container found.
enum Entry {
    /// The entry ends here (exclusive).
    Ends(usize),
    /// The reader wants no more entries.
    Stop,
}

/// Walks the entries of the container (`open` … `close`) that `text` holds,
/// with nothing but whitespace around it: `entry` reads the one starting at
/// an index (`None`: broken). `Some(true)` when every entry was read,
/// `Some(false)` when `entry` stopped, `None` when the structure is broken.
fn walk(
    text: &[u8],
    open: u8,
    close: u8,
    mut entry: impl FnMut(usize) -> Option<Entry>,
) -> Option<bool> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&open) {
        return None;
    }
    i = skip_ws(text, i + 1);
    if text.get(i) != Some(&close) {
        loop {
            match entry(i)? {
                Entry::Stop => return Some(false),
                Entry::Ends(end) => i = skip_ws(text, end),
            }
            match text.get(i) {
                Some(b',') => i = skip_ws(text, i + 1),
                Some(&b) if b == close => break,
                _ => return None,
            }
        }
    }
    (skip_ws(text, i + 1) == text.len()).then_some(true)
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(i) {
        i += 1;
    }
    i
}

/// Where the quote closing a string whose content starts at `i` is.
fn string_end(text: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
        if text.get(i) == Some(&b'"') {
            return Some(i);
        }
        // A backslash and the byte it escapes.
        i += 2;
    }
}

/// Where the value starting at `i` ends (exclusive).
fn value_end(text: &[u8], mut i: usize) -> Option<usize> {
    match text.get(i)? {
        b'"' => string_end(text, i + 1).map(|e| e + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match text.get(i)? {
                    b'"' => i = string_end(text, i + 1)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number, `true`, `false` or `null`: up to the next delimiter.
        _ => {
            let start = i;
            while let Some(b) = text.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// `s` as a JSON string, appended to `out`: the same bytes as serde_json
/// writes (`\"`, `\\`, `\b \f \n \r \t`, other control characters as
/// `\u00xx`, everything else as is), found eight bytes at a time rather
/// than one; text is most of what a gateway writes.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(at) = bytes.get(start..).and_then(find_special) {
        let at = start + at;
        out.extend_from_slice(&bytes[start..at]);
        let b = bytes[at];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            }
        }
        start = at + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Where the first byte a JSON string must escape (a control character, a
/// quote, a backslash) is in `bytes`.
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    let mut words = bytes.chunks_exact(8);
    let mut base = 0;
    for w in &mut words {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // The high bit of each byte that is below 0x20, a quote or a
        // backslash (exact up to the first such byte, which is all we use).
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let found = (w.wrapping_sub(ONES * 0x20) & !w
            | quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash)
            & (ONES << 7);
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|p| base + p)
}

/// A value as JSON text: the same bytes as `serde_json::to_vec`, with
/// strings written by [`write_str`].
pub fn value_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, v);
    out
}

/// Appends `v` as JSON text to `out` (see [`value_bytes`]).
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Writing into a Vec cannot fail.
        Value::Number(n) => drop(serde_json::to_writer(&mut *out, n)),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
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

    #[test]
    fn top_members_finds_the_named_members() {
        let text = br#" { "id" : "x\"usage\":1" , "choices":[{"m":{"c":"a}]\\"}},[]],
            "n":-1.5e3,"t":true,"z":null,"usage" :{"a":[1,{"b":"}"}]} }
        "#;
        let [usage, n, z, missing] = top_members(text, ["usage", "n", "z", "missing"]).unwrap();
        assert_eq!(usage.unwrap(), br#"{"a":[1,{"b":"}"}]}"#);
        assert_eq!(n.unwrap(), b"-1.5e3");
        assert_eq!(z.unwrap(), b"null");
        assert_eq!(missing, None);
        // A name that only appears inside a string or a nested object is
        // not a member.
        let [usage] = top_members(br#"{"a":"\"usage\":{}","b":{"usage":1}}"#, ["usage"]).unwrap();
        assert_eq!(usage, None);
        assert_eq!(top_members(b"{}", ["a"]).unwrap(), [None]);
        assert_eq!(top_members(b" {\n}\n", ["a"]).unwrap(), [None]);
    }

    #[test]
    fn top_members_gives_up_on_what_needs_a_full_parse() {
        for text in [
            &b""[..],
            b"[]",
            b"null",
            br#"{"a":1"#,
            br#"{"a":1,}"#,
            br#"{"a":}"#,
            br#"{"a" 1}"#,
            br#"{a:1}"#,
            br#"{"a":"unterminated}"#,
            br#"{"a":{"b":1}"#,
            br#"{"a":1} x"#,
            br#"{"a":1}{}"#,
            // An escaped name, and a wanted name twice.
            br#"{"\u0061":1}"#,
            br#"{"a":1,"a":2}"#,
        ] {
            assert_eq!(
                top_members(text, ["a"]),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // Other names may repeat; only the wanted ones are checked.
        assert_eq!(top_members(br#"{"b":1,"b":2}"#, ["a"]), Some([None]));
    }

    #[test]
    fn array_items_walks_the_items() {
        let mut seen = Vec::new();
        let text = br#" [ {"a":"]"} , [1,[2]] ,"x\"",3 ,null ] "#;
        assert_eq!(
            array_items(text, |i| {
                seen.push(String::from_utf8_lossy(i).into_owned());
                true
            }),
            Some(true)
        );
        assert_eq!(seen, [r#"{"a":"]"}"#, "[1,[2]]", r#""x\"""#, "3", "null"]);
        assert_eq!(array_items(b"[]", |_| false), Some(true));
        // Stopped by the callback at the second item.
        let mut n = 0;
        assert_eq!(
            array_items(b"[1,2,3]", |_| {
                n += 1;
                n < 2
            }),
            Some(false)
        );
        assert_eq!(n, 2);
        for text in [&b"{}"[..], b"[1,]", b"[1", b"[1 2]", b"[1],", b""] {
            assert_eq!(array_items(text, |_| true), None);
        }
    }

    #[test]
    fn write_str_writes_what_serde_json_writes() {
        let mut texts: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        texts.extend(
            [
                "",
                "plain ascii text that runs for more than eight bytes",
                "\"quoted\" and \\backslashed\\ \n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
                "é ü 漢字 🎉 emoji at the end🎉",
                "12345678\"2345678\\234567\n",
                "\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}\u{9}",
            ]
            .map(String::from),
        );
        // Every special byte at every offset of a word.
        for b in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for at in 0..17 {
                let mut s = "abcdefghijklmnopq".to_string();
                s.insert(at, b);
                texts.push(s);
            }
        }
        for t in &texts {
            let mut out = Vec::new();
            write_str(&mut out, t);
            assert_eq!(out, serde_json::to_vec(t).unwrap(), "{t:?}");
        }
    }

    #[test]
    fn value_bytes_are_serde_json_bytes() {
        let v = serde_json::json!({
            "id": "chatcmpl-1", "created": 1_700_000_000u64, "neg": -3, "pi": 3.25,
            "big": 1e300, "tiny": 5e-324, "t": true, "f": false, "n": null,
            "nested": [[], {}, [1, [2, {"k\n\"": "v\u{0}"}]]],
            "text": "line one\nline \"two\" \\ end",
        });
        assert_eq!(value_bytes(&v), serde_json::to_vec(&v).unwrap());
        for v in [
            serde_json::json!(null),
            serde_json::json!([]),
            serde_json::json!("x"),
        ] {
            assert_eq!(value_bytes(&v), serde_json::to_vec(&v).unwrap());
        }
    }
}
