//! The TOML configuration file, parsed and validated as `serve --config` does.
#![no_main]

use std::sync::OnceLock;

use clap::Parser;
use highlander::config::{Cli, Command, Config, ServeArgs};
use libfuzzer_sys::fuzz_target;

/// `highlander serve` with no flag.
fn serve_args() -> &'static ServeArgs {
    static ARGS: OnceLock<ServeArgs> = OnceLock::new();
    ARGS.get_or_init(|| match Cli::parse_from(["highlander", "serve"]).command {
        Command::Serve(args) => *args,
        _ => unreachable!("the serve command"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<highlander::config::file::FileConfig>(text) else {
        return;
    };
    let _ = Config::from_parts(serve_args(), &file);
});
