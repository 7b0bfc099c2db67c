//! The box, end to end: QEMU boots the box kernel and image, the real Firecracker inside it
//! boots our guest kernel and image to the agent's readiness line, the box's data disk
//! keeps its files across a stop and start, and `hearth box run` returns output and status
//! (and gives up on a box that stops answering, with the box's kernel's own account of where
//! its CPUs were).

mod common;

use common::{hearth, run, run_ok};

#[test]
fn the_box_boots_guests_with_real_firecracker_and_keeps_its_disk() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let started = run_ok(hearth(d).args(["box", "start", "--mem-mib", "4096"]));
    assert!(started.contains("box ready in"), "{started}");
    let status: serde_json::Value = serde_json::from_str(&run_ok(hearth(d).args(["box", "status", "--json"]))).unwrap();
    assert_eq!(status["state"], "running", "{status}");
    let pid = status["box"]["pid"].as_u64().unwrap();

    // The boot check: three boots of the default workstation image inside the box.
    let probe: serde_json::Value = serde_json::from_str(&run_ok(hearth(d).args(["box", "run", "--", "hearth", "probe", "--count", "3", "--json"]))).unwrap();
    assert_eq!(probe["summary"]["ready"], 3, "{probe:#}");
    for r in probe["reports"].as_array().unwrap() {
        assert_eq!(r["ready"], true, "{r:#}");
        assert!(r["guest_boot_ms"].as_u64().unwrap() > 0, "{r:#}");
        assert!(r["console_tail"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("hearth-agent: ready")));
    }

    // The agent serves exec over vsock: as the image's user, with the venv on PATH.
    let py = "import numpy, pandas, getpass; print(numpy.arange(4).sum(), getpass.getuser())";
    let out = run_ok(hearth(d).args(["box", "run", "--", "hearth", "probe", "--user", "scientist", "--", "python3", "-c", py]));
    assert_eq!(out, "6 scientist\n");
    let (code, out, err) = run(hearth(d).args(["box", "run", "--", "hearth", "probe", "--", "sh", "-c", "echo $HOME; exit 3"]));
    assert_eq!((code, out.as_str()), (1, "/root\n"), "{err}");
    assert!(err.contains("command exited 3"), "{err}");
    let (code, _, err) = run(hearth(d).args(["box", "run", "--", "hearth", "probe", "--", "/no/such/binary"]));
    assert_ne!(code, 0);
    assert!(err.contains("cannot run /no/such/binary"), "{err}");

    // Inside the box KVM runs guests, so doctor's probe passes there.
    let doctor: serde_json::Value = serde_json::from_str(&run_ok(hearth(d).args(["box", "run", "--", "hearth", "doctor", "--json"]))).unwrap();
    assert_eq!(doctor["mode"], "kvm", "{doctor:#}");
    // Every box CPU idles without a periodic tick (nohz mode 2): an idle box costs its host
    // next to nothing (0.2% of a CPU here, 13.9% with the tick).
    let tickless = "[ \"$(grep -c 'nohz_mode *: 2' /proc/timer_list)\" = \"$(nproc)\" ] && echo tickless";
    assert_eq!(run_ok(hearth(d).args(["box", "run", "--", "sh", "-c", tickless])), "tickless\n");

    // Output, exit status, errors.
    let (code, out, err) = run(hearth(d).args(["box", "run", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 7"]));
    assert_eq!((code, out.as_str(), err.as_str()), (7, "to-out\n", "to-err\n"));
    let (code, _, err) = run(hearth(d).args(["box", "run", "--", "/no/such/binary"]));
    assert_ne!(code, 0);
    assert!(err.contains("cannot run /no/such/binary"), "{err}");
    let (code, _, err) = run(hearth(d).args(["box", "run", "--cmd-timeout", "1", "--", "sleep", "60"]));
    assert_ne!(code, 0);
    assert!(err.contains("timed out"), "{err}");

    // Persistence: a file on the data disk survives a clean stop and a new start.
    run_ok(hearth(d).args(["box", "run", "--", "sh", "-c", "echo kept > \"$HEARTH_DATA_DIR/marker\""]));
    assert!(run_ok(hearth(d).args(["box", "stop"])).contains("box stopped"));
    let (code, out, _) = run(hearth(d).args(["box", "status"]));
    assert_eq!((code, out.trim()), (3, "stopped"));
    assert!(!common::is_running(pid), "QEMU {pid} still running after stop");
    // `box run` on a stopped box starts it for the command and stops it after.
    let out = run_ok(hearth(d).args(["box", "run", "--mem-mib", "2048", "--", "cat", "/run/hearth/data/marker"]));
    assert_eq!(out, "kept\n");
    let (code, out, _) = run(hearth(d).args(["box", "status"]));
    assert_eq!((code, out.trim()), (3, "stopped"));

    // A wedged box (QEMU alive, the box silent: here its QEMU is stopped with SIGSTOP) fails
    // the command as a box death instead of hanging, and the box it started is cleaned up.
    let (wedged, qemu) = box_running_with(d, &["--wedged-after", "10"], "sleep 600");
    let qemu = nix::unistd::Pid::from_raw(qemu as i32);
    nix::sys::signal::kill(qemu, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let out = wedged.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(common::BOX_DIED) && err.contains("stopped answering"), "{err}");
    assert!(!common::is_running(qemu.as_raw() as u64), "the wedged box's QEMU {qemu} was left running");
    let (code, out, _) = run(hearth(d).args(["box", "status"]));
    assert_eq!((code, out.trim()), (3, "stopped"));

    // `box run` told to stop (SIGTERM: a test harness's timeout, a CI cancel) stops the box it
    // started rather than leave its QEMU running with nobody to stop it.
    let (cmd, qemu) = box_running_with(d, &[], "sleep 600");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(cmd.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = cmd.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("interrupted"), "{err}");
    assert!(!common::is_running(qemu), "QEMU {qemu} was left running after SIGTERM");
    let (code, out, _) = run(hearth(d).args(["box", "status"]));
    assert_eq!((code, out.trim()), (3, "stopped"));

    // The post-mortem of a wedged box (`box run` adds it to the report): an NMI through QEMU's
    // monitor stops the box's kernel, which prints every CPU's stack, with symbols, and ends
    // the box.
    run_ok(hearth(d).args(["box", "start", "--mem-mib", "2048"]));
    let qemu = box_pid(d);
    let said = hearth_box::BoxDir::new(d.join("box")).nmi_backtraces().expect("the box's kernel answers an NMI");
    for line in ["Kernel panic - not syncing: NMI: Not continuing", "NMI backtrace for cpu 0", "NMI backtrace for cpu 1", "cpu_startup_entry+"] {
        assert!(said.contains(line), "no {line:?} in:\n{said}");
    }
    assert!(!common::is_running(qemu), "QEMU {qemu} outlived its kernel's panic");
    run(hearth(d).args(["box", "stop"]));
}

/// Starts `hearth box run FLAGS -- sh -c 'echo started; COMMAND'` (a box of its own) and
/// returns it once its command runs, with the box's QEMU pid.
fn box_running_with(d: &std::path::Path, flags: &[&str], command: &str) -> (std::process::Child, u64) {
    let mut cmd = hearth(d)
        .args(["box", "run"])
        .args(flags)
        .args(["--", "sh", "-c"])
        .arg(format!("echo started; {command}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(cmd.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "started\n");
    (cmd, box_pid(d))
}

/// The running box's QEMU pid, from its state file.
fn box_pid(d: &std::path::Path) -> u64 {
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("box/state.json")).unwrap()).unwrap();
    state["pid"].as_u64().unwrap()
}

#[test]
fn doctor_probes_kvm_with_a_real_boot() {
    let data = tempfile::tempdir().unwrap();
    let (code, out, err) = run(hearth(data.path()).args(["doctor", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(code, 0, "{v:#}");
    let probe = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "kvm runs guests").expect("probe check present");
    let detail = probe["detail"].as_str().unwrap();
    match v["mode"].as_str().unwrap() {
        "kvm" => assert!(detail.starts_with("probe boot: agent ready"), "{detail}"),
        "box" => assert!(detail.contains("hearth will use the box"), "{detail}"),
        other => panic!("unexpected mode {other}: {v:#}"),
    }
}
