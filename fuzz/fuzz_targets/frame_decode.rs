//! The frame decoder on arbitrary bytes: never panics, never allocates past the limit, and a
//! decoded frame re-encodes to exactly the bytes it was decoded from.
#![no_main]

use hearth_proto::frame::{read_frame, Frame, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((frame, used))) = Frame::decode(data) {
        assert!(frame.payload.len() < MAX_FRAME_LEN);
        assert_eq!(frame.encode().unwrap(), &data[..used]);
    }
    // The streaming reader agrees with the buffer decoder on every frame it reads.
    let mut r = data;
    let mut offset = 0;
    while let Ok(Some(frame)) = read_frame(&mut r) {
        let (same, used) = Frame::decode(&data[offset..]).unwrap().unwrap();
        assert_eq!(frame, same);
        offset += used;
    }
});
