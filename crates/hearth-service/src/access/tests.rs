//! Accounts and credentials through the service's operations, over a real (in-memory) store.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use hearth_proto::api::{CreateToken, CreateUser, CreateWorkstation, Scope, SignIn, UpdateUser};

use super::records::{CredentialRow, Kind};
use super::{Credential, FIRST_ADMIN};
use crate::config::Config;
use crate::testing::service;
use crate::{Error, Need, Principal, Service};

fn fixture(config: Config) -> (tempfile::TempDir, Arc<Service>) {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = service(dir.path(), config, Need { mem_mib: 1 << 20, vcpus: 1 << 10, disk_gib: 1 << 10 });
    (dir, svc)
}

fn sign_in(user: &str, password: &str) -> SignIn {
    SignIn { user: user.into(), password: password.into(), scope: None, name: None, expires_in_days: None }
}

async fn add_user(svc: &Arc<Service>, id: &str, password: &str) {
    let admin = Principal::admin(FIRST_ADMIN);
    svc.create_user(&admin, CreateUser { id: id.into(), password: Some(password.into()), ..Default::default() }).await.unwrap();
}

fn unauthenticated<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(matches!(r, Err(Error::Unauthenticated(_))), "{r:?}");
}

#[tokio::test]
async fn the_first_start_makes_an_administrator_a_token_file_and_a_one_time_link() {
    let (dir, svc) = fixture(Config::default());
    let boot = svc.bootstrap(dir.path(), None).unwrap();
    let token = std::fs::read_to_string(&boot.admin_token_file).unwrap();
    assert_eq!(std::fs::metadata(&boot.admin_token_file).unwrap().permissions().mode() & 0o777, 0o600);
    let auth = svc.authenticate(Credential::Bearer(token.trim())).await.unwrap();
    assert!(auth.principal.is_admin() && auth.principal.user == FIRST_ADMIN);
    let link = boot.link.expect("no administrator has a password yet: a link");

    // The next start keeps the token; its new link ends the old one.
    let again = svc.bootstrap(dir.path(), None).unwrap();
    assert_eq!(std::fs::read_to_string(&again.admin_token_file).unwrap(), token);
    unauthenticated(svc.redeem_link(link).await);
    let session = svc.redeem_link(again.link.clone().unwrap()).await.unwrap();
    assert!(session.session.admin && session.session.csrf_token.is_some());
    unauthenticated(svc.redeem_link(again.link.unwrap()).await);
    let auth = svc.authenticate(Credential::Session(&session.secret)).await.unwrap();
    assert_eq!(auth.principal.user, FIRST_ADMIN);

    // Once an administrator has a password, no more links.
    let admin = auth.principal;
    svc.update_user(&admin, FIRST_ADMIN, UpdateUser { password: Some("a long secret".into()), ..Default::default() }).await.unwrap();
    assert!(svc.bootstrap(dir.path(), None).unwrap().link.is_none());
    unauthenticated(svc.authenticate(Credential::Session(&session.secret)).await);

    // The token file brought to a fresh database (the box's server gets its host's) works there.
    let (dir2, svc2) = fixture(Config { auth: crate::config::Auth { admin_token_file: boot.admin_token_file.display().to_string(), ..Default::default() }, ..Config::default() });
    svc2.bootstrap(dir2.path(), None).unwrap();
    assert!(svc2.authenticate(Credential::Bearer(token.trim())).await.unwrap().principal.is_admin());
    // Or handed over directly (the box's server gets its host's so); nothing else is taken.
    let (dir3, svc3) = fixture(Config::default());
    assert!(svc3.bootstrap(dir3.path(), Some("hunter2")).is_err());
    svc3.bootstrap(dir3.path(), Some(&token)).unwrap();
    assert!(svc3.authenticate(Credential::Bearer(token.trim())).await.unwrap().principal.is_admin());
    assert!(!dir3.path().join("admin.token").exists(), "a handed token is not written");
}

