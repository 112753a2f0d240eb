//! `llm-link user create|list|passwd|disable|enable`: user maintenance on
//! the database the flags point at. Each change bumps the identity revision
//! (running servers reload users within seconds) and writes an audit row
//! with actor `cli`. Passwords come from standard input (first line) when it
//! is not a terminal, otherwise from a prompt without echo, asked twice;
//! never from a flag.

use crate::args::{say, usage_error, StoreArgs};
use crate::commands::{block_on, env};
use llm_link_store::boot;
use llm_link_store::users::{self, Change};
use llm_link_store::{now_ms, rfc3339, Db, DbTarget};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

const ACTOR: &str = "cli";

/// The database the flags point at, opened (and migrated).
async fn open(a: &StoreArgs) -> Result<Db, ExitCode> {
    let r =
        boot::resolve(a.database.as_deref(), a.data_dir.as_deref(), &env).map_err(usage_error)?;
    if matches!(r.target, DbTarget::None | DbTarget::SqliteMemory) {
        return Err(usage_error(
            "--database: users live in a stored database; `none` and in-memory databases keep none",
        ));
    }
    if let DbTarget::SqliteFile(p) = &r.target {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            llm_link_store::create_private_dir(dir).map_err(|e| {
                usage_error(format!("--data-dir: cannot create {}: {e}", dir.display()))
            })?;
        }
    }
    Db::open(&r.target)
        .await
        .map(|(db, _)| db)
        .map_err(|m| usage_error(format!("--database: {m}")))
}

/// A new password: the first line of stdin, or typed twice at a prompt.
fn read_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("password: cannot read standard input: {e}"))?;
        let pw = line.strip_suffix('\n').unwrap_or(&line);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        if pw.is_empty() {
            return Err(
                "password: standard input is empty; give the password on its first line".into(),
            );
        }
        return Ok(pw.to_string());
    }
    let first = rpassword::prompt_password("password: ")
        .map_err(|e| format!("password: cannot read it: {e}"))?;
    users::check_password(&first).map_err(|m| format!("password: {m}"))?;
    let again = rpassword::prompt_password("password (again): ")
        .map_err(|e| format!("password: cannot read it: {e}"))?;
    if first != again {
        return Err("password: the two entries differ".into());
    }
    Ok(first)
}

pub fn create(a: &StoreArgs, name: &str, role: &str) -> ExitCode {
    // Check what needs no database before asking for a password.
    if let Err(m) = users::check_username(name) {
        return usage_error(format!("NAME: {m}"));
    }
    let pw = match read_password() {
        Ok(p) => p,
        Err(m) => return usage_error(m),
    };
    block_on(async move {
        let db = match open(a).await {
            Ok(db) => db,
            Err(code) => return code,
        };
        let res = users::create(&db, name, &pw, role, ACTOR).await;
        db.close().await;
        match res {
            Ok(id) => {
                say(format!("created user {name} (id {id}, role {role})"));
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        }
    })
}

pub fn list(a: &StoreArgs) -> ExitCode {
    block_on(async move {
        let db = match open(a).await {
            Ok(db) => db,
            Err(code) => return code,
        };
        let rows = async {
            let mut tx = db.begin_read().await?;
            let rows = tx.users().await?;
            tx.rollback().await?;
            Ok::<_, llm_link_store::StoreError>(rows)
        }
        .await;
        db.close().await;
        let rows = match rows {
            Ok(r) => r,
            Err(e) => return usage_error(format!("--database: {e}")),
        };
        let now = now_ms();
        say(format!(
            "{:<6} {:<32} {:<8} {:<9} LOCKED",
            "ID", "USERNAME", "ROLE", "DISABLED"
        ));
        for u in rows {
            let locked = match u.locked_until.filter(|&t| t > now) {
                Some(t) => format!("until {}", rfc3339(t)),
                None => "no".into(),
            };
            say(format!(
                "{:<6} {:<32} {:<8} {:<9} {}",
                u.id,
                u.username,
                u.role,
                if u.disabled { "yes" } else { "no" },
                locked
            ));
        }
        ExitCode::SUCCESS
    })
}

fn change(a: &StoreArgs, name: &str, c: Change, done: String) -> ExitCode {
    block_on(async move {
        let db = match open(a).await {
            Ok(db) => db,
            Err(code) => return code,
        };
        let res = users::change(&db, name, c, ACTOR).await;
        db.close().await;
        match res {
            Ok(()) => {
                say(done);
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        }
    })
}

pub fn passwd(a: &StoreArgs, name: &str) -> ExitCode {
    let pw = match read_password() {
        Ok(p) => p,
        Err(m) => return usage_error(m),
    };
    change(
        a,
        name,
        Change::Password(pw),
        format!("password of {name} changed; its sessions have ended"),
    )
}

pub fn set_disabled(a: &StoreArgs, name: &str, disabled: bool) -> ExitCode {
    let done = if disabled {
        format!("user {name} disabled; its sessions have ended")
    } else {
        format!("user {name} enabled")
    };
    change(a, name, Change::Disabled(disabled), done)
}
