//! `hearth serve`'s WebSocket terminals against terminado, for bench/serve.sh. Run it in the
//! box (`hearth box run --host-bin -- target/release/examples/serve_bench [keys] [MB]`), where
//! `hearth` is on PATH and terminado (Debian's python3-terminado) is in the box's image.
//! Prints JSON.
//!
//! In one run, on the same (emulated) machine, with the same client code, each measure in
//! four rounds in which hearth, terminado and the agent's own terminal take turns:
//! - keystroke echo round trips: a key sent, its echo received (bash's readline in both):
//!   through hearth (WebSocket → server → vsock → the guest agent's PTY) and through terminado
//!   (WebSocket → tornado → a local PTY);
//!   and straight from the guest agent's terminal over vsock (no server, no WebSocket);
//! - the floor under any hearth echo here: a health request to the guest agent over vsock,
//!   and the other leg of it: hearth's WebSocket ping (client to server and back, no agent),
//!   over the floors under that: a bare axum WebSocket echo server (the framework alone) and
//!   one byte echoed over loopback TCP by another process;
//! - output throughput: a command printing `MB` megabytes, timed until its end marker arrives,
//!   and the floor under it here: the same command through a plain exec over vsock;
//! - `GET /api/v1/workstations` with 100 records (and `GET /health` beside it).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;

#[path = "bench_common/mod.rs"]
mod bench_common;
use bench_common::{authorization, call, ms, start, stats, Reaped, TOKEN};
use tungstenite::{Message, WebSocket};

type Sock = WebSocket<MaybeTlsStream<TcpStream>>;

/// A terminal peer as the client sees it: send keys, receive output.
trait Peer {
    fn keys(&mut self, s: &str);
    /// The next output, or None after `timeout` without any.
    fn output(&mut self, timeout: Duration) -> Option<Vec<u8>>;
}

/// Connects the bench's WebSocket client, configured as hearth's own client is (its read
/// buffer: [`hearth_proto::api::WS_READ_BUFFER`]) for every peer alike.
fn connect(url: &str) -> Sock {
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(hearth_proto::api::WS_READ_BUFFER);
    use tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    // hearth's peer needs it; the others ignore it.
    req.headers_mut().insert("authorization", authorization().parse().unwrap());
    tungstenite::client::connect_with_config(req, Some(config), 0).unwrap_or_else(|e| panic!("{url}: {e}")).0
}

fn set_timeout(sock: &mut Sock, t: Duration) {
    if let MaybeTlsStream::Plain(s) = sock.get_mut() {
        s.set_read_timeout(Some(t)).unwrap();
    }
}

fn read(sock: &mut Sock, timeout: Duration) -> Option<Message> {
    set_timeout(sock, timeout);
    match sock.read() {
        Ok(m) => Some(m),
        Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
        Err(e) => panic!("websocket: {e}"),
    }
}

/// hearth's protocol: binary frames both ways (docs/terminal-protocol.md).
struct Hearth(Sock);

impl Peer for Hearth {
    fn keys(&mut self, s: &str) {
        self.0.send(Message::Binary(s.as_bytes().to_vec().into())).unwrap();
    }

    fn output(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        // The timeout is for output: the server's heartbeat pings do not extend it.
        let deadline = Instant::now() + timeout;
        loop {
            match read(&mut self.0, deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))? {
                Message::Binary(b) => return Some(b.to_vec()),
                _ if Instant::now() >= deadline => return None,
                _ => continue,
            }
        }
    }
}

/// The same kind of terminal straight from the guest agent over vsock (no server, no
/// WebSocket): where the time goes between the two.
struct Agent(hearth_exec::PtyStream<std::os::unix::net::UnixStream>, hearth_exec::PtyInput<std::os::unix::net::UnixStream>);

impl Peer for Agent {
    fn keys(&mut self, s: &str) {
        self.1.write(s.as_bytes()).unwrap();
    }

    fn output(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        loop {
            match self.0.next(Some(timeout)) {
                Ok(hearth_exec::PtyEvent::Output(b)) => return Some(b),
                Ok(hearth_exec::PtyEvent::Resized { .. }) => continue,
                Ok(other) => panic!("the agent's terminal: {other:?}"),
                // The read timed out (quiet for `timeout`), between frames.
                Err(hearth_exec::ExecError::TimedOut { .. }) => return None,
                Err(e) => panic!("the agent's terminal: {e}"),
            }
        }
    }
}

