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
    /// Sign in to a server with a password; the API token made for this CLI is saved.
    Login(cmd::account::LoginArgs),
    /// Revoke and forget the saved token for a server.
    Logout(cmd::account::LogoutArgs),
    /// Accounts: ls, add, passwd, set, rm (administrators; passwd for your own too).
    User(cmd::account::UserArgs),
    /// Your API tokens: ls, create, rm.
    Token(cmd::account::TokenArgs),
    /// Who did what, when (administrators: everyone's; users: their own).
    Audit(cmd::account::AuditArgs),
    /// Who may sign in with a Hypha identity: ls (no argument), add, rm (administrators).
    Allowlist(cmd::account::AllowArgs),
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
        Command::Ws(a) => cmd::ws::run(a, &paths),
        Command::Login(a) => cmd::account::login(a),
        Command::Logout(a) => cmd::account::logout(a),
        Command::User(a) => cmd::account::user(a, &paths),
        Command::Token(a) => cmd::account::token(a, &paths),
        Command::Audit(a) => cmd::account::audit(a, &paths),
        Command::Allowlist(a) => cmd::account::allowlist(a, &paths),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
