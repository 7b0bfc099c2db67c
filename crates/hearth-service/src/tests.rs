//! The operations over the fake backend: policy, admission, records and cleanup, with the
//! real agent server on this host behind terminals and commands.

use std::collections::HashSet;
use std::sync::Arc;

use hearth_proto::api::{CreateTerminal, CreateWorkstation, ExecRequest, Setup, WorkstationState};

use crate::backend::Backend as _;
use crate::config::Config;
use crate::terminals::ReadFrom;
use crate::testing::{service, FakeBackend};
use crate::workstations::Action;
use crate::{Error, Need, Principal, Service, Unavailable, SETUP_TERMINAL};

fn create(name: &str) -> CreateWorkstation {
    CreateWorkstation { name: name.into(), mem_size_mib: Some(512), vcpu_count: Some(1), disk_size_gib: Some(1), ..CreateWorkstation::default() }
}

fn roomy() -> Need {
    Need { mem_mib: 1 << 20, vcpus: 1 << 10, disk_gib: 1 << 10 }
}

fn fixture(budget: Need) -> (tempfile::TempDir, Arc<Service>, Arc<FakeBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let (svc, backend) = service(dir.path(), Config::default(), budget);
    (dir, svc, backend)
}

/// Creates `n` workstations at once; returns what each create answered.
async fn creates_at_once(svc: &Arc<Service>, n: usize, start: bool) -> Vec<Result<hearth_proto::api::Workstation, Error>> {
    let mut all = tokio::task::JoinSet::new();
    for i in 0..n {
        let svc = svc.clone();
        all.spawn(async move { svc.create(&Principal::admin("admin"), CreateWorkstation { start: Some(start), ..create(&format!("w{i}")) }).await });
    }
    all.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_creates_at_once_against_a_budget_for_five_admit_five() {
    // The race this guards against (a create finishing between another's read of the records
    // and its check) shows in about one round in five when it is there: twenty rounds.
    for round in 0..20 {
        // Room for five running workstations' memory, plenty of the rest.
        let (_d, svc, backend) = fixture(Need { mem_mib: 5 * 512, ..roomy() });
        let answers = creates_at_once(&svc, 50, true).await;
        let made = answers.iter().filter(|a| a.is_ok()).count();
        let refused = answers.iter().filter(|a| matches!(a, Err(Error::Unavailable { what: Unavailable::Memory, .. }))).count();
        let other = answers.iter().filter_map(|a| a.as_ref().err()).find(|e| !matches!(e, Error::Unavailable { .. }));
        assert_eq!((made, refused), (5, 45), "round {round}: {other:?}");
        let running = svc.list(&Principal::admin("admin")).await.unwrap().into_iter().filter(|w| w.state == WorkstationState::Running).count();
        assert_eq!(running, 5);
        // A refused create leaves nothing behind.
        assert_eq!(backend.ids().unwrap().len(), 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_workstation_limit_holds_against_creates_at_once() {
    let mut config = Config::default();
    config.limits.max_workstations = 5;
    let dir = tempfile::tempdir().unwrap();
    let (svc, backend) = service(dir.path(), config, roomy());
    // Making a workstation takes time (a disk): creates overlap between check and record.
    backend.create_ms.store(20, std::sync::atomic::Ordering::Relaxed);
    let answers = creates_at_once(&svc, 50, false).await;
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 5);
    assert!(answers.iter().all(|a| a.is_ok() || matches!(a, Err(Error::Conflict(m)) if m.contains("at most 5 workstations"))));
    // The creates refused at the record had made a directory first: each was undone.
    assert_eq!(backend.ids().unwrap().len(), 5);
}

#[tokio::test]
async fn a_restart_refused_for_room_leaves_the_workstation_running() {
    let (_d, svc, _b) = fixture(Need { mem_mib: 1024, ..roomy() });
    let me = Principal::admin("admin");
    let w = svc.create(&me, create("a")).await.unwrap();
    // Its own share does not count against its restart.
    assert_eq!(svc.act(&me, &w.id, Action::Restart).await.unwrap().state, WorkstationState::Running);
    // Another operation holds the rest of the room.
    let _held = svc.admission.admit(|| Ok::<_, Error>(vec![]), "another", Need { mem_mib: 1024, ..Need::default() }).unwrap();
    let refused = svc.act(&me, &w.id, Action::Restart).await.unwrap_err();
    assert!(matches!(refused, Error::Unavailable { what: Unavailable::Memory, .. }), "{refused:?}");
    assert_eq!(svc.get(&me, &w.id).await.unwrap().state, WorkstationState::Running);
}

#[tokio::test]
async fn workstations_marked_to_resume_with_their_host_boot_within_the_budget() {
    let (_d, svc, backend) = fixture(Need { mem_mib: 512, ..roomy() });
    let me = Principal::admin("admin");
    let a = svc.create(&me, create("a")).await.unwrap();
    let b = svc.create(&me, CreateWorkstation { start: Some(false), ..create("b") }).await.unwrap();
    // As a box going down leaves ones it could not hibernate: stopped and marked.
    svc.act(&me, &a.id, Action::Stop).await.unwrap();
    svc.store.set_resume(&a.id, true).unwrap();
    svc.store.set_resume(&b.id, true).unwrap();
    let boots = backend.starts.load(std::sync::atomic::Ordering::SeqCst);
    svc.resume_suspended();
    assert_eq!(backend.starts.load(std::sync::atomic::Ordering::SeqCst), boots + 1, "only one fits");
    let mut states = Vec::new();
    for w in [&a, &b] {
        states.push((svc.get(&me, &w.id).await.unwrap().state, svc.events(&me, &w.id, Some(1)).await.unwrap().remove(0)));
    }
    states.sort_by_key(|(s, _)| *s == WorkstationState::Stopped);
    assert_eq!((states[0].0, states[1].0), (WorkstationState::Running, WorkstationState::Stopped));
    let last = &states[1].1;
    assert_eq!(last.kind, "start_failed");
    assert!(last.message.contains("memory budget"), "{}", last.message);
}

#[tokio::test]
async fn a_host_going_down_hibernates_and_the_next_use_wakes_it_where_it_was() {
    let (_d, svc, backend) = fixture(Need { mem_mib: 512, ..roomy() });
    let me = Principal::admin("admin");
    let a = svc.create(&me, create("a")).await.unwrap();
    let t = svc.open_terminal(&me, &a.id, CreateTerminal::default()).await.unwrap();
    let boots = backend.starts.load(std::sync::atomic::Ordering::SeqCst);
    svc.suspend_running();
    assert_eq!(svc.get(&me, &a.id).await.unwrap().state, WorkstationState::Hibernated);
    let ev = svc.events(&me, &a.id, Some(1)).await.unwrap().remove(0);
    assert_eq!(ev.kind, "hibernated");
    assert!(ev.message.contains("its host shut down"), "{}", ev.message);
    // Hibernated, it holds its disk only: another workstation's memory fits where its was.
    let b = svc.create(&me, create("b")).await.unwrap();
    assert_eq!(b.state, WorkstationState::Running);
    // Waking needs its memory back: refused while b holds it, with nothing changed.
    let refused = svc.exec(&me, &a.id, ExecRequest { argv: vec!["true".into()], ..ExecRequest::default() }).await.unwrap_err();
    assert!(matches!(refused, Error::Unavailable { what: Unavailable::Memory, .. }), "{refused:?}");
    assert_eq!(svc.get(&me, &a.id).await.unwrap().state, WorkstationState::Hibernated);
    svc.act(&me, &b.id, Action::Stop).await.unwrap();
    // The next use wakes it: its terminal is the one it had, and it did not boot again.
    let terms = svc.terminals(&me, &a.id).await.unwrap();
    assert_eq!(terms.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), [t.id.as_str()]);
    assert_eq!(svc.get(&me, &a.id).await.unwrap().state, WorkstationState::Running);
    assert_eq!(backend.starts.load(std::sync::atomic::Ordering::SeqCst), boots + 1, "only b booted");
    let ev = svc.events(&me, &a.id, Some(1)).await.unwrap().remove(0);
    assert_eq!(ev.kind, "woken");
    assert!(ev.message.contains("restored from its snapshot"), "{}", ev.message);
}

#[tokio::test]
async fn hibernate_is_an_action_and_start_or_resume_wake() {
    let (_d, svc, backend) = fixture(roomy());
    let me = Principal::admin("admin");
    let a = svc.create(&me, create("a")).await.unwrap();
    for wake in [Action::Start, Action::Resume] {
        assert_eq!(svc.act(&me, &a.id, Action::Hibernate).await.unwrap().state, WorkstationState::Hibernated);
        // Twice is a conflict, as pausing a paused one is.
        assert!(matches!(svc.act(&me, &a.id, Action::Hibernate).await, Err(Error::Conflict(_))));
        assert!(matches!(svc.act(&me, &a.id, Action::Pause).await, Err(Error::Conflict(_))));
        let boots = backend.starts.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(svc.act(&me, &a.id, wake).await.unwrap().state, WorkstationState::Running);
        assert_eq!(backend.starts.load(std::sync::atomic::Ordering::SeqCst), boots, "{wake:?} woke it, not a boot");
    }
    // A paused one hibernates too; stopping a hibernated one drops what it held.
    svc.act(&me, &a.id, Action::Pause).await.unwrap();
    svc.act(&me, &a.id, Action::Hibernate).await.unwrap();
    assert_eq!(svc.act(&me, &a.id, Action::Stop).await.unwrap().state, WorkstationState::Stopped);
    assert!(matches!(svc.act(&me, &a.id, Action::Hibernate).await, Err(Error::Conflict(_))));
}

#[tokio::test]
async fn a_wake_that_fails_both_ways_leaves_it_stopped_and_a_start_boots_it() {
    let (_d, svc, backend) = fixture(roomy());
    let me = Principal::admin("admin");
    let a = svc.create(&me, create("a")).await.unwrap();
    svc.act(&me, &a.id, Action::Hibernate).await.unwrap();
    backend.wakes_fail.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(svc.exec(&me, &a.id, ExecRequest { argv: vec!["true".into()], ..ExecRequest::default() }).await.is_err(), "the call that woke it is told");
    // The record says what the runtime does: stopped, not hibernated.
    let listed = svc.list(&me).await.unwrap();
    assert_eq!(listed.iter().find(|w| w.id == a.id).unwrap().state, WorkstationState::Stopped);
    let events: Vec<String> = svc.events(&me, &a.id, None).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(events.ends_with(&["wake_failed".to_string(), "stopped".to_string()]), "{events:?}");
    backend.wakes_fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(svc.act(&me, &a.id, Action::Start).await.unwrap().state, WorkstationState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_runs_once_at_the_first_boot_in_a_terminal_whose_output_stays() {
    let (_d, svc, _b) = fixture(roomy());
    let me = Principal::admin("admin");
    let setup = Setup { python_packages: vec![], script: "echo set-up-$((6*7))\nexit 3".into() };
    // Not started: nothing runs until the first boot.
    let a = svc.create(&me, CreateWorkstation { start: Some(false), setup: Some(setup), ..create("a") }).await.unwrap();
    assert!(svc.terminals(&me, &a.id).await.unwrap().is_empty());
    svc.act(&me, &a.id, Action::Start).await.unwrap();
    let mut out = String::new();
    let mut after = 0;
    let exited = loop {
        let o = svc.terminal_output(&me, &a.id, SETUP_TERMINAL, ReadFrom { after, max_bytes: None, wait_ms: 1000 }).await.unwrap();
        out += &o.data;
        after = o.next;
        if o.exited && o.data.is_empty() {
            break true;
        }
    };
    assert!(exited && out.contains("set-up-42"), "{out:?}");
    let t = svc.terminals(&me, &a.id).await.unwrap().into_iter().find(|t| t.id == SETUP_TERMINAL).unwrap();
    assert_eq!((t.exited, t.exit_code), (true, Some(3)), "its end and exit code are shown: {t:?}");
    let events: Vec<String> = svc.events(&me, &a.id, None).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(events.contains(&"setup_started".to_string()), "{events:?}");
    // Once: a restart does not run it again.
    svc.close_terminal(&me, &a.id, SETUP_TERMINAL).await.unwrap();
    svc.act(&me, &a.id, Action::Restart).await.unwrap();
    assert!(svc.terminals(&me, &a.id).await.unwrap().iter().all(|t| t.ended_unix_ms.is_some()), "nothing runs at the second boot");

    // Refused, naming the field: a package that is not a requirement, too many, a read-only
    // workstation (nothing it installs would stay).
    for (setup, read_only, field) in [
        (Setup { python_packages: vec!["numpy; rm -rf /".into()], script: String::new() }, None, "setup.python_packages"),
        (Setup { python_packages: vec!["-e".into()], script: String::new() }, None, "setup.python_packages"),
        (Setup { python_packages: vec!["x".into(); 65], script: String::new() }, None, "setup.python_packages"),
        (Setup { python_packages: vec![], script: "x".repeat(Setup::MAX_SCRIPT + 1) }, None, "setup.script"),
        (Setup { python_packages: vec!["pandas".into()], script: String::new() }, Some(true), "setup"),
    ] {
        let r = svc.create(&me, CreateWorkstation { setup: Some(setup), read_only, ..create("b") }).await;
        assert!(matches!(&r, Err(Error::Invalid { field: f, .. }) if f == field), "{field}: {r:?}");
    }
}

#[tokio::test]
async fn ids_are_random_and_terminal_ids_unguessable() {
    let (_d, svc, _b) = fixture(roomy());
    let me = Principal::admin("admin");
    let mut ids = HashSet::new();
    for i in 0..20 {
        let w = svc.create(&me, CreateWorkstation { start: Some(false), ..create(&format!("n{i}")) }).await.unwrap();
        assert!(hearth_net::WorkstationId::new(&w.id).is_ok(), "{}", w.id);
        ids.insert(w.id);
    }
    assert_eq!(ids.len(), 20);
    let w = svc.create(&me, create("t")).await.unwrap();
    let t1 = svc.open_terminal(&me, &w.id, CreateTerminal::default()).await.unwrap();
    let t2 = svc.open_terminal(&me, &w.id, CreateTerminal::default()).await.unwrap();
    for t in [&t1.id, &t2.id] {
        assert!(t.len() == 17 && t.starts_with('t') && t[1..].bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
    }
    assert_ne!(t1.id, t2.id);
    assert_ne!((t1.id.as_str(), t2.id.as_str()), ("t1", "t2"));
    let listed: Vec<String> = svc.terminals(&me, &w.id).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(listed, [t1.id, t2.id]);
}

#[tokio::test]
async fn others_workstations_do_not_exist_for_a_user_and_an_admin_sees_all() {
    let (_d, svc, _b) = fixture(roomy());
    let (ann, bob, admin) = (Principal::user("ann"), Principal::user("bob"), Principal::admin("admin"));
    let a = svc.create(&ann, create("ann's")).await.unwrap();
    assert_eq!(a.owner, "ann");
    let b = svc.create(&bob, CreateWorkstation { start: Some(false), ..create("bob's") }).await.unwrap();
    // Sorted: two creates in one millisecond list in their ids' (random) order.
    let names = |l: Vec<hearth_proto::api::Workstation>| {
        let mut n = l.into_iter().map(|w| w.name).collect::<Vec<_>>();
        n.sort();
        n
    };
    assert_eq!(names(svc.list(&ann).await.unwrap()), ["ann's"]);
    assert_eq!(names(svc.list(&admin).await.unwrap()), ["ann's", "bob's"]);
    let not_found = |r: Result<_, Error>| matches!(r, Err(Error::NotFound(_)));
    assert!(not_found(svc.get(&bob, &a.id).await.map(drop)));
    assert!(not_found(svc.act(&bob, &a.id, Action::Stop).await.map(drop)));
    assert!(not_found(svc.exec(&bob, &a.id, ExecRequest { argv: vec!["true".into()], ..ExecRequest::default() }).await.map(drop)));
    assert!(not_found(svc.open_terminal(&bob, &a.id, CreateTerminal::default()).await.map(drop)));
    assert!(not_found(svc.console_tail(&bob, &a.id, None).await.map(drop)));
    assert!(not_found(svc.events(&bob, &a.id, None).await.map(drop)));
    assert!(not_found(svc.delete(&bob, &a.id).await));
    // The message is the same as for an id nobody has.
    let unknown = svc.get(&bob, "w000000000000").await.unwrap_err().to_string();
    assert_eq!(svc.get(&bob, &a.id).await.unwrap_err().to_string(), unknown.replace("w000000000000", &a.id));
    svc.delete(&admin, &b.id).await.unwrap();
    svc.delete(&ann, &a.id).await.unwrap();
}

#[tokio::test]
async fn a_dead_vm_is_recorded_crashed_and_a_gone_directory_shows_lost() {
    let (_d, svc, backend) = fixture(roomy());
    let me = Principal::admin("admin");
    let w = svc.create(&me, create("a")).await.unwrap();
    backend.crash(&w.id, "KVM_EXIT_SHUTDOWN");
    let got = svc.get(&me, &w.id).await.unwrap();
    assert_eq!((got.state, got.crash.as_deref()), (WorkstationState::Crashed, Some("KVM_EXIT_SHUTDOWN")));
    assert_eq!(svc.events(&me, &w.id, Some(1)).await.unwrap()[0].kind, "crashed");
    // The list reads the store, where the crash is now.
    assert_eq!(svc.list(&me).await.unwrap()[0].state, WorkstationState::Crashed);
    backend.lose(&w.id);
    assert_eq!(svc.get(&me, &w.id).await.unwrap().state, WorkstationState::Lost);
    // A lost one can still be deleted.
    svc.delete(&me, &w.id).await.unwrap();
    assert!(svc.list(&me).await.unwrap().is_empty());
}

#[tokio::test]
async fn commands_and_files_run_through_the_agent() {
    let (_d, svc, _b) = fixture(roomy());
    let me = Principal::admin("admin");
    let w = svc.create(&me, create("a")).await.unwrap();
    let r = svc.exec(&me, &w.id, ExecRequest { argv: vec!["sh".into(), "-c".into(), "echo $((6*7)); exit 3".into()], ..ExecRequest::default() }).await.unwrap();
    assert_eq!((r.exit_code, r.stdout.as_str()), (Some(3), "42\n"));
    let e = svc.exec(&me, &w.id, ExecRequest { argv: vec!["/no/such/binary".into()], ..ExecRequest::default() }).await.unwrap_err();
    assert_eq!(e.field(), Some("argv"), "{e:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/f.txt").to_string_lossy().into_owned();
    let up = crate::files::Upload { path: path.clone(), mode: Some(0o600), size: 5 };
    svc.upload(&me, &w.id, up, Box::new(std::io::Cursor::new(b"hello".to_vec()))).await.unwrap();
    let out = Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    assert_eq!(svc.download(&me, &w.id, &path, Box::new(Sink(out.clone()))).await.unwrap(), 5);
    assert_eq!(*out.lock().unwrap(), b"hello");
    let missing = svc.download(&me, &w.id, &format!("{path}.missing"), Box::new(std::io::sink())).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing:?}");
    // Stopped: its agent is out of reach, and says so.
    svc.act(&me, &w.id, Action::Stop).await.unwrap();
    let stopped = svc.exec(&me, &w.id, ExecRequest { argv: vec!["true".into()], ..ExecRequest::default() }).await.unwrap_err();
    assert!(matches!(stopped, Error::Conflict(_)), "{stopped:?}");
}

#[tokio::test]
async fn a_live_list_follows_changes_as_the_caller_sees_them_and_ends_when_the_server_stops() {
    use crate::workstations::ListItem;
    let (_d, svc, _b) = fixture(roomy());
    let (ann, bob) = (Principal::user("ann"), Principal::user("bob"));
    let mut follow = svc.follow_list(&ann).await.unwrap();
    let names = |item: Option<ListItem>| match item {
        Some(ListItem::Workstations(list)) => list.into_iter().map(|w| (w.name, w.state)).collect::<Vec<_>>(),
        other => panic!("expected a list, got {other:?}"),
    };
    assert_eq!(names(follow.next().await), []);
    let w = svc.create(&ann, CreateWorkstation { start: Some(false), ..create("mine") }).await.unwrap();
    assert_eq!(names(follow.next().await), [("mine".to_string(), WorkstationState::Stopped)]);
    svc.act(&ann, &w.id, Action::Start).await.unwrap();
    assert_eq!(names(follow.next().await), [("mine".to_string(), WorkstationState::Running)]);
    // Another user's workstation changes what is stored, not what ann sees: her next list is
    // the same one.
    svc.create(&bob, CreateWorkstation { start: Some(false), ..create("his") }).await.unwrap();
    assert_eq!(names(follow.next().await), [("mine".to_string(), WorkstationState::Running)]);
    svc.delete(&ann, &w.id).await.unwrap();
    assert_eq!(names(follow.next().await), []);
    svc.begin_stopping();
    assert!(matches!(follow.next().await, Some(ListItem::Stopping)));
    assert!(follow.next().await.is_none());
}

#[tokio::test]
async fn live_lists_are_limited() {
    let mut config = Config::default();
    config.limits.max_list_followers = 1;
    let dir = tempfile::tempdir().unwrap();
    let (svc, _b) = service(dir.path(), config, roomy());
    let first = svc.follow_list(&Principal::user("ann")).await.unwrap();
    assert!(matches!(svc.follow_list(&Principal::user("bob")).await, Err(Error::Unavailable { what: Unavailable::Followers, .. })));
    drop(first);
    svc.follow_list(&Principal::user("bob")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_workstation_hibernates_and_one_in_use_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.idle.hibernate_after_secs = 1;
    let (svc, backend) = service(dir.path(), config, roomy());
    let me = Principal::admin("admin");
    let [idle, watched, busy, working] = ["idle", "watched", "busy", "working"].map(|n| n.to_string());
    let mut ids = Vec::new();
    for name in [&idle, &watched, &busy, &working] {
        ids.push(svc.create(&me, create(name)).await.unwrap().id);
    }
    let paused = svc.create(&me, create("paused")).await.unwrap().id;
    svc.act(&me, &paused, Action::Pause).await.unwrap();
    // Someone watches a terminal of one; another runs a command; the third works its CPU.
    let t = svc.open_terminal(&me, &ids[1], CreateTerminal::default()).await.unwrap();
    let _watching = svc.attach_terminal(&me, &ids[1], &t.id, crate::terminals::AttachMode::Write).await.unwrap();
    let exec = {
        let (svc, me, id) = (svc.clone(), me.clone(), ids[2].clone());
        tokio::spawn(async move { svc.exec(&me, &id, ExecRequest { argv: vec!["sleep".into(), "3".into()], ..ExecRequest::default() }).await })
    };
    backend.cpu.lock().unwrap().insert(ids[3].clone(), std::time::Duration::ZERO);
    // First seen: as good as used now.
    assert_eq!(svc.hibernate_idle(), Vec::<String>::new());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // Two seconds of CPU in just over one: in use.
    backend.cpu.lock().unwrap().insert(ids[3].clone(), std::time::Duration::from_secs(2));
    assert_eq!(svc.hibernate_idle(), [ids[0].clone()]);
    let got = svc.get(&me, &ids[0]).await.unwrap();
    assert_eq!(got.state, WorkstationState::Hibernated);
    let ev = svc.events(&me, &ids[0], Some(1)).await.unwrap().remove(0);
    assert!(ev.kind == "hibernated" && ev.message.starts_with("idle for"), "{ev:?}");
    for id in &ids[1..] {
        assert_eq!(svc.get(&me, id).await.unwrap().state, WorkstationState::Running, "{id}");
    }
    assert_eq!(svc.get(&me, &paused).await.unwrap().state, WorkstationState::Paused);
    // The command ends: idle a while after, that one goes too (its CPU stopped growing).
    assert_eq!(exec.await.unwrap().unwrap().exit_code, Some(0));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let mut second = svc.hibernate_idle();
    second.sort();
    let mut want = vec![ids[2].clone(), ids[3].clone()];
    want.sort();
    assert_eq!(second, want);
    assert_eq!(svc.get(&me, &ids[1]).await.unwrap().state, WorkstationState::Running, "a watched terminal keeps it awake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_at_once_to_a_hibernated_workstation_wake_it_once() {
    // Room for exactly this workstation: a second reservation of it would be refused.
    let (_d, svc, _backend) = fixture(Need { mem_mib: 512, ..roomy() });
    let me = Principal::admin("admin");
    let a = svc.create(&me, create("a")).await.unwrap();
    svc.act(&me, &a.id, Action::Hibernate).await.unwrap();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (svc, me, id) = (svc.clone(), me.clone(), a.id.clone());
        all.spawn(async move { svc.exec(&me, &id, ExecRequest { argv: vec!["true".into()], ..ExecRequest::default() }).await.map(|r| r.exit_code) });
    }
    for r in all.join_all().await {
        assert_eq!(r.unwrap(), Some(0));
    }
    let kinds: Vec<String> = svc.events(&me, &a.id, None).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["created", "started", "hibernated", "woken"]);
}