/// terminado's protocol: JSON arrays in text frames, `["stdin", s]` and `["stdout", s]`.
struct Terminado(Sock);

impl Peer for Terminado {
    fn keys(&mut self, s: &str) {
        self.0.send(Message::Text(json!(["stdin", s]).to_string().into())).unwrap();
    }

    fn output(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        loop {
            if let Message::Text(t) = read(&mut self.0, timeout)? {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v[0] == "stdout" {
                    return Some(v[1].as_str().unwrap_or_default().as_bytes().to_vec());
                }
            }
        }
    }
}

/// Milliseconds in one of /proc's clock ticks.
fn tick_ms() -> f64 {
    1e3 / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64
}

/// What process `pid` has spent so far, into `into` under `name`: each live thread's CPU
/// (`name/<thread name>#<tid>`, its schedstat: ns, exact) and context switches
/// (`name:switches#<tid>`, a count; `name:involuntary_switches#<tid>` of them), keyed by thread so that a thread ending during a measure
/// drops out of it instead of taking its whole past off the sum; and its CPU split into user
/// and kernel (`name:user_ms`, `name:kernel_ms`; /proc's stat, all its threads', in clock
/// ticks of 10 ms: summed over a measure's round trips, enough).
fn sample(name: &str, pid: u32, into: &mut std::collections::BTreeMap<String, f64>) {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
        let tid = t.file_name().to_string_lossy().into_owned();
        let ns: f64 = read("schedstat").split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        into.insert(format!("{name}/{}#{tid}", read("comm").trim()), ns / 1e6);
        let status = read("status");
        let count = |field: &str| status.lines().find_map(|l| l.strip_prefix(field)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
        let (voluntary, involuntary) = (count("voluntary_ctxt_switches:"), count("nonvoluntary_ctxt_switches:"));
        into.insert(format!("{name}:switches#{tid}"), voluntary + involuntary);
        // Involuntary: preempted (a thread it woke took its CPU, say), not waiting for work.
        into.insert(format!("{name}:involuntary_switches#{tid}"), involuntary);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis (the state first): utime is the 12th of
    // them, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    into.insert(format!("{name}:user_ms"), ticks(11) * tick_ms());
    into.insert(format!("{name}:kernel_ms"), ticks(12) * tick_ms());
}

/// CPU time (ms) the whole box has been busy so far, all its CPUs (/proc/stat: not idle,
/// not waiting for I/O).
fn box_busy_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    (ticks.iter().sum::<f64>() - ticks.get(3).copied().unwrap_or(0.0) - ticks.get(4).copied().unwrap_or(0.0)) * tick_ms()
}

/// Where a measure's CPU went: the named processes' threads' (by thread name) and the
/// box's, summed over its spans.
struct CpuSpent {
    pids: Vec<(&'static str, u32)>,
    spent: std::collections::BTreeMap<String, f64>,
}

impl CpuSpent {
    fn new(pids: Vec<(&'static str, u32)>) -> Self {
        CpuSpent { pids, spent: Default::default() }
    }

    fn now(&self) -> std::collections::BTreeMap<String, f64> {
        let mut all = std::collections::BTreeMap::new();
        for (name, pid) in &self.pids {
            sample(name, *pid, &mut all);
        }
        all.insert("box_busy".into(), box_busy_ms());
        all
    }

    /// Runs `f`, adding what it cost each thread and the box.
    fn add<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let before = self.now();
        let out = f();
        for (k, after) in self.now() {
            *self.spent.entry(k.clone()).or_insert(0.0) += after - before.get(&k).copied().unwrap_or(0.0);
        }
        out
    }

