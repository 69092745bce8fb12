//! `interceptor-ebpf agent | ctl`: see docs/agent.md.

use std::process::ExitCode;

use clap::Parser;

use interceptor_ebpf_agent::cli::{Cli, TopCommand};
use interceptor_ebpf_agent::config::AgentConfig;
use interceptor_ebpf_agent::exit::Exit;
use interceptor_ebpf_agent::{ctl, daemon};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        TopCommand::Agent(args) => {
            let Some(ops) = daemon::start_operational_log() else {
                return Exit::Failure.into();
            };
            match AgentConfig::resolve(&args, &|k| std::env::var(k).ok()) {
                Ok(config) => daemon::run(config, ops),
                Err(e) => {
                    daemon::envelope::error(
                        "invalid_configuration",
                        "invalid configuration",
                        serde_json::json!({"error": e.to_string()}),
                    );
                    ops.finish();
                    Exit::Usage
                }
            }
        }
        TopCommand::Ctl(args) => ctl::run(args),
    };
    exit.into()
}
