//! The built binary: exit codes, one-line errors, start-up lines, signals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llm-link");

/// A command with no provider keys or LLM_LINK_* settings inherited.
fn cmd() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("LLM_LINK_") || k.ends_with("_API_KEY") {
            c.env_remove(k);
        }
    }
    c.env("RUST_BACKTRACE", "0");
    // Keep the store (database, master key, admin token) out of $HOME.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    c.env("LLM_LINK_DATA_DIR", dir);
    c
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mistakes_exit_2_with_one_line_naming_the_flag_or_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad_cfg = dir.path().join("bad.toml");
    std::fs::write(
        &bad_cfg,
        "[[providers]]\nkind = \"openai-compatible\"\nmodels = [\"m\"]\n",
    )
    .unwrap();
    let bad_cfg = bad_cfg.to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--port", "abc"], "--port"),
        (vec!["--bogus-flag"], "--bogus-flag"),
        (vec!["--provider", "warp"], "--provider"),
        (vec!["--provider", "zhipu"], "ZHIPU_API_KEY"),
        (
            vec!["serve", "--provider", "openai-compatible", "--model", "m"],
            "--base-url",
        ),
        (vec!["--config", "/nonexistent/x.toml"], "--config"),
        (vec!["--config", &bad_cfg], "providers[0].base_url"),
        (vec!["config", "check", &bad_cfg], "providers[0].base_url"),
        (vec!["--log-level", "[[["], "--log-level"),
        (vec!["--workers", "0"], "--workers"),
        (vec!["--redis", "ftp://user:hunter2@nope"], "--redis"),
        (
            vec!["--port", "0", "--redis", "redis://127.0.0.1:1/0"],
            "--redis",
        ),
    ];
    for (args, needle) in cases {
        let (code, _out, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {err}");
        assert!(lines[0].starts_with("error: "), "{err}");
        assert!(
            lines[0].contains(needle),
            "{args:?}: `{needle}` not in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("hunter2"), "a secret was echoed: {err}");
    }
}

#[test]
fn providers_version_and_help() {
    let (code, out, _) = run(&["providers"]);
    assert_eq!(code, 0);
    for kind in [
        "openai",
        "zhipu",
        "aliyun",
        "volcengine",
        "tencent",
        "deepseek",
        "moonshot",
        "minimax",
        "openai-compatible",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(kind)),
            "{kind} missing:\n{out}"
        );
    }
    assert!(
        out.contains("https://open.bigmodel.cn/api/paas/v4")
            && out.contains("ZHIPU_API_KEY")
            && out.contains("glm-4-flash")
    );
    let (code, out, _) = run(&["providers", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["kind"] == "deepseek" && p["key_env"] == "DEEPSEEK_API_KEY"));
    let (code, out, _) = run(&["version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("llm-link "));
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--host",
        "--port",
        "--config",
        "--provider",
        "--model",
        "--api-key",
        "--base-url",
        "--auth-key",
        "--log-level",
        "--log-format",
        "LLM_LINK_PORT",
    ] {
        assert!(out.contains(flag), "{flag} not in --help");
    }
}

struct Running {
    child: std::process::Child,
    stdout: Vec<String>,
    port: u16,
}

/// Starts `serve` on an ephemeral port and reads start-up lines until it listens.
#[allow(clippy::zombie_processes)] // the caller waits on the returned child
fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut c = cmd();
    c.args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no listening line: {lines:?}");
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("exited before listening: {lines:?}");
        }
        let line = line.trim_end().to_string();
        if let Some(rest) = line.strip_prefix("llm-link listening on http://127.0.0.1:") {
            let port = rest.parse().unwrap();
            lines.push(line);
            return Running {
                child,
                stdout: lines,
                port,
            };
        }
        lines.push(line);
    }
}

fn get(port: u16, path: &str) -> (u16, String) {
    request(port, "GET", path, "")
}

fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[cfg(unix)]
fn sigterm(child: &std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[cfg(unix)]
#[test]
fn no_provider_still_serves_and_says_how_to_add_one() {
    let mut r = start(&[], &[]);
    let text = r.stdout.join("\n");
    assert!(text.contains("providers: none found"), "{text}");
    assert!(
        text.contains("--provider") && text.contains("OPENAI_API_KEY"),
        "{text}"
    );
    assert!(
        text.contains(&format!("OpenAI API:  http://127.0.0.1:{}/v1", r.port)),
        "{text}"
    );
    assert_eq!(get(r.port, "/health").0, 200);
    let (status, body) = get(r.port, "/api/health");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["pid"], r.child.id());
    sigterm(&r.child);
    assert_eq!(wait_exit(&mut r.child), Some(0));
}

