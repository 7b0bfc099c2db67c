//! `hearth serve`: the API server. Where this host's KVM runs guests (or inside the box) it
//! serves directly; elsewhere it runs the very same server inside the box, with the API port
//! forwarded on loopback, and shuts the box down cleanly when stopped.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use hearth_box::host::BoxDir;
use hearth_proto::control::ExecSpec;
use hearth_service::config::Config;

use crate::cmd::boxcmd::{self, StartArgs};
use crate::paths::Paths;

/// The port the server listens on inside the box.
const BOX_API_PORT: u16 = 8080;

/// How the box's server is handed its host's administrator token, so that this host's CLI
/// reaches it with the token in this host's data directory.
const ADMIN_TOKEN_ENV: &str = "HEARTH_ADMIN_TOKEN";
/// The Hypha bridge's key, handed to the server in the box (whose bridge runs on the host).
const BRIDGE_KEY_ENV: &str = "HEARTH_HYPHA_BRIDGE_KEY";

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// Direct where KVM runs guests (a probe boot says), else the box.
    Auto,
    Direct,
    Box,
}

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Configuration file [default: <data-dir>/hearth.toml when it exists]. Every key may be
    /// overridden from the environment: HEARTH_LISTEN, HEARTH_LIMITS__MAX_VCPUS… (docs/config.md).
    #[arg(long, env = "HEARTH_CONFIG")]
    config: Option<PathBuf>,
    /// Where to listen (overrides the config's `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where workstations run.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// Who may sign in with an identity from Hypha: addresses and `*@domain`, comma-separated
    /// (adds to the config's `auth.allow_emails`).
    #[arg(long, value_delimiter = ',')]
    allow_email: Vec<String>,
    /// When the server stops, hibernate running workstations (each wakes where it was when
    /// next used) instead of leaving them running. Always so in the box, which goes down
    /// with the server.
    #[arg(long)]
    hibernate_on_stop: bool,
    /// Run as the server inside the box: stop at stdin's EOF, hibernating running
    /// workstations.
    #[arg(long, hide = true)]
    box_child: bool,
    #[command(flatten)]
    r#box: StartArgs,
}

pub(crate) fn run(a: ServeArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    let default_file = paths.data_dir.join("hearth.toml");
    let file = a.config.clone().or_else(|| default_file.is_file().then_some(default_file));
    let mut config = Config::load(file.as_deref(), std::env::vars()).context("loading the configuration")?;
    if let Some(l) = a.listen {
        config.listen = l;
    }
    if !a.allow_email.is_empty() {
        config.auth.allow_emails.extend(a.allow_email.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()));
        config.check().context("--allow-email")?;
    }
    let in_box = std::env::var_os("HEARTH_IN_BOX").is_some();
    let direct = match a.mode {
        Mode::Direct => true,
        Mode::Box => false,
        Mode::Auto if in_box => true,
        Mode::Auto => {
            // The artifacts first: the probe boots them, and either mode needs them.
            crate::cmd::image::ensure_artifacts(paths, true)?;
            let (runs, detail) = crate::cmd::doctor::guests_run_here(paths);
            if !runs {
                eprintln!("hearth: this host's KVM does not run guests ({detail}); serving from the box");
            }
            runs
        }
    };
    if direct {
        let opts = hearth_server::ServeOptions { until_stdin_eof: a.box_child, suspend_on_exit: a.box_child || a.hibernate_on_stop };
        serve_here(config, paths, opts)
    } else {
        serve_in_box(config, paths, &a.r#box)
    }
}

