//! The OpenAPI document as the contract: what the generated document leaves out is written
//! into it here, from the same limits the service enforces (the configured ones, read when
//! the router is built), so a request the document calls valid is not refused for its form
//! and one it calls invalid is not accepted. Also every status an operation can answer, with
//! the error body, and the schemas of what streams carry (console events, terminal
//! messages). A test (`api/tests.rs`) walks the document's bounds against the server.
//!
//! What no schema can say, each field's description does: a recipe must have been built on
//! this server; `smt_enabled` needs an even `vcpu_count` (also an `if`/`then` below).

use hearth_proto::api::Setup;
use hearth_proto::control::{MAX_ARGS, MAX_COLS, MAX_ENV, MAX_PTY_READ, MAX_PTY_WAIT_MS, MAX_PTY_WRITE, MAX_ROWS};
use hearth_service::config::Config;
use hearth_service::console::MAX_TAIL;
use hearth_service::files::{MAX_PATH_CHARS, MODE_PATTERN};
use hearth_service::workstations::MAX_EVENTS;
use serde_json::{json, Value};

/// Characters a name may not hold (what Rust calls control characters: C0, DEL, C1).
const NO_CONTROLS: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// Merges `patch`'s keys into the object at `pointer` (which must exist: a renamed field
/// fails the document's test rather than silently losing its bounds).
fn constrain(doc: &mut Value, pointer: &str, patch: Value) {
    let Some(target) = doc.pointer_mut(pointer).and_then(Value::as_object_mut) else { panic!("the OpenAPI document has no {pointer}") };
    for (k, v) in patch.as_object().expect("patches are objects") {
        target.insert(k.clone(), v.clone());
    }
}

fn property(schema: &str, field: &str) -> String {
    format!("/components/schemas/{schema}/properties/{field}")
}

/// The schema of query parameter `name` of every operation that has one.
fn query_params<'a>(doc: &'a mut Value, name: &'a str) -> impl Iterator<Item = &'a mut Value> + 'a {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .flat_map(|item| item.as_object_mut().into_iter().flat_map(|ops| ops.values_mut()))
        .flat_map(move |op| op["parameters"].as_array_mut().into_iter().flatten().filter(move |p| p["in"] == "query" && p["name"] == name).map(|p| &mut p["schema"]))
}

/// A requirement specifier as `Setup::check` takes one: a letter or digit, then those or
/// `Setup::PACKAGE_PUNCTUATION`, at most `Setup::MAX_PACKAGE_LEN` in all.
fn package_pattern() -> String {
    let punct: String = Setup::PACKAGE_PUNCTUATION.chars().map(|c| if "\\]^-[".contains(c) { format!("\\{c}") } else { c.to_string() }).collect();
    format!("^[A-Za-z0-9][A-Za-z0-9{punct}]{{0,{}}}$", Setup::MAX_PACKAGE_LEN - 1)
}

