//! The `hearth` binary: parses the command line and hands off to one module per command.
//! Everything of substance lives in the library crates.

mod cmd;
mod paths;
mod table;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hearth", version, about = "Isolated Linux workstations in Firecracker microVMs")]
struct Cli {
    #[command(flatten)]
    paths: paths::PathArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, list and collect the artifacts (kernels, root filesystems, Firecracker).
    #[command(subcommand)]
    Image(cmd::image::ImageCmd),
    /// The box: a QEMU-emulated KVM host for hosts whose KVM cannot run guests.
    #[command(name = "box", subcommand)]
    Box(cmd::boxcmd::BoxCmd),
    /// Check this host: KVM (with a real probe boot), QEMU, tools, cgroups, disk.
    Doctor(cmd::doctor::DoctorArgs),
    /// Boot throwaway workstation VMs to the agent's readiness line and report timings.
    Probe(cmd::probe::ProbeArgs),
    /// Run the API server (workstations over REST).
    Serve(cmd::serve::ServeArgs),
    /// Workstations through a running server: create, ls, exec, attach…
    Ws(cmd::ws::WsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let paths = cli.paths.resolve();
    let result = match cli.command {
        Command::Image(c) => cmd::image::run(c, &paths),
        Command::Box(c) => cmd::boxcmd::run(c, &paths),
        Command::Doctor(a) => cmd::doctor::run(a, &paths),
        Command::Probe(a) => cmd::probe::run(a, &paths),
        Command::Serve(a) => cmd::serve::run(a, &paths),
        Command::Ws(a) => cmd::ws::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
