//! Light validation for bodies forwarded byte for byte to an upstream of the
//! same format.
//!
//! A forwarded body only needs what routing and the gateway itself rely on
//! (the model, the stream flag, the shape of `messages`, the types of the
//! common scalar options); everything else is the upstream's to judge, so
//! features llm-link does not model (server tools, documents, audio parts,
//! new fields) still work. The upstream's own 400 reaches the client.

use crate::json::{DecodeError, RawObject};
use serde::Deserialize;
use std::borrow::Cow;

/// What the gateway needs from a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwardable {
    pub model: String,
    pub stream: bool,
}

/// A message's role, borrowed from the body unless it holds escapes (the
/// other fields are skipped, not decoded).
#[derive(Deserialize)]
struct RoleOnly<'a> {
    // Decoded so a message without a string role is refused; its value is
    // the provider's to judge.
    #[serde(borrow)]
    #[allow(dead_code)]
    role: Cow<'a, str>,
}

/// `messages` must be an array of objects, each with a string `role`. The
/// role's value is not judged here: a role llm-link does not know (Claude
/// Code's mid-conversation `system`, a role a provider adds next year) is
/// the upstream's to accept or refuse, and its own 400 reaches the client.
fn messages(obj: &RawObject<'_>, allow_empty: bool) -> Result<(), DecodeError> {
    // The usual body passes the quick check; anything else is decoded for
    // its precise error (or accepted, as an escaped role may be).
    match obj.raw_text("messages").and_then(quick_roles) {
        Some(0) if !allow_empty => {}
        Some(_) => return Ok(()),
        None => {}
    }
    let msgs: Vec<RoleOnly<'_>> = obj.require_borrowed("messages")?;
    if msgs.is_empty() && !allow_empty {
        return Err(DecodeError::new(
            "messages",
            "must contain at least one message",
        ));
    }
    Ok(())
}

/// How many messages `text` (a messages array, valid JSON) holds when each
/// is an object with one plain `role` string; the content is skipped, not
/// decoded again. `None` for anything else.
fn quick_roles(text: &str) -> Option<usize> {
    let mut n = 0;
    let complete = crate::json::array_items(text.as_bytes(), |item| {
        let ok = matches!(
            crate::json::top_members(item, ["role"]),
            Some([Some(role)]) if role.len() >= 2
                && role.first() == Some(&b'"')
                && role.last() == Some(&b'"')
                && !role[1..role.len() - 1].contains(&b'\\')
        );
        n += 1;
        ok
    })?;
    complete.then_some(n)
}

fn range(obj: &RawObject<'_>, key: &str, lo: f64, hi: f64) -> Result<(), DecodeError> {
    if let Some(v) = obj.get::<f64>(key)? {
        if !(lo..=hi).contains(&v) {
            return Err(DecodeError::new(
                key,
                format!("must be between {lo} and {hi}"),
            ));
        }
    }
    Ok(())
}

/// `/v1/chat/completions` bound for an OpenAI-compatible upstream.
pub fn openai_chat(obj: &RawObject<'_>) -> Result<Forwardable, DecodeError> {
    let model = obj.require_model()?;
    messages(obj, false)?;
    range(obj, "temperature", 0.0, 2.0)?;
    range(obj, "top_p", 0.0, 1.0)?;
    obj.get::<u32>("max_tokens")?;
    obj.get::<u32>("max_completion_tokens")?;
    if obj.get::<u32>("n")? == Some(0) {
        return Err(DecodeError::new("n", "must be at least 1"));
    }
    obj.get::<i64>("seed")?;
    obj.check_array("tools")?;
    obj.check_object("stream_options")?;
    obj.check_object("response_format")?;
    Ok(Forwardable {
        model,
        stream: obj.get::<bool>("stream")?.unwrap_or(false),
    })
}