#[tokio::test]
async fn passwords_sign_in_and_failures_are_rate_limited() {
    let mut config = Config::default();
    config.auth.max_failed_sign_ins = 3;
    let (dir, svc) = fixture(config);
    svc.bootstrap(dir.path(), None).unwrap();
    add_user(&svc, "ann", "ann's password").await;
    let from: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());

    let s = svc.sign_in(sign_in("ann", "ann's password"), from).await.unwrap();
    assert_eq!((s.session.user.as_str(), s.session.admin, s.session.scope), ("ann", false, Scope::Write));
    let auth = svc.authenticate(Credential::Session(&s.secret)).await.unwrap();
    assert_eq!(auth.csrf, s.session.csrf_token);
    // A session is not an API token, nor the other way round.
    unauthenticated(svc.authenticate(Credential::Bearer(&s.secret)).await);

    for wrong in ["nope nope", "ann's passworD", ""] {
        unauthenticated(svc.sign_in(sign_in("ann", wrong), from).await);
    }
    let limited = svc.sign_in(sign_in("ann", "ann's password"), from).await;
    assert!(matches!(limited, Err(Error::RateLimited { retry_after_secs }) if retry_after_secs > 0), "{limited:?}");
    unauthenticated(svc.sign_in(sign_in("nobody", "whatever!"), from).await);
    unauthenticated(svc.sign_in(sign_in(&"x".repeat(100_000), "whatever!"), from).await);

    // Signing out ends the session.
    svc.sign_out(&auth).await.unwrap();
    unauthenticated(svc.authenticate(Credential::Session(&s.secret)).await);
}

#[tokio::test]
async fn tokens_carry_their_scope_and_stop_when_revoked_or_expired() {
    let (dir, svc) = fixture(Config::default());
    svc.bootstrap(dir.path(), None).unwrap();
    add_user(&svc, "ann", "ann's password").await;
    let ann = Principal::user("ann");
    let w = svc.create(&ann, CreateWorkstation { name: "mine".into(), ..Default::default() }).await.unwrap();

    let read = svc.create_token(&ann, CreateToken { name: "ro".into(), scope: Some(Scope::Read), expires_in_days: Some(1) }).await.unwrap();
    assert!(read.token.expires_unix_ms.is_some() && !svc.tokens(&ann).await.unwrap().is_empty());
    let reader = svc.authenticate(Credential::Bearer(&read.secret)).await.unwrap().principal;
    assert_eq!(svc.list(&reader).await.unwrap().len(), 1);
    assert!(matches!(svc.delete(&reader, &w.id).await, Err(Error::Forbidden(_))));
    assert!(matches!(svc.create(&reader, CreateWorkstation { name: "x".into(), ..Default::default() }).await, Err(Error::Forbidden(_))));
    assert!(matches!(svc.create_token(&reader, CreateToken { name: "w".into(), ..Default::default() }).await, Err(Error::Forbidden(_))));
    // Users cannot mint admin tokens; an administrator's write token acts as a plain user.
    assert!(matches!(svc.create_token(&ann, CreateToken { name: "a".into(), scope: Some(Scope::Admin), ..Default::default() }).await, Err(Error::Forbidden(_))));
    let admin = Principal::admin(FIRST_ADMIN);
    let plain = svc.create_token(&admin, CreateToken { name: "w".into(), scope: Some(Scope::Write), expires_in_days: Some(0) }).await.unwrap();
    assert!(plain.token.expires_unix_ms.is_none());
    let as_user = svc.authenticate(Credential::Bearer(&plain.secret)).await.unwrap().principal;
    assert!(!as_user.is_admin());
    assert!(matches!(svc.get(&as_user, &w.id).await, Err(Error::NotFound(_))), "not ann's workstation to an admin's write token");
    assert!(svc.get(&admin, &w.id).await.is_ok());

    // Another user cannot revoke ann's token (not found); ann can.
    assert!(matches!(svc.revoke_token(&Principal::user("bob"), &read.token.id).await, Err(Error::NotFound(_))));
    svc.revoke_token(&ann, &read.token.id).await.unwrap();
    unauthenticated(svc.authenticate(Credential::Bearer(&read.secret)).await);

    // An expired token is refused (its expiry set in the past directly in the store).
    let old = svc.create_token(&ann, CreateToken { name: "old".into(), ..Default::default() }).await.unwrap();
    let mut row: CredentialRow = svc.store.credential(&old.token.id).unwrap().unwrap();
    assert_eq!(row.kind, Kind::Token);
    svc.store.delete_credential(&row.id).unwrap();
    row.expires_ms = Some(1);
    svc.store.insert_credential(&row, u64::MAX).unwrap();
    unauthenticated(svc.authenticate(Credential::Bearer(&old.secret)).await);

    for (bad, field) in [
        (CreateToken { name: "".into(), ..Default::default() }, "name"),
        (CreateToken { name: "x".into(), expires_in_days: Some(99_999), ..Default::default() }, "expires_in_days"),
    ] {
        assert!(matches!(svc.create_token(&ann, bad).await, Err(Error::Invalid { field: f, .. }) if f == field));
    }
}

