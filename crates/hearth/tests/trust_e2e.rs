//! The CA certificates a host trusts beyond the usual, trusted in its workstations
//! (`network.ca_certificates`): behind a TLS-intercepting proxy `pip install` in a guest
//! fails without them. `hearth serve` (from the box, so they travel through the box's
//! share) is given a CA made here; a workstation then serves HTTPS on its own loopback with
//! a certificate that CA signed, and Python in it fetches it without a complaint: the guest
//! trusts the CA. pip is pointed at the same store.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

/// A CA and a certificate for `localhost` it signed, made with openssl in `dir`.
fn make_pki(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=hearth test CA"]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]);
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(&["x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.crt", "-days", "2", "-extfile", "ext"]);
}

const FETCH: &str = r#"
import http.server, ssl, threading, urllib.request
srv = http.server.HTTPServer(("127.0.0.1", 8443), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/tmp/leaf.crt", "/tmp/leaf.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
print("fetched", urllib.request.urlopen("https://localhost:8443/").status)
"#;

#[test]
fn a_workstation_trusts_the_certificate_authorities_its_host_gives_it() {
    if std::env::var_os("HEARTH_IN_BOX").is_some() {
        return; // this test is about the host side of the box
    }
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let cas = format!("[\"{}\"]", pki.path().join("ca.crt").display());
    common::with_outer_box_retried(|data| {
        let o = common::serve_with(data, &[("HEARTH_NETWORK__CA_CERTIFICATES", &cas)]);
        let call = |method: &str, url: &str, body: Option<Value>| -> Value {
            let req = common::authed(ureq::request(method, url).timeout(Duration::from_secs(300)));
            let r = match body {
                Some(b) => req.send_json(b),
                None => req.call(),
            };
            r.unwrap_or_else(|e| panic!("{method} {url}: {e}")).into_json().unwrap_or(Value::Null)
        };
        let ws = call("POST", &format!("{}/api/v1/workstations", o.base), Some(json!({"name": "trusting", "mem_size_mib": 512, "disk_size_gib": 1})));
        let one = format!("{}/api/v1/workstations/{}", o.base, ws["id"].as_str().unwrap());
        for f in ["leaf.crt", "leaf.key"] {
            let bytes = std::fs::read(pki.path().join(f)).unwrap();
            common::authed(ureq::put(&format!("{one}/files?path=/tmp/{f}")).timeout(Duration::from_secs(60))).send_bytes(&bytes).unwrap();
        }
        let script = format!("python3 - <<'PY'\n{FETCH}\nPY\npip config list");
        let r = call("POST", &format!("{one}/exec"), Some(json!({"argv": ["bash", "-lc", script], "timeout_secs": 120})));
        let out = r["stdout"].as_str().unwrap_or_default();
        assert_eq!(r["exit_code"].as_i64(), Some(0), "{r}");
        assert!(out.contains("fetched 200"), "Python in the guest did not trust the host's CA: {r}");
        assert!(out.contains("global.cert='/etc/ssl/certs/ca-certificates.crt'"), "pip is not pointed at the store: {r}");
        common::stop(o);
    });
}
