//! Wire pieces that more than one format shares. Ollama copies OpenAI's
//! tool definitions and embeddings requests, so both codecs decode `tools`
//! and start an embeddings request with what is here.

use crate::ir::{EmbeddingInput, EmbeddingRequest, Tool};
use crate::json::DecodeError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A tool offered to the model, `{"type": "function", "function": {…}}`, as
/// OpenAI defines it and Ollama copies it. `F` is the format's `function`
/// object, declared by `wire_function_def!`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireTool<F> {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub function: F,
}

/// Declares a format's `WireFunctionDef`, the `function` object of a
/// [`WireTool`] (`name`, `description`, `parameters` and OpenAI's `strict`),
/// and its conversion into a [`Tool`]: no `parameters` means an empty object
/// schema.
///
/// The argument is the serde attribute of `strict`: `#[serde(default)]` where
/// the format has the flag; `#[serde(skip)]` where it has none (Ollama), so
/// that there a `strict` key stays unknown, ignored whatever its value, and
/// the flag is always `None`. That attribute is why this is a macro and not
/// one type.
macro_rules! wire_function_def {
    (#[$strict:meta]) => {
        #[derive(Debug, Clone, serde::Deserialize)]
        pub struct WireFunctionDef {
            pub name: String,
            #[serde(default)]
            pub description: Option<String>,
            #[serde(default)]
            pub parameters: Option<serde_json::Value>,
            #[$strict]
            pub strict: Option<bool>,
        }

        impl From<WireFunctionDef> for $crate::ir::Tool {
            fn from(f: WireFunctionDef) -> $crate::ir::Tool {
                $crate::ir::Tool {
                    name: f.name,
                    description: f.description,
                    parameters: f.parameters.unwrap_or_else(|| {
                        serde_json::json!({"type": "object", "properties": {}})
                    }),
                    strict: f.strict,
                }
            }
        }
    };
}
pub(crate) use wire_function_def;

/// The model's tools of a request's `tools`: each must be a `function` tool
/// (when it gives a `type`) with a non-empty name; errors name
/// `tools[i].type` or `tools[i].function.name`.
pub(crate) fn tools_to_ir<F: Into<Tool>>(wire: Vec<WireTool<F>>) -> Result<Vec<Tool>, DecodeError> {
    let mut tools = Vec::with_capacity(wire.len());
    for (i, t) in wire.into_iter().enumerate() {
        if let Some(kind) = &t.kind {
            if kind != "function" {
                return Err(DecodeError::new(
                    format!("tools[{i}].type"),
                    format!("unsupported tool type `{kind}`; only `function` tools are supported"),
                ));
            }
        }
        let tool: Tool = t.function.into();
        if tool.name.is_empty() {
            return Err(DecodeError::new(
                format!("tools[{i}].function.name"),
                "must not be empty",
            ));
        }
        tools.push(tool);
    }
    Ok(tools)
}

/// The opening of an embeddings request for an upstream: `model`, `input`
/// (texts or token arrays, as given) and `dimensions` when set, which
/// OpenAI's request and Ollama's `/api/embed` share. Each codec adds its own
/// fields.
pub(crate) fn embedding_request_head(req: &EmbeddingRequest) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("model".into(), json!(req.model));
    o.insert(
        "input".into(),
        match &req.input {
            EmbeddingInput::Text(v) => json!(v),
            EmbeddingInput::Tokens(v) => json!(v),
        },
    );
    if let Some(d) = req.dimensions {
        o.insert("dimensions".into(), json!(d));
    }
    o
}
