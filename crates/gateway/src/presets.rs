//! Every provider kind llm-link knows, as one table. An OpenAI-compatible
//! vendor is a row here, not a module.

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Ollama,
    /// The OpenAI Responses API (`/v1/responses`): a client surface, and
    /// forwarded only to an OpenAI-format provider that speaks it
    /// (`Preset::responses_api`, the provider's `responses` setting). No
    /// provider has it as its wire.
    Responses,
}

impl Wire {
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::OpenAi => "openai",
            Wire::Anthropic => "anthropic",
            Wire::Ollama => "ollama",
            Wire::Responses => "responses",
        }
    }
}

/// How the upstream key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    Bearer,
    /// `x-api-key` plus `anthropic-version`.
    XApiKey,
    None,
}

#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub kind: &'static str,
    pub display: &'static str,
    pub wire: Wire,
    /// Empty when the user must give one.
    pub base_url: &'static str,
    pub key_env: Option<&'static str>,
    pub key_style: KeyStyle,
    /// Whether a key is needed to start.
    pub key_required: bool,
    /// Empty when the user must give one.
    pub default_model: &'static str,
    /// Well-known model ids, served under this provider without declaring them.
    pub known_models: &'static [&'static str],
    /// Whether the host understands `max_completion_tokens`; when not, the
    /// translated path sends `max_tokens`.
    pub max_completion_tokens: bool,
    /// Whether the host serves the Responses API (`/responses`) itself, so a
    /// Responses request is forwarded byte for byte instead of translated.
    pub responses_api: bool,
    /// Whether this build can start this kind yet.
    pub supported: bool,
    pub note: &'static str,
}

const fn openai_like(
    kind: &'static str,
    display: &'static str,
    base_url: &'static str,
    key_env: &'static str,
    default_model: &'static str,
    known_models: &'static [&'static str],
) -> Preset {
    Preset {
        kind,
        display,
        wire: Wire::OpenAi,
        base_url,
        key_env: Some(key_env),
        key_style: KeyStyle::Bearer,
        key_required: true,
        default_model,
        known_models,
        max_completion_tokens: false,
        responses_api: false,
        supported: true,
        note: "",
    }
}

