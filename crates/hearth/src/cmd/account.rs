//! Accounts and credentials from the command line, through the API: `hearth login` and
//! `logout`, `hearth user …` (administrators; `passwd` for oneself too), `hearth token …` and
//! `hearth audit`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hearth_proto::api::{AllowList, AuditList, CreateToken, CreateUser, NewToken, Quota, QuotaReport, Scope, Session, SetAllowList, SignIn, TokenList, UpdateUser, User, UserList};

use crate::cmd::client::{Connect, Saved};
use crate::paths::Paths;
use crate::table;

#[derive(Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    connect: Connect,
    /// The account [default: $USER].
    #[arg(long)]
    user: Option<String>,
    /// Read the password from stdin's first line instead of asking.
    #[arg(long)]
    password_stdin: bool,
    /// What the token may do: read, write or admin.
    #[arg(long, default_value = "write", value_parser = parse_scope)]
    scope: Scope,
    /// Days until the token expires (0: never).
    #[arg(long, default_value_t = 30)]
    days: u32,
}

#[derive(Args)]
pub(crate) struct LogoutArgs {
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args)]
pub(crate) struct UserArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    cmd: UserCmd,
}

#[derive(Subcommand)]
enum UserCmd {
    /// List accounts.
    Ls,
    /// Make an account (asks for its password unless --no-password or --password-stdin).
    Add {
        id: String,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, conflicts_with = "no_password")]
        password_stdin: bool,
        /// No password sign-in (an API token made by an administrator, say).
        #[arg(long)]
        no_password: bool,
    },
    /// Set an account's password (your own: asks for the current one too).
    Passwd {
        id: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable or enable an account, or make it an administrator or not.
    Set {
        id: String,
        #[arg(long)]
        disabled: Option<bool>,
        #[arg(long)]
        admin: Option<bool>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Show a user's quota and what they hold; with limits given, set their own (0:
    /// unlimited; `--reset`: back to their role's).
    Quota {
        id: String,
        #[arg(long)]
        workstations: Option<u64>,
        #[arg(long)]
        vcpus: Option<u64>,
        /// MiB.
        #[arg(long)]
        mem: Option<u64>,
        /// GiB.
        #[arg(long)]
        disk: Option<u64>,
        #[arg(long)]
        execs: Option<u64>,
        #[arg(long)]
        reset: bool,
    },
    /// Remove accounts (and their tokens and sessions).
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    cmd: TokenCmd,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// List your API tokens.
    Ls,
    /// Make an API token; its secret is printed once.
    Create {
        name: String,
        #[arg(long, default_value = "write", value_parser = parse_scope)]
        scope: Scope,
        /// Days until it expires (0: never).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Revoke tokens.
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    connect: Connect,
    /// Only this user's entries (administrators; users see their own).
    #[arg(long)]
    user: Option<String>,
    /// Only entries about this workstation, token or user.
    #[arg(long)]
    target: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Args)]
pub(crate) struct AllowArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    cmd: Option<AllowCmd>,
}

