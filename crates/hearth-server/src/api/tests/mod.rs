//! Every route's success and error paths, through the router as a client sends them, over
//! the service with a fake backend (hearth_service::testing): no Firecracker, no box, no
//! root; commands, files and terminals run in the real agent server on this host.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use hearth_service::config::Config;
use hearth_service::testing::service;
use hearth_service::Need;

mod authz;

struct Api {
    _dir: tempfile::TempDir,
    router: axum::Router,
    svc: super::SharedService,
    backend: std::sync::Arc<hearth_service::testing::FakeBackend>,
    /// The administrator token the server made at its first start: what requests carry
    /// unless they bring a credential of their own.
    token: String,
}

fn api_with(config: Config, budget: Need) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let (svc, backend) = service(dir.path(), config, budget);
    let boot = svc.bootstrap(dir.path(), None).unwrap();
    let token = std::fs::read_to_string(boot.admin_token_file).unwrap().trim().to_string();
    Api { _dir: dir, router: super::router(svc.clone()), svc, backend, token }
}

fn api() -> Api {
    api_with(Config::default(), Need { mem_mib: 8192, vcpus: 64, disk_gib: 64 })
}

impl Api {
    /// `req` with the administrator's token, unless it brings a credential of its own.
    fn authed(&self, mut req: Request<Body>) -> Request<Body> {
        let h = req.headers_mut();
        if !h.contains_key(header::AUTHORIZATION) && !h.contains_key(header::COOKIE) {
            h.insert(header::AUTHORIZATION, format!("Bearer {}", self.token).parse().unwrap());
        }
        req
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
        let resp = self.router.clone().oneshot(self.authed(req)).await.unwrap();
        let status = resp.status();
        let ctype = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, ctype, body)
    }

    /// A JSON request (or none) and the JSON (or text) answer.
    async fn call(&self, method: Method, uri: impl Into<String>, body: Option<Value>) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(uri.into());
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&b).unwrap())
            }
            None => Body::empty(),
        };
        let (status, _, bytes) = self.send(req.body(body).unwrap()).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status.as_u16(), serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The router on a loopback port (WebSocket upgrades need a real connection); the
    /// server's task, to abort at the end.
    async fn serve_on_loopback(&self) -> (std::net::SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router.clone();
        (addr, tokio::spawn(async move { axum::serve(listener, router).await }))
    }

    /// A running workstation named `name` with a shell terminal: their ids.
    async fn with_terminal(&self, name: &str) -> (String, String) {
        let id = self.create(json!({"name": name})).await["id"].as_str().unwrap().to_string();
        let (_, t) = self.call(Method::POST, &format!("/api/v1/workstations/{id}/terminals"), Some(json!({"argv": ["sh"]}))).await;
        (id, t["id"].as_str().unwrap().to_string())
    }

    async fn create(&self, body: Value) -> Value {
        let (s, w) = self.call(Method::POST, "/api/v1/workstations", Some(body)).await;
        assert_eq!(s, 201, "{w}");
        w
    }
}

/// An error answer: its status, code and field, in the API's JSON shape.
#[track_caller]
fn error(got: (u16, Value), status: u16, code: &str, field: Option<&str>) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
    assert_eq!(got.1["error"]["field"].as_str(), field, "{}", got.1);
}