/// Writes the enforced bounds into the document.
fn bounds(doc: &mut Value, cfg: &Config) {
    let l = &cfg.limits;
    let cw = |f: &str| property("CreateWorkstation", f);
    constrain(
        doc,
        &cw("name"),
        json!({"minLength": 1, "maxLength": l.max_name_len, "allOf": [{"pattern": "\\S"}, {"pattern": NO_CONTROLS}],
               "description": format!("1-{} characters, not all blank, no control characters.", l.max_name_len)}),
    );
    constrain(doc, &cw("vcpu_count"), json!({"minimum": 1, "maximum": l.max_vcpus}));
    constrain(doc, &cw("mem_size_mib"), json!({"minimum": l.min_mem_mib, "maximum": l.max_mem_mib}));
    constrain(doc, &cw("disk_size_gib"), json!({"minimum": 1, "maximum": l.max_disk_gib}));
    constrain(
        doc,
        &cw("recipe"),
        json!({"pattern": "^[A-Za-z0-9_-]{1,64}$", "description": format!("The image recipe (default `{}`); it must have been built on this server (`hearth image build --recipe`), else 400.", cfg.defaults.recipe)}),
    );
    for f in ["rx_mbps", "tx_mbps"] {
        constrain(doc, &property("Bandwidth", f), json!({"minimum": 1, "maximum": l.max_bandwidth_mbps}));
    }
    // SMT pairs vCPUs: with it on, their count is even (the default's too).
    constrain(
        doc,
        "/components/schemas/CreateWorkstation",
        json!({"if": {"properties": {"smt_enabled": {"const": true}}, "required": ["smt_enabled"]},
               "then": {"properties": {"vcpu_count": {"multipleOf": 2}}}}),
    );
    let argv = |min: usize| json!({"minItems": min, "maxItems": MAX_ARGS, "prefixItems": [{"type": "string", "minLength": 1}], "items": {"type": "string"}});
    constrain(doc, &property("ExecRequest", "argv"), argv(1));
    constrain(doc, &property("ExecRequest", "env"), json!({"minItems": 0, "maxItems": MAX_ENV}));
    constrain(doc, &format!("{}/items/prefixItems/0", property("ExecRequest", "env")), json!({"pattern": "^[^=]+$"}));
    constrain(doc, &property("ExecRequest", "timeout_secs"), json!({"minimum": 1, "maximum": l.max_exec_timeout_secs}));
    constrain(doc, &property("CreateTerminal", "argv"), argv(0));
    for schema in ["CreateTerminal", "TerminalSize"] {
        constrain(doc, &property(schema, "rows"), json!({"minimum": 1, "maximum": MAX_ROWS}));
        constrain(doc, &property(schema, "cols"), json!({"minimum": 1, "maximum": MAX_COLS}));
    }
    for s in query_params(doc, "tail_bytes") {
        constrain(s, "", json!({"maximum": MAX_TAIL}));
    }
    constrain(
        doc,
        &property("Setup", "python_packages"),
        json!({"minItems": 0, "maxItems": Setup::MAX_PACKAGES,
               "items": {"type": "string", "pattern": package_pattern()}}),
    );
    constrain(doc, &property("Setup", "script"), json!({"maxLength": Setup::MAX_SCRIPT, "description": format!("At most {} bytes.", Setup::MAX_SCRIPT)}));
    constrain(doc, &property("TerminalInput", "data"), json!({"maxLength": MAX_PTY_WRITE, "description": format!("At most {MAX_PTY_WRITE} bytes.")}));
    for s in query_params(doc, "max_bytes") {
        constrain(s, "", json!({"minimum": 1, "maximum": MAX_PTY_READ}));
    }
    for s in query_params(doc, "wait_ms") {
        constrain(s, "", json!({"minimum": 0, "maximum": MAX_PTY_WAIT_MS}));
    }
    for (path, item) in doc["paths"].as_object_mut().into_iter().flatten() {
        let max = if path == "/api/v1/audit" { u64::from(hearth_service::audit::MAX_READ) } else { MAX_EVENTS as u64 };
        for op in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            for p in op["parameters"].as_array_mut().into_iter().flatten().filter(|p| p["in"] == "query" && p["name"] == "limit") {
                constrain(&mut p["schema"], "", json!({"minimum": 1, "maximum": max}));
            }
        }
    }
    for s in query_params(doc, "mode") {
        // Two operations have a `mode`: a terminal attach's and an upload's permission bits.
        let patch = if s["description"].as_str().is_some_and(|d| d.contains("read-only")) { json!({"enum": ["view", "write", null]}) } else { json!({"pattern": MODE_PATTERN}) };
        constrain(s, "", patch);
    }
    for s in query_params(doc, "path") {
        constrain(s, "", json!({"pattern": "^/[^\\u0000]*$", "maxLength": MAX_PATH_CHARS}));
    }
}

