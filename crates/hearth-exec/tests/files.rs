//! Files over the control protocol: atomic writes, bounded reads, listings, and what a
//! client that misbehaves halfway leaves behind (nothing).

mod support;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use hearth_exec::{ErrorKind, ExecError, WriteFile};
use hearth_proto::control::{Event, ExecSpec, Request, TAG_CONTROL, TAG_DATA};
use hearth_proto::frame::{read_frame, write_frame};

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn a_file_goes_in_and_comes_back_byte_for_byte() {
    let s = support::server();
    let path = s.dir.path().join("data.bin");
    let data = bytes(3 * 65536 + 123);
    let spec = WriteFile { path: path.to_str().unwrap(), size: data.len() as u64, mode: Some(0o640), ..WriteFile::default() };
    assert_eq!(s.client().write_file(spec, &mut data.as_slice()).unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    let mut back = Vec::new();
    assert_eq!(s.client().read_file(path.to_str().unwrap(), None, &mut back).unwrap(), data.len() as u64);
    assert_eq!(back, data);
}

#[test]
fn written_files_and_new_directories_belong_to_the_named_user() {
    if !nix::unistd::geteuid().is_root() {
        return; // giving files away needs root, as the agent is
    }
    let s = support::server();
    let path = s.dir.path().join("a/b/owned.txt");
    let spec = WriteFile { path: path.to_str().unwrap(), size: 2, user: Some("nobody"), create_dirs: true, ..WriteFile::default() };
    s.client().write_file(spec, &mut &b"hi"[..]).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    for p in [path.clone(), s.dir.path().join("a/b"), s.dir.path().join("a")] {
        assert_eq!(std::fs::metadata(&p).unwrap().uid(), nobody, "{}", p.display());
    }
}

#[test]
fn an_upload_cut_short_leaves_the_old_file_and_no_temporary() {
    let s = support::server();
    let path = s.dir.path().join("keep.txt");
    std::fs::write(&path, b"old contents").unwrap();
    let before: Vec<_> = std::fs::read_dir(s.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let mut c = s.raw();
    write_frame(&mut c, TAG_CONTROL, br#"{"type":"hello","version":1}"#).unwrap();
    read_frame(&mut c).unwrap();
    let req = Request::WriteFile { path: path.to_str().unwrap().into(), size: 100_000, mode: None, user: None, create_dirs: false };
    write_frame(&mut c, TAG_CONTROL, &serde_json::to_vec(&req).unwrap()).unwrap();
    let ready = read_frame(&mut c).unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Event>(&ready.payload).unwrap(), Event::Ready);
    write_frame(&mut c, TAG_DATA, &[b'x'; 5000]).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = read_frame(&mut c).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer.payload).contains("ended after 5000 of 100000 bytes"), "{answer:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
    let after: Vec<_> = std::fs::read_dir(s.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
}

#[test]
fn more_bytes_than_announced_are_refused() {
    let s = support::server();
    let path = s.dir.path().join("x");
    let mut c = s.raw();
    write_frame(&mut c, TAG_CONTROL, br#"{"type":"hello","version":1}"#).unwrap();
    read_frame(&mut c).unwrap();
    let req = Request::WriteFile { path: path.to_str().unwrap().into(), size: 3, mode: None, user: None, create_dirs: false };
    write_frame(&mut c, TAG_CONTROL, &serde_json::to_vec(&req).unwrap()).unwrap();
    read_frame(&mut c).unwrap();
    write_frame(&mut c, TAG_DATA, b"toolong").unwrap();
    let answer = read_frame(&mut c).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer.payload).contains("more bytes than the announced 3"), "{answer:?}");
    assert!(!path.exists());
}

#[test]
fn reads_are_bounded_and_bad_paths_refused() {
    let s = support::server();
    let path = s.dir.path().join("big");
    std::fs::write(&path, bytes(10_000)).unwrap();
    let refused = |r: Result<u64, ExecError>, want: ErrorKind| match r {
        Err(ExecError::Refused { kind, message }) if kind == want => message,
        other => panic!("{other:?}, expected a refusal of kind {want}"),
    };
    let m = refused(s.client().read_file(path.to_str().unwrap(), Some(100), &mut Vec::new()), ErrorKind::TooLarge);
    assert!(m.contains("10000 bytes, more than the limit of 100"), "{m}");
    let m = refused(s.client().read_file("/no/such/file", None, &mut Vec::new()), ErrorKind::NotFound);
    assert!(m.contains("cannot read /no/such/file"), "{m}");
    let m = refused(s.client().read_file(s.dir.path().to_str().unwrap(), None, &mut Vec::new()), ErrorKind::Invalid);
    assert!(m.contains("is a directory"), "{m}");
    let m = refused(s.client().read_file("relative/path", None, &mut Vec::new()), ErrorKind::Invalid);
    assert!(m.contains("must be absolute"), "{m}");
    let spec = WriteFile { path: s.dir.path().to_str().unwrap(), size: 1, ..WriteFile::default() };
    let m = refused(s.client().write_file(spec, &mut &b"x"[..]), ErrorKind::Invalid);
    assert!(m.contains("is a directory"), "{m}");
}

#[test]
fn one_connection_serves_short_requests_in_a_row() {
    let s = support::server();
    std::fs::create_dir(s.dir.path().join("sub")).unwrap();
    std::fs::write(s.dir.path().join("b.txt"), b"12345").unwrap();
    std::os::unix::fs::symlink("b.txt", s.dir.path().join("a-link")).unwrap();
    let mut c = s.client();
    let (entries, truncated) = c.list_dir(s.dir.path().to_str().unwrap()).unwrap();
    assert!(!truncated);
    let summary: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind.as_str(), if e.kind == "file" { e.size } else { 0 })).collect();
    assert_eq!(summary, [("a-link", "symlink", 0), ("b.txt", "file", 5), ("ctl.sock", "other", 0), ("sub", "dir", 0)]);
    assert!(matches!(c.health().unwrap(), Event::Health { .. }));
    assert!(matches!(c.list_dir("/no/such/dir"), Err(ExecError::Refused { kind: ErrorKind::NotFound, message: m }) if m.contains("cannot list")));
    // A refused short request leaves the connection usable.
    assert_eq!(c.list_dir(s.dir.path().join("sub").to_str().unwrap()).unwrap().0, []);
}

#[test]
fn exec_streams_stdin_to_the_command() {
    let s = support::server();
    let input: Vec<u8> = bytes(5_000_000);
    let mut out = Vec::new();
    let exit = s.client().exec_io(ExecSpec::new(["wc", "-c"]), Some(Box::new(std::io::Cursor::new(input))), &mut out, &mut std::io::sink()).unwrap();
    assert_eq!((exit.status(), String::from_utf8_lossy(&out).trim()), (0, "5000000"));
    // A command that ignores its stdin still ends when it is done.
    let mut out = Vec::new();
    let exit = s.client().exec_io(ExecSpec::new(["echo", "done"]), Some(Box::new(std::io::repeat(b'y'))), &mut out, &mut std::io::sink());
    assert_eq!((exit.unwrap().status(), out.as_slice()), (0, &b"done\n"[..]));
    let _ = std::io::stdout().flush();
}