    /// Milliseconds of CPU per round trip, by process (its threads summed, then each), and the
    /// box's total, for `n` of them; threads that spent under 1 us a round trip are left out.
    /// Also per round trip: each process's CPU in user space and in the kernel, and its
    /// context switches.
    fn per(&self, n: usize) -> Value {
        let per = |v: f64| v / n as f64;
        let mut m = serde_json::Map::new();
        for (name, _) in &self.pids {
            let of = |k: &String| k.strip_prefix(name).is_some_and(|rest| rest.starts_with(['/', ':']));
            let total: f64 = self.spent.iter().filter(|(k, _)| k.starts_with(&format!("{name}/"))).map(|(_, v)| v).sum();
            // A process idle through this measure is left out whole.
            if per(total) < 0.001 {
                continue;
            }
            m.insert(name.to_string(), json!(per(total)));
            // Threads summed by name (and switches over all threads).
            let mut by_name = std::collections::BTreeMap::new();
            for (k, v) in self.spent.iter().filter(|(k, _)| of(k)) {
                *by_name.entry(k.split_once('#').map_or(k.as_str(), |(n, _)| n)).or_insert(0.0) += v;
            }
            for (k, v) in by_name.into_iter().filter(|(_, v)| per(*v) >= 0.001) {
                m.insert(k.to_string(), json!(per(v)));
            }
            // Which threads switch: one doing all the work, or work handed between threads.
            let mut by_thread: Vec<f64> = self.spent.iter().filter(|(k, _)| k.starts_with(&format!("{name}:switches#"))).map(|(_, v)| per(*v)).filter(|v| *v >= 0.001).collect();
            by_thread.sort_by(|a, b| b.total_cmp(a));
            m.insert(format!("{name}:switches_by_thread"), json!(by_thread));
        }
        m.insert("box_busy".into(), json!(per(self.spent.get("box_busy").copied().unwrap_or(0.0))));
        Value::Object(m)
    }
}

/// Reads until the peer has been quiet for a while (a prompt drawn, a command done).
fn settle(p: &mut dyn Peer) {
    while p.output(Duration::from_millis(700)).is_some() {}
}

/// Keystroke round trips: a key, then its echo; a backspace, then its echo (the line stays
/// empty, so every output is the echo of the key just sent).
fn echo(p: &mut dyn Peer, n: usize, name: &str) -> Vec<f64> {
    settle(p);
    let mut v = Vec::with_capacity(2 * n);
    for _ in 0..n {
        for key in ["a", "\x7f"] {
            let t = Instant::now();
            p.keys(key);
            p.output(Duration::from_secs(30)).unwrap_or_else(|| panic!("{name}: no echo of {key:?} within 30 s"));
            v.push(ms(t.elapsed()));
        }
    }
    v
}

/// Round trips of hearth's own ping (a text frame answered by the server, no terminal, no
/// agent): the client-to-server leg every hearth keystroke also takes.
/// `answer` is what the reply text holds: "pong" from hearth, "ping" from an echo server.
fn ping(sock: &mut Sock, n: usize, answer: &str) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            sock.send(Message::Text(json!({"type": "ping"}).to_string().into())).unwrap();
            while !matches!(read(sock, Duration::from_secs(30)).expect("an answer"), Message::Text(m) if m.contains(answer)) {}
            ms(t.elapsed())
        })
        .collect()
}

/// `serve_bench tcp-echo`: echoes on a loopback TCP port (printed first) until its client
/// leaves. Another process, as a server is: the client leg's floor (TCP, two processes).
fn tcp_echo() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    let (mut s, _) = listener.accept().unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// `serve_bench tokio-echo`: [`tcp_echo`] on the server's async runtime (one worker, as in
/// [`ws_echo`]) with no HTTP or WebSocket: what the runtime alone costs a round trip, between
/// the blocking TCP echo and the framework's.
fn tokio_echo() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            if s.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
}

/// `serve_bench ws-echo`: a bare axum WebSocket server (the server's framework, one async
/// worker, TCP_NODELAY and the read buffer as the server has them, none of hearth) echoing every message, on a
/// loopback port printed first: what the framework costs a round trip here.
fn ws_echo() {
    use axum::extract::ws::{Message as M, WebSocketUpgrade};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let echo = |ws: WebSocketUpgrade| async move {
            ws.read_buffer_size(hearth_proto::api::WS_READ_BUFFER).on_upgrade(|mut s| async move {
                while let Some(Ok(m)) = s.recv().await {
                    if matches!(m, M::Close(_)) || s.send(m).await.is_err() {
                        break;
                    }
                }
            })
        };
        axum::serve(listener, axum::Router::new().route("/ws", axum::routing::get(echo))).await.unwrap();
    });
}

/// Round trips of a small text message through [`ws_echo`] in a child process.
fn ws_round_trips(n: usize) -> Vec<f64> {
    let (_echo, port) = start(Command::new(std::env::current_exe().unwrap()).arg("ws-echo"));
    ping(&mut connect(&format!("ws://127.0.0.1:{port}/ws")), n, "ping")
}

