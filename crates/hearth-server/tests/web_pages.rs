//! The web UI's first start (the administrator's sign-in link, then a password set in the
//! page), administration and sharing pages in a real browser (ui/test/pages.mjs: Debian's
//! Chromium via playwright-core) against the real router on loopback, over the service with
//! its fake backend (hearth_service::testing; terminals run in the real agent server on this
//! host): no box, so these run in seconds. The workstation flows with real Firecracker VMs
//! are crates/hearth/tests/ui_e2e.rs.

use std::process::Command;
use std::time::Duration;

use hearth_proto::api::{CreateUser, CreateWorkstation};
use hearth_service::config::Config;
use hearth_service::{Need, Principal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administration_and_sharing_pages_work_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let budget = Need { mem_mib: 16384, vcpus: 16, disk_gib: 100 };
    let (svc, _backend) = hearth_service::testing::service(dir.path(), Config::default(), budget);
    let link = svc.bootstrap(dir.path(), None).unwrap().link.expect("no administrator has a password yet: a sign-in link");
    let admin = Principal::admin("admin");
    let passwords = [("root", "root's long password"), ("ann", "ann's long password"), ("bob", "bob's long password")];
    for (id, password) in passwords {
        let user = CreateUser { id: id.into(), password: Some(password.into()), email: None, admin: id == "root" };
        svc.create_user(&admin, user).await.unwrap();
    }
    svc.create(
        &Principal::user("ann"),
        CreateWorkstation { name: "shared-lab".into(), mem_size_mib: Some(1024), vcpu_count: Some(2), disk_size_gib: Some(4), ..Default::default() },
    )
    .await
    .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = hearth_server::api::router(svc.clone());
    let server = tokio::spawn(hearth_server::api::listen::serve(listener, router, Duration::from_secs(30), None, async {
        let _ = stopped.await;
    }));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ui/test/pages.mjs");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-pages");
    let status = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("node");
        cmd.arg(script).env("HEARTH_URL", &base).env("SCREENSHOTS", &shots).env("SIGN_IN_LINK", format!("/auth/link?code={link}"));
        for (id, password) in passwords {
            cmd.env(format!("{}_PASSWORD", id.to_uppercase()), password);
        }
        cmd.status().expect("node runs (scripts/deps.sh installs it)")
    })
    .await
    .unwrap();
    assert!(status.success(), "the browser run failed ({status}); its steps are above");
    // What the pages did reached the service.
    let bob = svc.quota(&admin, "bob").await.unwrap();
    assert_eq!(bob.overrides.max_workstations, Some(1));
    assert!(svc.user(&admin, "cy").await.is_ok(), "the account made in the page");
    svc.begin_stopping();
    let _ = stop.send(());
    server.await.unwrap();
}
