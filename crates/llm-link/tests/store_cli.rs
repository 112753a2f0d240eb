//! The built binary with storage: the data dir, the start-up lines, backup
//! and restore (round trip, refused while serving, bad files), retention,
//! `key rotate-master`, a wrong master key, the config file watch,
//! `--database none`, and usage rows flushed at shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::mock;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llm-link");
const TOKEN: &str = "cli-test-admin-token";

/// A command with no provider keys or LLM_LINK_* settings inherited.
fn cmd(data_dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("LLM_LINK_") || k.ends_with("_API_KEY") || k == "XDG_DATA_HOME" {
            c.env_remove(k);
        }
    }
    c.env("RUST_BACKTRACE", "0");
    c.env("LLM_LINK_DATA_DIR", data_dir);
    c
}

fn run(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = cmd(data_dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Server {
    child: Child,
    base: String,
    stdout: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut c = cmd(data_dir);
        c.args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut stdout = String::new();
        let mut base = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            stdout.push_str(&line);
            if let Some(url) = line.trim().strip_prefix("llm-link listening on ") {
                base = url.to_string();
                break;
            }
        }
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        assert!(
            !base.is_empty(),
            "no listening line; stdout: {stdout}; stderr: {}",
            stderr.lock().unwrap()
        );
        Server {
            child,
            base,
            stdout,
            stderr,
        }
    }

    /// SIGTERM, then wait (bounded) for the graceful exit.
    #[allow(clippy::disallowed_methods)] // a test helper outside the runtime's hot path
    fn stop(mut self) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn admin(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn chat_status(base: &str, model: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = mock().await;
    let env = [("LLM_LINK_ADMIN_TOKEN", TOKEN)];

    let srv = Server::start(&data, &[], &env);
    assert!(srv.stdout.contains("storage:     SQLite"), "{}", srv.stdout);
    assert!(
        !srv.stdout.contains("admin token: lla_"),
        "no token is generated when one is given"
    );
    let (s, p) = admin(
        &srv.base,
        reqwest::Method::POST,
        "/api/providers",
        Some(
            json!({"name": "kept", "kind": "openai", "base_url": format!("{}/v1", up.base),
                    "api_key": "sk-CANARY-backup-key-31415926", "models": ["kept-model"]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(chat_status(&srv.base, "kept-model").await, 200);

    // Backups run while serving; restores do not.
    let (code, out, err) = run(&data, &["backup"]);
    assert_eq!(code, 0, "{err}");
    let file = out
        .lines()
        .find_map(|l| l.strip_prefix("backup written: "))
        .unwrap()
        .split(" (")
        .next()
        .unwrap()
        .to_string();
    assert!(
        file.starts_with(data.join("backups").to_str().unwrap()),
        "{file}"
    );
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    assert!(contains(&raw, "kept-model"));
    assert!(!contains(&raw, "sk-CANARY-backup-key-31415926"));
    let (code, _, err) = run(&data, &["restore", &file]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("running llm-link"), "{err}");
    let (code, _, err) = run(&data, &["key", "rotate-master"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("running llm-link"), "{err}");

    // Lose the provider, stop, restore, start: it is back and serves.
    let (s, _) = admin(
        &srv.base,
        reqwest::Method::DELETE,
        "/api/providers/kept",
        None,
    )
    .await;
    assert_eq!(s, 200);
    // No provider left at all: 503 (nothing configured).
    assert_eq!(chat_status(&srv.base, "kept-model").await, 503);
    srv.stop();
    let (code, out, err) = run(&data, &["restore", &file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 providers, 1 keys"), "{out}");
    assert!(out.contains("integrity check ok"), "{out}");
    assert!(out.contains("before-restore"), "{out}");
    let srv = Server::start(&data, &[], &env);
    assert_eq!(chat_status(&srv.base, "kept-model").await, 200);
    assert_eq!(
        up.last().header("authorization").as_deref(),
        Some("Bearer sk-CANARY-backup-key-31415926")
    );
    srv.stop();

    // Bad files are refused and leave the database alone.
    let junk = dir.path().join("junk.db.gz");
    std::fs::write(&junk, b"not a backup at all").unwrap();
    let (code, _, err) = run(&data, &["restore", junk.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not an llm-link backup"), "{err}");
    let truncated = dir.path().join("cut.db.gz");
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let (code, _, err) = run(&data, &["restore", truncated.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    let (code, _, err) = run(&data, &["restore", "/nonexistent/backup.db.gz"]);
    assert_eq!(code, 2, "{err}");
    // A backup made under another master key is refused without --force.
    let other = dir.path().join("other");
    let srv = Server::start(&other, &[], &env);
    srv.stop();
    let (code, out, _) = run(&other, &["backup"]);
    assert_eq!(code, 0);
    let other_file = out
        .lines()
        .find_map(|l| l.strip_prefix("backup written: "))
        .unwrap()
        .split(" (")
        .next()
        .unwrap()
        .to_string();
    let (code, _, err) = run(&data, &["restore", &other_file]);
    assert_eq!(code, 2);
    assert!(err.contains("master key"), "{err}");
    let srv = Server::start(&data, &[], &env);
    assert_eq!(chat_status(&srv.base, "kept-model").await, 200);
    srv.stop();

    // Retention: --keep N keeps the newest N.
    for _ in 0..3 {
        let (code, _, err) = run(&data, &["backup", "--keep", "2"]);
        assert_eq!(code, 0, "{err}");
    }
    let n = std::fs::read_dir(data.join("backups")).unwrap().count();
    assert_eq!(n, 2);
    let (code, _, err) = run(&data, &["backup", "--max-age", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("--max-age"), "{err}");
    let (code, _, err) = run(
        &data,
        &["backup", "--database", "postgres://x@127.0.0.1/db"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("pg_dump"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_and_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = mock().await;
    let env = [("LLM_LINK_ADMIN_TOKEN", TOKEN)];
    let srv = Server::start(&data, &[], &env);
    assert!(
        srv.stdout.contains("master.key (created)"),
        "{}",
        srv.stdout
    );
    let (s, _) = admin(
        &srv.base,
        reqwest::Method::POST,
        "/api/providers",
        Some(
            json!({"name": "r", "kind": "openai", "base_url": format!("{}/v1", up.base),
                    "api_key": "sk-rotate-me-27182818", "models": ["r-model"]}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    srv.stop();
    let before = std::fs::read_to_string(data.join("master.key")).unwrap();

    let (code, out, err) = run(&data, &["key", "rotate-master"]);
    assert_eq!(code, 0, "{err}");
    // The provider key, and the install's two identity secrets (token-hash
    // key, session signing key).
    assert!(out.contains("re-encrypted 3 secrets"), "{out}");
    let after = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert_ne!(before, after);
    assert!(!data.join("master.key.new").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let srv = Server::start(&data, &[], &env);
    assert_eq!(chat_status(&srv.base, "r-model").await, 200);
    assert_eq!(
        up.last().header("authorization").as_deref(),
        Some("Bearer sk-rotate-me-27182818")
    );
    srv.stop();

    // The old key (through the variable) is refused, naming it.
    let old = before.trim().to_string();
    let out = cmd(&data)
        .args(["--port", "0"])
        .env("LLM_LINK_MASTER_KEY", &old)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: LLM_LINK_MASTER_KEY:"), "{err}");
    let out = cmd(&data)
        .args(["--port", "0"])
        .env("LLM_LINK_MASTER_KEY", "too-short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LLM_LINK_MASTER_KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_admin_token_and_config_file_watch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = mock().await;
    let cfg = dir.path().join("llm-link.toml");
    let provider = |model: &str| {
        format!(
            "[[providers]]\nname = \"f\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"{model}\"]\n",
            up.base
        )
    };
    std::fs::write(&cfg, provider("before")).unwrap();
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()], &[]);
    let token = srv
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("admin token: "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/api/providers", srv.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["providers"][0]["source"], "file");
    let db = std::fs::read(data.join("llm-link.db")).unwrap();
    assert!(!contains(&db, &token), "the token is stored hashed");

    // A good edit applies; a bad one is logged naming the field and changes nothing.
    std::fs::write(&cfg, provider("after")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while chat_status(&srv.base, "after").await != 200 {
        assert!(Instant::now() < deadline, "the edit was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(chat_status(&srv.base, "before").await, 404);
    // openai-compatible without a base_url: invalid, naming providers[0].base_url.
    let no_url: String = provider("broken")
        .lines()
        .filter(|l| !l.starts_with("base_url"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg, no_url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let err = srv.stderr.lock().unwrap().clone();
        if err.contains("rejected") {
            assert!(err.contains("providers[0].base_url"), "{err}");
            assert!(err.contains("keeping the last good configuration"), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "no rejection logged: {err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(chat_status(&srv.base, "after").await, 200);
    srv.stop();

    // A second start prints no token; the first one still works.
    let srv = Server::start(&data, &[], &[]);
    assert!(!srv.stdout.contains("admin token:"), "{}", srv.stdout);
    let r = client
        .get(format!("{}/api/apps", srv.base))
        .header("x-admin-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.stop();
    let (code, out, _) = run(&data, &["key", "reset-admin-token"]);
    assert_eq!(code, 0);
    let fresh = out
        .lines()
        .find(|l| l.starts_with("lla_"))
        .unwrap()
        .to_string();
    let srv = Server::start(&data, &[], &[]);
    for (t, want) in [(&token, 401), (&fresh, 200)] {
        let r = client
            .get(format!("{}/api/apps", srv.base))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
    }
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");
    let srv = Server::start(
        &data,
        &["--database", "none"],
        &[("LLM_LINK_ADMIN_TOKEN", TOKEN)],
    );
    assert!(srv.stdout.contains("storage:     none"), "{}", srv.stdout);
    let (s, v) = admin(&srv.base, reqwest::Method::GET, "/api/providers", None).await;
    assert_eq!(s, 200, "file and command-line providers are still listed");
    assert_eq!(v["total"], 0);
    let (s, _) = admin(
        &srv.base,
        reqwest::Method::POST,
        "/api/providers",
        Some(json!({"name": "x", "kind": "openai", "api_key": "k"})),
    )
    .await;
    assert_eq!(s, 503);
    srv.stop();
    assert!(!data.exists(), "no data dir without a database");
    let (code, _, err) = run(&data, &["--database", "mysql://x"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("error: --database:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_rows_queued_at_sigterm_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let m = mock().await;
    let upstream = format!("{}/v1", m.base);
    let args = [
        "--provider",
        "openai-compatible",
        "--base-url",
        upstream.as_str(),
        "--model",
        "mock-model",
    ];
    let envs = [("LLM_LINK_ADMIN_TOKEN", TOKEN)];
    let srv = Server::start(&data, &args, &envs);
    assert!(
        srv.stdout.contains("usage:       recorded in the database"),
        "{}",
        srv.stdout
    );
    for _ in 0..20 {
        assert_eq!(chat_status(&srv.base, "mock-model").await, 200);
    }
    // At once: the rows are still in the writer's queue (it writes every
    // 250 ms); a graceful stop must write them before the process exits.
    srv.stop();
    let srv = Server::start(&data, &args, &envs);
    let (s, v) = admin(&srv.base, reqwest::Method::GET, "/api/v1/llm/usage", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["summary"]["requests"], 20, "{v}");
    assert_eq!(v["summary"]["input_tokens"], 140, "{v}");
    srv.stop();
}