/// What each operation can answer beyond its own statuses: the refusals of the layers,
/// extractors and service every request passes, each with the error body.
fn statuses(doc: &mut Value) {
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else { continue };
        for (method, op) in ops.iter_mut() {
            let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            let json_body = op["requestBody"]["content"].get("application/json").is_some();
            let upload = method == "put" && path.ends_with("/files");
            let streams = super::layers::bounds_itself(path);
            let mut add = vec![
                ("500", "`internal`: anything else, with its cause".to_string()),
                (
                    "503",
                    format!(
                        "`overloaded` (the server answers as many requests as it may; `Retry-After`){}, or what the operation lacks (`over_capacity`, `address_range_exhausted`, `too_many_followers`, `egress_unavailable`)",
                        if streams { "" } else { ", `timed_out` (no answer within `limits.request_timeout_secs`)" }
                    ),
                ),
            ];
            if has_params || json_body {
                add.push(("400", "`invalid_field` (`field` names it) or `bad_request`".into()));
            }
            if path.contains('{') {
                add.push(("404", "`not_found`: no such workstation (or not the caller's), terminal, file or action".into()));
            }
            if json_body {
                add.push(("413", "`payload_too_large`: the body is over `limits.max_body_bytes` (refused from `Content-Length`)".into()));
                add.push(("415", "`bad_request`: the body is not `application/json`".into()));
            }
            if upload {
                add.push(("411", "`bad_request`: no `Content-Length`".into()));
                add.push(("413", "`payload_too_large`: over `limits.max_file_bytes`".into()));
            }
            let public = super::caller::PUBLIC.contains(&(method.as_str(), path.as_str()));
            if !public {
                add.push(("401", "`unauthenticated`: no credential, or one that is wrong, expired or revoked (`WWW-Authenticate: Bearer`)".into()));
            }
            add.push((
                "403",
                "`host_not_allowed` (a `Host` the server does not answer to), `origin_not_allowed` (a page of another origin), `csrf_failed` (a cookie session's change without `X-CSRF-Token`), `forbidden` (the credential or account may not do this)".into(),
            ));
            if (path == "/api/v1/auth/session" || path == "/api/v1/auth/token") && method == "post" {
                add.push(("429", "`rate_limited`: too many failed sign-ins for this account or address (`Retry-After`)".into()));
            }
            if path.ends_with("/ws") {
                add.push(("426", "`upgrade_required`: not a WebSocket handshake".into()));
            }
            let responses = op["responses"].as_object_mut().expect("every operation answers");
            for (status, description) in add {
                responses.entry(status).or_insert_with(|| error(&description));
            }
        }
    }
}

/// What the streams carry: console events, and the messages of a terminal WebSocket.
fn streams(doc: &mut Value) {
    let sse = "/paths/~1api~1v1~1workstations~1{id}~1console~1stream/get/responses/200/content/text~1event-stream";
    constrain(
        doc,
        sse,
        json!({"schema": {"oneOf": [{"$ref": "#/components/schemas/ConsoleOutput"}, {"$ref": "#/components/schemas/ConsoleEnd"}]},
               "x-events": {"output": "#/components/schemas/ConsoleOutput", "end": "#/components/schemas/ConsoleEnd"}}),
    );
    let ws = "/paths/~1api~1v1~1workstations~1{id}~1terminals~1{tid}~1ws/get/responses/101";
    constrain(
        doc,
        ws,
        json!({"x-messages": {"client_text": "#/components/schemas/WsClientMessage", "server_text": "#/components/schemas/WsServerMessage",
                              "binary": "keystrokes from the client, terminal output from the server"}}),
    );
}

/// The document `api::router` serves, with everything above written in.
pub fn document(mut doc: Value, cfg: &Config) -> Value {
    bounds(&mut doc, cfg);
    statuses(&mut doc);
    streams(&mut doc);
    doc
}
