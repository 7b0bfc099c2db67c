//! Workstations through the hearth-runtime library, with the real Firecracker, in the box:
//! the lifecycle a user goes through (hibernation included), the faults an operator meets,
//! and what a delete leaves (nothing).
//!
//! On a host whose KVM cannot run guests each test re-runs itself inside the box
//! (`hearth box run --host-bin -- <this test binary> --exact <test>`).

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_exec::{ErrorKind, ExecError, PtyEvent, PtyStream, WriteFile};
use hearth_image::{refs, Cache};
use hearth_proto::control::{Event, ExecSpec, PtySpec, TAG_CONTROL};
use hearth_proto::frame::{read_frame, write_frame};
use hearth_runtime::{Artifacts, Jail, Limits, Runtime, RuntimeError, Spec, State, Wake, Workstation};
use hearth_vmm::vm::StopKind;

const WAIT: Duration = Duration::from_secs(30);

fn runtime(tag: &str) -> (Runtime, PathBuf) {
    let cache = Cache::new(common::cache_dir());
    let file = |name: &str, f: &str| cache.resolve_file(name, f).unwrap();
    let data = PathBuf::from(std::env::var("HEARTH_DATA_DIR").unwrap()).join(format!("{tag}-{}", std::process::id()));
    let artifacts = Artifacts { firecracker: file(refs::FIRECRACKER, "firecracker"), kernel: file(refs::GUEST_KERNEL, "vmlinux"), mkfs: "mkfs.ext4".into() };
    let jail = Jail { jailer: file(refs::FIRECRACKER, "jailer"), uid_base: 900_000 };
    let rt = Runtime::new(&data, artifacts, Limits::default()).unwrap().with_jail(jail);
    (rt, file(&refs::rootfs(refs::DEFAULT_RECIPE), "rootfs.ext4"))
}

fn spec(name: &str, base: &Path, read_only: bool) -> Spec {
    Spec { name: name.into(), vcpus: 2, mem_mib: 512, disk_gib: 1, smt: false, read_only, base_image: base.into() }
}

/// Runs a shell command in the workstation; returns (status, stdout).
fn sh(ws: &Workstation, user: Option<&str>, script: &str) -> (i32, String) {
    // Generous: a cold `import pandas` in a box busy booting other tests' guests was seen to
    // take over 90 s (CI); a stalled guest still ends as a named timeout, not a hang.
    let spec = ExecSpec { user: user.map(str::to_string), timeout_secs: Some(300), ..ExecSpec::new(["sh", "-c", script]) };
    let (exit, out, err) = ws.agent(WAIT).unwrap().exec_collect(spec).unwrap();
    assert!(err.is_empty() || exit.status() != 0, "stderr: {}", String::from_utf8_lossy(&err));
    (exit.status(), String::from_utf8_lossy(&out).into_owned())
}

/// What a client watching a terminal shows: the replay, then every event in order.
struct Watcher {
    seen: Vec<u8>,
    screen: vt100::Parser,
}

impl Watcher {
    fn new(t: &PtyStream<UnixStream>) -> Self {
        let mut screen = term(t.info.rows, t.info.cols);
        screen.process(&t.screen);
        Self { seen: Vec::new(), screen }
    }