fn serve_here(config: Config, paths: &Paths, opts: hearth_server::ServeOptions) -> anyhow::Result<ExitCode> {
    init_logging();
    let workers = config.worker_threads();
    let public_url = config.auth.public_url.trim_end_matches('/').to_string();
    let scheme = if config.tls.enabled() { "https" } else { "http" };
    let svc = hearth_service::Service::open(config, &paths.data_dir, &paths.cache_dir).context("starting the server")?;
    if let Ok(key) = std::env::var(BRIDGE_KEY_ENV) {
        anyhow::ensure!(svc.use_bridge_key(key), "the Hypha bridge's key was set twice");
    }
    // The box's server is handed its host's administrator token (see serve_in_box).
    let given = std::env::var(ADMIN_TOKEN_ENV).ok();
    let boot = svc.bootstrap(&paths.data_dir, given.as_deref()).context("setting up the administrator's access")?;
    if given.is_none() {
        eprintln!("hearth: the administrator's API token is in {} (the CLI on this host uses it)", boot.admin_token_file.display());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().context("starting the async runtime")?;
    let mut bridge = None;
    let hypha = if svc.config.hypha.serves() { Some((svc.config.hypha.clone(), svc.bridge_key()?)) } else { None };
    rt.block_on(hearth_server::serve(svc, opts, |addr| {
        if let Some((h, key)) = hypha {
            bridge = Some(start_bridge(paths, &h, key, format!("{scheme}://{}", loopback(addr))));
        }
        // The line scripts and tests wait for.
        println!("hearth: serving on {scheme}://{addr}");
        let _ = std::io::stdout().flush();
        // On stderr: whoever reads the line above may close stdout after it.
        if let Some(code) = &boot.link {
            let base = if public_url.is_empty() { format!("{scheme}://{addr}") } else { public_url.clone() };
            eprintln!("hearth: no administrator has a password yet; sign in once, within an hour, at {base}/auth/link?code={code}");
            eprintln!("hearth: then set one: hearth user passwd admin");
        }
    }))?;
    if let Some(b) = bridge {
        b.stop();
    }
    if opts.suspend_on_exit {
        eprintln!("hearth: stopped serving; running workstations were hibernated and wake where they were when next used");
    } else {
        eprintln!("hearth: stopped serving; workstations keep running");
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the Hypha bridge (crates/hearth-hypha) for the server at `hearth_url`.
fn start_bridge(paths: &Paths, h: &hearth_service::config::Hypha, key: String, hearth_url: String) -> hearth_hypha::Bridge {
    eprintln!("hearth: serving as Hypha service `{}` on {} (the bridge starts now)", h.service_id, h.server_url);
    hearth_hypha::Bridge::start(hearth_hypha::BridgeSpec {
        python: (!h.bridge_python.is_empty()).then(|| PathBuf::from(&h.bridge_python)),
        cache_dir: paths.cache_dir.clone(),
        run_dir: paths.data_dir.clone(),
        hearth_url,
        key,
        server_url: h.server_url.clone(),
        token: h.service_token.clone(),
        workspace: h.service_workspace.clone(),
        service_id: h.service_id.clone(),
        visibility: h.service_visibility.clone(),
    })
}

/// Where a server listening on `addr` is reached from this host.
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

fn serve_in_box(mut config: Config, paths: &Paths, start: &StartArgs) -> anyhow::Result<ExitCode> {
    let host = config.listen;
    let IpAddr::V4(ip) = host.ip() else { bail!("serving from the box needs an IPv4 listen address (got {host})") };
    if !ip.is_loopback() {
        bail!("serving from the box forwards a loopback port only (got {host}); use 127.0.0.1:PORT");
    }
    if config.tls.enabled() {
        bail!("serving from the box does not take [tls] yet; serve plain HTTP on loopback behind a reverse proxy (docs/access.md)");
    }
    let port = if host.port() == 0 { free_port()? } else { host.port() };
    let dir = BoxDir::new(paths.box_dir());
    let forward = (port, BOX_API_PORT);
    match dir.running() {
        Some(state) if state.forwards.contains(&forward) => eprintln!("hearth: using the running box (pid {})", state.pid),
        Some(state) => bail!("the box (pid {}) runs without port {port} forwarded; stop it (hearth box stop) and run hearth serve again", state.pid),
        None => {
            let mut start = start.clone();
            start.egress = box_network(&mut config, start.egress);
            if start.egress {
                eprintln!("hearth: the box lets workstations' NAT egress out through this host");
            }
            boxcmd::start(paths, &dir, &start, false, &[forward], true)?;
        }
    }
    // The server inside gets this configuration, listening on the forwarded port; it is
    // reached here (what its sign-in link must say).
    config.listen = SocketAddr::from(([0, 0, 0, 0], BOX_API_PORT));
    if config.auth.public_url.is_empty() {
        config.auth.public_url = format!("http://127.0.0.1:{port}");
    }
    // The shared Hypha secret goes by the environment, not into the share's file.
    let jwt_secret = std::mem::take(&mut config.hypha.jwt_secret);
    // The Hypha bridge runs here, on the host (which has the Python and the way out to the
    // Hypha server), calling the server inside through the forwarded port with a key it is
    // handed; the service token stays here.
    let hypha = config.hypha.serves().then(|| config.hypha.clone());
    config.hypha.service_token.clear();
    // The CA certificates guests are to trust are this host's: handed in through the share.
    let cas = hearth_service::trust::load(&config.network.ca_certificates);
    config.network.ca_certificates = if cas.is_empty() { Vec::new() } else { vec![dir.share_file("ca-certificates.crt", &cas)?] };
    let toml = toml::to_string(&config).context("writing the configuration for the box")?;
    let config_path = dir.share_file("serve.toml", toml.as_bytes())?;
    let mut spec = ExecSpec::new(["hearth", "serve", "--mode", "direct", "--box-child", "--config", &config_path]);
    spec.env = std::env::vars().filter(|(k, _)| k == "HEARTH_LOG").collect();
    std::fs::create_dir_all(&paths.data_dir).context("creating the data directory")?;
    let token_file = config.auth.admin_token_path(&paths.data_dir);
    let admin_token = hearth_service::access::admin_token_file(&token_file).context("the administrator token")?;
    spec.env.push((ADMIN_TOKEN_ENV.into(), admin_token.expose()));
    if !jwt_secret.is_empty() {
        spec.env.push(("HEARTH_HYPHA__JWT_SECRET".into(), jwt_secret));
    }
    let bridge = match hypha {
        Some(h) => {
            init_logging();
            let key = hearth_service::access::new_bridge_key().context("a key for the Hypha bridge")?;
            spec.env.push((BRIDGE_KEY_ENV.into(), key.clone()));
            Some(start_bridge(paths, &h, key, format!("http://127.0.0.1:{port}")))
        }
        None => None,
    };
    eprintln!("hearth: the administrator's API token is in {} (the CLI on this host uses it)", token_file.display());
    boxcmd::stop_on_signals()?;
    let inside = format!("http://0.0.0.0:{BOX_API_PORT}");
    let outside = format!("http://127.0.0.1:{port}");
    // The server inside stops at its stdin's EOF: closing this pipe is how we stop it, so it
    // can suspend the workstations before the box goes down.
    // Close-on-exec: a child started meanwhile (the Hypha bridge) holding the write end
    // would keep the EOF from ever coming.
    let (stdin_read, stdin_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("making a pipe")?;
    std::thread::spawn(move || {
        while !boxcmd::STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("hearth: stopping the server in the box (hibernating running workstations)");
        drop(stdin_write);
    });
    let out = Rewrite { out: std::io::stdout(), from: inside, to: outside + " (workstations run in the box)" };
    let never = AtomicBool::new(false);
    let result = boxcmd::exec_watched(&dir, spec, Some(Box::new(std::fs::File::from(stdin_read))), Box::new(out), &never, boxcmd::WEDGED_AFTER);
    if let Some(b) = bridge {
        b.stop();
    }
    eprintln!("hearth: stopping the box");
    dir.stop(Duration::from_secs(60)).context("stopping the box")?;
    let exit = result?.context("interrupted")?;
    if boxcmd::STOP.load(Ordering::SeqCst) && exit.status() == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    bail!("the server in the box exited (status {})", exit.status())
}

/// Whether the box's QEMU lets traffic out (`restrict=off`): asked for (`--egress`), or new
/// workstations get NAT egress by the configuration. With egress, the server inside
/// masquerades out of the box's interface and hands guests QEMU's resolver, unless the
/// configuration names its own uplink or resolvers. (Without it, workstations that ask for
/// `nat` get a route that ends at QEMU.)
fn box_network(config: &mut Config, asked: bool) -> bool {
    let net = &mut config.network;
    // The server inside runs as root, whoever runs this one.
    let enabled = *net.enabled.get_or_insert(true);
    let egress = asked || (enabled && net.parsed_egress() == Ok(hearth_net::Egress::Nat));
    if egress && enabled {
        if net.uplink.is_empty() {
            net.uplink = hearth_box::BOX_UPLINK.into();
        }
        if net.dns.is_empty() {
            net.dns = vec![hearth_box::BOX_DNS.into()];
        }
    }
    egress
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Passes output through, rewriting the address the server inside announces to the one it is
/// reached at from here.
struct Rewrite<W: Write> {
    out: W,
    from: String,
    to: String,
}

impl<W: Write> Write for Rewrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if text.contains(&self.from) {
            self.out.write_all(text.replace(&self.from, &self.to).as_bytes())?;
        } else {
            self.out.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_box_lets_nat_egress_out_and_points_guests_at_its_resolver() {
        let networked = || {
            let mut c = Config::default();
            c.network.enabled = Some(true);
            c
        };
        let mut c = networked();
        assert!(box_network(&mut c, false), "NAT is the default egress");
        assert_eq!((c.network.uplink.as_str(), c.network.dns.as_slice()), ("eth0", &["10.0.2.3".to_string()][..]));
        // What the configuration names is kept.
        let mut c = networked();
        c.network.uplink = "up0".into();
        c.network.dns = vec!["203.0.113.53".into()];
        assert!(box_network(&mut c, false));
        assert_eq!((c.network.uplink.as_str(), c.network.dns[0].as_str()), ("up0", "203.0.113.53"));
        // Egress none by default, or networking off: the box stays closed unless asked.
        let mut c = networked();
        c.network.egress = "none".into();
        assert!(!box_network(&mut c, false));
        assert!(c.network.uplink.is_empty());
        assert!(box_network(&mut c, true), "--egress opens it anyway");
        let mut c = Config::default();
        c.network.enabled = Some(false);
        assert!(!box_network(&mut c, false));
        assert!(c.network.dns.is_empty());
        // Left unset, networking is on in the box (its server is root, whoever runs this one),
        // and the server inside is told so.
        let mut c = Config::default();
        assert!(box_network(&mut c, false));
        assert_eq!(c.network.enabled, Some(true));
    }
}
