//! `hearth ws …`: workstations from the command line, through the REST API of a running
//! `hearth serve` (`--server`, default http://127.0.0.1:8080). Tables for people, `--json`
//! for scripts.

mod attach;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use hearth_proto::api::{Bandwidth, CreateTerminal, CreateWorkstation, EventList, ExecRequest, ExecResult, Terminal, TerminalList, Workstation, WorkstationList};

use crate::cmd::client::{Api, Connect};
use crate::paths::Paths;
use crate::table;

#[derive(Args)]
pub(crate) struct WsArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    cmd: WsCmd,
}

#[derive(Subcommand)]
enum WsCmd {
    /// Create a workstation (and boot it, unless --no-start).
    Create(CreateArgs),
    /// List workstations.
    Ls,
    /// Show one workstation.
    Show {
        id: String,
    },
    /// Delete workstations (their VM, disk and logs).
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    Start {
        id: String,
    },
    Stop {
        id: String,
    },
    Restart {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Save its whole VM to disk and end it; any later use (a terminal, exec, start) wakes it
    /// where it was.
    Hibernate {
        id: String,
    },
    /// Run a command to its end; its output and exit status are passed through.
    Exec {
        id: String,
        /// Run as this user [default: the image's, scientist].
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        timeout: Option<u64>,
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
    /// Attach this terminal to a terminal session of the workstation (a new one unless
    /// --terminal). Ctrl-] detaches; the session goes on.
    Attach {
        id: String,
        #[arg(long)]
        terminal: Option<String>,
        /// Watch without typing.
        #[arg(long)]
        view: bool,
    },
    /// Copy a file in or out: `cp LOCAL ID:/path` uploads, `cp ID:/path LOCAL` downloads.
    Cp {
        from: String,
        to: String,
    },
    /// List a workstation's terminal sessions.
    Terminals {
        id: String,
    },
    /// The serial console log (the guest kernel and agent).
    Console {
        id: String,
        /// Bytes from the end.
        #[arg(long, default_value_t = 65536)]
        tail: u64,
        /// Keep printing what the guest prints, until Ctrl-C or the workstation is deleted.
        #[arg(long, short)]
        follow: bool,
    },
    /// What happened to a workstation.
    Logs {
        id: String,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Share a workstation with a user: `viewer` (watch) or `collaborator` (use, not delete).
    Share {
        id: String,
        user: String,
        #[arg(long, default_value = "viewer", value_parser = parse_share_role)]
        role: hearth_proto::api::ShareRole,
    },
    /// End a user's share of a workstation.
    Unshare {
        id: String,
        user: String,
    },
    /// Who a workstation is shared with.
    Shares {
        id: String,
    },
}

fn parse_share_role(s: &str) -> Result<hearth_proto::api::ShareRole, String> {
    s.parse()
}

#[derive(Args)]
struct CreateArgs {
    name: String,
    #[arg(long)]
    vcpus: Option<u8>,
    /// Memory in MiB.
    #[arg(long)]
    mem: Option<u32>,
    /// Its own disk in GiB.
    #[arg(long)]
    disk: Option<u32>,
    #[arg(long)]
    smt: bool,
    /// Writes vanish at stop.
    #[arg(long)]
    read_only: bool,
    /// Bandwidth limits in Mbit/s, both needed.
    #[arg(long, requires = "tx_mbps")]
    rx_mbps: Option<u32>,
    #[arg(long, requires = "rx_mbps")]
    tx_mbps: Option<u32>,
    /// Network egress: nat (the internet) or none (default: the server's).
    #[arg(long, value_parser = parse_egress)]
    egress: Option<hearth_proto::api::Egress>,
    #[arg(long)]
    recipe: Option<String>,
    #[arg(long)]
    no_start: bool,
    /// A Python package to install at its first boot (repeat for more): `--pip pandas==2.2.3`.
    #[arg(long = "pip", value_name = "REQUIREMENT")]
    pip: Vec<String>,
    /// A bash script file to run once at its first boot, as the image's user (its output
    /// is in its terminal `setup`: hearth ws attach <id> --terminal setup).
    #[arg(long, value_name = "FILE")]
    setup_script: Option<std::path::PathBuf>,
}

fn parse_egress(s: &str) -> Result<hearth_proto::api::Egress, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| format!("{s:?}: expected nat or none"))
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("answers serialize"));
}

fn when(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), table::relative)
}

fn show_workstations(ws: &[Workstation], json: bool) {
    if json {
        return print_json(&ws);
    }
    let rows: Vec<Vec<String>> = ws
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.name.clone(),
                w.state.to_string(),
                w.vcpu_count.to_string(),
                format!("{} MiB", w.mem_size_mib),
                if w.read_only { "read-only".into() } else { format!("{} GiB", w.disk_size_gib) },
                when(Some(w.created_unix_ms)),
            ]
        })
        .collect();
    table::print(&["ID", "NAME", "STATE", "VCPUS", "MEMORY", "DISK", "CREATED"], &rows);
}