#[tokio::test]
async fn health_the_document_and_unknown_routes() {
    let api = api();
    let (s, h) = api.call(Method::GET, "/api/v1/health", None).await;
    assert_eq!((s, h["status"].as_str(), h["workstations"].as_u64()), (200, Some("ok"), Some(0)));
    let (s, doc) = api.call(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!((s, doc["info"]["title"].as_str()), (200, Some("hearth")));
    error(api.call(Method::GET, "/api/v1/nothing-here", None).await, 404, "not_found", None);
}

#[tokio::test]
async fn workstations_are_created_listed_got_and_deleted() {
    let api = api();
    let w = api.create(json!({"name": "first", "mem_size_mib": 512, "bandwidth": {"rx_mbps": 5, "tx_mbps": 6}})).await;
    let id = w["id"].as_str().unwrap();
    assert_eq!((w["state"].as_str(), w["owner"].as_str(), w["recipe"].as_str(), w["bandwidth"]["tx_mbps"].as_u64()), (Some("running"), Some("admin"), Some("test"), Some(6)));
    let (s, l) = api.call(Method::GET, "/api/v1/workstations", None).await;
    assert_eq!((s, l["workstations"][0]["id"].as_str()), (200, Some(id)));
    let (s, one) = api.call(Method::GET, &format!("/api/v1/workstations/{id}"), None).await;
    assert_eq!((s, one["name"].as_str()), (200, Some("first")));
    let (s, _) = api.call(Method::DELETE, &format!("/api/v1/workstations/{id}"), None).await;
    assert_eq!(s, 204);
    error(api.call(Method::GET, &format!("/api/v1/workstations/{id}"), None).await, 404, "not_found", None);
    error(api.call(Method::DELETE, &format!("/api/v1/workstations/{id}"), None).await, 404, "not_found", None);
}

#[tokio::test]
async fn creates_are_refused_with_the_field_or_the_reason() {
    let api = api();
    let bad = |body: Value| api.call(Method::POST, "/api/v1/workstations", Some(body));
    error(bad(json!({"name": "a", "vcpu_count": 0})).await, 400, "invalid_field", Some("vcpu_count"));
    error(bad(json!({"name": "a", "vcpu_count": "two"})).await, 400, "invalid_field", Some("vcpu_count"));
    error(bad(json!({"name": "a", "mem_size_mib": 4})).await, 400, "invalid_field", Some("mem_size_mib"));
    error(bad(json!({"name": "a", "disk_size_gib": 0})).await, 400, "invalid_field", Some("disk_size_gib"));
    error(bad(json!({"name": "a", "bandwidth": {"rx_mbps": 0, "tx_mbps": 1}})).await, 400, "invalid_field", Some("bandwidth.rx_mbps"));
    error(bad(json!({"name": ""})).await, 400, "invalid_field", Some("name"));
    error(bad(json!({"name": "a", "recipe": "no-such"})).await, 400, "invalid_field", Some("recipe"));
    error(bad(json!({"name": "a", "recipe": "../x"})).await, 400, "invalid_field", Some("recipe"));
    error(bad(json!({"name": "a", "vcpu_count": 3, "smt_enabled": true})).await, 400, "invalid_field", Some("smt_enabled"));
    error(bad(json!({"name": "a", "egress": "nat"})).await, 400, "invalid_field", Some("egress"));
    error(bad(json!({"name": "a", "colour": "red"})).await, 400, "invalid_field", Some("colour"));
    error(bad(json!({"name": "big", "mem_size_mib": 16384})).await, 503, "over_capacity", None);
    let raw = |ctype: &'static str, body: &'static [u8]| {
        Request::builder().method(Method::POST).uri("/api/v1/workstations").header(header::CONTENT_TYPE, ctype).body(Body::from(body)).unwrap()
    };
    let (s, ctype, _) = api.send(raw("application/json", b"{\"name\": ")).await;
    assert_eq!((s, ctype.as_deref()), (StatusCode::BAD_REQUEST, Some("application/json")));
    let (s, _, body) = api.send(raw("text/plain", b"name=a")).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", String::from_utf8_lossy(&body));
    let huge = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/workstations")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, 2 << 20)
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing was made by any of them.
    assert_eq!(api.call(Method::GET, "/api/v1/workstations", None).await.1["workstations"], json!([]));
    // The server's limit on how many exist.
    let mut config = Config::default();
    config.limits.max_workstations = 1;
    let one = api_with(config, Need { mem_mib: 8192, vcpus: 64, disk_gib: 64 });
    one.create(json!({"name": "a", "start": false})).await;
    error(one.call(Method::POST, "/api/v1/workstations", Some(json!({"name": "b"}))).await, 409, "conflict", None);
}

#[tokio::test]
async fn lifecycle_actions_and_their_refusals() {
    let api = api_with(Config::default(), Need { mem_mib: 1024, vcpus: 64, disk_gib: 64 });
    let id = api.create(json!({"name": "a", "mem_size_mib": 512})).await["id"].as_str().unwrap().to_string();
    let act = |a: &str| api.call(Method::POST, format!("/api/v1/workstations/{id}/{a}"), None);
    assert_eq!(act("pause").await.1["state"], "paused");
    error(act("pause").await, 409, "conflict", None);
    assert_eq!(act("resume").await.1["state"], "running");
    error(act("start").await, 409, "conflict", None);
    assert_eq!(act("hibernate").await.1["state"], "hibernated");
    error(act("hibernate").await, 409, "conflict", None);
    // An exec wakes it.
    let (s, r) = api.call(Method::POST, format!("/api/v1/workstations/{id}/exec"), Some(json!({"argv": ["true"]}))).await;
    assert_eq!((s, r["exit_code"].as_i64()), (200, Some(0)), "{r}");
    assert_eq!(api.call(Method::GET, format!("/api/v1/workstations/{id}"), None).await.1["state"], "running");
    assert_eq!(act("restart").await.1["state"], "running");
    assert_eq!(act("stop").await.1["state"], "stopped");
    error(act("resume").await, 409, "conflict", None);
    error(act("explode").await, 404, "not_found", None);
    // Over budget: another workstation holds the room this one needs to start.
    api.create(json!({"name": "b", "mem_size_mib": 1024})).await;
    error(act("start").await, 503, "over_capacity", None);
    error(api.call(Method::POST, "/api/v1/workstations/w000000000000/start", None).await, 404, "not_found", None);
    let kinds: Vec<String> = api.call(Method::GET, &format!("/api/v1/workstations/{id}/events"), None).await.1["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["created", "started", "paused", "resumed", "hibernated", "woken", "stopped", "started", "stopped"]);
    let (s, last) = api.call(Method::GET, &format!("/api/v1/workstations/{id}/events?limit=1"), None).await;
    assert_eq!((s, last["events"].as_array().unwrap().len()), (200, 1));
    error(api.call(Method::GET, &format!("/api/v1/workstations/{id}/events?limit=0"), None).await, 400, "invalid_field", Some("limit"));
    error(api.call(Method::GET, "/api/v1/workstations/w000000000000/events", None).await, 404, "not_found", None);
}

#[tokio::test]
async fn exec_runs_commands_and_names_what_is_wrong() {
    let api = api();
    let id = api.create(json!({"name": "a"})).await["id"].as_str().unwrap().to_string();
    let exec = |body: Value| api.call(Method::POST, format!("/api/v1/workstations/{id}/exec"), Some(body));
    let (s, r) = exec(json!({"argv": ["sh", "-c", "read x; echo got $x; echo oops >&2; exit 3"], "stdin": "it\n"})).await;
    assert_eq!((s, r["exit_code"].as_i64(), r["stdout"].as_str(), r["stderr"].as_str()), (200, Some(3), Some("got it\n"), Some("oops\n")));
    error(exec(json!({"argv": []})).await, 400, "invalid_field", Some("argv"));
    error(exec(json!({"argv": ["/no/such/binary"]})).await, 400, "invalid_field", Some("argv"));
    error(exec(json!({"argv": ["true"], "timeout_secs": 0})).await, 400, "invalid_field", Some("timeout_secs"));
    error(api.call(Method::POST, "/api/v1/workstations/w000000000000/exec", Some(json!({"argv": ["true"]}))).await, 404, "not_found", None);
    api.call(Method::POST, &format!("/api/v1/workstations/{id}/stop"), None).await;
    error(exec(json!({"argv": ["true"]})).await, 409, "conflict", None);
}

#[tokio::test]
async fn the_console_tail_and_follow() {
    let api = api();
    let id = api.create(json!({"name": "a"})).await["id"].as_str().unwrap().to_string();
    let get = Request::builder().uri(format!("/api/v1/workstations/{id}/console")).body(Body::empty()).unwrap();
    let (s, ctype, body) = api.send(get).await;
    assert_eq!((s, ctype.as_deref()), (StatusCode::OK, Some("text/plain; charset=utf-8")));
    assert!(String::from_utf8_lossy(&body).contains("booted"));
    let (_, two) = api.call(Method::GET, &format!("/api/v1/workstations/{id}/console?tail_bytes=2"), None).await;
    assert_eq!(two, json!("d\n"));
    error(api.call(Method::GET, &format!("/api/v1/workstations/{id}/console?tail_bytes=99999999"), None).await, 400, "invalid_field", Some("tail_bytes"));
    error(api.call(Method::GET, "/api/v1/workstations/w000000000000/console", None).await, 404, "not_found", None);
    // A follow: the tail, then (once the server stops) its end.
    let follow = Request::builder().uri(format!("/api/v1/workstations/{id}/console/stream")).body(Body::empty()).unwrap();
    let resp = api.router.clone().oneshot(api.authed(follow)).await.unwrap();
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.starts_with("event: output\ndata: {\"text\":\"[fake]"), "{first}");
    api.svc.begin_stopping();
    let mut rest = String::new();
    while let Some(frame) = body.frame().await {
        rest.push_str(&String::from_utf8_lossy(&frame.unwrap().into_data().unwrap()));
    }
    assert!(rest.contains("event: end\ndata: {\"reason\":\"server_stopping\"}"), "{rest}");
    error(api.call(Method::GET, &format!("/api/v1/workstations/{id}/console/stream?tail_bytes=99999999"), None).await, 400, "invalid_field", Some("tail_bytes"));
    let mut config = Config::default();
    config.limits.max_console_followers = 0;
    let none = api_with(config, Need { mem_mib: 8192, vcpus: 64, disk_gib: 64 });
    let id = none.create(json!({"name": "a"})).await["id"].as_str().unwrap().to_string();
    error(none.call(Method::GET, &format!("/api/v1/workstations/{id}/console/stream"), None).await, 503, "too_many_followers", None);
}

#[tokio::test]
async fn the_workstation_list_is_followed_live() {
    let api = api();
    let follow = Request::builder().uri("/api/v1/workstations/stream").body(Body::empty()).unwrap();
    let resp = api.router.clone().oneshot(api.authed(follow)).await.unwrap();
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let mut next = async || String::from_utf8_lossy(&body.frame().await.unwrap().unwrap().into_data().unwrap()).into_owned();
    assert_eq!(next().await, "event: workstations\ndata: {\"workstations\":[]}\n\n");
    let id = api.create(json!({"name": "live"})).await["id"].as_str().unwrap().to_string();
    let listed = next().await;
    let data: Value = serde_json::from_str(listed.strip_prefix("event: workstations\ndata: ").unwrap().trim()).unwrap();
    assert_eq!((data["workstations"][0]["id"].as_str(), data["workstations"][0]["state"].as_str()), (Some(id.as_str()), Some("running")), "{listed}");
    api.svc.begin_stopping();
    assert_eq!(next().await, "event: end\ndata: {\"reason\":\"server_stopping\"}\n\n");
}

#[tokio::test]
async fn the_web_ui_is_served_with_its_assets_and_headers() {
    let api = api();
    let get = |uri: &str, gzip: bool| {
        let mut r = Request::builder().uri(uri).header(header::COOKIE, "none=1");
        if gzip {
            r = r.header(header::ACCEPT_ENCODING, "br, gzip;q=0.8");
        }
        let router = api.router.clone();
        let req = r.body(Body::empty()).unwrap();
        async move { router.oneshot(req).await.unwrap() }
    };
    // The page, at every path the page shows a view for, signed in or not.
    for path in ["/", "/w/w0123456789ab", "/w/w0123456789ab/t/t0123456789abcdef", "/admin"] {
        let resp = get(path, false).await;
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert!(h[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'self'"));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("<div id=\"app\">"));
    }
    // Its script, by the name the page gives it: cacheable for good, gzipped when asked.
    let page = String::from_utf8(get("/", false).await.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let script = page.split('"').find(|s| s.starts_with("/assets/") && s.ends_with(".js")).unwrap().to_string();
    let plain = get(&script, false).await;
    assert_eq!(plain.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    let plain = plain.into_body().collect().await.unwrap().to_bytes();
    let zipped = get(&script, true).await;
    assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(zipped.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    let zipped = zipped.into_body().collect().await.unwrap().to_bytes();
    assert!(zipped.len() < plain.len() / 2, "{} gzipped of {}", zipped.len(), plain.len());
    // What is not there is the API's JSON 404, and the API's own paths stay the API's.
    let (s, body) = api.call(Method::GET, "/assets/app-OLD.js", None).await;
    assert_eq!((s, body["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(api.call(Method::GET, "/nothing-here", None).await.0, 404);
    // A foreign Host is refused for the page as for the API (DNS rebinding).
    let req = Request::builder().uri("/").header(header::HOST, "evil.example").body(Body::empty()).unwrap();
    assert_eq!(api.router.clone().oneshot(req).await.unwrap().status(), 403);
}

#[tokio::test]
async fn the_sign_in_methods_say_whether_hypha_is_offered() {
    let (s, m) = api().call(Method::GET, "/api/v1/auth/methods", None).await;
    assert_eq!((s, m), (200, json!({"password": true, "hypha_server": null})));
    let mut config = Config::default();
    config.hypha.server_url = "https://hypha.example.org".into();
    let api = api_with(config, Need { mem_mib: 8192, vcpus: 64, disk_gib: 64 });
    let req = Request::builder().uri("/api/v1/auth/methods").header(header::COOKIE, "none=1").body(Body::empty()).unwrap();
    let (s, _, body) = api.send(req).await;
    assert_eq!(s, 200, "public: no credential needed");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["hypha_server"], "https://hypha.example.org");
}

#[tokio::test]
async fn metrics_say_what_runs_how_long_it_took_and_what_was_refused() {
    let api = api();
    let a = api.create(json!({"name": "a", "vcpu_count": 2, "mem_size_mib": 1024})).await["id"].as_str().unwrap().to_string();
    let b = api.create(json!({"name": "b", "mem_size_mib": 512})).await["id"].as_str().unwrap().to_string();
    api.backend.cpu.lock().unwrap().insert(a.clone(), std::time::Duration::from_millis(2500));
    assert_eq!(api.call(Method::POST, format!("/api/v1/workstations/{b}/hibernate"), None).await.0, 200);
    assert_eq!(api.call(Method::POST, format!("/api/v1/workstations/{b}/start"), None).await.0, 200);
    assert_eq!(api.call(Method::POST, format!("/api/v1/workstations/{b}/start"), None).await.0, 409);
    let (s, ctype, body) = api.send(Request::builder().uri("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(s, 200, "{text}");
    assert!(ctype.unwrap().starts_with("application/openmetrics-text"));
    for line in [
        "hearth_workstations{state=\"running\"} 2",
        "hearth_workstations{state=\"hibernated\"} 0",
        "hearth_workstation_ready_seconds_count{path=\"cold\"} 2",
        "hearth_workstation_ready_seconds_count{path=\"wake\"} 1",
        "hearth_workstation_hibernate_seconds_count 1",
        "hearth_host_in_use{resource=\"memory_mib\"} 1536",
        "hearth_host_budget{resource=\"vcpus\"} 64",
        &format!("hearth_workstation_vmm_cpu_seconds{{workstation=\"{a}\"}} 2.5"),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // Refusals are counted process-wide (other tests add theirs): at least this one.
    let conflicts = text.lines().find_map(|l| l.strip_prefix("hearth_api_errors_total{code=\"conflict\"} ")).and_then(|n| n.parse::<u64>().ok());
    assert!(conflicts.is_some_and(|n| n >= 1), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn the_host_says_what_its_workstations_hold_of_its_budget() {
    let api = api();
    api.create(json!({"name": "a", "vcpu_count": 2, "mem_size_mib": 1024, "disk_size_gib": 3})).await;
    api.create(json!({"name": "b", "vcpu_count": 1, "mem_size_mib": 512, "disk_size_gib": 2, "start": false})).await;
    let (s, host) = api.call(Method::GET, "/api/v1/host", None).await;
    assert_eq!(s, 200, "{host}");
    assert_eq!(host["budget"], json!({"mem_mib": 8192, "vcpus": 64, "disk_gib": 64}));
    // The stopped one holds its disk only.
    assert_eq!(host["in_use"], json!({"mem_mib": 1024, "vcpus": 2, "disk_gib": 5}));
    assert_eq!(host["workstations"], json!({"running": 1, "stopped": 1}));
}

#[tokio::test]
async fn terminals_are_opened_listed_and_closed() {
    let api = api();
    let id = api.create(json!({"name": "a"})).await["id"].as_str().unwrap().to_string();
    let terms = format!("/api/v1/workstations/{id}/terminals");
    let (s, t) = api.call(Method::POST, &terms, Some(json!({"rows": 30, "cols": 100, "argv": ["sh"]}))).await;
    assert_eq!((s, t["rows"].as_u64(), t["cols"].as_u64(), t["exited"].as_bool()), (201, Some(30), Some(100), Some(false)), "{t}");
    let tid = t["id"].as_str().unwrap().to_string();
    let (s, l) = api.call(Method::GET, &terms, None).await;
    assert_eq!((s, l["terminals"][0]["id"].as_str()), (200, Some(tid.as_str())));
    error(api.call(Method::POST, &terms, Some(json!({"rows": 0}))).await, 400, "invalid_field", Some("rows"));
    error(api.call(Method::POST, &terms, Some(json!({"cols": 5000}))).await, 400, "invalid_field", Some("cols"));
    error(api.call(Method::POST, "/api/v1/workstations/w000000000000/terminals", Some(json!({}))).await, 404, "not_found", None);
    let (s, _) = api.call(Method::DELETE, &format!("{terms}/{tid}"), None).await;
    assert_eq!(s, 204);
    error(api.call(Method::DELETE, &format!("{terms}/{tid}"), None).await, 404, "not_found", None);
    let (_, l) = api.call(Method::GET, &terms, None).await;
    assert_eq!((l["terminals"][0]["id"].as_str(), l["terminals"][0]["ended_unix_ms"].is_u64()), (Some(tid.as_str()), true));
    api.call(Method::POST, &format!("/api/v1/workstations/{id}/stop"), None).await;
    error(api.call(Method::POST, &terms, Some(json!({}))).await, 409, "conflict", None);
    assert_eq!(api.call(Method::GET, &terms, None).await.0, 200, "a stopped workstation lists its ended terminals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_polls_types_reads_the_output_and_the_screen_and_resizes() {
    let api = api();
    let (id, tid) = api.with_terminal("p").await;
    let t = format!("/api/v1/workstations/{id}/terminals/{tid}");
    // Reads output from where the last one ended until `want` came; the offset after it.
    let read_until = |mut after: u64, want: &'static str| {
        let (api, t) = (&api, t.clone());
        async move {
            let mut seen = String::new();
            for _ in 0..100 {
                let (s, o) = api.call(Method::GET, format!("{t}/output?after={after}&wait_ms=200"), None).await;
                assert_eq!((s, o["start"].as_u64()), (200, Some(after)), "{o}");
                seen += o["data"].as_str().unwrap();
                after = o["next"].as_u64().unwrap();
                if seen.contains(want) {
                    return (seen, after);
                }
            }
            panic!("no {want:?} in {seen:?}")
        }
    };
    let (_, at) = read_until(0, "$ ").await;
    let (s, _) = api.call(Method::POST, format!("{t}/input"), Some(json!({"data": "echo poll-$((6*7)) €\n"}))).await;
    assert_eq!(s, 204);
    let (seen, at) = read_until(at, "poll-42 €\r\n$ ").await;
    assert_eq!(seen.matches("poll-").count(), 2, "typed once, echoed once, printed once: {seen:?}");
    let (s, o) = api.call(Method::GET, format!("{t}/output?after={at}"), None).await;
    assert_eq!((s, o["data"].as_str(), o["next"].as_u64(), o["missed"].as_u64()), (200, Some(""), Some(at), Some(0)), "{o}");

    let (s, _) = api.call(Method::POST, format!("{t}/resize"), Some(json!({"rows": 30, "cols": 90}))).await;
    assert_eq!(s, 204);
    api.call(Method::POST, format!("{t}/input"), Some(json!({"data": "stty size\n"}))).await;
    read_until(at, "30 90").await;
    let (s, screen) = api.call(Method::GET, format!("{t}/screen"), None).await;
    assert_eq!((s, screen["rows"].as_u64(), screen["cols"].as_u64()), (200, Some(30), Some(90)), "{screen}");
    let text = screen["text"].as_str().unwrap();
    assert!(text.contains("poll-42 €") && text.contains("30 90"), "{text}");

    // Refusals name what is wrong.
    error(api.call(Method::POST, format!("{t}/resize"), Some(json!({"rows": 0, "cols": 90}))).await, 400, "invalid_field", Some("rows"));
    error(api.call(Method::GET, format!("{t}/output?wait_ms=999999"), None).await, 400, "invalid_field", Some("wait_ms"));
    let big = "x".repeat(hearth_proto::control::MAX_PTY_WRITE + 1);
    error(api.call(Method::POST, format!("{t}/input"), Some(json!({"data": big}))).await, 413, "payload_too_large", None);
    let gone = format!("/api/v1/workstations/{id}/terminals/tnope");
    error(api.call(Method::POST, format!("{gone}/input"), Some(json!({"data": "x"}))).await, 404, "not_found", None);
    error(api.call(Method::GET, format!("{gone}/screen"), None).await, 404, "not_found", None);
    error(api.call(Method::GET, format!("{gone}/output"), None).await, 404, "not_found", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hypha_bridge_acts_for_hypha_users_held_to_the_rules_of_a_hypha_sign_in() {
    let mut config = Config::default();
    // Never asked: the bridge vouches for its callers, the Hypha server for the bridge.
    config.hypha.server_url = "http://127.0.0.1:9".into();
    config.auth.allow_emails = vec!["*@lab.org".into()];
    let api = api_with(config, Need { mem_mib: 8192, vcpus: 64, disk_gib: 64 });
    let as_bridge = |key: &str, caller: &str, method: Method, uri: &str, body: Option<Value>| {
        let mut req = Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("Bearer {key}")).header("x-hearth-hypha-caller", caller);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
        let api = &api;
        async move {
            let (status, _, bytes) = api.send(req).await;
            (status.as_u16(), serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let ann = r#"{"id": "ann-1", "email": "ann@lab.org", "roles": ["user"], "is_anonymous": false}"#;
    // Before the server made the bridge's key, no key is one.
    error(as_bridge("", ann, Method::GET, "/api/v1/auth/session", None).await, 401, "unauthenticated", None);
    let key = api.svc.bridge_key().unwrap();
    assert_eq!(api.svc.bridge_key().unwrap(), key, "one key for the service's life");
    let (s, me) = as_bridge(&key, ann, Method::GET, "/api/v1/auth/session", None).await;
    assert_eq!((s, me["user"].as_str(), me["admin"].as_bool()), (200, Some("hypha:ann-1"), Some(false)), "{me}");
    let (s, w) = as_bridge(&key, ann, Method::POST, "/api/v1/workstations", Some(json!({"name": "anns"}))).await;
    assert_eq!((s, w["owner"].as_str()), (201, Some("hypha:ann-1")), "{w}");
    // Another Hypha user does not see it.
    let bob = r#"{"id": "bob-2", "email": "bob@lab.org", "roles": []}"#;
    let (s, list) = as_bridge(&key, bob, Method::GET, "/api/v1/workstations", None).await;
    assert_eq!((s, list["workstations"].as_array().map(Vec::len)), (200, Some(0)), "{list}");
    let uri = format!("/api/v1/workstations/{}", w["id"].as_str().unwrap());
    error(as_bridge(&key, bob, Method::GET, &uri, None).await, 404, "not_found", None);

    let wrong = key.replace(|c: char| c.is_ascii_digit(), "a");
    error(as_bridge(&wrong, ann, Method::GET, "/api/v1/auth/session", None).await, 401, "unauthenticated", None);
    // An API token cannot vouch for a Hypha user.
    let admin = api.token.clone();
    error(as_bridge(&admin, ann, Method::GET, "/api/v1/auth/session", None).await, 401, "unauthenticated", None);
    for (why, caller) in [
        ("anonymous", r#"{"id": "anonymouz", "is_anonymous": true}"#),
        ("anonymous by role", r#"{"id": "anon-7", "roles": ["anonymous"]}"#),
        ("not on the allowlist", r#"{"id": "eve-3", "email": "eve@elsewhere.org"}"#),
        ("no email, with an allowlist", r#"{"id": "nomail-4"}"#),
    ] {
        let (s, body) = as_bridge(&key, caller, Method::GET, "/api/v1/auth/session", None).await;
        assert_eq!(s, 403, "{why}: {body}");
    }
    for (why, caller) in [("not JSON", "ann"), ("no id", r#"{"email": "ann@lab.org"}"#), ("an id with a space", r#"{"id": "a b", "email": "ann@lab.org"}"#)] {
        let (s, body) = as_bridge(&key, caller, Method::GET, "/api/v1/auth/session", None).await;
        assert_eq!(s, 401, "{why}: {body}");
    }
}

#[tokio::test]
async fn files_go_up_and_come_down() {
    let api = api();
    let id = api.create(json!({"name": "a"})).await["id"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in/f.bin").to_string_lossy().into_owned();
    let files = format!("/api/v1/workstations/{id}/files");
    let put = |uri: String, body: &'static [u8], length: bool| {
        let mut r = Request::builder().method(Method::PUT).uri(uri);
        if length {
            r = r.header(header::CONTENT_LENGTH, body.len());
        }
        r.body(Body::from(body)).unwrap()
    };
    assert_eq!(api.send(put(format!("{files}?path={path}&mode=600"), b"bytes\x00\xff", true)).await.0, StatusCode::NO_CONTENT);
    let (s, ctype, body) = api.send(Request::builder().uri(format!("{files}?path={path}")).body(Body::empty()).unwrap()).await;
    assert_eq!((s, ctype.as_deref(), body.as_slice()), (StatusCode::OK, Some("application/octet-stream"), &b"bytes\x00\xff"[..]));
    error(api.call(Method::GET, &format!("{files}?path={path}.missing"), None).await, 404, "not_found", None);
    error(api.call(Method::GET, &format!("{files}?path=relative"), None).await, 400, "invalid_field", Some("path"));
    let bad_mode = api.send(put(format!("{files}?path={path}&mode=999"), b"x", true)).await;
    assert_eq!(bad_mode.0, StatusCode::BAD_REQUEST);
    let (s, _, body) = api.send(put(format!("{files}?path={path}"), b"x", false)).await;
    assert_eq!(s, StatusCode::LENGTH_REQUIRED, "{}", String::from_utf8_lossy(&body));
    let huge = Request::builder().method(Method::PUT).uri(format!("{files}?path={path}")).header(header::CONTENT_LENGTH, 3u64 << 30).body(Body::empty()).unwrap();
    assert_eq!(api.send(huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    error(api.call(Method::GET, &format!("/api/v1/workstations/w000000000000/files?path={path}"), None).await, 404, "not_found", None);
}

/// The WebSocket terminal for real: a server on loopback, a client that attaches, types and
/// reads its echo, a viewer that is told it is one, and the refusals before the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_attaches_types_and_sees_the_output() {
    let api = api();
    let (id, tid) = api.with_terminal("a").await;
    let (addr, server) = api.serve_on_loopback().await;
    let base = format!("ws://{addr}/api/v1/workstations/{id}/terminals/{tid}/ws");
    let token = api.token.clone();
    let seen = tokio::task::spawn_blocking(move || {
        let connect = |url: String| tungstenite::connect(ws_request(&url, Some(&token), None));
        let (mut ws, _) = connect(base.clone()).unwrap();
        let head: Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
        assert_eq!((head["type"].as_str(), head["read_only"].as_bool()), (Some("attached"), Some(false)), "{head}");
        ws.send(tungstenite::Message::binary(b"echo he''llo\n".to_vec())).unwrap();
        let mut out = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !out.contains("hello") && std::time::Instant::now() < deadline {
            if let tungstenite::Message::Binary(b) = ws.read().unwrap() {
                out.push_str(&String::from_utf8_lossy(&b));
            }
        }
        ws.send(tungstenite::Message::text(r#"{"type":"ping"}"#)).unwrap();
        let pong = loop {
            if let tungstenite::Message::Text(t) = ws.read().unwrap() {
                break t.to_string();
            }
        };
        let (mut viewer, _) = connect(format!("{base}?mode=view")).unwrap();
        let head: Value = serde_json::from_str(viewer.read().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(head["read_only"].as_bool(), Some(true), "{head}");
        let bad = match connect(format!("{base}?mode=sideways")) {
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            other => panic!("{:?}", other.map(|_| ())),
        };
        let missing = match connect(base.replace(&tid, "t0000000000000000")) {
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            other => panic!("{:?}", other.map(|_| ())),
        };
        (out, pong, bad, missing)
    })
    .await
    .unwrap();
    assert!(seen.0.contains("hello"), "{:?}", seen.0);
    assert_eq!(seen.1, r#"{"type":"pong"}"#);
    assert_eq!((seen.2, seen.3), (400, 404));
    server.abort();
}

/// A WebSocket handshake request for `url`, with a bearer token and an `Origin` when given.
fn ws_request(url: &str, token: Option<&str>, origin: Option<&str>) -> tungstenite::handshake::client::Request {
    use tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert(header::ORIGIN, o.parse().unwrap());
    }
    req
}

/// The status a WebSocket handshake to `url` gets (101: upgraded).
fn ws_status(url: &str, token: Option<&str>, origin: Option<&str>) -> u16 {
    match tungstenite::connect(ws_request(url, token, origin)) {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The document is whole: every `$ref` resolves, every path parameter is declared by
/// each of its operations, every operation answers something.
#[test]
fn the_openapi_document_is_self_consistent() {
    let doc = super::contract::document(serde_json::to_value(super::routes().split_for_parts().1).unwrap(), &Config::default());
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "$ref {r} resolves to nothing");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        let params: Vec<&str> = path.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(p, _)| p)).collect();
        for (method, op) in item.as_object().unwrap() {
            let declared: Vec<&str> = op["parameters"].as_array().map(|a| a.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect()).unwrap_or_default();
            for p in &params {
                assert!(declared.contains(p), "{method} {path} does not declare {{{p}}}");
            }
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has no responses");
        }
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let api = api();
    let get = |id: Option<&'static str>| {
        let mut r = Request::builder().uri("/api/v1/health");
        if let Some(id) = id {
            r = r.header("x-request-id", id);
        }
        api.router.clone().oneshot(r.body(Body::empty()).unwrap())
    };
    let made = get(None).await.unwrap().headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 16);
    assert_ne!(get(None).await.unwrap().headers()["x-request-id"], made.as_str());
    assert_eq!(get(Some("client-42")).await.unwrap().headers()["x-request-id"], "client-42");
    // Not one to repeat into logs and headers: replaced.
    assert_ne!(get(Some("a b")).await.unwrap().headers()["x-request-id"], "a b");
    let refused = api.router.clone().oneshot(Request::builder().uri("/api/v1/nothing").body(Body::empty()).unwrap()).await.unwrap();
    assert!(refused.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_and_the_operation_goes_on() {
    let mut config = Config::default();
    config.limits.request_timeout_secs = 1;
    let api = api_with(config, Need { mem_mib: 8192, vcpus: 64, disk_gib: 64 });
    api.backend.create_ms.store(1500, std::sync::atomic::Ordering::Relaxed);
    error(api.call(Method::POST, "/api/v1/workstations", Some(json!({"name": "slow"}))).await, 503, "timed_out", None);
    // It finishes on its own; the list shows it then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while api.call(Method::GET, "/api/v1/workstations", None).await.1["workstations"].as_array().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the create never finished");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_bound_are_refused_at_once() {
    let mut config = Config::default();
    config.limits.max_requests_in_flight = 1;
    let api = api_with(config, Need { mem_mib: 8192, vcpus: 64, disk_gib: 64 });
    api.backend.create_ms.store(1000, std::sync::atomic::Ordering::Relaxed);
    let slow = {
        let router = api.router.clone();
        let body = Body::from(serde_json::to_vec(&json!({"name": "slow"})).unwrap());
        let req = Request::builder().method(Method::POST).uri("/api/v1/workstations").header(header::CONTENT_TYPE, "application/json").body(body).unwrap();
        tokio::spawn(router.oneshot(api.authed(req)))
    };
    // The slow create takes the one place (nothing else asks meanwhile, so it is not refused
    // itself), and holds it until it is answered.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut refused = None;
    for _ in 0..100 {
        let resp = api.router.clone().oneshot(Request::builder().uri("/api/v1/health").body(Body::empty()).unwrap()).await.unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(resp);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refused = refused.expect("a request beside the slow one was never refused");
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    let body: Value = serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(api.call(Method::GET, "/api/v1/health", None).await.0, 200, "the place is free again");
}

/// A client that never finishes its headers is cut off; one that does is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_bounds_how_long_headers_may_take() {
    let api = api();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::listen::serve(listener, api.router.clone(), std::time::Duration::from_secs(1), None, async move {
        let _ = stop_rx.await;
    }));
    let (slow, whole) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        // Closed by the server (with or without a 408 first), well before our own 10 s.
        let _ = slow.read_to_end(&mut got);
        let slow = (started.elapsed(), String::from_utf8_lossy(&got).into_owned());
        let mut ok = std::net::TcpStream::connect(addr).unwrap();
        ok.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut whole = String::new();
        ok.read_to_string(&mut whole).unwrap();
        (slow, whole)
    })
    .await
    .unwrap();
    assert!(slow.0 < std::time::Duration::from_secs(5), "{slow:?}");
    assert!(!slow.1.contains("200 OK"), "{slow:?}");
    assert!(whole.starts_with("HTTP/1.1 200 OK"), "{whole}");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server).await.expect("the listener stopped").unwrap();
}

/// The bounds the document states are the ones the server enforces: for every bounded field
/// of every JSON body and every bounded query parameter, the values at each bound are not
/// refused for that field, and the values just past it are refused naming it. Every integer
/// and list a client sends has both bounds in the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_bounds_are_the_servers() {
    let roomy = Need { mem_mib: 1 << 30, vcpus: 1 << 20, disk_gib: 1 << 20 };
    let api = api_with(Config::default(), roomy);
    let (_, doc) = api.call(Method::GET, "/api/v1/openapi.json", None).await;
    let id = api.create(json!({"name": "walker"})).await["id"].as_str().unwrap().to_string();
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    // Each body the walk varies: its route, a valid body, and the schema it follows.
    let bodies = [
        ("/api/v1/workstations".to_string(), json!({"name": "w", "start": false}), "CreateWorkstation"),
        (format!("/api/v1/workstations/{id}/exec"), json!({"argv": ["true"]}), "ExecRequest"),
        (format!("/api/v1/workstations/{id}/terminals"), json!({"argv": ["true"]}), "CreateTerminal"),
    ];
    let mut checked = 0;
    for (uri, base, name) in &bodies {
        let mut fields: Vec<(String, Value)> = Vec::new();
        for (field, s) in schema(name)["properties"].as_object().unwrap() {
            // A nested object (`bandwidth`): its own fields, under its name.
            if let Some(r) = s["oneOf"].as_array().and_then(|o| o.iter().find_map(|v| v["$ref"].as_str())) {
                let nested = schema(r.rsplit('/').next().unwrap());
                if nested["type"] == "object" {
                    for (inner, is) in nested["properties"].as_object().unwrap() {
                        fields.push((format!("{field}.{inner}"), is.clone()));
                    }
                }
                continue;
            }
            fields.push((field.clone(), s.clone()));
        }
        for (path, s) in fields {
            let types = s["type"].to_string();
            let (lo, hi) =
                (s["minimum"].as_i64().or(s["minItems"].as_i64()).or(s["minLength"].as_i64()), s["maximum"].as_i64().or(s["maxItems"].as_i64()).or(s["maxLength"].as_i64()));
            if types.contains("integer") || types.contains("array") {
                assert!(lo.is_some() && hi.is_some(), "{name}.{path} has no bounds in the document: {s}");
            }
            let make = |n: i64| -> Value {
                if types.contains("integer") {
                    json!(n)
                } else if types.contains("array") {
                    // Pairs (`env`) of a valid name, else `true`: a command that runs whatever follows it.
                    let item = if s["items"]["type"] == "array" { json!(["NAME", "value"]) } else { json!("true") };
                    json!(vec![item; n.max(0) as usize])
                } else {
                    json!("x".repeat(n.max(0) as usize))
                }
            };
            let mut cases = Vec::new();
            if let Some(lo) = lo {
                cases.push((make(lo), true));
                if lo > 0 {
                    cases.push((make(lo - 1), false));
                } else if types.contains("integer") {
                    // Below a minimum of 0: a negative number.
                    cases.push((make(-1), false));
                }
            }
            if let Some(hi) = hi {
                cases.extend([(make(hi), true), (make(hi + 1), false)]);
            }
            for (value, valid) in cases {
                let mut body = base.clone();
                match path.split_once('.') {
                    Some((outer, inner)) => {
                        // The nested object's other fields, valid.
                        body[outer] = if outer == "bandwidth" { json!({"rx_mbps": 1, "tx_mbps": 1}) } else { json!({}) };
                        body[outer][inner] = value.clone();
                    }
                    None => body[&path] = value.clone(),
                }
                let (status, answer) = api.call(Method::POST, uri.clone(), Some(body)).await;
                let refused_for_it = status == 400 && answer["error"]["field"] == path.as_str();
                let shown = if value.to_string().len() > 40 { format!("{}…", &value.to_string()[..40]) } else { value.to_string() };
                assert_eq!(refused_for_it, !valid, "{name}.{path} = {shown}: the document says {}, the server answered {status} {answer}", if valid { "valid" } else { "invalid" });
                checked += 1;
            }
        }
    }
    // Query parameters with bounds: every operation's.
    let (_, t) = api.call(Method::POST, format!("/api/v1/workstations/{id}/terminals"), Some(json!({"argv": ["sh"]}))).await;
    let tid = t["id"].as_str().unwrap().to_string();
    let queries = [
        (format!("/api/v1/workstations/{id}/console"), "tail_bytes"),
        (format!("/api/v1/workstations/{id}/events"), "limit"),
        (format!("/api/v1/workstations/{id}/files"), "path"),
        (format!("/api/v1/workstations/{id}/terminals/{tid}/output"), "max_bytes"),
        (format!("/api/v1/workstations/{id}/terminals/{tid}/output"), "wait_ms"),
    ];
    for (uri, param) in queries {
        let op = &doc["paths"][uri.replace(&id, "{id}").replace(&tid, "{tid}")]["get"];
        let s = &op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == param).unwrap_or_else(|| panic!("{uri} documents no {param}"))["schema"];
        let mut cases = Vec::new();
        if param == "path" {
            let max = s["maxLength"].as_u64().unwrap() as usize;
            cases.extend([(format!("/{}", "x".repeat(max - 1)), true), (format!("/{}", "x".repeat(max)), false), ("relative".into(), false)]);
        } else {
            let (lo, hi) = (s["minimum"].as_i64().unwrap(), s["maximum"].as_i64().unwrap());
            cases.extend([(lo.to_string(), true), ((lo - 1).to_string(), false), (hi.to_string(), true), ((hi + 1).to_string(), false)]);
        }
        for (value, valid) in cases {
            let (status, answer) = api.call(Method::GET, format!("{uri}?{param}={value}"), None).await;
            let refused_for_it = status == 400 && answer["error"]["field"] == param;
            assert_eq!(refused_for_it, !valid, "{uri} {param}={}: answered {status} {answer}", &value[..value.len().min(40)]);
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} cases: the walk lost its fields");
}

/// Every refusal is in the API's error shape, those of extractors and of the WebSocket
/// upgrade included; and each operation documents the statuses it can answer.
#[tokio::test]
async fn refusals_are_json_and_documented() {
    let api = api();
    let id = api.create(json!({"name": "a"})).await["id"].as_str().unwrap().to_string();
    let (_, t) = api.call(Method::POST, format!("/api/v1/workstations/{id}/terminals"), Some(json!({}))).await;
    let tid = t["id"].as_str().unwrap();
    error(api.call(Method::GET, format!("/api/v1/workstations/{id}/console?tail_bytes=lots"), None).await, 400, "invalid_field", Some("tail_bytes"));
    error(api.call(Method::GET, format!("/api/v1/workstations/{id}/events?limit=1&colour=red"), None).await, 400, "invalid_field", Some("colour"));
    error(api.call(Method::PUT, format!("/api/v1/workstations/{id}/files?path=/tmp/x&mode=%2B644"), None).await, 400, "invalid_field", Some("mode"));
    error(api.call(Method::GET, format!("/api/v1/workstations/{id}/terminals/{tid}/ws"), None).await, 400, "bad_request", None);
    error(api.call(Method::PATCH, format!("/api/v1/workstations/{id}"), None).await, 405, "method_not_allowed", None);
    let (_, doc) = api.call(Method::GET, "/api/v1/openapi.json", None).await;
    let ops = |path: &str, method: &str| doc["paths"][path][method]["responses"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert!(!ops("/api/v1/health", "get").contains(&"401".to_string()), "the health is public");
    for (path, method, want) in [
        ("/api/v1/health", "get", &["200", "500", "503"][..]),
        ("/api/v1/workstations", "post", &["201", "400", "401", "403", "409", "413", "415", "500", "503"]),
        ("/api/v1/auth/session", "post", &["200", "400", "401", "403", "429", "500", "503"]),
        ("/api/v1/workstations/{id}/files", "put", &["204", "400", "404", "411", "413", "500", "503"]),
        ("/api/v1/workstations/{id}/terminals/{tid}/ws", "get", &["101", "400", "401", "403", "404", "426", "500", "503"]),
        ("/api/v1/workstations/{id}/console/stream", "get", &["200", "400", "404", "500", "503"]),
    ] {
        let have = ops(path, method);
        for w in want {
            assert!(have.iter().any(|h| h == w), "{method} {path} does not document {w}: {have:?}");
        }
    }
    let sse = &doc["paths"]["/api/v1/workstations/{id}/console/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert_eq!(sse["x-events"]["end"], "#/components/schemas/ConsoleEnd");
    assert!(doc["components"]["schemas"]["WsServerMessage"].is_object());
}

/// HTTPS from configured PEM files: a client that trusts the certificate is answered; one
/// speaking plain HTTP to it is not; files that are not a certificate and key are refused
/// at start, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_from_the_configured_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let tls = super::listen::tls_config(cert_file.to_str().unwrap(), key_file.to_str().unwrap()).unwrap();
    let err = super::listen::tls_config(key_file.to_str().unwrap(), key_file.to_str().unwrap()).unwrap_err().to_string();
    assert!(err.contains("key.pem"), "{err}");

    let api = api();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::listen::serve(listener, api.router.clone(), std::time::Duration::from_secs(2), Some(tls), async move {
        let _ = stop_rx.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    tls.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    // Plain HTTP to it: no HTTP answer (the handshake fails and the connection closes).
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut got)).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

    stop_tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server).await.expect("the listener stopped").unwrap();
}
