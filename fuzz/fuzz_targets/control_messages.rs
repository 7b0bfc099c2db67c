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
            if let Request::Exec(spec) = &req {
                let _ = spec.validate();
                let _ = spec.output_limit();
            }
            let again: Request = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
            assert_eq!(again, req);
        }
        if let Ok(ev) = serde_json::from_slice::<Event>(&frame.payload) {
            let _ = serde_json::to_string(&ev).unwrap();
        }
    }
});