    fn apply(&mut self, ev: PtyEvent) {
        match ev {
            PtyEvent::Output(b) => {
                self.screen.process(&b);
                self.seen.extend_from_slice(&b);
            }
            PtyEvent::Resized { rows, cols } => self.screen.set_size(rows.try_into().unwrap(), cols.try_into().unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn read_until(&mut self, t: &mut PtyStream<UnixStream>, want: &str) {
        let deadline = Instant::now() + WAIT;
        while !String::from_utf8_lossy(&self.seen).contains(want) {
            assert!(Instant::now() < deadline, "no {want:?} in {:?}", String::from_utf8_lossy(&self.seen));
            self.apply(t.next(Some(WAIT)).unwrap());
        }
    }

    /// Reads until the terminal has been quiet for a while (the prompt has arrived).
    fn settle(&mut self, t: &mut PtyStream<UnixStream>) {
        while let Ok(ev) = t.next(Some(Duration::from_millis(700))) {
            self.apply(ev);
        }
    }
}

fn term(rows: u16, cols: u16) -> vt100::Parser {
    vt100::Parser::new(rows.try_into().unwrap(), cols.try_into().unwrap(), 0)
}

/// Every process whose command line names `path`.
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok().map(|c| (e.file_name(), String::from_utf8_lossy(&c).replace('\0', " "))))
        .filter(|(_, c)| c.contains(&needle))
        .map(|(pid, c)| format!("{}: {c}", pid.to_string_lossy()))
        .collect()
}

/// The cgroups of jailed Firecrackers for workstation `id`.
fn cgroups_of(id: &str) -> Vec<String> {
    let suffix = format!("-{id}");
    std::fs::read_dir("/sys/fs/cgroup/hearth")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(&suffix)).collect())
        .unwrap_or_default()
}

/// `Uid:` of a process (real uid) and its cgroup path.
fn uid_and_cgroup(pid: u32) -> (u32, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap().trim().trim_start_matches("0::").to_string();
    (uid, cgroup)
}

