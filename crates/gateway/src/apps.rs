//! Client presets (`--app`): what each client speaks and the exact settings
//! to paste into it (`llm-link apps show NAME`).

#[derive(Debug, Clone, Copy)]
pub struct AppPreset {
    pub name: &'static str,
    /// The llm-link surface the client talks to.
    pub protocol: &'static str,
    pub description: &'static str,
    /// Ollama `/api/tags` and `/api/show` report tools and vision for every model.
    pub force_capabilities: bool,
    /// The client must present a key (`--auth-key`); a warning says so when none is set.
    pub wants_auth_key: bool,
}

pub const APPS: &[AppPreset] = &[
    AppPreset {
        name: "zed",
        protocol: "ollama",
        description:
            "Zed editor: Ollama API on port 11434; every model advertises tools and vision",
        force_capabilities: true,
        wants_auth_key: false,
    },
    AppPreset {
        name: "codex",
        protocol: "openai",
        description: "OpenAI Codex CLI: Responses API at /v1 (wire_api = \"responses\"), client key from an env var (env_key)",
        force_capabilities: false,
        wants_auth_key: true,
    },
    AppPreset {
        name: "claude-code",
        protocol: "anthropic",
        description: "Claude Code: Anthropic Messages API via ANTHROPIC_BASE_URL",
        force_capabilities: false,
        wants_auth_key: true,
    },
    AppPreset {
        name: "aider",
        protocol: "openai",
        description: "aider: OpenAI API via --openai-api-base",
        force_capabilities: false,
        wants_auth_key: false,
    },
    AppPreset {
        name: "openhands",
        protocol: "openai",
        description: "OpenHands: OpenAI-compatible LLM settings (LLM_BASE_URL)",
        force_capabilities: false,
        wants_auth_key: false,
    },
    AppPreset {
        name: "continue",
        protocol: "openai",
        description: "Continue (VS Code / JetBrains): an `openai` provider with apiBase",
        force_capabilities: false,
        wants_auth_key: false,
    },
];

pub fn find(name: &str) -> Option<&'static AppPreset> {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    let n = match n.as_str() {
        "claude" | "claudecode" => "claude-code",
        "open-hands" => "openhands",
        other => other,
    }
    .to_string();
    APPS.iter().find(|a| a.name == n)
}

pub fn names() -> String {
    APPS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

impl AppPreset {
    /// What to paste into the client, for llm-link at `url` serving `model`.
    pub fn snippet(&self, url: &str, model: &str, key: &str) -> String {
        let url = url.trim_end_matches('/');
        let ctx = crate::presets::context_window(model);
        match self.name {
            "zed" => format!(
                r#"// Zed: settings.json (zed: open settings)
{{
  "language_models": {{
    "ollama": {{
      "api_url": "{url}",
      "available_models": [
        {{
          "name": "{model}",
          "display_name": "{model} (llm-link)",
          "max_tokens": {ctx},
          "supports_tools": true,
          "supports_images": true
        }}
      ]
    }}
  }}
}}"#
            ),
            "codex" => format!(
                r#"# Codex: ~/.codex/config.toml
model = "{model}"
model_provider = "llm-link"

[model_providers.llm-link]
name = "llm-link"
base_url = "{url}/v1"
env_key = "LLM_LINK_API_KEY"
wire_api = "responses"

# then, in the shell that runs codex:
#   export LLM_LINK_API_KEY={key}"#
            ),
            "claude-code" => format!(
                r#"# Claude Code: environment for the shell that runs `claude`
export ANTHROPIC_BASE_URL={url}
export ANTHROPIC_AUTH_TOKEN={key}
export ANTHROPIC_MODEL={model}
export ANTHROPIC_DEFAULT_HAIKU_MODEL={model}
export ANTHROPIC_SMALL_FAST_MODEL={model}"#
            ),
            "aider" => format!(
                r#"# aider
aider --openai-api-base {url}/v1 --openai-api-key {key} --model openai/{model}"#
            ),
            "openhands" => format!(
                r#"# OpenHands: LLM settings (advanced), or environment
LLM_BASE_URL={url}/v1
LLM_MODEL=openai/{model}
LLM_API_KEY={key}
# from inside OpenHands' Docker container use http://host.docker.internal:<port>/v1"#
            ),
            _ => format!(
                r#"# Continue: ~/.continue/config.yaml
models:
  - name: {model} (llm-link)
    provider: openai
    model: {model}
    apiBase: {url}/v1
    apiKey: {key}
    roles: [chat, edit, apply]"#
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_app_has_a_snippet_with_the_address_and_model() {
        for a in APPS {
            let s = a.snippet("http://127.0.0.1:4000/", "m-1", "k-1");
            assert!(s.contains("http://127.0.0.1:4000"), "{}", a.name);
            assert!(s.contains("m-1"), "{}", a.name);
            assert!(!s.contains("4000//"), "{}", a.name);
        }
        assert_eq!(find("Claude_Code").map(|a| a.name), Some("claude-code"));
        assert!(find("vim").is_none());
    }
}