#[derive(Subcommand)]
enum AllowCmd {
    /// Allow addresses (`ann@lab.org`) or domains (`*@lab.org`).
    Add {
        #[arg(required = true)]
        entries: Vec<String>,
    },
    /// Remove entries (the configuration's are changed only there).
    Rm {
        #[arg(required = true)]
        entries: Vec<String>,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

/// A password from stdin's first line, or asked for on the terminal (twice when `confirm`).
fn password(from_stdin: bool, prompt: &str, confirm: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let p = rpassword::prompt_password(prompt).context("reading the password (no terminal? use --password-stdin)")?;
    if confirm && rpassword::prompt_password("Again: ").context("reading the password")? != p {
        bail!("the passwords differ");
    }
    Ok(p)
}

/// A time as a distance from now; none: `never` (a token that does not expire).
fn when(ms: Option<u64>) -> String {
    ms.map_or_else(|| "never".into(), table::relative)
}

pub(crate) fn login(a: LoginArgs) -> anyhow::Result<ExitCode> {
    let user = a.user.or_else(|| std::env::var("USER").ok()).context("which account? --user")?;
    let password = password(a.password_stdin, &format!("Password for {user} on {}: ", a.connect.server()), false)?;
    let api = crate::cmd::client::Api::new(&a.connect.server(), None);
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "this host".into());
    let req = SignIn { user: user.clone(), password, scope: Some(a.scope), name: Some(format!("hearth login on {host}")), expires_in_days: Some(a.days) };
    let made: NewToken = api.post("/auth/token", &req)?;
    let mut saved = Saved::load()?;
    saved.tokens.insert(a.connect.server(), made.secret);
    let path = saved.store()?;
    eprintln!(
        "hearth: signed in to {} as {user}; the token ({}, expires {}) is in {}",
        a.connect.server(),
        made.token.scope.as_str(),
        when(made.token.expires_unix_ms),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn logout(a: LogoutArgs) -> anyhow::Result<ExitCode> {
    let mut saved = Saved::load()?;
    let Some(token) = saved.tokens.remove(&a.connect.server()) else { bail!("no saved token for {}", a.connect.server()) };
    // Revoke it on the server; forget it here either way.
    let revoked = crate::cmd::client::Api::new(&a.connect.server(), Some(token)).delete("/auth/session");
    saved.store()?;
    match revoked {
        Ok(()) => eprintln!("hearth: signed out of {}; the token is revoked", a.connect.server()),
        Err(e) => eprintln!("hearth: forgot the token for {} (revoking it failed: {e:#})", a.connect.server()),
    }
    Ok(ExitCode::SUCCESS)
}

fn show_users(users: &[User], json: bool) {
    if json {
        return println!("{}", serde_json::to_string_pretty(users).expect("answers serialize"));
    }
    let yes = |b: bool, s: &str| if b { s.to_string() } else { "-".into() };
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| vec![u.id.clone(), u.email.clone().unwrap_or_else(|| "-".into()), yes(u.admin, "admin"), yes(u.has_password, "yes"), yes(u.disabled, "disabled")])
        .collect();
    table::print(&["ID", "EMAIL", "ROLE", "PASSWORD", "STATE"], &rows);
}

pub(crate) fn user(a: UserArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    let api = a.connect.api(paths);
    let json = a.connect.json;
    match a.cmd {
        UserCmd::Ls => show_users(&api.get::<UserList>("/users")?.users, json),
        UserCmd::Add { id, admin, email, password_stdin, no_password } => {
            let password = if no_password { None } else { Some(password(password_stdin, &format!("Password for {id}: "), true)?) };
            let u: User = api.post("/users", &CreateUser { id, password, email, admin })?;
            show_users(&[u], json);
        }
        UserCmd::Passwd { id, password_stdin } => {
            let me: Session = api.get("/auth/session")?;
            // Users changing their own password prove they know it (administrators need not).
            let current = if me.user == id && !me.admin { Some(password(password_stdin, "Current password: ", false)?) } else { None };
            let new = password(password_stdin, &format!("New password for {id}: "), !password_stdin)?;
            let u: User = api.patch(&format!("/users/{id}"), &UpdateUser { password: Some(new), current_password: current, ..Default::default() })?;
            eprintln!("hearth: the password of {} is set; its sessions signed in before are ended", u.id);
        }
        UserCmd::Set { id, disabled, admin, email } => {
            let u: User = api.patch(&format!("/users/{id}"), &UpdateUser { disabled, admin, email, ..Default::default() })?;
            show_users(&[u], json);
        }
        UserCmd::Quota { id, workstations, vcpus, mem, disk, execs, reset } => {
            let path = format!("/users/{id}/quota");
            let mut report: QuotaReport = api.get(&path)?;
            if reset || [workstations, vcpus, mem, disk, execs].iter().any(Option::is_some) {
                let o = if reset { Quota::default() } else { report.overrides };
                let set = Quota {
                    max_workstations: workstations.or(o.max_workstations),
                    max_vcpus: vcpus.or(o.max_vcpus),
                    max_mem_mib: mem.or(o.max_mem_mib),
                    max_disk_gib: disk.or(o.max_disk_gib),
                    max_execs: execs.or(o.max_execs),
                };
                report = api.put_json(&path, &set)?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let (l, u) = (report.limits, report.usage);
                let cap = |m: Option<u64>| m.map_or_else(|| "unlimited".into(), |m| m.to_string());
                let rows = vec![
                    vec!["workstations".into(), u.workstations.to_string(), cap(l.max_workstations)],
                    vec!["vcpus".into(), u.vcpus.to_string(), cap(l.max_vcpus)],
                    vec!["memory (MiB)".into(), u.mem_mib.to_string(), cap(l.max_mem_mib)],
                    vec!["disk (GiB)".into(), u.disk_gib.to_string(), cap(l.max_disk_gib)],
                    vec!["commands at once".into(), u.execs.to_string(), cap(l.max_execs)],
                ];
                table::print(&["", "HELD", "LIMIT"], &rows);
            }
        }
        UserCmd::Rm { ids } => {
            for id in ids {
                api.delete(&format!("/users/{id}"))?;
                eprintln!("hearth: removed {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn token(a: TokenArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    let api = a.connect.api(paths);
    let json = a.connect.json;
    match a.cmd {
        TokenCmd::Ls => {
            let list: TokenList = api.get("/tokens")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list.tokens)?);
            } else {
                let rows: Vec<Vec<String>> =
                    list.tokens.iter().map(|t| vec![t.id.clone(), t.name.clone(), t.scope.as_str().into(), when(t.expires_unix_ms), when(t.last_used_unix_ms)]).collect();
                table::print(&["ID", "NAME", "SCOPE", "EXPIRES", "LAST USED"], &rows);
            }
        }
        TokenCmd::Create { name, scope, days } => {
            let made: NewToken = api.post("/tokens", &CreateToken { name, scope: Some(scope), expires_in_days: Some(days) })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&made)?);
            } else {
                eprintln!("hearth: token {} ({}, expires {}); its secret, shown only now:", made.token.id, scope.as_str(), when(made.token.expires_unix_ms));
                println!("{}", made.secret);
            }
        }
        TokenCmd::Rm { ids } => {
            for id in ids {
                api.delete(&format!("/tokens/{id}"))?;
                eprintln!("hearth: revoked {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn audit(a: AuditArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    let api = a.connect.api(paths);
    let mut query = vec![format!("limit={}", a.limit)];
    let enc = |v: &str| v.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.:".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    query.extend(a.user.as_deref().map(|u| format!("user={}", enc(u))));
    query.extend(a.target.as_deref().map(|t| format!("target={}", enc(t))));
    let list: AuditList = api.get(&format!("/audit?{}", query.join("&")))?;
    if a.connect.json {
        println!("{}", serde_json::to_string_pretty(&list.entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list.entries.iter().rev().map(|e| vec![when(Some(e.at_unix_ms)), e.user.clone(), e.action.clone(), e.target.clone(), e.detail.clone()]).collect();
    table::print(&["WHEN", "USER", "ACTION", "TARGET", "DETAIL"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// `hearth allowlist [add|rm …]`: who may sign in with a Hypha identity (administrators).
pub(crate) fn allowlist(a: AllowArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    let api = a.connect.api(paths);
    let mut list: AllowList = api.get("/allowlist")?;
    if let Some(cmd) = a.cmd {
        let mut managed = list.managed.clone();
        match cmd {
            AllowCmd::Add { entries } => managed.extend(entries.into_iter().map(|e| e.to_ascii_lowercase())),
            AllowCmd::Rm { entries } => {
                let gone: Vec<String> = entries.iter().map(|e| e.to_ascii_lowercase()).collect();
                if let Some(e) = gone.iter().find(|e| !managed.contains(e)) {
                    bail!("`{e}` is not an entry kept here{}", if list.configured.contains(e) { " (it is the configuration's)" } else { "" });
                }
                managed.retain(|m| !gone.contains(m));
            }
        }
        list = api.put_json("/allowlist", &SetAllowList { managed })?;
    }
    if a.connect.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.configured.is_empty() && list.managed.is_empty() {
        eprintln!("hearth: no allowlist: anyone the Hypha server vouches for may sign in");
    } else {
        let rows: Vec<Vec<String>> =
            list.configured.iter().map(|e| vec![e.clone(), "configuration".into()]).chain(list.managed.iter().map(|e| vec![e.clone(), "kept here".into()])).collect();
        table::print(&["ENTRY", "FROM"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}
