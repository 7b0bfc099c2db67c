//! Who may call what. Every operation in the OpenAPI document has a decision in [`DECISIONS`]
//! (a new route without one fails here), and each is tried by three callers: none (401 unless
//! public), another user (404 on what is not theirs, 403 on what is for administrators) and
//! an administrator (let through). Then the cross-site refusals and malformed credentials.

use super::*;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user, on their own things (lists and creates of their own).
    SignedIn,
    /// The owner of the thing named in the path, and administrators; others are told it does
    /// not exist.
    Owner,
    /// Administrators only.
    Admin,
}

/// Every documented operation's decision, and a body that is valid for it. (The document
/// itself, `/api/v1/openapi.json`, is public and not in itself.)
const DECISIONS: &[(&str, &str, Who, &str)] = &[
    ("get", "/api/v1/health", Who::Public, ""),
    ("post", "/api/v1/auth/session", Who::Public, ""),
    ("post", "/api/v1/auth/token", Who::Public, ""),
    ("get", "/auth/link", Who::Public, ""),
    ("get", "/api/v1/auth/methods", Who::Public, ""),
    ("post", "/api/v1/auth/hypha/start", Who::Public, ""),
    ("post", "/api/v1/auth/hypha/check", Who::Public, ""),
    ("get", "/api/v1/auth/session", Who::SignedIn, ""),
    ("delete", "/api/v1/auth/session", Who::SignedIn, ""),
    ("get", "/api/v1/workstations", Who::SignedIn, ""),
    ("get", "/api/v1/workstations/stream", Who::SignedIn, ""),
    ("post", "/api/v1/workstations", Who::SignedIn, r#"{"name": "n"}"#),
    ("get", "/api/v1/workstations/{id}", Who::Owner, ""),
    ("delete", "/api/v1/workstations/{id}", Who::Owner, ""),
    ("post", "/api/v1/workstations/{id}/{action}", Who::Owner, ""),
    ("post", "/api/v1/workstations/{id}/exec", Who::Owner, r#"{"argv": ["true"]}"#),
    ("get", "/api/v1/workstations/{id}/events", Who::Owner, ""),
    ("get", "/api/v1/workstations/{id}/console", Who::Owner, ""),
    ("get", "/api/v1/workstations/{id}/console/stream", Who::Owner, ""),
    ("put", "/api/v1/workstations/{id}/files", Who::Owner, "x"),
    ("get", "/api/v1/workstations/{id}/files", Who::Owner, ""),
    ("post", "/api/v1/workstations/{id}/terminals", Who::Owner, r#"{"argv": ["sh"]}"#),
    ("get", "/api/v1/workstations/{id}/terminals", Who::Owner, ""),
    ("delete", "/api/v1/workstations/{id}/terminals/{tid}", Who::Owner, ""),
    ("get", "/api/v1/workstations/{id}/terminals/{tid}/ws", Who::Owner, ""),
    ("post", "/api/v1/workstations/{id}/terminals/{tid}/input", Who::Owner, r#"{"data": "x"}"#),
    ("get", "/api/v1/workstations/{id}/terminals/{tid}/output", Who::Owner, ""),
    ("get", "/api/v1/workstations/{id}/terminals/{tid}/screen", Who::Owner, ""),
    ("post", "/api/v1/workstations/{id}/terminals/{tid}/resize", Who::Owner, r#"{"rows": 30, "cols": 90}"#),
    ("get", "/api/v1/tokens", Who::SignedIn, ""),
    ("post", "/api/v1/tokens", Who::SignedIn, r#"{"name": "t"}"#),
    ("delete", "/api/v1/tokens/{id}", Who::Owner, ""),
    ("get", "/api/v1/users", Who::Admin, ""),
    ("post", "/api/v1/users", Who::Admin, r#"{"id": "new-user"}"#),
    ("get", "/api/v1/users/{id}", Who::Owner, ""),
    ("patch", "/api/v1/users/{id}", Who::Owner, r#"{"email": "a@example.org"}"#),
    ("delete", "/api/v1/users/{id}", Who::Admin, ""),
    ("get", "/api/v1/audit", Who::SignedIn, ""),
    ("get", "/api/v1/allowlist", Who::Admin, ""),
    ("get", "/api/v1/host", Who::Admin, ""),
    ("get", "/metrics", Who::Admin, ""),
    ("put", "/api/v1/allowlist", Who::Admin, r#"{"managed": ["*@lab.org"]}"#),
    ("get", "/api/v1/workstations/{id}/shares", Who::Owner, ""),
    ("put", "/api/v1/workstations/{id}/shares/{user}", Who::Owner, r#"{"role": "viewer"}"#),
    ("delete", "/api/v1/workstations/{id}/shares/{user}", Who::Owner, ""),
    ("get", "/api/v1/users/{id}/quota", Who::Owner, ""),
    ("put", "/api/v1/users/{id}/quota", Who::Admin, r#"{"max_vcpus": 4}"#),
];

impl Api {
    /// A request as `token` (none: no credential at all).
    async fn call_as(&self, token: Option<&str>, method: &str, uri: &str, body: &str) -> (u16, Value) {
        let mut req = Request::builder().method(method.to_uppercase().as_str()).uri(uri);
        req = match token {
            Some(t) => req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            // Something other than a credential, so `send` adds none.
            None => req.header(header::COOKIE, "theme=dark"),
        };
        if !body.is_empty() {
            let ctype = if uri.contains("/files") { "application/octet-stream" } else { "application/json" };
            req = req.header(header::CONTENT_TYPE, ctype).header(header::CONTENT_LENGTH, body.len());
        }
        let req = self.authed(req.body(Body::from(body.to_string())).unwrap());
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        if status.is_success() && uri.contains("/stream") {
            // A follow never ends on its own: its status is the answer.
            return (status.as_u16(), Value::Null);
        }
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status.as_u16(), serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Makes account `id` with a password; returns a fresh token of its.
    async fn user_with_token(&self, id: &str) -> String {
        let (s, b) = self.call(Method::POST, "/api/v1/users", Some(json!({"id": id, "password": "a long password"}))).await;
        assert!(s == 201 || s == 409, "{s} {b}");
        self.token_of(id).await
    }

    async fn token_of(&self, id: &str) -> String {
        let (s, b) = self.call(Method::POST, "/api/v1/auth/token", Some(json!({"user": id, "password": "a long password", "name": "test"}))).await;
        assert_eq!(s, 201, "{b}");
        b["secret"].as_str().unwrap().to_string()
    }

    /// A fresh administrator token (some operations end the credential they come with).
    async fn admin_token(&self) -> String {
        let (s, b) = self.call(Method::POST, "/api/v1/tokens", Some(json!({"name": "admin", "scope": "admin"}))).await;
        assert_eq!(s, 201, "{b}");
        b["secret"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_decides_who_may_call_it() {
    let api = api();
    let (_, doc) = api.call(Method::GET, "/api/v1/openapi.json", None).await;
    // WebSocket upgrades need a real connection.
    let (addr, server) = api.serve_on_loopback().await;
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let Some(&(_, _, who, body)) = DECISIONS.iter().find(|(m, p, ..)| m == method && p == path) else {
                panic!("{method} {path} has no authorization decision in DECISIONS");
            };
            seen += 1;
            let public = super::super::caller::PUBLIC.contains(&(method.as_str(), path.as_str()));
            assert_eq!(public, who == Who::Public, "{method} {path}: caller::PUBLIC and DECISIONS disagree");
            if who == Who::Public {
                continue;
            }
            // What the path names: ann's workstation and terminal, ann's token, ann herself.
            let ann = api.user_with_token("ann").await;
            let (bob, admin) = (api.user_with_token("bob").await, api.admin_token().await);
            let (_, w) = api.call_as(Some(&ann), "post", "/api/v1/workstations", r#"{"name": "anns"}"#).await;
            let id = w["id"].as_str().unwrap_or_else(|| panic!("{w}"));
            let (_, t) = api.call_as(Some(&ann), "post", &format!("/api/v1/workstations/{id}/terminals"), r#"{"argv": ["sh"]}"#).await;
            let anns_token = Secret::id_of(&api.token_of("ann").await);
            // Shared with a third user (what the share routes name), never with bob.
            api.user_with_token("cy").await;
            let (s, b) = api.call_as(Some(&ann), "put", &format!("/api/v1/workstations/{id}/shares/cy"), r#"{"role": "viewer"}"#).await;
            assert_eq!(s, 200, "{b}");
            let target = if path.starts_with("/api/v1/users/") {
                "ann"
            } else if path.starts_with("/api/v1/tokens/") {
                &anns_token
            } else {
                id
            };
            let uri = path.replace("{id}", target).replace("{tid}", t["id"].as_str().unwrap()).replace("{action}", "restart").replace("{user}", "cy");
            let uri = match (uri.ends_with("/files"), method.as_str()) {
                (true, "put") => format!("{uri}?path=/tmp/authz-{id}"),
                (true, _) => format!("{uri}?path=/etc/hostname"),
                _ => uri,
            };

            if uri.ends_with("/ws") {
                let url = format!("ws://{addr}{uri}");
                let (none, other, by_admin) =
                    tokio::task::spawn_blocking(move || (ws_status(&url, None, None), ws_status(&url, Some(&bob), None), ws_status(&url, Some(&admin), None))).await.unwrap();
                assert_eq!((none, other, by_admin), (401, 404, 101), "{method} {path}: without a credential, by another user, by an administrator");
                api.call(Method::DELETE, &format!("/api/v1/workstations/{id}"), None).await;
                continue;
            }
            let none = api.call_as(None, method, &uri, body).await;
            assert_eq!((none.0, none.1["error"]["code"].as_str()), (401, Some("unauthenticated")), "{method} {path} without a credential: {}", none.1);
            let other = api.call_as(Some(&bob), method, &uri, body).await;
            let want = match who {
                Who::Owner => Some(404),
                Who::Admin => Some(403),
                _ => None,
            };
            if let Some(want) = want {
                assert_eq!(other.0, want, "{method} {path} by another user: {}", other.1);
            } else {
                assert!(![401, 403, 404].contains(&other.0), "{method} {path} by a user: {}", other.0);
            }
            let by_admin = api.call_as(Some(&admin), method, &uri, body).await;
            assert!(![401, 403, 404].contains(&by_admin.0), "{method} {path} by an administrator: {} {}", by_admin.0, by_admin.1);
            // Room for the next one's.
            api.call(Method::DELETE, &format!("/api/v1/workstations/{id}"), None).await;
        }
    }
    assert_eq!(seen, DECISIONS.len(), "DECISIONS names operations the document does not have");
    server.abort();
}

/// Read tokens read; they change nothing.
#[tokio::test]
async fn a_read_token_only_reads() {
    let api = api();
    let ann = api.user_with_token("ann").await;
    let (_, w) = api.call_as(Some(&ann), "post", "/api/v1/workstations", r#"{"name": "w"}"#).await;
    let id = w["id"].as_str().unwrap();
    let (_, ro) = api.call_as(Some(&ann), "post", "/api/v1/tokens", r#"{"name": "ro", "scope": "read"}"#).await;
    let ro = ro["secret"].as_str().unwrap();
    assert_eq!(api.call_as(Some(ro), "get", &format!("/api/v1/workstations/{id}"), "").await.0, 200);
    error(api.call_as(Some(ro), "post", &format!("/api/v1/workstations/{id}/stop"), "").await, 403, "forbidden", None);
    error(api.call_as(Some(ro), "post", "/api/v1/workstations", r#"{"name": "x"}"#).await, 403, "forbidden", None);
}

/// Browser sessions: a cookie signs requests in; what changes something needs the CSRF token
/// too; signing out ends it.
#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_to_change_anything() {
    let api = api();
    api.user_with_token("ann").await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/session")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, "none=1")
        .body(Body::from(r#"{"user": "ann", "password": "a long password"}"#))
        .unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let set = resp.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let with_cookie = |method: Method, uri: &str, csrf: Option<&str>| {
        let mut r = Request::builder().method(method).uri(uri).header(header::COOKIE, format!("theme=dark; {cookie}"));
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.header(header::CONTENT_TYPE, "application/json").body(Body::from(r#"{"name": "w"}"#)).unwrap()
    };
    assert_eq!(api.send(with_cookie(Method::GET, "/api/v1/workstations", None)).await.0, 200);
    let (s, _, b) = api.send(with_cookie(Method::POST, "/api/v1/workstations", None)).await;
    assert_eq!((s.as_u16(), serde_json::from_slice::<Value>(&b).unwrap()["error"]["code"].as_str()), (403, Some("csrf_failed")));
    assert_eq!(api.send(with_cookie(Method::POST, "/api/v1/workstations", Some("0123"))).await.0, 403);
    assert_eq!(api.send(with_cookie(Method::POST, "/api/v1/workstations", Some(&csrf))).await.0, 201);
    let (s, _, _) = api.send(with_cookie(Method::DELETE, "/api/v1/auth/session", Some(&csrf))).await;
    assert_eq!(s, 204);
    assert_eq!(api.send(with_cookie(Method::GET, "/api/v1/workstations", None)).await.0, 401);
}

/// DNS rebinding and cross-site requests: a foreign `Host`, and a foreign `Origin` on a
/// request that changes something or on a WebSocket upgrade, are refused before sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused() {
    let api = api();
    let host = |h: &'static str| Request::builder().uri("/api/v1/workstations").header(header::HOST, h).body(Body::empty()).unwrap();
    let (s, _, b) = api.send(host("evil.example:8080")).await;
    assert_eq!((s.as_u16(), serde_json::from_slice::<Value>(&b).unwrap()["error"]["code"].as_str()), (403, Some("host_not_allowed")));
    assert_eq!(api.send(host("127.0.0.1:8080")).await.0, 200);
    assert_eq!(api.send(host("localhost:8080")).await.0, 200);
    let post = |origin: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/workstations")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name": "x"}"#))
            .unwrap()
    };
    let (s, _, b) = api.send(post("http://evil.example")).await;
    assert_eq!((s.as_u16(), serde_json::from_slice::<Value>(&b).unwrap()["error"]["code"].as_str()), (403, Some("origin_not_allowed")));
    assert_eq!(api.send(post("http://127.0.0.1:8080")).await.0, 201);

    // A WebSocket from a page of another origin, over a real socket; the same from the
    // server's own origin is let through.
    let (id, tid) = api.with_terminal("ws").await;
    let (addr, server) = api.serve_on_loopback().await;
    let token = api.token.clone();
    let (foreign, none, own) = tokio::task::spawn_blocking(move || {
        let url = format!("ws://{addr}/api/v1/workstations/{id}/terminals/{tid}/ws");
        let own_origin = format!("http://{addr}");
        (ws_status(&url, Some(&token), Some("http://evil.example")), ws_status(&url, None, Some(&own_origin)), ws_status(&url, Some(&token), Some(&own_origin)))
    })
    .await
    .unwrap();
    assert_eq!((foreign, none, own), (403, 401, 101));
    server.abort();
}

/// Credentials that are not: each a clean 401 in the API's shape, never a 500, and the server
/// goes on answering.
#[tokio::test]
async fn malformed_credentials_are_clean_401s() {
    let api = api();
    let valid = api.token.clone();
    let huge = format!("Bearer {}", "A".repeat(1 << 20));
    let cases: Vec<(&str, String)> = vec![
        ("authorization", "Bearer".into()),
        ("authorization", "Bearer ".into()),
        ("authorization", "Basic YWRtaW46YWRtaW4=".into()),
        ("authorization", format!("Bearer {}", &valid[..valid.len() - 1])),
        ("authorization", format!("Bearer {valid}x")),
        ("authorization", format!("Bearer {}", valid.replace("hth_", "hth-"))),
        // A JWT with alg none, and one signed HS256 with a made-up key.
        ("authorization", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiJ9.".into()),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl".into()),
        ("authorization", huge),
        ("cookie", "hearth_session=".into()),
        ("cookie", format!("hearth_session={valid}")),
    ];
    for (name, value) in cases {
        let req = Request::builder().uri("/api/v1/workstations").header(name, value.as_str()).body(Body::empty()).unwrap();
        let (s, ctype, body) = api.send(req).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((s.as_u16(), ctype.as_deref(), body["error"]["code"].as_str()), (401, Some("application/json"), Some("unauthenticated")), "{name}: {:.60}", value);
        assert!(!body.to_string().contains(&valid[10..]), "an error body repeats a secret: {body}");
    }
    assert_eq!(api.call(Method::GET, "/api/v1/workstations", None).await.0, 200);
}

/// A secret's record id (its first part), as the token API names it.
struct Secret;
impl Secret {
    fn id_of(secret: &str) -> String {
        secret.strip_prefix("hth_").unwrap().split('_').next().unwrap().to_string()
    }
}
