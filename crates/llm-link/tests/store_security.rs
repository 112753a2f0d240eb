//! Secrets at rest: no provider key in clear in the SQLite file (or its
//! WAL) or in a backup; master key rotation re-encrypts everything in one
//! transaction, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[macro_use]
mod store_common;

use common::*;
use llm_link_store::crypto::MasterKey;
use llm_link_store::DbTarget;
use serde_json::json;
use std::io::Read;
use store_common::{chat, Admin, Engine, TestDb};

const CANARIES: [&str; 4] = [
    "sk-CANARY-provider-key-0123456789",
    "sk-CANARY-second-key-9876543210",
    "sk-CANARY-model-key-5555555555",
    "CANARY-header-value-777",
];

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Creates a provider with two keys and a header, and a catalog model with its own key.
async fn seed(admin: &Admin<'_>, mock: &Mock) -> i64 {
    let (s, p) = admin
        .post(
            "/api/providers",
            json!({"name": "secret-holder", "kind": "openai", "base_url": format!("{}/v1", mock.base),
                   "keys": [{"key": CANARIES[0]}, {"key": CANARIES[1], "status": "disabled"}],
                   "headers": {"X-Secret": CANARIES[3]}, "models": ["held-model"]}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let (s, m) = admin
        .post(
            "/api/v1/llm-models",
            json!({"name": "Own", "model_id": "own-model", "provider": "openai",
                   "base_url": format!("{}/v1", mock.base), "api_keys": [{"key": CANARIES[2]}]}),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    p["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_key_in_the_database_file_or_a_backup() {
    let db = TestDb::sqlite().await;
    let mock = mock().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    let admin = Admin::new(&gw);
    let pid = seed(&admin, &mock).await;
    // Churn: replace a key, so old pages could hold old values.
    let (_, keys) = admin.get(&format!("/api/providers/{pid}/keys")).await;
    let kid = keys["keys"][0]["id"].as_i64().unwrap();
    admin
        .put(
            &format!("/api/providers/{pid}/keys/{kid}"),
            json!({"key": "sk-CANARY-replaced-key-424242"}),
        )
        .await;
    // The keys work (they are stored, and decrypted in memory only).
    assert_eq!(
        gw.post("/v1/chat/completions", chat("held-model"))
            .await
            .status(),
        200
    );
    assert_eq!(
        mock.last().header("authorization").as_deref(),
        Some("Bearer sk-CANARY-replaced-key-424242")
    );

    let path = match &db.target {
        DbTarget::SqliteFile(p) => p.clone(),
        _ => unreachable!(),
    };
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut f = path.as_os_str().to_owned();
        f.push(suffix);
        if let Ok(b) = std::fs::read(&f) {
            all.extend_from_slice(&b);
        }
    }
    assert!(contains(&all, "v1:"), "ciphertexts are stored");
    assert!(
        contains(&all, "secret-holder"),
        "the rows are in the files searched"
    );
    for c in CANARIES.iter().chain(&["sk-CANARY-replaced-key-424242"]) {
        assert!(
            !contains(&all, c),
            "{c} found in clear in the database files"
        );
    }

    // A backup taken while serving: compressed, and no key in clear inside.
    let out = db.dir.path().join("backups/llm-link-test.db.gz");
    let r = llm_link_store::backup::backup(&path, &out, None, None)
        .await
        .unwrap();
    assert!(r.bytes > 0);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    assert!(raw.starts_with(b"SQLite format 3\0"));
    assert!(contains(&raw, "secret-holder"));
    let gz = std::fs::read(&out).unwrap();
    for c in CANARIES.iter().chain(&["sk-CANARY-replaced-key-424242"]) {
        assert!(!contains(&raw, c), "{c} found in clear in the backup");
        assert!(!contains(&gz, c));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "backups are private");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the database file is private");
    }
}

both!(master_key_rotation);
async fn master_key_rotation(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let mock = mock().await;
    let old = MasterKey::generate();
    let (store, layer) = db.open(&old).await;
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    seed(&Admin::new(&gw), &mock).await;
    let before: Vec<String> = {
        let mut tx = store.db.begin_read().await.unwrap();
        let k = tx.keys().await.unwrap();
        tx.rollback().await.unwrap();
        k.into_iter().map(|k| k.secret).collect()
    };
    assert_eq!(before.len(), 3);

    // A row that cannot be decrypted makes the rotation fail as a whole.
    {
        let mut tx = store.db.begin().await.unwrap();
        let mut k = tx.keys().await.unwrap().remove(0);
        k.label = "broken".into();
        k.secret = format!("v1:{}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", old.id());
        tx.insert_key(&k).await.unwrap();
        tx.commit().await.unwrap();
    }
    let new = MasterKey::generate();
    let e = llm_link_store::boot::rotate(&store.db, &old, &new, "test")
        .await
        .unwrap_err();
    assert!(e.contains("key"), "{e}");
    {
        let mut tx = store.db.begin_read().await.unwrap();
        let keys = tx.keys().await.unwrap();
        let id = tx.setting("master_key_id").await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(id.as_deref(), Some(old.id()), "nothing changed");
        for (k, b) in keys.iter().zip(&before) {
            assert_eq!(&k.secret, b);
        }
        let mut tx = store.db.begin().await.unwrap();
        let broken = keys.iter().find(|k| k.label == "broken").unwrap();
        tx.delete_key(broken.id).await.unwrap();
        tx.commit().await.unwrap();
    }

    // Now it goes through: every secret re-encrypted under the new key.
    let n = llm_link_store::boot::rotate(&store.db, &old, &new, "test")
        .await
        .unwrap();
    assert_eq!(
        n, 6,
        "three keys, one header set, and the two identity secrets"
    );
    let mut tx = store.db.begin_read().await.unwrap();
    let keys = tx.keys().await.unwrap();
    let providers = tx.providers().await.unwrap();
    let audit = tx.audit_log(5, None).await.unwrap();
    tx.rollback().await.unwrap();
    for k in &keys {
        assert!(k.secret.starts_with(&format!("v1:{}:", new.id())));
        assert!(!before.contains(&k.secret));
    }
    let plain: Vec<String> = keys
        .iter()
        .map(|k| new.decrypt(&k.secret).unwrap().expose().to_string())
        .collect();
    for c in &CANARIES[..3] {
        assert!(plain.iter().any(|p| p == c));
    }
    let h = providers[0].headers.as_ref().unwrap();
    assert!(new.decrypt(h).unwrap().expose().contains(CANARIES[3]));
    assert!(old.decrypt(&keys[0].secret).is_err());
    assert_eq!(audit[0].action, "master_key.rotate");
    drop(gw);
    drop(store);

    // The old key no longer opens the database; the new one does, and serves.
    let e = llm_link_store::boot::open_with_key(&db.target, old.clone())
        .await
        .unwrap_err();
    assert!(e.contains(new.id()), "{e}");
    let (store, layer) = db.open(&new).await;
    let p = layer
        .providers
        .iter()
        .find(|p| p.name == "secret-holder")
        .unwrap();
    assert_eq!(p.api_key.as_ref().unwrap().expose(), CANARIES[0]);
    let gw = store_common::gateway(config_from("", &[]), store, layer).await;
    assert_eq!(
        gw.post("/v1/chat/completions", chat("own-model"))
            .await
            .status(),
        200
    );
    assert_eq!(
        mock.last().header("authorization").as_deref(),
        Some(format!("Bearer {}", CANARIES[2]).as_str())
    );
}

/// A password inside a provider's base URL (a proxy with user:pass, say) is
/// masked wherever the admin API shows the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_a_base_url_is_never_shown() {
    let db = TestDb::sqlite().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config_from("", &[]), store, layer).await;
    let admin = Admin::new(&gw);
    let (s, p) = admin
        .post(
            "/api/providers",
            json!({"name": "behind-auth", "kind": "openai-compatible",
                   "base_url": "http://alice:CANARY-url-pass@127.0.0.1:9/v1",
                   "api_key": "sk-any-0001", "models": ["m"]}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["base_url"], "http://alice:****@127.0.0.1:9/v1");
    let (_, list) = admin.get("/api/providers").await;
    let (_, one) = admin
        .get(&format!("/api/providers/{}", p["id"].as_i64().unwrap()))
        .await;
    for v in [&p, &list, &one] {
        assert!(!v.to_string().contains("CANARY-url-pass"), "{v}");
    }
}
