//! The `llm-link` binary: command-line parsing, start-up and subcommands.
//! Everything it serves comes from the layer crates (`llm-link-server`
//! over `llm-link-store` over `llm-link-gateway` over `llm-link-protocol`).

mod args;
mod cli;
mod commands;
mod startup;
mod users;
mod vkeys;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
