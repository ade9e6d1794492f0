//! The `highlander` binary. It parses the command line, sets up logs, loads the config and
//! runs the app. It maps errors to exit codes: 0 clean stop, 1 runtime failure, 2 invalid
//! configuration or usage.

use std::process::ExitCode;

use clap::Parser;
use highlander::config::{Cli, Command, Config, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_logs(config: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.log_level));
    // actix-server's per-worker lifecycle lines are noise at INFO.
    let filter = match "actix_server=warn".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Admin(command) => highlander::client::run(command),
        Command::Serve(args) => {
            highlander::alloc::limit_arenas();
            let config = match Config::build(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("highlander: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logs(&config);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("highlander: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let result = runtime.block_on(highlander::app::run(config));
            // A start-up error leaves tasks behind (the buffer's flusher runs on a blocking
            // thread, which dropping the runtime would wait for without end: the process
            // printed its error and hung). Nothing they hold needs them: what was
            // acknowledged is on disk, as after a kill.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "highlander stopped with an error");
                    eprintln!("highlander: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