#[tokio::test]
async fn accounts_are_managed_by_administrators_and_guarded() {
    let (dir, svc) = fixture(Config::default());
    svc.bootstrap(dir.path(), None).unwrap();
    let admin = Principal::admin(FIRST_ADMIN);
    add_user(&svc, "ann", "ann's password").await;
    let ann = Principal::user("ann");
    assert!(matches!(svc.users(&ann).await, Err(Error::Forbidden(_))));
    assert!(matches!(svc.create_user(&ann, CreateUser { id: "eve".into(), ..Default::default() }).await, Err(Error::Forbidden(_))));
    assert!(matches!(svc.user(&ann, FIRST_ADMIN).await, Err(Error::NotFound(_))));
    assert_eq!(svc.user(&ann, "ann").await.unwrap().id, "ann");
    assert_eq!(svc.users(&admin).await.unwrap().len(), 2);
    assert!(matches!(svc.create_user(&admin, CreateUser { id: "ann".into(), ..Default::default() }).await, Err(Error::Conflict(_))));
    for (id, pw) in [("Ann", None), ("a:b", None), ("", None), ("bob", Some("short"))] {
        let r = svc.create_user(&admin, CreateUser { id: id.into(), password: pw.map(String::from), ..Default::default() }).await;
        assert!(matches!(r, Err(Error::Invalid { .. })), "{id}: {r:?}");
    }

    // Users change their own password with the current one, and nothing else.
    let change = |current: &str| UpdateUser { password: Some("a new password".into()), current_password: Some(current.into()), ..Default::default() };
    assert!(matches!(svc.update_user(&ann, "ann", change("wrong one")).await, Err(Error::Forbidden(_))));
    svc.update_user(&ann, "ann", change("ann's password")).await.unwrap();
    assert!(svc.sign_in(sign_in("ann", "a new password"), None).await.is_ok());
    assert!(matches!(svc.update_user(&ann, "ann", UpdateUser { admin: Some(true), ..Default::default() }).await, Err(Error::Forbidden(_))));

    // A disabled account's credentials stop working.
    let t = svc.create_token(&ann, CreateToken { name: "t".into(), ..Default::default() }).await.unwrap();
    svc.update_user(&admin, "ann", UpdateUser { disabled: Some(true), ..Default::default() }).await.unwrap();
    unauthenticated(svc.authenticate(Credential::Bearer(&t.secret)).await);
    unauthenticated(svc.sign_in(sign_in("ann", "a new password"), None).await);
    svc.update_user(&admin, "ann", UpdateUser { disabled: Some(false), ..Default::default() }).await.unwrap();

    // Not while it owns workstations; not the last administrator.
    let w = svc.create(&ann, CreateWorkstation { name: "w".into(), ..Default::default() }).await.unwrap();
    assert!(matches!(svc.delete_user(&admin, "ann").await, Err(Error::Conflict(_))));
    svc.delete(&ann, &w.id).await.unwrap();
    svc.delete_user(&admin, "ann").await.unwrap();
    unauthenticated(svc.authenticate(Credential::Bearer(&t.secret)).await);
    assert!(matches!(svc.delete_user(&admin, FIRST_ADMIN).await, Err(Error::Conflict(_))));
    assert!(matches!(svc.update_user(&admin, FIRST_ADMIN, UpdateUser { admin: Some(false), ..Default::default() }).await, Err(Error::Conflict(_))));
}

