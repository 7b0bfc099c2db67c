//! Signing in with a REAL Hypha server (PyPI `hypha`, pinned in scripts/hypha-env.sh, started
//! here with a JWT secret): its tokens, from a `hypha-rpc` client's `generate_token()` and from
//! its login service (start, a login reported, check), are accepted through the API and
//! mapped to the right user and email; forged, expired, wrong-audience and anonymous ones are
//! refused; the email allowlist admits and refuses; with the Hypha server stopped, Hypha
//! sign-ins fail with a clear 503 while local accounts still work. hearth as a Hypha service:
//! the bridge (crates/hearth-hypha) registered on it, driven by other `hypha-rpc` clients
//! (hypha_client.py) as different Hypha users, across a restart of the Hypha server. The
//! workstations behind the API are the fake backend's (hearth_service::testing), their
//! terminals real: this is about identity and the bridge.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request};
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

use hearth_service::config::Config;
use hearth_service::Need;

use hearth_hypha::testing::{Hypha, AUDIENCE, SECRET};

fn start_hypha() -> Hypha {
    Hypha::start()
}

/// A token from the server at `url` itself: a `hypha-rpc` client connected with `token`
/// (none: anonymously) asks `generate_token()`.
fn generate_token(python: &std::path::Path, url: &str, token: Option<&str>) -> String {
    {
        let script = r#"
import asyncio, sys
from hypha_rpc import connect_to_server
async def main():
    cfg = {"server_url": sys.argv[1]}
    if len(sys.argv) > 2:
        cfg["token"] = sys.argv[2]
    s = await connect_to_server(cfg)
    print(await s.generate_token({"expires_in": 600}))
    await s.disconnect()
asyncio.run(main())
"#;
        let out = Command::new(python).arg("-c").arg(script).arg(url).args(token).stderr(Stdio::inherit()).output().unwrap();
        assert!(out.status.success(), "hypha-rpc's generate_token failed");
        // The token's line (hypha-rpc logs to stdout too).
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().map(str::trim).find(|l| l.starts_with("eyJ")).unwrap_or_else(|| panic!("no token in {text:?}")).to_string()
    }
}

struct Api {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Api {
    fn new(config: Config) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let (svc, _) = hearth_service::testing::service(dir.path(), config, Need { mem_mib: 1 << 20, vcpus: 1 << 10, disk_gib: 1 << 10 });
        svc.bootstrap(dir.path(), None).unwrap();
        Api { router: hearth_server::api::router(svc), _dir: dir }
    }

    /// (status, body, Set-Cookie).
    async fn call(&self, method: Method, uri: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value, Option<String>) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let cookie = resp.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), cookie)
    }

    async fn whoami(&self, token: &str) -> (u16, Value) {
        let (s, b, _) = self.call(Method::GET, "/api/v1/auth/session", Some(token), None).await;
        (s, b)
    }
}

fn config(hypha: &Hypha, secret: Option<&str>, allow: &[&str]) -> Config {
    let mut c = Config::default();
    c.hypha.server_url = hypha.url.clone();
    c.hypha.jwt_secret = secret.unwrap_or_default().to_string();
    c.auth.allow_emails = allow.iter().map(|s| s.to_string()).collect();
    c
}

