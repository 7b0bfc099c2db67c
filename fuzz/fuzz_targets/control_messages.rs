//! Control messages as a server and a client receive them: frames, then JSON, then the
//! request limits. Nothing panics; what parses round-trips through serialization.
#![no_main]

use hearth_proto::control::{Event, Request};
use hearth_proto::frame::read_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(Some(frame)) = read_frame(&mut r) {
        if let Ok(req) = serde_json::from_slice::<Request>(&frame.payload) {
            match &req {
                Request::Exec(spec) => {
                    let _ = spec.validate();
                    let _ = spec.output_limit();
                }
                Request::PtyOpen(spec) => {
                    let _ = spec.validate();
                }
                Request::ReadFile { path, .. } | Request::WriteFile { path, .. } | Request::ListDir { path } => {
                    let _ = hearth_proto::control::validate_path(path);
                }
                Request::PtyResize { id, rows, cols } => {
                    let _ = hearth_proto::control::validate_pty_id(id);
                    let _ = hearth_proto::control::validate_size(*rows, *cols);
                }
                _ => {}
            }
            let again: Request = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
            assert_eq!(again, req);
        }
        if let Ok(ev) = serde_json::from_slice::<Event>(&frame.payload) {
            let _ = serde_json::to_string(&ev).unwrap();
        }
    }
});