#[tokio::test]
async fn the_audit_log_shows_each_action_and_users_see_their_own() {
    let (dir, svc) = fixture(Config::default());
    svc.bootstrap(dir.path(), None).unwrap();
    add_user(&svc, "ann", "ann's password").await;
    let ann = Principal::user("ann");
    let w = svc.create(&ann, CreateWorkstation { name: "w".into(), ..Default::default() }).await.unwrap();
    svc.act(&ann, &w.id, crate::workstations::Action::Stop).await.unwrap();
    svc.act(&ann, &w.id, crate::workstations::Action::Start).await.unwrap();
    let req = hearth_proto::api::ExecRequest { argv: vec!["echo".into(), "hi".into()], ..Default::default() };
    svc.exec(&ann, &w.id, req).await.unwrap();
    let t = svc.open_terminal(&ann, &w.id, hearth_proto::api::CreateTerminal { argv: vec!["sh".into()], ..Default::default() }).await.unwrap();
    drop(svc.attach_terminal(&ann, &w.id, &t.id, crate::terminals::AttachMode::View).await.unwrap());
    svc.delete(&ann, &w.id).await.unwrap();
    let _ = svc.sign_in(sign_in("ann", "not it at all"), Some("192.0.2.9".parse().unwrap())).await;

    let admin = Principal::admin(FIRST_ADMIN);
    let all = svc.audit_log(&admin, Default::default()).await.unwrap();
    let actions: Vec<(&str, &str, &str)> = all.iter().rev().map(|e| (e.user.as_str(), e.action.as_str(), e.target.as_str())).collect();
    let want = [
        ("admin", "create_user", "ann"),
        ("ann", "create", w.id.as_str()),
        ("ann", "stop", &w.id),
        ("ann", "start", &w.id),
        ("ann", "exec", &w.id),
        ("ann", "open_terminal", &w.id),
        ("ann", "attach", &w.id),
        ("ann", "delete", &w.id),
        ("ann", "sign_in_failed", "ann"),
    ];
    assert_eq!(actions, want);
    let exec = all.iter().find(|e| e.action == "exec").unwrap();
    assert!(exec.detail.ends_with("echo hi"), "{}", exec.detail);
    assert!(all.iter().find(|e| e.action == "sign_in_failed").unwrap().detail.contains("192.0.2.9"));
    assert!(!all.iter().any(|e| e.detail.contains("not it at all")), "no password in the log");

    // Users read their own; asking for another's is refused.
    let own = svc.audit_log(&ann, Default::default()).await.unwrap();
    assert!(own.iter().all(|e| e.user == "ann") && own.len() == 8);
    let q = crate::audit::Query { user: Some("admin".into()), ..Default::default() };
    assert!(matches!(svc.audit_log(&ann, q).await, Err(Error::Forbidden(_))));
    let q = crate::audit::Query { target: Some(w.id.clone()), limit: Some(2), ..Default::default() };
    assert_eq!(svc.audit_log(&admin, q).await.unwrap().iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["delete", "attach"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_stop_the_create_that_would_exceed_them() {
    let mut config = Config::default();
    config.quotas.user = crate::config::RoleQuota { max_workstations: 3, max_vcpus: 4, max_mem_mib: 0, max_disk_gib: 0, max_execs: 1 };
    let dir = tempfile::tempdir().unwrap();
    let (svc, backend) = service(dir.path(), config, Need { mem_mib: 1 << 20, vcpus: 1 << 10, disk_gib: 1 << 10 });
    svc.bootstrap(dir.path(), None).unwrap();
    add_user(&svc, "ann", "ann's password").await;
    let ann = Principal::user("ann");
    let ws = |name: &str, vcpus: u8| CreateWorkstation { name: name.into(), vcpu_count: Some(vcpus), mem_size_mib: Some(256), start: Some(false), ..Default::default() };
    svc.create(&ann, ws("a", 2)).await.unwrap();
    let over = svc.create(&ann, ws("b", 4)).await;
    assert!(matches!(&over, Err(Error::QuotaExceeded { limit: "max_vcpus", .. })), "{over:?}");
    assert_eq!(over.unwrap_err().field(), Some("max_vcpus"));

    // Many creates at once: the quota holds exactly (counted in the insert's transaction).
    // A create takes a while (a real one makes a disk): the race has room to show.
    backend.create_ms.store(20, std::sync::atomic::Ordering::Relaxed);
    let mut all = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (svc, ann) = (svc.clone(), ann.clone());
        all.spawn(async move { svc.create(&ann, ws(&format!("c{i}"), 1)).await });
    }
    let made = all.join_all().await.into_iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 2, "3 workstations at most, 1 held before");
    let report = svc.quota(&ann, "ann").await.unwrap();
    assert_eq!((report.usage.workstations, report.usage.vcpus, report.limits.max_workstations), (3, 4, Some(3)));

    // An administrator raises ann's own limits; others are not affected; ann cannot.
    let admin = Principal::admin(FIRST_ADMIN);
    let own = hearth_proto::api::Quota { max_workstations: Some(5), max_vcpus: Some(0), ..Default::default() };
    assert!(matches!(svc.set_quota(&ann, "ann", own).await, Err(Error::Forbidden(_))));
    let report = svc.set_quota(&admin, "ann", own).await.unwrap();
    assert_eq!((report.limits.max_workstations, report.limits.max_vcpus, report.overrides.max_vcpus), (Some(5), None, Some(0)));
    svc.create(&ann, ws("d", 8)).await.unwrap();
    assert!(matches!(svc.quota(&Principal::user("bob"), "ann").await, Err(Error::NotFound(_))));

    // Commands at once: one, by ann's role.
    let (svc2, ann2) = (svc.clone(), ann.clone());
    let w = svc.create(&ann, CreateWorkstation { name: "run".into(), mem_size_mib: Some(256), vcpu_count: Some(1), ..Default::default() }).await.unwrap();
    let id = w.id.clone();
    let long = tokio::spawn(async move { svc2.exec(&ann2, &id, hearth_proto::api::ExecRequest { argv: vec!["sleep".into(), "2".into()], ..Default::default() }).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while svc.quota(&ann, "ann").await.unwrap().usage.execs == 0 {
        assert!(std::time::Instant::now() < deadline, "the long exec never started");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let second = svc.exec(&ann, &w.id, hearth_proto::api::ExecRequest { argv: vec!["true".into()], ..Default::default() }).await;
    assert!(matches!(second, Err(Error::QuotaExceeded { limit: "max_execs", .. })), "{second:?}");
    long.await.unwrap().unwrap();
    assert!(svc.exec(&ann, &w.id, hearth_proto::api::ExecRequest { argv: vec!["true".into()], ..Default::default() }).await.is_ok(), "its place is given back");
}

#[tokio::test]
async fn shared_workstations_are_seen_by_viewers_and_used_by_collaborators() {
    use crate::terminals::AttachMode;
    use hearth_proto::api::{CreateTerminal, ExecRequest, ShareRole};
    let (dir, svc) = fixture(Config::default());
    svc.bootstrap(dir.path(), None).unwrap();
    for u in ["ann", "vic", "col", "eve"] {
        add_user(&svc, u, "a long password").await;
    }
    let (ann, vic, col, eve) = (Principal::user("ann"), Principal::user("vic"), Principal::user("col"), Principal::user("eve"));
    let w = svc.create(&ann, CreateWorkstation { name: "shared".into(), ..Default::default() }).await.unwrap();
    let t = svc.open_terminal(&ann, &w.id, CreateTerminal { argv: vec!["sh".into()], ..Default::default() }).await.unwrap();
    let exec = || ExecRequest { argv: vec!["true".into()], ..Default::default() };
    let forbidden = |r: Result<(), Error>| assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let not_found = |r: Result<(), Error>| assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");

    // Only the owner shares; with users that exist.
    not_found(svc.share(&vic, &w.id, "vic", ShareRole::Collaborator).await.map(drop));
    not_found(svc.share(&ann, &w.id, "nobody", ShareRole::Viewer).await.map(drop));
    svc.share(&ann, &w.id, "vic", ShareRole::Viewer).await.unwrap();
    svc.share(&ann, &w.id, "col", ShareRole::Collaborator).await.unwrap();
    assert_eq!(svc.shares(&ann, &w.id).await.unwrap().len(), 2);

    // A viewer sees it (and that it is shared with them, as what) and watches; uses nothing.
    let seen = svc.list(&vic).await.unwrap();
    assert_eq!(seen.iter().map(|x| (x.id.as_str(), x.shared_as)).collect::<Vec<_>>(), [(w.id.as_str(), Some(ShareRole::Viewer))]);
    assert_eq!(svc.get(&vic, &w.id).await.unwrap().shared_as, Some(ShareRole::Viewer));
    assert_eq!(svc.get(&col, &w.id).await.unwrap().shared_as, Some(ShareRole::Collaborator));
    assert_eq!((svc.get(&ann, &w.id).await.unwrap().shared_as, svc.list(&ann).await.unwrap()[0].shared_as), (None, None), "its owner's own");
    svc.console_tail(&vic, &w.id, None).await.unwrap();
    drop(svc.attach_terminal(&vic, &w.id, &t.id, AttachMode::View).await.unwrap());
    forbidden(svc.attach_terminal(&vic, &w.id, &t.id, AttachMode::Write).await.map(drop));
    forbidden(svc.exec(&vic, &w.id, exec()).await.map(drop));
    forbidden(svc.act(&vic, &w.id, crate::workstations::Action::Stop).await.map(drop));
    forbidden(svc.delete(&vic, &w.id).await);
    forbidden(svc.shares(&vic, &w.id).await.map(drop));

    // A collaborator uses it; cannot delete or share it.
    svc.exec(&col, &w.id, exec()).await.unwrap();
    drop(svc.attach_terminal(&col, &w.id, &t.id, AttachMode::Write).await.unwrap());
    forbidden(svc.delete(&col, &w.id).await);
    forbidden(svc.share(&col, &w.id, "eve", ShareRole::Viewer).await.map(drop));

    // Anyone else: it does not exist.
    not_found(svc.get(&eve, &w.id).await.map(drop));
    assert!(svc.list(&eve).await.unwrap().is_empty());

    // A share ends when revoked, and with its user.
    svc.unshare(&ann, &w.id, "vic").await.unwrap();
    not_found(svc.get(&vic, &w.id).await.map(drop));
    svc.delete_user(&Principal::admin(FIRST_ADMIN), "col").await.unwrap();
    assert!(svc.shares(&ann, &w.id).await.unwrap().is_empty());
    svc.share(&ann, &w.id, "eve", ShareRole::Viewer).await.unwrap();
    svc.delete(&ann, &w.id).await.unwrap();
    assert!(svc.list(&eve).await.unwrap().is_empty(), "and with its workstation");
}

#[tokio::test]
async fn the_allowlist_joins_the_configurations_and_the_administrators_entries() {
    let mut config = Config::default();
    config.auth.allow_emails = vec!["ann@x.org".into()];
    let (_dir, svc) = fixture(config);
    let admin = Principal::admin(FIRST_ADMIN);
    assert!(svc.email_allowed(Some("ann@x.org")).unwrap() && !svc.email_allowed(Some("bob@lab.org")).unwrap());
    let list = svc.set_allowlist(&admin, vec!["*@Lab.org".into()]).await.unwrap();
    assert_eq!((list.configured, list.managed), (vec!["ann@x.org".to_string()], vec!["*@lab.org".to_string()]));
    assert!(svc.email_allowed(Some("bob@lab.org")).unwrap() && svc.email_allowed(Some("ann@x.org")).unwrap());
    assert!(!svc.email_allowed(Some("eve@evil.org")).unwrap() && !svc.email_allowed(None).unwrap());
    assert!(matches!(svc.set_allowlist(&admin, vec!["nobody".into()]).await, Err(Error::Invalid { .. })));
    assert!(matches!(svc.set_allowlist(&Principal::user("ann"), vec![]).await, Err(Error::Forbidden(_))));
    // Nothing configured, nothing kept: anyone.
    let (_dir, open) = fixture(Config::default());
    assert!(open.email_allowed(None).unwrap());
}