/// `/v1/messages` bound for an Anthropic upstream.
pub fn anthropic_messages(
    obj: &RawObject<'_>,
    require_max_tokens: bool,
) -> Result<Forwardable, DecodeError> {
    let model = obj.require_model()?;
    if require_max_tokens {
        let _: u32 = obj.require("max_tokens")?;
    } else {
        obj.get::<u32>("max_tokens")?;
    }
    messages(obj, false)?;
    range(obj, "temperature", 0.0, 1.0)?;
    range(obj, "top_p", 0.0, 1.0)?;
    obj.get::<u32>("top_k")?;
    obj.get::<Vec<String>>("stop_sequences")?;
    obj.check_array("tools")?;
    Ok(Forwardable {
        model,
        stream: obj.get::<bool>("stream")?.unwrap_or(false),
    })
}

/// `/api/chat` bound for an Ollama upstream (streams unless told not to).
pub fn ollama_chat(obj: &RawObject<'_>) -> Result<Forwardable, DecodeError> {
    let model = obj.require_model()?;
    messages(obj, false)?;
    obj.check_object("options")?;
    obj.check_array("tools")?;
    Ok(Forwardable {
        model,
        stream: obj.get::<bool>("stream")?.unwrap_or(true),
    })
}

/// `/api/generate` bound for an Ollama upstream.
pub fn ollama_generate(obj: &RawObject<'_>) -> Result<Forwardable, DecodeError> {
    let model = obj.require_model()?;
    obj.get::<String>("prompt")?;
    obj.get::<String>("system")?;
    obj.get::<Vec<String>>("images")?;
    obj.check_object("options")?;
    Ok(Forwardable {
        model,
        stream: obj.get::<bool>("stream")?.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(f: fn(&RawObject<'_>) -> Result<Forwardable, DecodeError>, body: &str) -> String {
        let obj = RawObject::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        f(&obj).err().map(|e| e.field).unwrap_or_default()
    }

    #[test]
    fn names_the_bad_field_and_lets_unknown_shapes_through() {
        assert_eq!(
            field(
                openai_chat,
                r#"{"messages":[{"role":"user","content":"x"}]}"#
            ),
            "model"
        );
        assert_eq!(
            field(openai_chat, r#"{"model":"m","messages":"oops"}"#),
            "messages"
        );
        // A role llm-link does not know is the upstream's to judge.
        assert_eq!(
            field(
                openai_chat,
                r#"{"model":"m","messages":[{"role":"wizard"}]}"#
            ),
            ""
        );
        assert_eq!(
            field(openai_chat, r#"{"model":"m","messages":[{"role":5}]}"#),
            "messages[0].role"
        );
        assert_eq!(
            field(
                openai_chat,
                r#"{"model":"m","messages":[{"role":"user"}],"temperature":"warm"}"#
            ),
            "temperature"
        );
        // Audio parts and custom tools are the upstream's business.
        let ok = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}],"tools":[{"type":"custom","custom":{}}],"stream":true}"#;
        let obj = RawObject::parse(ok.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            openai_chat(&obj).ok(),
            Some(Forwardable {
                model: "m".into(),
                stream: true
            })
        );

        let anth = |b: &str| {
            let obj = RawObject::parse(b.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            anthropic_messages(&obj, true)
                .err()
                .map(|e| e.field)
                .unwrap_or_default()
        };
        assert_eq!(
            anth(r#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#),
            "max_tokens"
        );
        // Claude Code sends a `system` message inside `messages`; an
        // Anthropic upstream judges it.
        assert_eq!(
            anth(
                r#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"system","content":"y"}]}"#
            ),
            ""
        );
        assert_eq!(
            anth(
                r#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document"}]}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#
            ),
            ""
        );

        let obj = RawObject::parse(br#"{"model":"l","messages":[{"role":"user","content":"x"}]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ollama_chat(&obj).map(|f| f.stream).ok(), Some(true));
    }

    /// Bodies at the edges of the quick checks (messages scanned for their
    /// roles only, tools and option maps judged by their first byte) get
    /// the answers a full decode gives: the field of the error, or none.
    #[test]
    fn quick_checks_answer_as_a_full_decode() {
        type Check = fn(&RawObject<'_>) -> Result<Forwardable, DecodeError>;
        let v = |f: Check, rest: &str| {
            let body = format!(r#"{{"model":"m",{rest}}}"#);
            let obj = RawObject::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            match f(&obj) {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{}: {}", e.field, e.message),
            }
        };
        let anth = |obj: &RawObject<'_>| anthropic_messages(obj, false);
        let cases: &[(Check, &str, &str)] = &[
            (
                openai_chat,
                r#""messages":[]"#,
                "messages: must contain at least one message",
            ),
            (
                openai_chat,
                r#""messages":[{"role":"user","content":"a \"role\": \"wizard\" ]}"}]"#,
                "ok",
            ),
            (
                openai_chat,
                r#""messages":[{"content":[{"role":"wizard"}],"role":"tool"}]"#,
                "ok",
            ),
            (openai_chat, r#""messages":[{"role":"us\u0065r"}]"#, "ok"),
            (
                openai_chat,
                r#""messages":[{"role":"user","role":"user"}]"#,
                "messages[0]: duplicate field `role`",
            ),
            (
                openai_chat,
                r#""messages":[{"content":"x"}]"#,
                "messages[0].role: this field is required",
            ),
            (
                openai_chat,
                r#""messages":[{"role":"user"},{"role":"wizard"}]"#,
                "ok",
            ),
            (
                openai_chat,
                r#""messages":[{"role":"user"},5]"#,
                "messages[1]: invalid type: integer `5`, expected struct RoleOnly",
            ),
            (
                openai_chat,
                r#""messages":[{"role":7}]"#,
                "messages[0].role: invalid type: integer `7`, expected a string",
            ),
            (
                openai_chat,
                r#""messages":{"role":"user"}"#,
                "messages: invalid type: map, expected a sequence",
            ),
            (
                openai_chat,
                r#""messages":[{"role":"user"}],"tools":[1,{"a":[]}],"stream_options":{},"response_format":null"#,
                "ok",
            ),
            (
                openai_chat,
                r#""messages":[{"role":"user"}],"tools":{"a":1}"#,
                "tools: invalid type: map, expected a sequence",
            ),
            (
                openai_chat,
                r#""messages":[{"role":"user"}],"tools":"x""#,
                "tools: invalid type: string \"x\", expected a sequence",
            ),
            (
                openai_chat,
                r#""messages":[{"role":"user"}],"stream_options":[]"#,
                "stream_options: invalid type: sequence, expected a map",
            ),
            (
                openai_chat,
                r#""messages":[{"role":"user"}],"response_format":"json""#,
                "response_format: invalid type: string \"json\", expected a map",
            ),
            (
                anth,
                r#""messages":[{"role":"user"},{"role":"system"},{"role":"assistant"}]"#,
                "ok",
            ),
            (anth, r#""messages":[{"role":"system"}]"#, "ok"),
            (
                anth,
                r#""messages":[]"#,
                "messages: must contain at least one message",
            ),
            (
                anth,
                r#""messages":[{"content":"x"}]"#,
                "messages[0].role: this field is required",
            ),
            (
                anth,
                r#""messages":[{"role":"user"}],"tools":true"#,
                "tools: invalid type: boolean `true`, expected a sequence",
            ),
            (
                ollama_chat,
                r#""messages":[{"role":"user"}],"options":[1]"#,
                "options: invalid type: sequence, expected a map",
            ),
            (
                ollama_chat,
                r#""messages":[{"role":"user"}],"options":{"num_ctx":8}"#,
                "ok",
            ),
            (
                ollama_generate,
                r#""options":5"#,
                "options: invalid type: integer `5`, expected a map",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(f, rest, want)| v(*f, rest) != *want)
            .map(|(f, rest, want)| format!("{rest}\n  got:  {}\n  want: {want}", v(*f, rest)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
