//! Accounts from the command line against a real `hearth serve` on this host (direct mode:
//! no workstation boots here, sign-in needs none): the first start's administrator token and
//! link, `hearth user`, `hearth login` / `logout`, `hearth token`, `hearth audit`, and what a
//! user without a credential, or with a revoked one, is told. Secrets never reach the logs.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

struct Served {
    child: Child,
    base: String,
    /// What it wrote to stderr, read after it stops.
    stderr: Option<std::process::ChildStderr>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &std::path::Path) -> Served {
    let (mut child, base) = common::serve_direct(data, &[("HEARTH_LOG", "info")], Stdio::piped());
    let stderr = child.stderr.take();
    Served { child, base, stderr }
}

/// `hearth ARGS…` against `base`, as a CLI on this host would run it, with its own config
/// home (where `hearth login` saves tokens) and `stdin`.
fn cli(data: &std::path::Path, base: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = common::hearth(data)
        .args(args)
        .args(["--server", base])
        .env("XDG_CONFIG_HOME", data.join("xdg"))
        .env_remove("HEARTH_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn accounts_tokens_and_sign_in_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = serve(data);
    let base = server.base.clone();
    let ok = |args: &[&str], stdin: &str| {
        let (code, out, err) = cli(data, &base, args, stdin);
        assert_eq!(code, 0, "hearth {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        (out, err)
    };

    // The host's CLI is the administrator (it reads the data directory's token).
    let admin_token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    ok(&["user", "add", "ann", "--email", "ann@lab.org", "--password-stdin"], "ann's password\n");
    let (users, _) = ok(&["user", "ls"], "");
    assert!(users.contains("ann") && users.contains("admin"), "{users}");

    // Ann signs in with her own config home and no administrator token in reach.
    let ann_home = tempfile::tempdir().unwrap();
    let as_user = |home: &std::path::Path, args: &[&str], stdin: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(args)
            .args(["--server", &base])
            .env("XDG_CONFIG_HOME", home)
            .env("HEARTH_DATA_DIR", home)
            .env_remove("HEARTH_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(stdin.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let as_ann = |args: &[&str], stdin: &str| as_user(ann_home.path(), args, stdin);
    let (code, _, err) = as_ann(&["ws", "ls"], "");
    assert!(code != 0 && err.contains("HTTP 401") && err.contains("hearth login"), "{err}");
    let (code, _, err) = as_ann(&["login", "--user", "ann", "--password-stdin"], "wrong password\n");
    assert!(code != 0 && err.contains("HTTP 401"), "{err}");
    let (code, _, err) = as_ann(&["login", "--user", "ann", "--password-stdin"], "ann's password\n");
    assert_eq!(code, 0, "{err}");
    let saved = ann_home.path().join("hearth/tokens.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, out, err) = as_ann(&["ws", "ls"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID"), "{out}");
    let (code, _, err) = as_ann(&["user", "ls"], "");
    assert!(code != 0 && err.contains("HTTP 403"), "users are for administrators: {err}");
    let (code, out, err) = as_ann(&["token", "create", "ci", "--scope", "read", "--days", "7"], "");
    assert_eq!(code, 0, "{err}");
    let read_token = out.trim().to_string();
    assert!(read_token.starts_with("hth_"), "{out}");
    let (_, list, _) = as_ann(&["token", "ls"], "");
    assert!(list.contains("ci") && list.contains("read") && list.contains("hearth login on"), "{list}");
    let (code, _, err) = as_ann(&["logout"], "");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = as_ann(&["ws", "ls"], "");
    assert!(code != 0 && err.contains("HTTP 401"), "signed out: {err}");
    let (code, _, _) = as_ann(&["ws", "ls", "--token", &read_token], "");
    assert_eq!(code, 0, "the read token still works");

    // Sharing (a workstation made without booting it: nothing boots on this host).
    assert_eq!(as_ann(&["login", "--user", "ann", "--password-stdin"], "ann's password\n").0, 0);
    let (code, out, err) = as_ann(&["ws", "create", "notes", "--no-start", "--mem", "256", "--disk", "1", "--json"], "");
    assert_eq!(code, 0, "{err}");
    let w: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = w[0]["id"].as_str().unwrap_or_else(|| panic!("{out}")).to_string();
    ok(&["user", "add", "bob", "--password-stdin"], "bob's password\n");
    let bob_home = tempfile::tempdir().unwrap();
    let as_bob = |args: &[&str], stdin: &str| as_user(bob_home.path(), args, stdin);
    assert_eq!(as_bob(&["login", "--user", "bob", "--password-stdin"], "bob's password\n").0, 0);
    let (_, out, _) = as_bob(&["ws", "ls"], "");
    assert!(!out.contains(&id), "not shared yet: {out}");
    let (code, _, err) = as_ann(&["ws", "share", &id, "bob", "--token", &read_token], "");
    assert!(code != 0 && err.contains("HTTP 403"), "a read token shares nothing: {err}");
    let (code, _, err) = as_ann(&["ws", "share", &id, "bob", "--role", "viewer"], "");
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = as_bob(&["ws", "ls"], "");
    assert!(out.contains(&id), "shared: {out}");
    let (code, _, err) = as_bob(&["ws", "rm", &id], "");
    assert!(code != 0 && err.contains("HTTP 403") && err.contains("viewer"), "{err}");
    let (_, shares, _) = as_ann(&["ws", "shares", &id], "");
    assert!(shares.contains("bob") && shares.contains("viewer"), "{shares}");
    assert_eq!(as_ann(&["ws", "unshare", &id, "bob"], "").0, 0);
    let (code, _, err) = as_bob(&["ws", "show", &id], "");
    assert!(code != 0 && err.contains("HTTP 404"), "{err}");
    assert_eq!(as_ann(&["ws", "rm", &id], "").0, 0);

    // Quotas: the administrator sets ann's own; she sees hers.
    ok(&["user", "quota", "ann", "--vcpus", "4", "--workstations", "2"], "");
    let (code, out, err) = as_ann(&["user", "quota", "ann", "--token", &read_token], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("vcpus") && l.trim_end().ends_with('4')), "{out}");

    // The allowlist, kept by the administrator.
    ok(&["allowlist", "add", "*@Lab.org", "bob@x.org"], "");
    ok(&["allowlist", "rm", "bob@x.org"], "");
    let (list, _) = ok(&["allowlist"], "");
    assert!(list.contains("*@lab.org") && !list.contains("bob@x.org"), "{list}");
    let (code, _, err) = cli(data, &base, &["allowlist", "rm", "nobody@x.org"], "");
    assert!(code != 0 && err.contains("not an entry"), "{err}");

    // The audit log shows what happened, the failed sign-in included.
    let (audit, _) = ok(&["audit", "--limit", "100"], "");
    for action in ["create_user", "sign_in_failed", "sign_in", "create_token", "sign_out"] {
        assert!(audit.contains(action), "no {action} in\n{audit}");
    }

    // Its log never holds a password or a token, beyond the one-time link it prints.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let mut log = String::new();
    server.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    server.child.wait().unwrap();
    assert!(log.contains("/auth/link?code=hth_"), "the first start prints a sign-in link:\n{log}");
    for secret in ["ann's password", "wrong password", &admin_token, &read_token] {
        assert!(!log.contains(secret), "the server's log holds a secret ({secret:.12}…):\n{log}");
    }
}
