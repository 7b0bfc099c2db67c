//! The REST API against a real `hearth serve` with real Firecracker workstations, in the box:
//! every route, success and failure; the OpenAPI document against the routes; a server
//! killed with SIGKILL and started again loses nothing.

mod common;

use std::time::Duration;

use common::{assert_error, call};
use serde_json::{json, Value};

fn raw(method: &str, url: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    match common::authed(ureq::request(method, url)).set("Content-Type", content_type).send_bytes(body) {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{e}"),
    }
}

/// Announces a body of `len` bytes and sends only its start: the server must refuse from the
/// header alone (a client would otherwise see its connection closed mid-upload).
fn oversized(base: &str, method: &str, path: &str, len: u64) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(c, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{{").unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    let status = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A WebSocket terminal client: what it has seen, as text.
struct Ws {
    sock: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    head: Value,
    out: Vec<u8>,
    texts: Vec<Value>,
}

impl Ws {
    fn connect(url: &str) -> Ws {
        let (mut sock, _) = tungstenite::connect(common::ws_request(url)).unwrap_or_else(|e| panic!("{url}: {e}"));
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_mut() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            // As browsers do: keystrokes go out at once.
            s.set_nodelay(true).unwrap();
        }
        let head: Value = match sock.read().unwrap() {
            tungstenite::Message::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected the attached message, got {other:?}"),
        };
        let mut ws = Ws { sock, head, out: Vec::new(), texts: Vec::new() };
        let replay = ws.head["replay_bytes"].as_u64().unwrap() as usize;
        while ws.out.len() < replay {
            ws.read_one();
        }
        ws
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    fn read_one(&mut self) {
        match self.sock.read().unwrap() {
            tungstenite::Message::Binary(b) => self.out.extend_from_slice(&b),
            tungstenite::Message::Text(t) => self.texts.push(serde_json::from_str(&t).unwrap()),
            _ => {}
        }
    }

    fn until(&mut self, want: &str) {
        while !self.seen().contains(want) {
            self.read_one();
        }
    }

    fn until_text(&mut self, kind: &str) {
        while !self.texts.iter().any(|t| t["type"] == kind) {
            self.read_one();
        }
    }

    fn send(&mut self, m: tungstenite::Message) {
        self.sock.send(m).unwrap();
    }

    fn keys(&mut self, s: &str) {
        self.send(tungstenite::Message::Binary(s.as_bytes().to_vec().into()));
    }

    fn control(&mut self, v: Value) {
        self.send(tungstenite::Message::Text(v.to_string().into()));
    }

    /// The server ends this connection.
    fn closed(&mut self) {
        loop {
            match self.sock.read() {
                Ok(tungstenite::Message::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// A console follow (Server-Sent Events): what it has printed so far.
struct Sse {
    lines: std::io::Lines<std::io::BufReader<Box<dyn std::io::Read + Send + Sync>>>,
    text: String,
    ended: bool,
}

impl Sse {
    fn open(url: &str) -> Sse {
        let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(60)).build();
        let r = common::authed(agent.get(url)).call().unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(r.content_type(), "text/event-stream");
        Sse { lines: std::io::BufRead::lines(std::io::BufReader::new(r.into_reader())), text: String::new(), ended: false }
    }

    /// Reads one event.
    fn next(&mut self) {
        let mut event = String::new();
        loop {
            let line = self.lines.next().expect("the stream ended without an end event").unwrap();
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                match event.as_str() {
                    "output" => self.text.push_str(serde_json::from_str::<Value>(d.trim_start()).unwrap()["text"].as_str().unwrap()),
                    "end" => self.ended = serde_json::from_str::<Value>(d.trim_start()).unwrap()["reason"].is_string(),
                    other => panic!("unexpected event {other:?}"),
                }
                return;
            }
        }
    }

    fn until(&mut self, want: &str) {
        while !self.text.contains(want) {
            self.next();
        }
    }

    fn until_end(&mut self) {
        while !self.ended {
            self.next();
        }
    }
}

/// Asks the server to stop (SIGTERM) and waits for it to exit by itself.
fn terminate(mut server: common::Server) {
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            assert!(st.success(), "the server exited with {st} on SIGTERM");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the server did not stop on SIGTERM with streams open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_api_drives_workstations_end_to_end() {
    if common::delegated_to_box("the_api_drives_workstations_end_to_end") {
        return;
    }
    let data = std::path::PathBuf::from(std::env::var("HEARTH_DATA_DIR").unwrap()).join(format!("api-{}", std::process::id()));
    // Budgets set here so the refusals below do not depend on the size of the box.
    let env = [("HEARTH_LIMITS__MAX_CONSOLE_FOLLOWERS", "2"), ("HEARTH_LIMITS__VCPU_BUDGET", "8"), ("HEARTH_LIMITS__DISK_BUDGET_GIB", "50"), ("HEARTH_GUEST_HALT_POLL_US", "1")];
    let server = common::serve_in_box_with(&data, &env);
    let api = format!("{}/api/v1", server.base);
    let ws_url = format!("{api}/workstations");

    let (s, health) = call("GET", &format!("{api}/health"), None);
    assert_eq!((s, health["status"].as_str()), (200, Some("ok")));
    // Nothing is open: without the token the server made at its first start, 401.
    match ureq::get(&format!("{api}/workstations")).call() {
        Err(ureq::Error::Status(401, r)) => assert_eq!(r.into_json::<Value>().unwrap()["error"]["code"], "unauthenticated"),
        other => panic!("without a credential: {:?}", other.map(|r| r.status())),
    }

    // The OpenAPI document describes exactly what is served: every documented operation is
    // routed (an unknown id gets the handler's 404, never the router's), nothing else is.
    let (s, doc) = call("GET", &format!("{api}/openapi.json"), None);
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            // Signing out would revoke the token the rest of this test signs in with.
            if path == "/api/v1/auth/session" && method == "delete" {
                continue;
            }
            // The live list never ends by itself (its handler's own tests follow it).
            if path == "/api/v1/workstations/stream" {
                continue;
            }
            let url = format!("{}{}", server.base, path.replace("{id}", "wnosuchthing").replace("{action}", "start").replace("{tid}", "t1").replace("{user}", "nobody"));
            let body = (method == "post").then(|| json!({"name": "x", "argv": ["true"]}));
            let (status, v) = call(&method.to_uppercase(), &url, body);
            assert_ne!(v["error"]["message"], "no such route", "{method} {path} is documented but not routed");
            assert!(status < 500, "{method} {path}: {status} {v}");
        }
    }
    documented.sort();
    let mut served = vec![
        "DELETE /api/v1/auth/session",
        "DELETE /api/v1/tokens/{id}",
        "DELETE /api/v1/users/{id}",
        "DELETE /api/v1/workstations/{id}",
        "DELETE /api/v1/workstations/{id}/shares/{user}",
        "DELETE /api/v1/workstations/{id}/terminals/{tid}",
        "GET /api/v1/allowlist",
        "GET /api/v1/audit",
        "GET /api/v1/auth/methods",
        "GET /api/v1/auth/session",
        "GET /api/v1/health",
        "GET /api/v1/host",
        "GET /api/v1/tokens",
        "GET /api/v1/users",
        "GET /api/v1/users/{id}",
        "GET /api/v1/users/{id}/quota",
        "GET /api/v1/workstations",
        "GET /api/v1/workstations/stream",
        "GET /api/v1/workstations/{id}",
        "GET /api/v1/workstations/{id}/console",
        "GET /api/v1/workstations/{id}/console/stream",
        "GET /api/v1/workstations/{id}/events",
        "GET /api/v1/workstations/{id}/files",
        "GET /api/v1/workstations/{id}/shares",
        "GET /api/v1/workstations/{id}/terminals",
        "GET /api/v1/workstations/{id}/terminals/{tid}/ws",
        "GET /api/v1/workstations/{id}/terminals/{tid}/output",
        "GET /api/v1/workstations/{id}/terminals/{tid}/screen",
        "GET /auth/link",
        "GET /metrics",
        "PATCH /api/v1/users/{id}",
        "POST /api/v1/auth/hypha/check",
        "POST /api/v1/auth/hypha/start",
        "POST /api/v1/auth/session",
        "POST /api/v1/auth/token",
        "POST /api/v1/tokens",
        "POST /api/v1/users",
        "POST /api/v1/workstations",
        "POST /api/v1/workstations/{id}/exec",
        "POST /api/v1/workstations/{id}/terminals",
        "POST /api/v1/workstations/{id}/terminals/{tid}/input",
        "POST /api/v1/workstations/{id}/terminals/{tid}/resize",
        "POST /api/v1/workstations/{id}/{action}",
        "PUT /api/v1/allowlist",
        "PUT /api/v1/users/{id}/quota",
        "PUT /api/v1/workstations/{id}/shares/{user}",
        "PUT /api/v1/workstations/{id}/files",
    ];
    served.sort();
    assert_eq!(documented, served);
    assert_error(call("GET", &format!("{api}/nothing-here"), None), 404, "not_found", None);

    // Bad input: every refusal names its field; nothing is created.
    let create = |b: Value| call("POST", &ws_url, Some(b));
    assert_error(create(json!({"name": "a", "vcpu_count": 0})), 400, "invalid_field", Some("vcpu_count"));
    assert_error(create(json!({"name": "a", "vcpu_count": "two"})), 400, "invalid_field", Some("vcpu_count"));
    assert_error(create(json!({"name": "a", "mem_size_mib": 1_000_000_000})), 400, "invalid_field", Some("mem_size_mib"));
    assert_error(create(json!({"name": "a", "disk_size_gib": 0})), 400, "invalid_field", Some("disk_size_gib"));
    assert_error(create(json!({"name": "a", "bandwidth": {"rx_mbps": 0, "tx_mbps": 10}})), 400, "invalid_field", Some("bandwidth.rx_mbps"));
    assert_error(create(json!({"name": "a", "bandwidth": {"rx_mbps": 10, "tx_mbps": -5}})), 400, "invalid_field", Some("bandwidth.tx_mbps"));
    assert_error(create(json!({"name": "a", "bandwidth": {"rx_mbps": 10, "tx_mbps": 99_999_999}})), 400, "invalid_field", Some("bandwidth.tx_mbps"));
    assert_error(create(json!({"name": ""})), 400, "invalid_field", Some("name"));
    assert_error(create(json!({"name": "a", "recipe": "no-such-recipe"})), 400, "invalid_field", Some("recipe"));
    assert_error(create(json!({"name": "a", "vcpu_count": 3, "smt_enabled": true})), 400, "invalid_field", Some("smt_enabled"));
    assert_error(create(json!({"name": "a", "colour": "red"})), 400, "invalid_field", Some("colour"));
    assert_error(raw("POST", &ws_url, "application/json", b"{\"name\": "), 400, "bad_request", None);
    assert_error(raw("POST", &ws_url, "text/plain", b"name=a"), 415, "bad_request", None);
    assert_error(oversized(&server.base, "POST", "/api/v1/workstations", 2 << 20), 413, "payload_too_large", None);
    // Beyond the memory budget (half the box's memory): refused, with the reason.
    assert_error(create(json!({"name": "huge", "mem_size_mib": 16384})), 503, "over_capacity", None);
    let (s, e) = create(json!({"name": "roomy", "disk_size_gib": 60, "start": false}));
    assert!(s == 503 && e["error"]["message"].as_str().unwrap().contains("disk budget"), "{s} {e}");
    assert_eq!(call("GET", &ws_url, None).1["workstations"], json!([]));

    // Create (and boot), list, get.
    let (s, ws) = create(json!({"name": "Research", "vcpu_count": 2, "mem_size_mib": 512, "disk_size_gib": 1, "bandwidth": {"rx_mbps": 100, "tx_mbps": 50}}));
    assert_eq!(s, 201, "{ws}");
    assert_eq!((ws["state"].as_str(), ws["vcpu_count"].as_u64(), ws["bandwidth"]["tx_mbps"].as_u64()), (Some("running"), Some(2), Some(50)));
    let id = ws["id"].as_str().unwrap().to_string();
    let one = format!("{ws_url}/{id}");
    assert_eq!(call("GET", &ws_url, None).1["workstations"][0]["id"], id.as_str());
    assert_eq!(call("GET", &one, None).1["name"], "Research");
    // 2 vCPUs run; 8 more would pass the budget of 8.
    let (s, e) = create(json!({"name": "wide", "vcpu_count": 8, "mem_size_mib": 256}));
    assert!(s == 503 && e["error"]["message"].as_str().unwrap().contains("vCPU budget"), "{s} {e}");

    // Exec: the data-science environment as scientist; stdin; refusals.
    let exec = |b: Value| call("POST", &format!("{one}/exec"), Some(b));
    let (s, r) = exec(json!({"argv": ["python3", "-c", "import numpy, pandas, getpass; print(numpy.arange(4).sum(), getpass.getuser())"]}));
    let console = || call("GET", &format!("{one}/console?tail_bytes=3000"), None).1.as_str().unwrap_or_default().to_string();
    assert_eq!((s, r["exit_code"].as_i64(), r["stdout"].as_str()), (200, Some(0), Some("6 scientist\n")), "{r}\nconsole:\n{}", console());
    // The configured halt polling reaches the guest kernel (a 1 us window: next to no
    // polling; with a real one, guests in the box reset themselves far more often).
    let (_, r) = exec(json!({"argv": ["cat", "/sys/devices/system/cpu/cpuidle/current_governor_ro", "/sys/module/haltpoll/parameters/guest_halt_poll_ns"]}));
    assert_eq!(r["stdout"].as_str(), Some("haltpoll\n1000\n"), "{r}");
    let (_, r) = exec(json!({"argv": ["wc", "-c"], "stdin": "12345"}));
    assert_eq!(r["stdout"].as_str().map(str::trim), Some("5"));
    let (_, r) = exec(json!({"argv": ["sh", "-c", "echo oops >&2; exit 3"]}));
    assert_eq!((r["exit_code"].as_i64(), r["stderr"].as_str()), (Some(3), Some("oops\n")));
    let (_, r) = exec(json!({"argv": ["sleep", "30"], "timeout_secs": 1}));
    assert_eq!(r["timed_out"], true);
    assert_error(exec(json!({"argv": ["/no/such/binary"]})), 400, "invalid_field", Some("argv"));
    assert_error(exec(json!({"argv": []})), 400, "invalid_field", Some("argv"));
    assert_error(exec(json!({"argv": ["true"], "timeout_secs": 0})), 400, "invalid_field", Some("timeout_secs"));

    // Terminals over WebSocket.
    let terms = format!("{one}/terminals");
    assert_error(call("POST", &terms, Some(json!({"rows": 0}))), 400, "invalid_field", Some("rows"));
    let (s, t) = call("POST", &terms, Some(json!({"rows": 24, "cols": 80})));
    assert_eq!(s, 201, "{t}");
    let tid = t["id"].as_str().unwrap().to_string();
    let ws_url = format!("{}/{tid}/ws", terms.replace("http://", "ws://"));
    let mut a = Ws::connect(&ws_url);
    let mut viewer = Ws::connect(&format!("{ws_url}?mode=view"));
    assert_eq!((a.head["type"].as_str(), viewer.head["read_only"].as_bool()), (Some("attached"), Some(true)));
    a.keys("echo ws-$((6*7))\n");
    a.until("ws-42");
    viewer.until("ws-42");
    viewer.keys("echo from-viewer\n");
    a.keys("echo after-$((1+1))\n");
    a.until("after-2");
    assert!(!a.seen().contains("from-viewer"), "a view-only client typed: {}", a.seen());
    a.control(json!({"type": "resize", "rows": 30, "cols": 100}));
    a.keys("stty size\n");
    a.until("30 100");
    drop(a);
    // A reconnect gets the screen back, at its new size.
    let mut b = Ws::connect(&ws_url);
    assert_eq!((b.head["rows"].as_u64(), b.head["cols"].as_u64()), (Some(30), Some(100)));
    assert!(b.seen().contains("30 100") && b.seen().contains("ws-42"), "replay: {}", b.seen());
    b.control(json!({"type": "ping"}));
    b.until_text("pong");
    // An oversized message closes that connection only; the terminal and the server live on.
    b.send(tungstenite::Message::Binary(vec![b'x'; 200 << 10].into()));
    b.closed();
    let (_, list) = call("GET", &terms, None);
    assert_eq!(list["terminals"].as_array().unwrap().iter().filter(|t| t["id"] == tid.as_str()).count(), 1, "{list}");
    let mut c = Ws::connect(&ws_url);
    c.keys("echo still-$((3*3))\n");
    c.until("still-9");
    // A paste far larger than every buffer on the way: the server holds keystrokes back while
    // the agent's connection is full and writes them as it drains, every byte, in order.
    let paste: Vec<u8> = (0..3_000_000usize).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37]).collect();
    c.keys("stty raw -echo; echo paste-$((1+1)); head -c 3000000 > ~/paste.txt; stty sane; echo pasted-$((2*2))\n");
    c.until("paste-2");
    for chunk in paste.chunks(60 << 10) {
        c.send(tungstenite::Message::Binary(chunk.to_vec().into()));
    }
    c.until("pasted-4");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut common::authed(ureq::get(&format!("{one}/files?path=/home/scientist/paste.txt"))).call().unwrap().into_reader(), &mut got).unwrap();
    assert!(got == paste, "the terminal got {} bytes of the {} pasted, or not in order", got.len(), paste.len());
    drop((c, viewer));
    assert!(matches!(tungstenite::connect(common::ws_request(&format!("{}/nope/ws", terms.replace("http://", "ws://")))), Err(tungstenite::Error::Http(r)) if r.status() == 404));
    assert_eq!(call("DELETE", &format!("{terms}/{tid}"), None).0, 204);
    assert_error(call("DELETE", &format!("{terms}/{tid}"), None), 404, "not_found", None);
    // Its record stays, ended.
    let (_, list) = call("GET", &terms, None);
    let rec = list["terminals"].as_array().unwrap().iter().find(|t| t["id"] == tid.as_str()).cloned().unwrap_or_else(|| panic!("{list}"));
    assert!(rec["ended_unix_ms"].as_u64().is_some() && rec["exited"] == true, "{rec}");

    // Files up and down, streamed; uploads belong to the image's user.
    let files = format!("{one}/files");
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let put = common::authed(ureq::put(&format!("{files}?path=/home/scientist/up/data.bin"))).set("Content-Type", "application/octet-stream").send_bytes(&payload);
    assert_eq!(put.map(|r| r.status()).unwrap_or_else(|e| panic!("{e}")), 204);
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut common::authed(ureq::get(&format!("{files}?path=/home/scientist/up/data.bin"))).call().unwrap().into_reader(), &mut back).unwrap();
    assert!(back == payload, "downloaded {} bytes, not the {} uploaded", back.len(), payload.len());
    assert_eq!(exec(json!({"argv": ["stat", "-c", "%U %s", "/home/scientist/up/data.bin"]})).1["stdout"], "scientist 3000000\n");
    assert_error(call("GET", &format!("{files}?path=/home/scientist/missing"), None), 404, "not_found", None);
    assert_error(call("GET", &format!("{files}?path=relative"), None), 400, "invalid_field", Some("path"));
    assert_error(oversized(&server.base, "PUT", &format!("/api/v1/workstations/{id}/files?path=/tmp/x"), 3 << 30), 413, "payload_too_large", None);

    // Serial console and events.
    let (s, console) = call("GET", &format!("{one}/console?tail_bytes=100000"), None);
    assert!(s == 200 && console.as_str().unwrap().contains("hearth-agent: ready"), "{console}");
    assert_error(call("GET", &format!("{one}/console?tail_bytes=99999999"), None), 400, "invalid_field", Some("tail_bytes"));
    // Followed: the tail first, then what the guest prints, as it prints it; followers are counted.
    let follow = format!("{one}/console/stream?tail_bytes=100000");
    let mut f1 = Sse::open(&follow);
    f1.until("hearth-agent: ready");
    let _f2 = Sse::open(&follow);
    assert_error(call("GET", &follow, None), 503, "too_many_followers", None);
    assert_error(call("GET", &format!("{one}/console/stream?tail_bytes=99999999"), None), 400, "invalid_field", Some("tail_bytes"));
    let (s, r) = exec(json!({"argv": ["sh", "-c", "echo '<1>console-marker-'$((40+2)) > /dev/kmsg"], "user": "root"}));
    assert_eq!((s, r["exit_code"].as_i64()), (200, Some(0)), "{r}");
    f1.until("console-marker-42");

    // Lifecycle actions and the conflicts between them.
    let act = |a: &str| call("POST", &format!("{one}/{a}"), Some(json!({})));
    assert_eq!(act("pause").1["state"], "paused");
    assert_error(act("pause"), 409, "conflict", None);
    assert_eq!(act("resume").1["state"], "running");
    assert_error(act("start"), 409, "conflict", None);
    assert_error(act("explode"), 404, "not_found", None);
    assert_eq!(exec(json!({"argv": ["sh", "-c", "echo kept > ~/notes"]})).0, 200);
    let lost = call("POST", &terms, Some(json!({}))).1["id"].as_str().unwrap().to_string();
    assert_eq!(act("stop").1["state"], "stopped");
    // A stopped workstation runs no terminals; the record of the one it had says it ended.
    let (s, list) = call("GET", &terms, None);
    let rec = list["terminals"].as_array().unwrap().iter().find(|t| t["id"] == lost.as_str()).cloned().unwrap_or_else(|| panic!("{s} {list}"));
    assert!(s == 200 && rec["ended_unix_ms"].as_u64().is_some(), "{rec}");
    assert_eq!(act("start").1["state"], "running");
    assert_eq!(act("restart").1["state"], "running");
    assert_eq!(exec(json!({"argv": ["cat", "/home/scientist/notes"]})).1["stdout"], "kept\n");
    let (_, ev) = call("GET", &format!("{one}/events"), None);
    let kinds: Vec<&str> = ev["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "started", "terminal_opened", "terminal_closed", "paused", "resumed", "terminal_opened", "stopped", "started", "stopped", "started"]);
    assert_error(call("GET", &format!("{one}/events?limit=0"), None), 400, "invalid_field", Some("limit"));

    let terms = format!("{one}/terminals");
    let ws_base = terms.replace("http://", "ws://");

    // A terminal with output flowing, the server killed with SIGKILL, started again: the
    // workstation still runs, the session is alive with its scrollback, nothing is lost.
    let (_, ticker) = call("POST", &terms, Some(json!({"argv": ["sh", "-c", "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.05; done"]})));
    let ticker = ticker["id"].as_str().unwrap_or_else(|| panic!("{ticker}\n{}", call("GET", &one, None).1)).to_string();
    let mut watch = Ws::connect(&format!("{ws_base}/{ticker}/ws"));
    watch.until("tick-20");
    let events_before = call("GET", &format!("{one}/events"), None).1["events"].as_array().unwrap().len();
    drop(server);
    let server = common::serve_in_box_with(&data, &env);
    let one = format!("{}/api/v1/workstations/{id}", server.base);
    assert_eq!(call("GET", &one, None).1["state"], "running");
    assert_eq!(call("POST", &format!("{one}/exec"), Some(json!({"argv": ["cat", "/home/scientist/notes"]}))).1["stdout"], "kept\n");
    assert_eq!(call("GET", &format!("{one}/events"), None).1["events"].as_array().unwrap().len(), events_before);
    let mut again = Ws::connect(&format!("{}/terminals/{ticker}/ws", one.replace("http://", "ws://")));
    let replay = again.seen();
    let last = |s: &str| s.rsplit("tick-").next().and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()).unwrap();
    let at_attach = last(&replay);
    assert!(at_attach >= 20 && replay.contains(&format!("tick-{}", at_attach - 5)), "scrollback lost: {replay}");
    again.until(&format!("tick-{}", at_attach + 10));
    drop(watch);

    // SIGTERM with a terminal attached and the console followed: the streams end, the server
    // stops, the workstation runs on.
    let mut f3 = Sse::open(&format!("{one}/console/stream"));
    terminate(server);
    f3.until_end();
    again.closed();
    let server = common::serve_in_box_with(&data, &env);
    let one = format!("{}/api/v1/workstations/{id}", server.base);
    assert_eq!(call("GET", &one, None).1["state"], "running");

    // Its Firecracker killed behind the server's back, twice: once as found running when the
    // server started, once as booted by it. The list (which reads only the store) says so by
    // itself, with the event; nothing asked about this workstation in between.
    let list_url = format!("{}/api/v1/workstations", server.base);
    for (crashes, round) in [(1, "found at start"), (2, "booted by the server")] {
        let pid_file = data.join("workstations").join(&id).join("vm/firecracker.pid");
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let listed = loop {
            let listed = call("GET", &list_url, None).1["workstations"][0].clone();
            if listed["state"] == "crashed" || std::time::Instant::now() > deadline {
                break listed;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(listed["state"], "crashed", "{round}: {listed}");
        assert!(listed["crash"].as_str().is_some_and(|c| c.contains("exited without being stopped")), "{round}: {listed}");
        let events = call("GET", &format!("{one}/events"), None).1;
        assert_eq!(events["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "crashed").count(), crashes, "{events}");
        if crashes == 1 {
            let (s, started) = call("POST", &format!("{one}/start"), None);
            assert_eq!((s, started["state"].as_str()), (200, Some("running")), "{started}");
        }
    }
    let mut f4 = Sse::open(&format!("{one}/console/stream"));

    // Unknown ids, then delete.
    let nope = format!("{}/api/v1/workstations/wnope", server.base);
    assert_error(call("GET", &nope, None), 404, "not_found", None);
    assert_error(call("DELETE", &nope, None), 404, "not_found", None);
    assert_error(call("POST", &format!("{nope}/exec"), Some(json!({"argv": ["true"]}))), 404, "not_found", None);
    assert_eq!(call("DELETE", &one, None).0, 204);
    assert_error(call("GET", &one, None), 404, "not_found", None);
    f4.until_end();
    assert_eq!(call("GET", &format!("{}/api/v1/workstations", server.base), None).1["workstations"], json!([]));
    assert!(!data.join("workstations").join(&id).exists());
    assert_eq!(call("GET", &format!("{}/api/v1/health", server.base), None).1["workstations"], 0);
    drop(server);
    std::fs::remove_dir_all(&data).unwrap();
}

/// Round trips of a keystroke through `ws` (type a marker, wait for its echo), in ms, sorted.
fn echo_ms(ws: &mut Ws, n: usize, tag: &str) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|i| {
            let t = std::time::Instant::now();
            ws.keys(&format!("echo {tag}-{i}-$((1+{i}))\n"));
            ws.until(&format!("{tag}-{i}-{}", i + 1));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Prints a workstation's post-mortem when the test fails while it is held: the guest
/// console (an agent that restarted says so there) and Firecracker's own log.
struct PostMortem {
    api: String,
    id: String,
    data: std::path::PathBuf,
}

impl Drop for PostMortem {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // What the agent says of the failure may take a moment to reach the console.
        std::thread::sleep(Duration::from_secs(2));
        let (_, console) = call("GET", &format!("{}/workstations/{}/console?tail_bytes=6000", self.api, self.id), None);
        eprintln!("--- post-mortem of {}: console ---\n{}", self.id, console.as_str().unwrap_or_default());
        let mut logs = Vec::new();
        common::firecracker_logs(&self.data, &mut logs);
        for log in logs {
            eprintln!("--- {} ---\n{}", log.display(), std::fs::read_to_string(&log).unwrap_or_default());
        }
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Abusive clients — a terminal flooded at a client that never reads, 500 connections opened
/// and dropped (bare, mid-request, mid-upgrade) — get clear treatment, and another client's
/// terminal keeps working throughout (its echo round trips are measured and printed).
#[test]
fn abusive_clients_leave_other_terminals_working() {
    if common::delegated_to_box("abusive_clients_leave_other_terminals_working") {
        return;
    }
    use std::io::Write;
    let data = std::path::PathBuf::from(std::env::var("HEARTH_DATA_DIR").unwrap()).join(format!("abuse-{}", std::process::id()));
    let server = common::serve_in_box(&data);
    let api = format!("{}/api/v1", server.base);
    let (s, ws) = call("POST", &format!("{api}/workstations"), Some(json!({"name": "shared", "vcpu_count": 2, "mem_size_mib": 512, "disk_size_gib": 1})));
    assert_eq!(s, 201, "{ws}");
    let one = format!("{api}/workstations/{}", ws["id"].as_str().unwrap());
    let _post_mortem = PostMortem { api: api.clone(), id: ws["id"].as_str().unwrap().to_string(), data: data.clone() };
    let terms = format!("{one}/terminals");
    let open = || {
        let (s, t) = call("POST", &terms, Some(json!({})));
        // The guest's console says whether its agent restarted (a crash) if this fails.
        assert_eq!(s, 201, "{t}\nconsole:\n{}", call("GET", &format!("{one}/console?tail_bytes=4000"), None).1);
        format!("{}/{}/ws", terms.replace("http://", "ws://"), t["id"].as_str().unwrap())
    };
    let (quiet_url, flood_url) = (open(), open());
    let mut user = Ws::connect(&quiet_url);
    let calm = echo_ms(&mut user, 30, "calm");

    let started = std::time::Instant::now();
    let phase = |what: &str| eprintln!("abuse: {what} at {:.1} s", started.elapsed().as_secs_f64());
    // A client attaches to the other terminal, starts a flood (~11 MB) and never reads again.
    let mut hog = Ws::connect(&flood_url);
    hog.keys("seq 1500000; echo flood-$((5*5))\n");
    let during = echo_ms(&mut user, 30, "busy");
    phase("echo during the flood measured");
    // The flooded shell was never stalled by its client: the flood ends.
    let wait = json!({"argv": ["sh", "-c", "sleep 1; while pgrep -x seq >/dev/null; do sleep 0.5; done"], "timeout_secs": 1200});
    let (s, r) = call("POST", &format!("{api}/workstations/{}/exec", ws["id"].as_str().unwrap()), Some(wait));
    // Should this fail, the post-mortem prints the guest console and Firecracker's logs.
    assert_eq!((s, r["exit_code"].as_i64()), (200, Some(0)), "{r}");
    phase("flood over");
    // A new client of that terminal gets its screen, flood's end included.
    let mut watcher = Ws::connect(&flood_url);
    watcher.until("flood-25");
    // The server gave up on the hog (told it `lagged`, or stopped sending after its send
    // deadline), or, if its buffers absorbed the flood, it reads the rest until its timeout.
    let mut told = false;
    loop {
        match hog.sock.read() {
            Ok(tungstenite::Message::Text(t)) if t.contains("lagged") => told = true,
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    phase(&format!("hog done (told lagged: {told})"));
    watcher.keys("echo alive-$((3*4))\n");
    watcher.until("alive-12");

    // 500 connections opened and dropped, in three ways, while the user keeps typing.
    let addr = server.base.trim_start_matches("http://").to_string();
    let fds_before = open_fds(server.child.id());
    for i in 0..500 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        match i % 3 {
            0 => {}
            1 => {
                let _ = c.write_all(b"POST /api/v1/workstations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na");
            }
            _ => {
                let _ = write!(c, "GET {}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", flood_url.split_once(&addr).unwrap().1.trim_end_matches("/ws"));
            }
        }
        drop(c);
        if i % 50 == 0 {
            user.keys(&format!("echo still-{i}-$((0+{i}))\n"));
            user.until(&format!("still-{i}-{i}"));
        }
    }
    phase("500 connections dropped");
    let after = echo_ms(&mut user, 30, "after");
    let (s, h) = call("GET", &format!("{api}/health"), None);
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    // Nothing those connections opened is kept (a few may still be closing).
    let mut fds_after = open_fds(server.child.id());
    for _ in 0..100 {
        if fds_after <= fds_before + 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        fds_after = open_fds(server.child.id());
    }
    assert!(fds_after <= fds_before + 8, "the server holds {fds_after} fds, {fds_before} before the 500 connections");
    let p = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    for (what, v) in [("calm", &calm), ("during the flood", &during), ("after 500 dropped connections", &after)] {
        println!("echo round trip {what}: p50 {:.2} ms, max {:.2} ms (n={})", p(v, 0.5), p(v, 1.0), v.len());
    }
    drop((user, watcher));
    assert_eq!(call("DELETE", &format!("{api}/workstations/{}", ws["id"].as_str().unwrap()), None).0, 204);
    drop(server);
    std::fs::remove_dir_all(&data).unwrap();
}