/// Asserts nothing of the workstation is left: no directory, process, mount, socket or cgroup.
fn assert_nothing_left(rt: &Runtime, id: &str) {
    assert_eq!(cgroups_of(id), Vec::<String>::new(), "cgroups of {id} left");
    let dir = rt.root().join(id);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_eq!(processes_naming(&dir), Vec::<String>::new(), "processes of {id} left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*dir.to_string_lossy()), "a mount of {id} left:\n{mounts}");
    assert!(matches!(rt.get(id), Err(RuntimeError::NotFound(_))));
}

#[test]
fn a_workstation_lives_works_and_vanishes() {
    if common::delegated_to_box("a_workstation_lives_works_and_vanishes") {
        return;
    }
    let (rt, base) = runtime("ws-life");
    let base_sum = hearth_image::hash::sha256_file(&base).unwrap();
    let rw = rt.create("rw", spec("Research Box", &base, false)).unwrap();
    let ro = rt.create("ro", spec("scratch", &base, true)).unwrap();
    assert!(!ro.layout().overlay().exists(), "a read-only workstation has no disk of its own");
    assert_eq!(rt.ids().unwrap(), ["ro", "rw"]);
    assert_eq!(rw.status().unwrap().record.state, State::Stopped);

    // Two workstations at once, 2 vCPUs each.
    rw.start().unwrap();
    ro.start().unwrap();
    assert!(matches!(rw.start(), Err(RuntimeError::Conflict { .. })), "a second start of a running workstation");
    let st = rw.status().unwrap();
    assert_eq!((st.record.state, st.pid.is_some()), (State::Running, true));
    // Each Firecracker runs jailed: its own unprivileged uid, its own cgroup with limits.
    let (uid_rw, cg_rw) = uid_and_cgroup(st.pid.unwrap());
    let (uid_ro, _) = uid_and_cgroup(ro.status().unwrap().pid.unwrap());
    assert!(uid_rw >= 900_000 && uid_ro >= 900_000 && uid_rw != uid_ro, "uids {uid_rw} {uid_ro}");
    assert!(cg_rw.starts_with("/hearth/") && cg_rw.ends_with("-rw"), "{cg_rw}");
    let memory_max = std::fs::read_to_string(format!("/sys/fs/cgroup{cg_rw}/memory.max")).unwrap();
    assert_eq!(memory_max.trim(), ((512u64 + 1024) << 20).to_string());
    assert_eq!(std::fs::read_to_string(format!("/sys/fs/cgroup{cg_rw}/cpu.max")).unwrap().trim(), "200000 100000");
    assert!(matches!(rw.agent(WAIT).unwrap().health().unwrap(), Event::Health { .. }));
    assert_eq!(sh(&ro, None, "nproc; hostname").1, "2\nscratch\n");

    // The data-science environment, as the image's user.
    let (status, out) = sh(&rw, Some("scientist"), "python3 -c 'import numpy, pandas; print(numpy.arange(4).sum())'");
    assert_eq!((status, out.as_str()), (0, "6\n"));

    // A terminal: type and see the echo, resize, detach, re-attach to the same screen.
    let info = rw.agent(WAIT).unwrap().pty_open(PtySpec { user: Some("scientist".into()), rows: 24, cols: 80, ..PtySpec::default() }).unwrap();
    let mut t = rw.agent(WAIT).unwrap().pty_attach(&info.id, None, false).unwrap();
    let mut w = Watcher::new(&t);
    let mut keys = t.input().unwrap();
    keys.write(b"echo typed-$((6*7)); whoami\n").unwrap();
    w.read_until(&mut t, "typed-42\r\nscientist\r\n");
    keys.resize(40, 100).unwrap();
    keys.write(b"stty size; echo size-shown\n").unwrap();
    w.read_until(&mut t, "40 100\r\nsize-shown\r\n");
    keys.write(b"printf 'last-%s\\n' line\n").unwrap();
    w.read_until(&mut t, "last-line\r\n");
    w.settle(&mut t);
    t.detach();
    let again = rw.agent(WAIT).unwrap().pty_attach(&info.id, None, false).unwrap();
    assert_eq!((again.info.rows, again.info.cols), (40, 100));
    let replayed = Watcher::new(&again);
    assert_eq!(replayed.screen.screen().contents(), w.screen.screen().contents());
    assert_eq!(replayed.screen.screen().cursor_position(), w.screen.screen().cursor_position());
    assert!(replayed.screen.screen().contents().contains("last-line"));
    again.detach();

    // Files in and out.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let up = WriteFile { path: "/home/scientist/data/up.bin", size: payload.len() as u64, user: Some("scientist"), create_dirs: true, ..WriteFile::default() };
    rw.agent(WAIT).unwrap().write_file(up, &mut payload.as_slice()).unwrap();
    let mut back = Vec::new();
    rw.agent(WAIT).unwrap().read_file("/home/scientist/data/up.bin", None, &mut back).unwrap();
    assert_eq!(back, payload);
    assert_eq!(sh(&rw, Some("scientist"), "stat -c %U ~/data/up.bin; sha256sum < ~/data/up.bin | cut -c1-16").1.lines().next(), Some("scientist"));
    let (entries, _) = rw.agent(WAIT).unwrap().list_dir("/home/scientist/data").unwrap();
    assert_eq!(entries.iter().map(|e| (e.name.as_str(), e.size)).collect::<Vec<_>>(), [("up.bin", 300_000)]);

    // Stop, start: the workstation's disk kept the home; a read-only one forgot its writes.
    assert_eq!(sh(&rw, Some("scientist"), "echo kept > ~/notes && sync && cat ~/notes").1, "kept\n");
    assert_eq!(sh(&ro, Some("scientist"), "echo gone > ~/scratch && cat ~/scratch").1, "gone\n");
    assert_eq!(rw.stop().unwrap(), StopKind::Clean);
    assert_eq!(ro.stop().unwrap(), StopKind::Clean);
    let st = rw.status().unwrap();
    assert_eq!((st.record.state, st.pid, st.record.last_stop.as_deref()), (State::Stopped, None, Some("clean")));
    let mut left: Vec<String> = std::fs::read_dir(rw.layout().vm()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["console.log", "firecracker.log"], "a stopped workstation keeps only its logs");
    rw.start().unwrap();
    ro.start().unwrap();
    assert_eq!(sh(&rw, Some("scientist"), "cat ~/notes ~/data/up.bin | wc -c").1.trim(), "300005");
    assert_eq!(sh(&ro, None, "test -e /home/scientist/scratch; echo $?").1, "1\n");

    // Pause and resume.
    rw.pause().unwrap();
    assert_eq!(rw.status().unwrap().record.state, State::Paused);
    assert!(matches!(rw.pause(), Err(RuntimeError::Conflict { .. })));
    rw.resume().unwrap();
    assert_eq!(sh(&rw, None, "echo awake").1, "awake\n");

    // Nothing wrote the shared base image; deleting leaves nothing behind, running or not.
    ro.stop().unwrap();
    rw.delete().unwrap();
    ro.delete().unwrap();
    assert_nothing_left(&rt, "rw");
    assert_nothing_left(&rt, "ro");
    assert_eq!(hearth_image::hash::sha256_file(&base).unwrap(), base_sum);
    std::fs::remove_dir_all(rt.root().parent().unwrap()).unwrap();
}

/// The counts a counter printed (`tick N` lines), in order.
fn ticks(seen: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(seen).split("\r\n").filter_map(|l| l.trim().strip_prefix("tick ")?.parse().ok()).collect()
}

#[test]
fn a_workstation_hibernates_and_wakes_where_it_was() {
    if common::delegated_to_box("a_workstation_hibernates_and_wakes_where_it_was") {
        return;
    }
    let (rt, base) = runtime("ws-hib");
    let ws = rt.create("hib", spec("Sleeper", &base, false)).unwrap();
    ws.start().unwrap();
    let boot_id = |ws: &Workstation| sh(ws, None, "cat /proc/sys/kernel/random/boot_id").1;
    let first_boot = boot_id(&ws);

    // A Python counter in a terminal: a process that must go on where it was.
    let script = "import itertools, time\nfor i in itertools.count():\n    print('tick', i, flush=True)\n    time.sleep(0.3)\n";
    let up = WriteFile { path: "/home/scientist/count.py", size: script.len() as u64, user: Some("scientist"), ..WriteFile::default() };
    ws.agent(WAIT).unwrap().write_file(up, &mut script.as_bytes()).unwrap();
    let info = ws.agent(WAIT).unwrap().pty_open(PtySpec { user: Some("scientist".into()), rows: 24, cols: 80, ..PtySpec::default() }).unwrap();
    let mut t = ws.agent(WAIT).unwrap().pty_attach(&info.id, None, false).unwrap();
    let mut w = Watcher::new(&t);
    t.input().unwrap().write(b"python3 ~/count.py\n").unwrap();
    w.read_until(&mut t, "tick 3\r\n");
    let before = *ticks(&w.seen).last().unwrap();
    t.detach();

    let took = ws.hibernate().unwrap();
    // The guest touched little of its 512 MiB: the rest is holes, not zeros on disk.
    assert!(took.disk_bytes > 0 && took.disk_bytes < 256 << 20, "{took}");
    let st = ws.status().unwrap();
    assert_eq!((st.record.state, st.pid), (State::Hibernated, None));
    assert_eq!(cgroups_of("hib"), Vec::<String>::new(), "a hibernated workstation runs nothing");
    assert!(ws.layout().snapshot().join("vm.mem").is_file());
    assert!(matches!(ws.agent(WAIT), Err(RuntimeError::Conflict { .. })));
    // Long enough that a counter that kept counting, or a clock left behind, would show.
    std::thread::sleep(Duration::from_secs(3));

    let woke = ws.wake().unwrap();
    assert!(matches!(woke, Wake::Restored { .. }), "{woke:?}");
    assert!(!ws.layout().snapshot().exists(), "a snapshot outlived its wake");
    assert_eq!(ws.status().unwrap().record.state, State::Running);
    assert_eq!(boot_id(&ws), first_boot, "it booted again");
    let guest_now: u64 = sh(&ws, None, "date +%s").1.trim().parse().unwrap();
    let host_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(guest_now.abs_diff(host_now) <= 5, "guest clock {guest_now}, host {host_now}");
    // The same terminal, its screen replayed, and the same counter going on from where it was.
    let mut again = ws.agent(WAIT).unwrap().pty_attach(&info.id, None, false).unwrap();
    let mut w2 = Watcher::new(&again);
    let replay = format!("{}{}", String::from_utf8_lossy(&again.scrollback), w2.screen.screen().contents());
    assert!(replay.lines().any(|l| l.trim() == format!("tick {before}")), "{replay}");
    let deadline = Instant::now() + WAIT;
    while ticks(&w2.seen).len() < 3 {
        assert!(Instant::now() < deadline, "the counter stopped: {:?}", String::from_utf8_lossy(&w2.seen));
        w2.apply(again.next(Some(WAIT)).unwrap());
    }
    let after = ticks(&w2.seen);
    assert!(after[0] > before && after.windows(2).all(|p| p[1] == p[0] + 1), "before {before}, after {after:?}");
    again.detach();

    // Again, from the VM that was itself restored (its jail holds the last snapshot's files).
    ws.hibernate().unwrap();
    let woke = ws.wake().unwrap();
    assert!(matches!(woke, Wake::Restored { .. }), "the second wake: {woke:?}");
    assert_eq!(boot_id(&ws), first_boot, "it booted again");

    // A snapshot that does not load: a clear reason, a cold boot from the disk, and what was
    // written before hibernating (the hibernation syncs the guest's disks) is there.
    assert_eq!(sh(&ws, Some("scientist"), "echo kept > ~/kept && cat ~/kept").1, "kept\n");
    ws.hibernate().unwrap();
    std::fs::OpenOptions::new().write(true).open(ws.layout().snapshot().join("vm.state")).unwrap().set_len(64).unwrap();
    match ws.wake().unwrap() {
        Wake::ColdBoot { why, .. } => assert!(!why.is_empty()),
        other => panic!("a truncated snapshot loaded: {other:?}"),
    }
    assert!(!ws.layout().snapshot().exists());
    assert_ne!(boot_id(&ws), first_boot, "a cold boot is a new boot");
    assert_eq!(sh(&ws, Some("scientist"), "cat ~/kept").1, "kept\n");

    // Stopping a hibernated one drops its snapshot; deleting leaves nothing.
    ws.hibernate().unwrap();
    assert_eq!(ws.stop().unwrap(), StopKind::NotRunning);
    assert!(!ws.layout().snapshot().exists());
    ws.delete().unwrap();
    assert_nothing_left(&rt, "hib");
}

#[test]
fn crashes_broken_guests_and_bad_input_are_clear() {
    if common::delegated_to_box("crashes_broken_guests_and_bad_input_are_clear") {
        return;
    }
    let (rt, base) = runtime("ws-faults");
    // Bad specs name their field; ids are checked; duplicates refused.
    let field = |r: Result<Workstation, RuntimeError>| match r {
        Err(RuntimeError::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(rt.create("a", Spec { vcpus: 0, ..spec("a", &base, false) })), "vcpu_count");
    assert_eq!(field(rt.create("a", Spec { mem_mib: 1 << 30, ..spec("a", &base, false) })), "mem_size_mib");
    assert_eq!(field(rt.create("../a", spec("a", &base, false))), "id");
    assert_eq!(field(rt.create("a", Spec { base_image: "/no/such/image".into(), ..spec("a", &base, false) })), "recipe");
    assert!(rt.ids().unwrap().is_empty(), "a refused create left something");
    let ws = rt.create("crashy", spec("crashy", &base, true)).unwrap();
    assert!(matches!(rt.create("crashy", spec("crashy", &base, true)), Err(RuntimeError::Exists(_))));

    // Over the real vsock: garbage and a missing binary are errors, and the agent keeps serving.
    ws.start().unwrap();
    let vsock = ws.vm().unwrap().run_dir().join("v.sock");
    let mut raw = hearth_vmm::vsock::connect(&vsock, hearth_proto::control::AGENT_VSOCK_PORT, WAIT).unwrap();
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 1]).unwrap();
    let reply = read_frame(&mut raw).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&reply.payload).contains("exceeds the limit"), "{reply:?}");
    let mut raw = hearth_vmm::vsock::connect(&vsock, hearth_proto::control::AGENT_VSOCK_PORT, WAIT).unwrap();
    write_frame(&mut raw, TAG_CONTROL, br#"{"type":"hello","version":1}"#).unwrap();
    read_frame(&mut raw).unwrap();
    write_frame(&mut raw, TAG_CONTROL, br#"{"type":"launch_missiles"}"#).unwrap();
    assert!(String::from_utf8_lossy(&read_frame(&mut raw).unwrap().unwrap().payload).contains("bad request"));
    let missing = ws.agent(WAIT).unwrap().exec_collect(ExecSpec::new(["/no/such/binary"]));
    assert!(matches!(missing, Err(ExecError::Refused { kind: ErrorKind::Failed, message: m }) if m.contains("cannot run /no/such/binary")));
    assert_eq!(sh(&ws, None, "echo still-serving").1, "still-serving\n");

    // The agent's connection dropped mid-exec (its VM killed): a clear error, no hang.
    let client = ws.agent(WAIT).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = client.exec(ExecSpec::new(["sh", "-c", "echo started; sleep 600"]), &mut std::io::sink(), &mut std::io::sink());
        let _ = tx.send(r);
    });
    std::thread::sleep(Duration::from_secs(2));
    let pid = ws.status().unwrap().pid.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let r = rx.recv_timeout(WAIT).expect("the exec hung after its VM died");
    assert!(r.is_err(), "{r:?}");

    // Firecracker killed: the workstation is crashed, its serial log kept.
    assert!(hearth_init::proc::wait_gone(pid, "firecracker", WAIT));
    let st = ws.status().unwrap();
    assert_eq!((st.record.state, st.pid), (State::Crashed, None));
    assert!(st.record.crash.unwrap().contains("without being stopped"));
    assert!(std::fs::read_to_string(ws.console_log()).unwrap().contains("hearth-agent: ready"));
    assert!(!ws.layout().vm().join("root").exists(), "the crashed VM's chroot is left");
    assert_eq!(cgroups_of("crashy"), Vec::<String>::new(), "the crashed VM's cgroup is left");
    // A crashed workstation starts again.
    ws.start().unwrap();
    assert_eq!(sh(&ws, None, "echo back").1, "back\n");
    ws.stop().unwrap();

    // A guest that never becomes ready: the start fails quoting its console; nothing runs.
    let err = ws.start_with(&["init=/bin/false".into()]).unwrap_err().to_string();
    assert!(err.contains("Kernel panic") || err.contains("Attempted to kill init"), "{err}");
    let st = ws.status().unwrap();
    assert_eq!((st.record.state, st.pid), (State::Stopped, None));
    // A guest that hangs without a panic (a shell for init: alive, silent, never ready) is
    // booted once more, noted in its console, then the start fails; nothing runs.
    let mut quick = rt.clone();
    quick.ready_timeout = Duration::from_secs(10);
    let hung = quick.get("crashy").unwrap();
    let err = hung.start_with(&["init=/bin/sh".into()]).unwrap_err().to_string();
    assert!(err.contains("not ready in time"), "{err}");
    let console = std::fs::read_to_string(ws.console_log()).unwrap();
    assert_eq!(console.matches("hearth: the guest's agent was not up in time (no panic): booting it once more").count(), 1, "{console}");
    let st = ws.status().unwrap();
    assert_eq!((st.record.state, st.pid), (State::Stopped, None));
    ws.delete().unwrap();
    assert_nothing_left(&rt, "crashy");
    std::fs::remove_dir_all(rt.root().parent().unwrap()).unwrap();
}
