//! `hearth serve`: the API server. Where this host's KVM runs guests (or inside the box) it
//! serves directly; elsewhere it runs the same server inside the box (issue 8, next step).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hearth_server::config::Config;

use crate::paths::Paths;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Configuration file [default: <data-dir>/hearth.toml when it exists]. Every key may be
    /// overridden from the environment: HEARTH_LISTEN, HEARTH_LIMITS__MAX_VCPUS… (docs/config.md).
    #[arg(long, env = "HEARTH_CONFIG")]
    config: Option<PathBuf>,
    /// Where to listen (overrides the config's `listen`).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

pub(crate) fn run(a: ServeArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    let default_file = paths.data_dir.join("hearth.toml");
    let file = a.config.or_else(|| default_file.is_file().then_some(default_file));
    let mut config = Config::load(file.as_deref(), std::env::vars()).context("loading the configuration")?;
    if let Some(l) = a.listen {
        config.listen = l;
    }
    init_logging();
    let app = hearth_server::open(config, &paths.data_dir, &paths.cache_dir).context("starting the server")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(hearth_server::serve(app, |addr| {
        // The line scripts and tests wait for.
        println!("hearth: serving on http://{addr}");
    }))?;
    eprintln!("hearth: stopped serving; workstations keep running");
    Ok(ExitCode::SUCCESS)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