/// Round trips of one byte through [`tcp_echo`] or [`tokio_echo`] (`mode`) in a child process.
fn tcp_round_trips(mode: &str, n: usize) -> Vec<f64> {
    use std::io::{Read, Write};
    let (_echo, port) = start(Command::new(std::env::current_exe().unwrap()).arg(mode));
    let mut s = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut b = [0u8; 1];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            s.write_all(b"k").unwrap();
            s.read_exact(&mut b).unwrap();
            ms(t.elapsed())
        })
        .collect()
}

/// Runs a command printing about `mb` MB and times its output until the end marker: (bytes, seconds).
fn throughput(p: &mut dyn Peer, mb: u64) -> (u64, f64) {
    settle(p);
    // Numbers up to a few million: 8 bytes a line, 9 once the PTY makes "\n" "\r\n".
    let lines = mb * 1_000_000 / 8;
    let t = Instant::now();
    p.keys(&format!("seq 1 {lines}; echo end-$((6*7))\n"));
    let (mut bytes, mut seen) = (0u64, Vec::new());
    loop {
        let out = p.output(Duration::from_secs(60)).expect("output");
        bytes += out.len() as u64;
        seen.extend_from_slice(&out);
        if seen.windows(6).any(|w| w == b"end-42") {
            break;
        }
        let keep = seen.len().saturating_sub(8);
        seen.drain(..keep);
    }
    (bytes, t.elapsed().as_secs_f64())
}

/// Bytes and seconds summed over rounds, as JSON.
fn rate((bytes, secs): (u64, f64)) -> Value {
    json!({"bytes": bytes, "secs": secs, "mb_per_s": bytes as f64 / secs / 1e6})
}

/// A sink that counts what it is given.
struct Counted(u64);