/// No error body repeats a token it was given.
fn no_secret_in(body: &Value, token: &str) {
    let sig = token.rsplit('.').next().unwrap();
    assert!(!body.to_string().contains(sig), "the answer repeats the token: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypha_identities_sign_in_and_are_held_to_the_allowlist() {
    let hypha = tokio::task::spawn_blocking(start_hypha).await.unwrap();

    // Checked by asking the server (no shared secret here).
    let api = Api::new(config(&hypha, None, &["*@lab.org"]));
    let login = hypha.mint("ann-1", Some("ann@lab.org"), &["user"], 600, AUDIENCE, SECRET);
    let (url, python, signed_in) = (hypha.url.clone(), hypha.python.clone(), login.clone());
    let generated = tokio::task::spawn_blocking(move || generate_token(&python, &url, Some(&signed_in))).await.unwrap();
    let (s, me) = api.whoami(&generated).await;
    assert_eq!((s, me["user"].as_str(), me["admin"].as_bool()), (200, Some("hypha:ann-1"), Some(false)), "{me} for {generated:.60}");
    let (s, w, _) = api.call(Method::POST, "/api/v1/workstations", Some(&generated), Some(json!({"name": "anns"}))).await;
    assert_eq!((s, w["owner"].as_str()), (201, Some("hypha:ann-1")), "{w}");
    let (s, u, _) = api.call(Method::GET, "/api/v1/users/hypha:ann-1", Some(&generated), None).await;
    assert_eq!((s, u["email"].as_str()), (200, Some("ann@lab.org")), "{u}");

    let (url, python) = (hypha.url.clone(), hypha.python.clone());
    let anonymous = tokio::task::spawn_blocking(move || generate_token(&python, &url, None)).await.unwrap();
    // Refused: another secret, another audience, expired, anonymous, not on the allowlist.
    for (why, token, status) in [
        ("forged", hypha.mint("ann-1", Some("ann@lab.org"), &["user"], 600, AUDIENCE, "not-the-secret"), 401),
        ("another audience", hypha.mint("ann-1", Some("ann@lab.org"), &["user"], 600, "https://elsewhere/", SECRET), 401),
        ("expired", hypha.mint("ann-1", Some("ann@lab.org"), &["user"], -60, AUDIENCE, SECRET), 401),
        ("anonymous", anonymous, 403),
        ("not on the allowlist", hypha.mint("bob-2", Some("bob@elsewhere.org"), &["user"], 600, AUDIENCE, SECRET), 403),
    ] {
        let (s, body) = api.whoami(&token).await;
        assert_eq!(s, status, "{why}: {body}");
        no_secret_in(&body, &token);
        if why == "not on the allowlist" {
            assert_eq!(body["error"]["code"], "not_on_allowlist", "{body}");
        }
    }

    // The browser's way: start, the user logs in at Hypha (reported to its login service),
    // check: a session cookie for the same user.
    let (s, start, _) = api.call(Method::POST, "/api/v1/auth/hypha/start", None, None).await;
    assert_eq!(s, 200, "{start}");
    assert!(start["login_url"].as_str().unwrap().starts_with(&hypha.url), "{start}");
    let key = start["key"].as_str().unwrap().to_string();
    let (s, pending, _) = api.call(Method::POST, "/api/v1/auth/hypha/check", None, Some(json!({"key": key}))).await;
    assert_eq!((s, pending["status"].as_str()), (202, Some("pending")), "{pending}");
    let report = format!("{}/public/services/hypha-login/report", hypha.url);
    let reported =
        tokio::task::spawn_blocking(move || ureq::post(&report).send_json(json!({"key": key, "token": login})).map(|r| r.status()).map_err(|e| e.to_string())).await.unwrap();
    assert_eq!(reported.ok(), Some(200));
    let (s, session, cookie) = api.call(Method::POST, "/api/v1/auth/hypha/check", None, Some(json!({"key": start["key"], "wait_secs": 10}))).await;
    assert_eq!((s, session["user"].as_str()), (200, Some("hypha:ann-1")), "{session}");
    assert!(cookie.is_some_and(|c| c.starts_with("hearth_session=hth_")));

    // Checked locally with the shared secret: the same tokens, the same verdicts.
    let local = Api::new(config(&hypha, Some(SECRET), &[]));
    assert_eq!(local.whoami(&generated).await.1["user"], "hypha:ann-1");
    assert_eq!(local.whoami(&hypha.mint("ann-1", None, &["user"], 600, AUDIENCE, "wrong")).await.0, 401);

    // The Hypha server stops: new Hypha sign-ins fail with a clear 503; local accounts work.
    drop(hypha);
    let (s, body, _) = api.call(Method::POST, "/api/v1/auth/hypha/start", None, None).await;
    assert_eq!((s, body["error"]["code"].as_str()), (503, Some("hypha_unavailable")), "{body}");
    let fresh = jsonwebtoken::encode(
        &Header::default(),
        &json!({"iss": "https://amun.ai/", "aud": AUDIENCE, "sub": "cy-3", "exp": 4_000_000_000u64, "https://amun.ai/roles": ["user"], "https://amun.ai/email": "cy@lab.org"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (s, body) = api.whoami(&fresh).await;
    assert_eq!((s, body["error"]["code"].as_str()), (503, Some("hypha_unavailable")), "{body}");
    let admin_token = std::fs::read_to_string(api._dir.path().join("admin.token")).unwrap();
    let (s, _, _) = api.call(Method::POST, "/api/v1/users", Some(admin_token.trim()), Some(json!({"id": "dee", "password": "a long password"}))).await;
    assert_eq!(s, 201);
    let (s, t, _) = api.call(Method::POST, "/api/v1/auth/token", None, Some(json!({"user": "dee", "password": "a long password"}))).await;
    assert_eq!(s, 201, "{t}");
}

/// The web page's "Log in with Hypha" in a real browser (ui/test/hypha-signin.mjs): the popup,
/// the login completed at the real Hypha server, the page signed in; the allowlist's refusal
/// shown as its own page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_signs_in_with_hypha_in_a_popup() {
    let hypha = tokio::task::spawn_blocking(start_hypha).await.unwrap();
    let served = Served::start(&hypha).await;
    let base = served.base.clone();
    let ann = hypha.mint("ann-1", Some("ann@lab.org"), &["user"], 600, AUDIENCE, SECRET);
    let bob = hypha.mint("bob-2", Some("bob@elsewhere.org"), &["user"], 600, AUDIENCE, SECRET);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ui/test/hypha-signin.mjs");
    let url = hypha.url.clone();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("HEARTH_URL", &base)
            .env("HYPHA_URL", &url)
            .env("ANN_TOKEN", ann)
            .env("BOB_TOKEN", bob)
            .status()
            .expect("node runs (scripts/deps.sh installs it)")
    })
    .await
    .unwrap();
    assert!(status.success(), "the browser run failed ({status}); its steps are above");
    served.stop().await;
}

/// hearth's API over the fake backend on a loopback port, with Hypha sign-in from `hypha`
/// and an allowlist of `*@lab.org`.
struct Served {
    base: String,
    svc: std::sync::Arc<hearth_service::Service>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl Served {
    async fn start(hypha: &Hypha) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let (svc, _) = hearth_service::testing::service(dir.path(), config(hypha, None, &["*@lab.org"]), Need { mem_mib: 1 << 20, vcpus: 1 << 10, disk_gib: 1 << 10 });
        svc.bootstrap(dir.path(), None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(hearth_server::api::listen::serve(listener, hearth_server::api::router(svc.clone()), Duration::from_secs(30), None, async {
            let _ = stopped.await;
        }));
        Served { base, svc, stop, server, dir }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap();
    }
}

/// The Hypha user the bridge registers as.
const BRIDGE_USER: &str = "hearth-bridge";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hearth_serves_as_a_hypha_service_to_each_caller_as_themselves() {
    // The bridge's log (its output and its supervisor's) in the test's output.
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let hypha = tokio::task::spawn_blocking(start_hypha).await.unwrap();
    let served = Served::start(&hypha).await;
    let svc = served.svc.clone();
    // The bridge's Python environment is the cached venv it makes itself (pinned hypha-rpc).
    let cache = std::env::var_os("HEARTH_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::var_os("HEARTH_DATA_DIR").map_or_else(|| PathBuf::from("/var/lib/hearth"), PathBuf::from).join("cache"));
    let spec = hearth_hypha::BridgeSpec {
        python: None,
        cache_dir: cache,
        run_dir: served.dir.path().to_path_buf(),
        hearth_url: served.base.clone(),
        key: svc.bridge_key().unwrap(),
        server_url: hypha.url.clone(),
        token: hypha.mint(BRIDGE_USER, Some("bridge@lab.org"), &["user"], 3600, AUDIENCE, SECRET),
        workspace: String::new(),
        service_id: "hearth-terminal-service".into(),
        visibility: "public".into(),
    };
    let bridge = hearth_hypha::Bridge::start(spec);

    let ann = hypha.mint("ann-1", Some("ann@lab.org"), &["user"], 3600, AUDIENCE, SECRET);
    let bob = hypha.mint("bob-2", Some("bob@lab.org"), &["user"], 3600, AUDIENCE, SECRET);
    let eve = hypha.mint("eve-3", Some("eve@elsewhere.org"), &["user"], 3600, AUDIENCE, SECRET);
    let hypha = std::sync::Arc::new(hypha);
    let h = hypha.clone();
    let service = format!("ws-user-{BRIDGE_USER}/hearth-terminal-service");
    let (ann2, bob2, eve2, service2) = (ann.clone(), bob.clone(), eve.clone(), service.clone());
    let tid = tokio::task::spawn_blocking(move || {
        let client = |token: Option<&str>, scenario: &str, arg: Option<&str>, want: &[&str]| h.client(&service2, token, scenario, arg, want);
        let out = client(Some(&ann2), "owner", None, &["create_terminal", "write and read: 42", "screen", "resize: stty size says 30 100", "list_terminals"]);
        let tid = out.lines().find_map(|l| l.strip_prefix("terminal ")).expect("the owner scenario names its terminal").to_string();
        client(Some(&bob2), "intruder", Some(&tid), &["another user's terminals are not listed", "write to another user's terminal refused: not_found"]);
        client(Some(&eve2), "not_allowed", None, &["an email off the allowlist refused: not_on_allowlist"]);
        client(None, "anonymous", None, &["an anonymous caller refused: forbidden"]);
        client(Some(&ann2), "bad", Some(&tid), &["a 10 MB write refused: payload_too_large", "exec", "upload_file and download_file", "the bridge still answers"]);
        client(Some(&ann2), "seed", None, &["the seed's sequence"]);
        client(Some(&ann2), "setup", None, &["the startup script ran in terminal setup"]);
        // The examples in docs/ work as they are.
        let py = h.python_example(&service2, &ann2);
        assert!(py.contains("python3 says 42") && py.contains("after close: not_found"), "{py}");
        let js = h.js_example(&service2, &ann2);
        assert!(js.contains("got 42") && js.contains("unknown terminal -> error code: not_found"), "{js}");
        tid
    })
    .await
    .unwrap();

    // A terminal made through Hypha is the caller's hearth terminal, there for the web UI too.
    let api = Api { router: hearth_server::api::router(svc.clone()), _dir: tempfile::tempdir().unwrap() };
    let (ws, t) = tid.split_once(':').unwrap();
    let (s, list, _) = api.call(Method::GET, &format!("/api/v1/workstations/{ws}/terminals"), Some(&ann), None).await;
    assert_eq!(s, 200, "{list}");
    assert!(list["terminals"].as_array().unwrap().iter().any(|x| x["id"] == t && x["ended_unix_ms"].is_null()), "{list}");
    let (s, w, _) = api.call(Method::GET, &format!("/api/v1/workstations/{ws}"), Some(&ann), None).await;
    assert_eq!((s, w["owner"].as_str()), (200, Some("hypha:ann-1")), "{w}");

    // The Hypha server restarts: the bridge is back on its own, the next calls work.
    let port = hypha.port;
    drop(std::sync::Arc::into_inner(hypha).expect("no other holder"));
    let hypha = tokio::task::spawn_blocking(move || Hypha::start_on(port)).await.unwrap();
    tokio::task::spawn_blocking(move || hypha.client(&service, Some(&ann), "seed", None, &["the seed's sequence"])).await.unwrap();

    bridge.stop();
    served.stop().await;
}