pub(crate) fn run(a: WsArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    let api = a.connect.api(paths);
    let json = a.connect.json;
    let ws_path = |id: &str| format!("/workstations/{id}");
    match a.cmd {
        WsCmd::Create(c) => {
            let script = match &c.setup_script {
                Some(f) => std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
                None => String::new(),
            };
            let setup = hearth_proto::api::Setup { python_packages: c.pip, script };
            let req = CreateWorkstation {
                name: c.name,
                vcpu_count: c.vcpus,
                mem_size_mib: c.mem,
                disk_size_gib: c.disk,
                smt_enabled: c.smt.then_some(true),
                read_only: c.read_only.then_some(true),
                bandwidth: c.rx_mbps.zip(c.tx_mbps).map(|(rx_mbps, tx_mbps)| Bandwidth { rx_mbps, tx_mbps }),
                egress: c.egress,
                recipe: c.recipe,
                start: c.no_start.then_some(false),
                setup: (!setup.is_empty()).then_some(setup),
            };
            let w: Workstation = api.post("/workstations", &req)?;
            show_workstations(&[w], json);
        }
        WsCmd::Ls => show_workstations(&api.get::<WorkstationList>("/workstations")?.workstations, json),
        WsCmd::Show { id } => {
            let w: Workstation = api.get(&ws_path(&id))?;
            if json {
                print_json(&w);
            } else {
                let rows = vec![
                    vec!["id".into(), w.id.clone()],
                    vec!["name".into(), w.name.clone()],
                    vec!["state".into(), w.state.to_string()],
                    vec!["vcpus".into(), format!("{}{}", w.vcpu_count, if w.smt_enabled { " (SMT)" } else { "" })],
                    vec!["memory".into(), format!("{} MiB", w.mem_size_mib)],
                    vec!["disk".into(), if w.read_only { "read-only (writes vanish at stop)".into() } else { format!("{} GiB", w.disk_size_gib) }],
                    vec!["bandwidth".into(), w.bandwidth.map(|b| format!("rx {} / tx {} Mbit/s", b.rx_mbps, b.tx_mbps)).unwrap_or_else(|| "unlimited".into())],
                    vec!["address".into(), w.address.clone().unwrap_or_else(|| "none (no network)".into())],
                    vec!["egress".into(), w.egress.map_or("none (no network)", |e| e.as_str()).into()],
                    vec!["recipe".into(), w.recipe.clone()],
                    vec!["created".into(), when(Some(w.created_unix_ms))],
                    vec!["started".into(), when(w.started_unix_ms)],
                    vec!["stopped".into(), when(w.stopped_unix_ms)],
                ];
                table::print(&["FIELD", "VALUE"], &rows);
                if let Some(c) = &w.crash {
                    println!("crash: {c}");
                }
            }
        }
        WsCmd::Rm { ids } => {
            for id in ids {
                api.delete(&ws_path(&id)).with_context(|| format!("deleting {id}"))?;
                if !json {
                    println!("deleted {id}");
                }
            }
        }
        WsCmd::Start { id } => action(&api, &id, "start", json)?,
        WsCmd::Stop { id } => action(&api, &id, "stop", json)?,
        WsCmd::Restart { id } => action(&api, &id, "restart", json)?,
        WsCmd::Pause { id } => action(&api, &id, "pause", json)?,
        WsCmd::Resume { id } => action(&api, &id, "resume", json)?,
        WsCmd::Hibernate { id } => action(&api, &id, "hibernate", json)?,
        WsCmd::Exec { id, user, timeout, argv } => {
            let req = ExecRequest { argv, user, timeout_secs: timeout, ..ExecRequest::default() };
            let r: ExecResult = api.post(&format!("{}/exec", ws_path(&id)), &req)?;
            if json {
                print_json(&r);
            } else {
                print!("{}", r.stdout);
                eprint!("{}", r.stderr);
                if r.timed_out {
                    eprintln!("hearth: the command timed out and was killed");
                }
            }
            let status = r.exit_code.unwrap_or_else(|| 128 + r.signal.unwrap_or(0));
            return Ok(ExitCode::from(status.clamp(0, 255) as u8));
        }
        WsCmd::Attach { id, terminal, view } => {
            let tid = match terminal {
                Some(t) => t,
                None => {
                    let t: Terminal = api.post(&format!("{}/terminals", ws_path(&id)), &CreateTerminal::default())?;
                    t.id
                }
            };
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("hearth: attached to terminal {tid} of {id}; Ctrl-] detaches\r");
            }
            let mode = if view { "?mode=view" } else { "" };
            let why = attach::attach(&api, &api.ws_url(&format!("{}/terminals/{tid}/ws{mode}", ws_path(&id))), view)?;
            eprintln!("\r\nhearth: {why} (terminal {tid}; hearth ws attach {id} --terminal {tid})");
        }
        WsCmd::Terminals { id } => {
            let l: TerminalList = api.get(&format!("{}/terminals", ws_path(&id)))?;
            if json {
                print_json(&l);
            } else {
                let rows: Vec<Vec<String>> = l
                    .terminals
                    .iter()
                    .map(|t| {
                        let state = match (t.ended_unix_ms, t.exited) {
                            (Some(_), _) => "ended".to_string(),
                            (None, true) => format!("exited {}", t.exit_code.map(|c| c.to_string()).unwrap_or_default()),
                            (None, false) => "running".into(),
                        };
                        vec![t.id.clone(), state, format!("{}x{}", t.cols, t.rows), t.attached.to_string(), t.argv.join(" "), when(Some(t.created_unix_ms))]
                    })
                    .collect();
                table::print(&["ID", "STATE", "SIZE", "ATTACHED", "COMMAND", "CREATED"], &rows);
            }
        }
        WsCmd::Cp { from, to } => copy(&api, &from, &to)?,
        WsCmd::Console { id, tail, follow: false } => print!("{}", api.get_text(&format!("{}/console?tail_bytes={tail}", ws_path(&id)))?),
        WsCmd::Console { id, tail, follow: true } => follow_console(&api, &format!("{}/console/stream?tail_bytes={tail}", ws_path(&id)))?,
        WsCmd::Share { id, user, role } => {
            let s: hearth_proto::api::Share = api.put_json(&format!("{}/shares/{user}", ws_path(&id)), &hearth_proto::api::SetShare { role })?;
            eprintln!("hearth: {id} is shared with {} as {}", s.user, s.role.as_str());
        }
        WsCmd::Unshare { id, user } => {
            api.delete(&format!("{}/shares/{user}", ws_path(&id)))?;
            eprintln!("hearth: {id} is no longer shared with {user}");
        }
        WsCmd::Shares { id } => {
            let l: hearth_proto::api::ShareList = api.get(&format!("{}/shares", ws_path(&id)))?;
            if json {
                print_json(&l.shares);
            } else {
                let rows: Vec<Vec<String>> = l.shares.iter().map(|s| vec![s.user.clone(), s.role.as_str().into(), when(Some(s.created_unix_ms))]).collect();
                table::print(&["USER", "ROLE", "SINCE"], &rows);
            }
        }
        WsCmd::Logs { id, limit } => {
            let l: EventList = api.get(&format!("{}/events?limit={limit}", ws_path(&id)))?;
            if json {
                print_json(&l);
            } else {
                let rows: Vec<Vec<String>> = l.events.iter().map(|e| vec![when(Some(e.at_unix_ms)), e.kind.clone(), e.message.clone()]).collect();
                table::print(&["WHEN", "EVENT", "DETAIL"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn action(api: &Api, id: &str, what: &str, json: bool) -> anyhow::Result<()> {
    let w: Workstation = api.post(&format!("/workstations/{id}/{what}"), &serde_json::json!({}))?;
    show_workstations(&[w], json);
    Ok(())
}

/// Prints the `output` events of a console follow (Server-Sent Events) as they come.
fn follow_console(api: &Api, path: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut out = std::io::stdout();
    let mut event = String::new();
    for line in std::io::BufReader::new(api.follow(path)?).lines() {
        let line = line.context("reading the console stream")?;
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            match event.as_str() {
                "output" => {
                    let o: hearth_proto::api::ConsoleOutput = serde_json::from_str(data.trim_start()).context("a console event")?;
                    out.write_all(o.text.as_bytes())?;
                    out.flush()?;
                }
                "end" => break,
                _ => {}
            }
        }
    }
    Ok(())
}

/// `ID:/path` → (id, path).
fn remote(s: &str) -> Option<(&str, &str)> {
    let (id, path) = s.split_once(':')?;
    (!id.is_empty() && !id.contains('/') && path.starts_with('/')).then_some((id, path))
}

fn query_path(path: &str) -> String {
    path.bytes().map(|b| if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn copy(api: &Api, from: &str, to: &str) -> anyhow::Result<()> {
    match (remote(from), remote(to)) {
        (None, Some((id, path))) => {
            let f = std::fs::File::open(from).with_context(|| format!("opening {from}"))?;
            let len = f.metadata()?.len();
            api.put_stream(&format!("/workstations/{id}/files?path={}", query_path(path)), f, len)
        }
        (Some((id, path)), None) => {
            let mut body = api.get_stream(&format!("/workstations/{id}/files?path={}", query_path(path)))?;
            // Whole or not at all: into a temporary beside the target, renamed at the end.
            let target = std::path::Path::new(to);
            let tmp = target.with_file_name(format!(".{}.hearth-part", target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let copied = std::io::copy(&mut body, &mut f).and_then(|_| f.sync_all());
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).context("downloading");
            }
            std::fs::rename(&tmp, target).with_context(|| format!("placing {to}"))
        }
        _ => anyhow::bail!("one side must be a workstation path (ID:/absolute/path) and the other a local path"),
    }
}
