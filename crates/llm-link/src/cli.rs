//! `llm-link`'s entry: parses the command line and runs the command.

use crate::args::{
    say, usage_error, AppsCommand, Cli, Command, ConfigCommand, KeyCommand, UserCommand,
};
use clap::Parser;
use llm_link_gateway::config::{self, CliInput};
use llm_link_gateway::presets::{self, PRESETS};
use std::process::ExitCode;

pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    let text = e.render().to_string();
                    let line = text
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("invalid arguments")
                        .trim_start_matches("error: ");
                    usage_error(format!("{line} (see llm-link --help)"))
                }
            };
        }
    };
    match cli.command {
        None => crate::startup::run(cli.serve),
        Some(Command::Serve(args)) => crate::startup::run(*args),
        Some(Command::Providers { json }) => {
            print_providers(json);
            ExitCode::SUCCESS
        }
        Some(Command::Config {
            command: ConfigCommand::Check { file },
        }) => config_check(&file),
        Some(Command::Apps { command: None }) => {
            for a in llm_link_gateway::apps::APPS {
                say(format!(
                    "{:<12} {:<10} {}",
                    a.name, a.protocol, a.description
                ));
            }
            say("");
            say("Start with one:  llm-link --app NAME --provider KIND --model NAME");
            say("Client settings: llm-link apps show NAME [--url URL --model NAME --key KEY]");
            ExitCode::SUCCESS
        }
        Some(Command::Apps {
            command:
                Some(AppsCommand::Show {
                    name,
                    url,
                    model,
                    key,
                }),
        }) => match llm_link_gateway::apps::find(&name) {
            Some(a) => {
                say(a.snippet(&url, &model, &key));
                ExitCode::SUCCESS
            }
            None => usage_error(format!(
                "unknown app `{name}`; known apps: {}",
                llm_link_gateway::apps::names()
            )),
        },
        Some(Command::Backup(a)) => crate::commands::backup(&a),
        Some(Command::Restore(a)) => crate::commands::restore(&a),
        Some(Command::Key {
            command: KeyCommand::RotateMaster { store },
        }) => crate::commands::rotate_master(&store),
        Some(Command::Key {
            command: KeyCommand::ResetAdminToken { store },
        }) => crate::commands::reset_admin_token(&store),
        Some(Command::Key {
            command: KeyCommand::Create(a),
        }) => crate::vkeys::create(&a),
        Some(Command::Key {
            command: KeyCommand::List { user, json, store },
        }) => crate::vkeys::list(user.as_deref(), json, &store),
        Some(Command::Key {
            command: KeyCommand::Revoke { id, store },
        }) => crate::vkeys::revoke(&id, &store),
        Some(Command::User { command }) => match command {
            UserCommand::Create { name, role, store } => crate::users::create(&store, &name, &role),
            UserCommand::List { store } => crate::users::list(&store),
            UserCommand::Passwd { name, store } => crate::users::passwd(&store, &name),
            UserCommand::Disable { name, store } => crate::users::set_disabled(&store, &name, true),
            UserCommand::Enable { name, store } => crate::users::set_disabled(&store, &name, false),
        },
        Some(Command::Version) => {
            say(format!("llm-link {}", env!("CARGO_PKG_VERSION")));
            ExitCode::SUCCESS
        }
    }
}

fn print_providers(json: bool) {
    if json {
        let rows: Vec<_> = PRESETS
            .iter()
            .map(|p| {
                serde_json::json!({
                    "kind": p.kind,
                    "name": p.display,
                    "wire": p.wire.as_str(),
                    "base_url": p.base_url,
                    "key_env": p.key_env,
                    "default_model": p.default_model,
                    "supported": p.supported,
                    "note": p.note,
                })
            })
            .collect();
        say(format!("{}", serde_json::Value::Array(rows)));
        return;
    }
    say(format!(
        "{:<18} {:<10} {:<52} {:<26} DEFAULT MODEL",
        "KIND", "WIRE", "DEFAULT BASE URL", "KEY VARIABLE"
    ));
    for p in PRESETS {
        let base = if p.base_url.is_empty() {
            if p.kind == "llamacpp" {
                "(started by llm-link)"
            } else {
                "(required: --base-url)"
            }
        } else {
            p.base_url
        };
        let model = if p.default_model.is_empty() {
            "(required: --model)"
        } else {
            p.default_model
        };
        let mut line = format!(
            "{:<18} {:<10} {:<52} {:<26} {}",
            p.kind,
            p.wire.as_str(),
            base,
            p.key_env.unwrap_or("-"),
            model
        );
        if !p.note.is_empty() {
            line.push_str(&format!("  [{}]", p.note));
        }
        say(&line);
    }
    say("");
    say("Start one:  <KEY VARIABLE>=... llm-link --provider KIND [--model NAME]");
    say(format!("Known kinds: {}", presets::kinds()));
}

fn config_check(file: &std::path::Path) -> ExitCode {
    let parsed = match config::load_file(file) {
        Ok(f) => f,
        Err(e) => return usage_error(e),
    };
    let input = CliInput::default();
    let cfg = match config::build(&input, Some(&parsed), &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    say(format!("{}: ok", file.display()));
    for p in &cfg.providers {
        say(format!(
            "  provider {} ({}) {} — models: {}{}",
            p.name,
            p.preset.kind,
            p.base_url,
            p.models
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if p.api_key.is_some() { "; key set" } else { "" }
        ));
    }
    for (a, t) in &cfg.aliases {
        say(format!("  alias {a} -> {t}"));
    }
    ExitCode::SUCCESS
}
