use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

fn cli() -> CliInput {
    CliInput::default()
}

fn parse_toml(s: &str) -> FileConfig {
    toml::from_str(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn single_provider_from_flags_and_vendor_env() {
    let mut c = cli();
    c.provider = Some("zhipu".into());
    let cfg = build(&c, None, &env_of(&[("ZHIPU_API_KEY", "zk-123456789")]))
        .unwrap_or_else(|e| panic!("{e}"));
    let p = &cfg.providers[0];
    assert_eq!(p.name, "zhipu");
    assert_eq!(p.base_url, "https://open.bigmodel.cn/api/paas/v4");
    assert_eq!(p.default_model.as_deref(), Some("glm-4-flash"));
    assert_eq!(p.api_key.as_ref().map(|k| k.expose()), Some("zk-123456789"));
    assert!(p.forward_any_model);
    assert_eq!(cfg.port, 11434);
    assert_eq!(cfg.host, "127.0.0.1");
}

#[test]
fn mistakes_name_the_flag() {
    let env = env_of(&[]);
    let cases: Vec<(CliInput, &str)> = vec![
        (
            CliInput {
                provider: Some("nope".into()),
                ..cli()
            },
            "--provider",
        ),
        (
            CliInput {
                provider: Some("zhipu".into()),
                ..cli()
            },
            "--api-key",
        ),
        (
            CliInput {
                provider: Some("openai-compatible".into()),
                ..cli()
            },
            "--base-url",
        ),
        (
            CliInput {
                provider: Some("openai-compatible".into()),
                base_url: Some("http://x:1/v1".into()),
                ..cli()
            },
            "--model",
        ),
        (
            CliInput {
                provider: Some("openai-compatible".into()),
                base_url: Some("ftp://x".into()),
                ..cli()
            },
            "--base-url",
        ),
        (
            CliInput {
                model: Some("m".into()),
                ..cli()
            },
            "--model",
        ),
        (
            CliInput {
                body_limit: Some("lots".into()),
                ..cli()
            },
            "--body-limit",
        ),
        (
            CliInput {
                idle_timeout: Some("5 parsecs".into()),
                ..cli()
            },
            "--idle-timeout",
        ),
        (
            CliInput {
                host: Some("not a host".into()),
                ..cli()
            },
            "--host",
        ),
        (
            CliInput {
                provider: Some("openai-compatible".into()),
                base_url: Some("http://127.0.0.1:11434/v1".into()),
                model: Some("m".into()),
                ..cli()
            },
            "--base-url",
        ),
    ];
    for (input, field) in cases {
        let err = build(&input, None, &env)
            .err()
            .unwrap_or_else(|| panic!("accepted {input:?}"));
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn self_loop_detects_localhost_and_any() {
    let mut c = CliInput {
        provider: Some("openai-compatible".into()),
        base_url: Some("http://localhost:9000/v1".into()),
        model: Some("m".into()),
        port: Some(9000),
        host: Some("0.0.0.0".into()),
        ..cli()
    };
    assert!(build(&c, None, &env_of(&[])).is_err());
    c.port = Some(9001);
    assert!(build(&c, None, &env_of(&[])).is_ok());
}

#[test]
fn providers_from_env_when_nothing_declared() {
    let cfg = build(
        &cli(),
        None,
        &env_of(&[
            ("OPENAI_API_KEY", "sk-a"),
            ("DEEPSEEK_API_KEY", "sk-b"),
            ("MOONSHOT_API_KEY", ""),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["openai", "deepseek"]);
    assert!(cfg.providers.iter().all(|p| !p.forward_any_model));
    assert!(cfg.providers[0].models.iter().any(|m| m.id == "gpt-4o"));
    let none = build(&cli(), None, &env_of(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert!(none.providers.is_empty());
}

#[test]
fn file_with_several_providers_env_refs_and_aliases() {
    let f = parse_toml(
        r#"
        [server]
        auth_keys = ["${CLIENT_KEY}"]
        body_limit = "1MiB"

        [[providers]]
        name = "z"
        kind = "zhipu"
        api_key = "${ZK}"
        models = ["glm-4-flash", { id = "fast", upstream = "glm-4-air" }]
        timeouts = { connect = "2s", idle = 30 }

        [[providers]]
        kind = "openai-compatible"
        name = "local"
        base_url = "http://127.0.0.1:8000/v1/"
        models = ["qwen"]
        passthrough = false
        headers = { "HTTP-Referer" = "https://example.com" }

        [[providers]]
        kind = "deepseek"
        enabled = false

        [aliases]
        "gpt-4" = "z/glm-4-flash"
        "#,
    );
    let cfg = build(
        &cli(),
        Some(&f),
        &env_of(&[("ZK", "zk-1"), ("CLIENT_KEY", "ck")]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.providers.len(), 2);
    assert_eq!(cfg.body_limit, 1024 * 1024);
    assert_eq!(cfg.auth_keys[0].expose(), "ck");
    let z = &cfg.providers[0];
    assert_eq!(
        z.models[1],
        ModelEntry {
            id: "fast".into(),
            upstream: "glm-4-air".into()
        }
    );
    assert_eq!(z.timeouts.connect, Duration::from_secs(2));
    assert_eq!(z.timeouts.idle, Duration::from_secs(30));
    let local = &cfg.providers[1];
    assert_eq!(local.base_url, "http://127.0.0.1:8000/v1");
    assert!(!local.passthrough);
    assert!(local.api_key.is_none());
    assert_eq!(
        cfg.aliases,
        vec![("gpt-4".to_string(), "z/glm-4-flash".to_string())]
    );
}

#[test]
fn file_mistakes_name_the_field() {
    let env = env_of(&[]);
    let cases = [
        (
            r#"[[providers]]
kind = "zhipu"
api_key = "${MISSING}""#,
            "providers[0].api_key",
        ),
        (
            r#"[[providers]]
kind = "warp-drive""#,
            "providers[0].kind",
        ),
        (
            r#"[[providers]]
kind = "openai-compatible"
models = ["m"]"#,
            "providers[0].base_url",
        ),
        (
            r#"[[providers]]
kind = "openai-compatible"
base_url = "http://h:1/v1"
models = ["m"]
[[providers]]
kind = "openai-compatible"
base_url = "http://h:2/v1"
models = ["m"]"#,
            "providers[1].name",
        ),
        (
            r#"[[providers]]
kind = "openai-compatible"
base_url = "http://h:1/v1"
models = ["m"]
timeouts = { idle = "forever" }"#,
            "providers[0].timeouts.idle",
        ),
    ];
    for (text, field) in cases {
        let f = parse_toml(text);
        let err = build(&cli(), Some(&f), &env)
            .err()
            .unwrap_or_else(|| panic!("accepted {text}"));
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn unknown_file_fields_are_rejected_in_every_format() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let t = dir.path().join("c.toml");
    std::fs::write(&t, "[[providers]]\nkind = \"zhipu\"\napi_kye = \"x\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let err = load_file(&t)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("api_kye"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    let y = dir.path().join("c.yaml");
    std::fs::write(&y, "providers:\n  - kind: zhipu\n    modles: [a]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(load_file(&y)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("modles"));
    let j = dir.path().join("c.json");
    std::fs::write(
        &j,
        r#"{"providers":[{"kind":"zhipu","models":["glm-4-flash"]}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(load_file(&j).is_ok());
    let x = dir.path().join("c.ini");
    std::fs::write(&x, "").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        load_file(&x).err().map(|e| e.field),
        Some("--config".into())
    );
}

#[test]
fn a_value_in_the_wrong_field_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let secret = "sk-CANARY-misplaced-9999";
    let cases = [
        (
            "c.toml",
            format!("[[providers]]\nkind = \"zhipu\"\npriority = \"{secret}\"\n"),
        ),
        (
            "c.yaml",
            format!("providers:\n  - kind: zhipu\n    priority: \"{secret}\"\n"),
        ),
        (
            "c.json",
            format!(r#"{{"providers":[{{"kind":"zhipu","priority":"{secret}"}}]}}"#),
        ),
    ];
    for (name, text) in cases {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap_or_else(|e| panic!("{e}"));
        let err = load_file(&f)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.is_empty(), "{name} was accepted");
        assert!(!err.contains("CANARY"), "{name}: {err}");
    }
}

#[test]
fn sizes_durations_env() {
    assert_eq!(parse_size("32MiB"), Ok(32 * 1024 * 1024));
    assert_eq!(parse_size("512k"), Ok(512 * 1024));
    assert_eq!(parse_size("100"), Ok(100));
    assert!(parse_size("0").is_err());
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
    assert!(parse_duration("-1s").is_err());
    let env = env_of(&[("A", "x")]);
    assert_eq!(expand_env("k-${A}-${A}", &env), Ok("k-x-x".into()));
    assert!(expand_env("${B}", &env).is_err());
    assert_eq!(Secret::new("sk-abcdefghijkl").masked(), "sk-…ijkl");
    assert_eq!(
        format!("{:?}", Secret::new("sk-abcdefghijkl")),
        "Secret(****)"
    );
}