#[cfg(unix)]
#[test]
fn vendor_key_env_vars_enable_providers_and_keys_never_print() {
    let mut r = start(
        &[],
        &[
            ("DEEPSEEK_API_KEY", "sk-deepseek-secret-1"),
            ("MOONSHOT_API_KEY", "sk-moon-secret-2"),
        ],
    );
    let text = r.stdout.join("\n");
    assert!(
        text.contains("deepseek") && text.contains("moonshot"),
        "{text}"
    );
    assert!(text.contains("DEEPSEEK_API_KEY"), "{text}");
    assert!(!text.contains("secret"), "a key was printed: {text}");
    sigterm(&r.child);
    assert_eq!(wait_exit(&mut r.child), Some(0));
    let mut err = String::new();
    use std::io::Read;
    r.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("secret"), "a key was logged: {err}");
}

/// A non-loopback address with no client credential at all refuses to
/// start (issue 15: zero-config is for loopback only) …
#[test]
fn open_host_without_any_credential_refuses_to_start() {
    let out = cmd()
        .args(["--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--host") && err.contains("--insecure") && err.contains("--auth-key"),
        "{err}"
    );
}

/// … unless `--insecure` says so, and then it warns.
#[cfg(unix)]
#[test]
fn open_host_with_insecure_warns() {
    let mut c = cmd();
    c.args(["--host", "0.0.0.0", "--port", "0", "--insecure"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.contains("warning") && line.contains("without client auth"),
        "{line}"
    );
    sigterm(&child);
    assert_eq!(wait_exit(&mut child), Some(0));
}

/// A host that stops reading our output must still be able to stop us.
#[cfg(unix)]
#[test]
fn sigterm_works_with_closed_output_pipes() {
    let mut r = start(&["--log-level", "debug"], &[]);
    drop(r.child.stderr.take());
    sigterm(&r.child);
    assert_eq!(wait_exit(&mut r.child), Some(0));
}

/// The restart flow a desktop host runs: update → stop → start with exactly
/// the returned env vars and args → a healthy instance with the new provider
/// and model and a different instance_id.
#[cfg(unix)]
#[test]
fn restart_with_update_answer_yields_new_instance() {
    let mut a = start(
        &["--app", "zed", "--provider", "deepseek"],
        &[("DEEPSEEK_API_KEY", "sk-ds-1")],
    );
    let (_, h) = get(a.port, "/api/health");
    let h: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert_eq!(
        (
            h["provider"].as_str(),
            h["model"].as_str(),
            h["app"].as_str()
        ),
        (Some("deepseek"), Some("deepseek-chat"), Some("zed"))
    );
    let (status, body) = request(
        a.port,
        "POST",
        "/api/config/update",
        r#"{"provider":"moonshot","api_key":"sk-moon-9","model":"moonshot-v1-32k"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let u: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(u["current_instance_id"], h["instance_id"]);
    sigterm(&a.child);
    assert_eq!(wait_exit(&mut a.child), Some(0));

    let mut args: Vec<String> = Vec::new();
    for (k, v) in u["cli_args"].as_object().unwrap() {
        args.push(format!("--{}", k.replace('_', "-")));
        args.push(v.as_str().unwrap().to_string());
    }
    let env: Vec<(String, String)> = u["env_vars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut b = start(&arg_refs, &env_refs);
    let (_, h2) = get(b.port, "/api/health");
    let h2: serde_json::Value = serde_json::from_str(&h2).unwrap();
    assert_eq!(h2["provider"], "moonshot");
    assert_eq!(h2["model"], "moonshot-v1-32k");
    assert_eq!(h2["app"], "zed");
    assert_ne!(h2["instance_id"], h["instance_id"]);
    sigterm(&b.child);
    assert_eq!(wait_exit(&mut b.child), Some(0));
}

#[test]
fn app_presets_list_and_show() {
    let (code, out, _) = run(&["apps"]);
    assert_eq!(code, 0);
    for app in [
        "zed",
        "codex",
        "claude-code",
        "aider",
        "openhands",
        "continue",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(app)),
            "{app} missing: {out}"
        );
    }
    let (code, out, _) = run(&[
        "apps",
        "show",
        "zed",
        "--url",
        "http://127.0.0.1:4242",
        "--model",
        "glm-4-flash",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\"api_url\": \"http://127.0.0.1:4242\"") && out.contains("supports_tools"),
        "{out}"
    );
    let (code, out, _) = run(&["apps", "show", "codex", "--key", "ck-1"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("[model_providers.llm-link]")
            && out.contains("env_key")
            && out.contains("ck-1"),
        "{out}"
    );
    let (code, out, _) = run(&["apps", "show", "claude-code"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:11434"),
        "{out}"
    );
    let (code, _, err) = run(&["--app", "vim"]);
    assert_eq!(code, 2);
    assert!(err.contains("--app") && err.contains("zed"), "{err}");
}