impl std::io::Write for Counted {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn terminado(port: u16) -> Reaped {
    let script = format!(
        "import terminado, tornado.web, tornado.ioloop\n\
         m = terminado.UniqueTermManager(shell_command=['bash'])\n\
         tornado.web.Application([(r'/ws', terminado.TermSocket, {{'term_manager': m}})]).listen({port}, '127.0.0.1')\n\
         print('ready', flush=True)\n\
         tornado.ioloop.IOLoop.current().start()\n"
    );
    let (child, line) = start(Command::new("python3").args(["-c", &script]).env("TERM", "xterm"));
    assert_eq!(line, "ready");
    child
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("tcp-echo") => return tcp_echo(),
        Some("ws-echo") => return ws_echo(),
        Some("tokio-echo") => return tokio_echo(),
        _ => {}
    }
    let arg = |i: usize, d: u64| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (keys, mb) = (arg(1, 500) as usize, arg(2, 20));
    let data = PathBuf::from(std::env::var("HEARTH_DATA_DIR").expect("HEARTH_DATA_DIR (run in the box)")).join("serve-bench");
    let _ = std::fs::remove_dir_all(&data);
    let (server, line) = start(
        Command::new("hearth")
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("HEARTH_DATA_DIR", &data)
            .env("HEARTH_LOG", "warn")
            .envs(std::env::var("BENCH_NETWORK").ok().map(|v| ("HEARTH_NETWORK__ENABLED", v))),
    );
    let base = line.strip_prefix("hearth: serving on ").unwrap_or_else(|| panic!("{line}")).to_string();
    let _ = TOKEN.set(std::fs::read_to_string(data.join("admin.token")).expect("the server's administrator token").trim().to_string());
    // A run that fails says what became of its workstations' VMs (in the box, most failures
    // are the emulation's: a guest that reset itself shows as such here).
    let post_mortem = data.join("workstations");
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        for ws in std::fs::read_dir(&post_mortem).into_iter().flatten().flatten().filter(|e| e.path().join("vm").is_dir()) {
            eprintln!("serve_bench: workstation {}: its Firecracker's last word: {}", ws.file_name().to_string_lossy(), hearth_vmm::vm::Vm::exit_reason(&ws.path().join("vm")));
            // And its guest's (a panic, the agent restarted by its init, a timer stall).
            eprintln!("serve_bench: its console's end:\n{}", hearth_vmm::vm::console_tail(&ws.path().join("vm")));
        }
    }));
    let api = format!("{base}/api/v1");
    // BENCH_VCPUS: the workstation's vCPUs (default 2, the server's default).
    let vcpus: u8 = std::env::var("BENCH_VCPUS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let ws = call("POST", &format!("{api}/workstations"), Some(json!({"name": "bench", "vcpu_count": vcpus, "mem_size_mib": 512, "disk_size_gib": 1})));
    let id = ws["id"].as_str().unwrap_or_else(|| panic!("{ws}")).to_string();
    let t = call("POST", &format!("{api}/workstations/{id}/terminals"), Some(json!({"argv": ["bash", "-l"], "rows": 40, "cols": 120})));
    let url = format!("{}/workstations/{id}/terminals/{}/ws", api.replace("http://", "ws://"), t["id"].as_str().unwrap());

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let terminado_proc = terminado(port);
    let mut term = Terminado(connect(&format!("ws://127.0.0.1:{port}/ws")));

    let started = Instant::now();
    let phase = |what: &str| eprintln!("serve_bench: {what} at {:.1} s", started.elapsed().as_secs_f64());
    phase("ready");
    // The vsock floor, in the same run: health requests to the same guest's agent, each
    // bounded (a stuck agent is an error here, not a hang).
    let vm = hearth_vmm::vm::Vm::attach(&data.join("workstations").join(&id).join("vm")).expect("the workstation's VM");
    let conn = hearth_vmm::vsock::connect(&vm.run_dir().join("v.sock"), hearth_proto::control::AGENT_VSOCK_PORT, Duration::from_secs(10)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut agent = hearth_exec::ExecClient::hello(conn, None, Duration::from_secs(10)).unwrap();
    let floor: Vec<f64> = (0..2 * keys)
        .map(|_| {
            let t = Instant::now();
            agent.health().unwrap();
            ms(t.elapsed())
        })
        .collect();
    phase("vsock floor measured");
    // The floor under output throughput: the same number of bytes of `seq` through a plain
    // exec over vsock (no PTY, no terminal, no server, no WebSocket).
    let timed_exec = |argv: &[&str]| {
        let conn = hearth_vmm::vsock::connect(&vm.run_dir().join("v.sock"), hearth_proto::control::AGENT_VSOCK_PORT, Duration::from_secs(10)).unwrap();
        let agent = hearth_exec::ExecClient::hello(conn, None, Duration::from_secs(10)).unwrap();
        let mut counted = Counted(0);
        let t = Instant::now();
        let exit = agent.exec(hearth_proto::control::ExecSpec::new(argv.iter().copied()), &mut counted, &mut std::io::sink()).unwrap();
        assert_eq!(exit.status(), 0);
        let secs = t.elapsed().as_secs_f64();
        json!({"bytes": counted.0, "secs": secs, "mb_per_s": counted.0 as f64 / secs / 1e6})
    };
    let seq = format!("seq 1 {}", mb * 1_000_000 / 8);
    let bulk_floor = timed_exec(&["sh", "-c", &seq]);
    // The same through a PTY in the guest (script(1)), still without a terminal emulator.
    let pty_floor = timed_exec(&["script", "-qfec", &seq, "/dev/null"]);
    phase("vsock bulk floors measured");
    // The agent's own terminal, read directly over vsock (no server, no WebSocket).
    let mut agent_term = {
        let conn = || hearth_vmm::vsock::connect(&vm.run_dir().join("v.sock"), hearth_proto::control::AGENT_VSOCK_PORT, Duration::from_secs(10)).unwrap();
        let mut c = hearth_exec::ExecClient::hello(conn(), None, Duration::from_secs(10)).unwrap();
        let spec = hearth_proto::control::PtySpec { argv: vec!["bash".into(), "-l".into()], user: Some("scientist".into()), rows: 40, cols: 120, ..Default::default() };
        let info = c.pty_open(spec).unwrap();
        let stream = hearth_exec::ExecClient::hello(conn(), None, Duration::from_secs(10)).unwrap().pty_attach(&info.id, None, false).unwrap();
        let input = stream.input().unwrap();
        Agent(stream, input)
    };
    // Attached only now: a client that reads nothing while the floors are measured (over a
    // minute in a slow box) would be dropped by the server's heartbeat as silent.
    let mut hearth = Hearth(connect(&url));
    // Each measure in rounds, the peers taking turns, so a slow spell of the emulated machine
    // falls on all of them rather than on whichever ran then.
    const ROUNDS: usize = 4;
    let mut echoes: [Vec<f64>; 3] = Default::default();
    // The CPU each echo cost, by process: where the time of a round trip is work, and where
    // it is waiting (for a wake-up, in the emulated machine).
    let procs = || vec![("client", std::process::id()), ("server", server.0.id()), ("firecracker", vm.pid()), ("terminado", terminado_proc.0.id())];
    let mut cpu: [CpuSpent; 3] = [CpuSpent::new(procs()), CpuSpent::new(procs()), CpuSpent::new(procs())];
    let mut ping_cpu = CpuSpent::new(procs());
    let (mut pings, mut tcp, mut tokio_tcp, mut bare_ws) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rates = [(0u64, 0f64); 3];
    for round in 0..ROUNDS {
        let peers: [&mut dyn Peer; 3] = [&mut hearth, &mut term, &mut agent_term];
        for (i, p) in peers.into_iter().enumerate() {
            let times = cpu[i].add(|| echo(p, keys / ROUNDS, ["hearth", "terminado", "the agent's terminal"][i]));
            echoes[i].extend(times);
        }
        pings.extend(ping_cpu.add(|| ping(&mut hearth.0, 2 * keys / ROUNDS, "pong")));
        tcp.extend(tcp_round_trips("tcp-echo", 2 * keys / ROUNDS));
        tokio_tcp.extend(tcp_round_trips("tokio-echo", 2 * keys / ROUNDS));
        bare_ws.extend(ws_round_trips(2 * keys / ROUNDS));
        phase(&format!("echo round {round} measured"));
    }
    for round in 0..ROUNDS {
        let peers: [&mut dyn Peer; 3] = [&mut hearth, &mut term, &mut agent_term];
        for (i, p) in peers.into_iter().enumerate() {
            let (b, t) = throughput(p, mb / ROUNDS as u64);
            rates[i] = (rates[i].0 + b, rates[i].1 + t);
        }
        phase(&format!("throughput round {round} measured"));
    }
    let round_trips = echoes[0].len();
    let [cpu_hearth, cpu_terminado, cpu_agent] = cpu.map(|c| c.per(round_trips));
    let cpu_ping = ping_cpu.per(pings.len());
    let [echo_hearth, echo_terminado, echo_agent] = echoes.map(stats);
    let [out_hearth, out_terminado, out_agent] = rates.map(rate);

    // 100 records (read-only, not started: records, no VMs), then list latency.
    for i in 0..99 {
        call("POST", &format!("{api}/workstations"), Some(json!({"name": format!("rec-{i}"), "read_only": true, "start": false, "mem_size_mib": 256, "vcpu_count": 1})));
    }
    let timed = |url: &str| -> Value {
        stats(
            (0..50)
                .map(|_| {
                    let t = Instant::now();
                    call("GET", url, None);
                    ms(t.elapsed())
                })
                .collect(),
        )
    };
    phase("100 records made");
    let list = timed(&format!("{api}/workstations"));
    let health = timed(&format!("{api}/health"));
    let n = call("GET", &format!("{api}/workstations"), None)["workstations"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 100);

    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "keystroke_echo": {"hearth_ws": echo_hearth, "terminado": echo_terminado, "agent_pty_over_vsock": echo_agent, "vsock_floor_agent_health": stats(floor), "hearth_ws_ping_no_terminal": stats(pings), "tcp_loopback_two_processes": stats(tcp), "tokio_tcp_echo": stats(tokio_tcp), "bare_axum_ws_echo": stats(bare_ws)},
            "keystroke_echo_cpu_ms_per_round_trip": {"hearth_ws": cpu_hearth, "terminado": cpu_terminado, "agent_pty_over_vsock": cpu_agent, "hearth_ws_ping_no_terminal": cpu_ping},
            "output_throughput": {"hearth_ws": out_hearth, "terminado": out_terminado, "agent_pty_over_vsock": out_agent, "vsock_floor_exec": bulk_floor, "vsock_floor_exec_through_a_guest_pty": pty_floor},
            "list_100_records": list,
            "health": health,
        }))
        .unwrap()
    );
    drop(hearth);
    let ids: Vec<String> = call("GET", &format!("{api}/workstations"), None)["workstations"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap().to_string()).collect();
    for id in ids {
        let _ = ureq::delete(&format!("{api}/workstations/{id}")).set("Authorization", &authorization()).call();
    }
}