pub const PRESETS: &[Preset] = &[
    Preset {
        max_completion_tokens: true,
        responses_api: true,
        ..openai_like(
            "openai",
            "OpenAI",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            "gpt-4o",
            &["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "text-embedding-3-small", "text-embedding-3-large"],
        )
    },
    Preset {
        kind: "anthropic",
        display: "Anthropic",
        wire: Wire::Anthropic,
        base_url: "https://api.anthropic.com",
        key_env: Some("ANTHROPIC_API_KEY"),
        key_style: KeyStyle::XApiKey,
        key_required: true,
        default_model: "claude-3-5-sonnet-20241022",
        known_models: &["claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022"],
        max_completion_tokens: false,
        responses_api: false,
        supported: true,
        note: "",
    },
    openai_like(
        "zhipu",
        "Zhipu AI (GLM)",
        "https://open.bigmodel.cn/api/paas/v4",
        "ZHIPU_API_KEY",
        "glm-4-flash",
        &["glm-4-flash", "glm-4-plus", "glm-4-air", "glm-4v-flash", "embedding-3"],
    ),
    openai_like(
        "aliyun",
        "Aliyun DashScope (compatible mode)",
        "https://dashscope.aliyuncs.com/compatible-mode/v1",
        "ALIYUN_API_KEY",
        "qwen-turbo",
        &["qwen-turbo", "qwen-plus", "qwen-max", "qwen-vl-plus", "text-embedding-v3"],
    ),
    Preset {
        default_model: "",
        note: "default_model is your endpoint id (ep-…); pass --model",
        ..openai_like(
            "volcengine",
            "Volcengine Ark",
            "https://ark.cn-beijing.volces.com/api/v3",
            "VOLCENGINE_API_KEY",
            "",
            &[],
        )
    },
    openai_like(
        "tencent",
        "Tencent Hunyuan",
        "https://api.hunyuan.cloud.tencent.com/v1",
        "TENCENT_API_KEY",
        "hunyuan-lite",
        &["hunyuan-lite", "hunyuan-standard", "hunyuan-pro", "hunyuan-turbo"],
    ),
    openai_like(
        "deepseek",
        "DeepSeek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
        "deepseek-chat",
        &["deepseek-chat", "deepseek-reasoner"],
    ),
    openai_like(
        "moonshot",
        "Moonshot (Kimi)",
        "https://api.moonshot.cn/v1",
        "MOONSHOT_API_KEY",
        "moonshot-v1-8k",
        &["moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k"],
    ),
    openai_like(
        "minimax",
        "MiniMax",
        "https://api.minimax.chat/v1",
        "MINIMAX_API_KEY",
        "abab6.5s-chat",
        &["abab6.5s-chat", "MiniMax-Text-01"],
    ),
    Preset {
        key_required: false,
        note: "any OpenAI-compatible endpoint (vLLM, LM Studio, OpenRouter, …); --base-url and --model required",
        ..openai_like("openai-compatible", "OpenAI-compatible", "", "OPENAI_COMPATIBLE_API_KEY", "", &[])
    },
    Preset {
        kind: "ollama",
        display: "Ollama",
        wire: Wire::Ollama,
        base_url: "http://localhost:11434",
        key_env: None,
        key_style: KeyStyle::None,
        key_required: false,
        default_model: "llama2",
        known_models: &[],
        max_completion_tokens: false,
        responses_api: false,
        supported: true,
        note: "",
    },
    Preset {
        kind: "llamacpp",
        display: "llama.cpp llama-server (managed)",
        wire: Wire::OpenAi,
        base_url: "",
        key_env: None,
        key_style: KeyStyle::Bearer,
        key_required: false,
        default_model: "",
        known_models: &[],
        max_completion_tokens: false,
        responses_api: false,
        supported: false,
        note: "managed llama-server lifecycle not in this build yet",
    },
];

pub fn find(kind: &str) -> Option<&'static Preset> {
    let kind = kind.trim().to_ascii_lowercase();
    let kind = match kind.as_str() {
        "openai_compatible" | "openai-compat" | "compatible" => "openai-compatible",
        "glm" | "bigmodel" => "zhipu",
        "dashscope" | "qwen" => "aliyun",
        "ark" | "doubao" => "volcengine",
        "hunyuan" => "tencent",
        "kimi" => "moonshot",
        "claude" => "anthropic",
        "llama.cpp" | "llama-cpp" => "llamacpp",
        other => other,
    };
    PRESETS.iter().find(|p| p.kind == kind)
}

pub fn kinds() -> String {
    PRESETS
        .iter()
        .map(|p| p.kind)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Context window reported to clients (Zed sizes its context from it).
pub fn context_window(model: &str) -> u64 {
    let m = model.to_ascii_lowercase();
    let table: &[(&str, u64)] = &[
        ("claude", 200_000),
        ("moonshot-v1-8k", 8_192),
        ("moonshot-v1-32k", 32_768),
        ("moonshot-v1-128k", 131_072),
        ("gpt-4.1", 1_047_576),
        ("gpt-4o", 128_000),
        ("o3", 200_000),
        ("glm-4", 128_000),
        ("qwen", 131_072),
        ("deepseek", 65_536),
        ("hunyuan", 32_768),
        ("abab", 245_760),
        ("minimax", 1_000_000),
    ];
    table
        .iter()
        .find(|(k, _)| m.contains(k))
        .map(|(_, v)| *v)
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_unique_and_findable() {
        for p in PRESETS {
            assert_eq!(find(p.kind).map(|f| f.kind), Some(p.kind));
            assert_eq!(PRESETS.iter().filter(|q| q.kind == p.kind).count(), 1);
            if p.supported && p.kind != "openai-compatible" {
                assert!(!p.base_url.is_empty(), "{}", p.kind);
            }
        }
        assert_eq!(find("GLM").map(|p| p.kind), Some("zhipu"));
        assert!(find("nope").is_none());
    }
}
