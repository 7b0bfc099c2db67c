//! The server's decoder of a terminal attach stream, which comes from the agent inside a
//! guest (untrusted), on arbitrary bytes: it never panics, and the same bytes give the same
//! events (or the same refusal) whether they arrive at once or in pieces of any size.
#![no_main]

use hearth_exec::stream::Decoder;
use hearth_proto::MAX_FRAME_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte is the size of the pieces the rest arrives in.
    let Some((&step, rest)) = data.split_first() else { return };
    let step = usize::from(step).max(1);
    let whole = Decoder::new().decode(rest);
    let mut d = Decoder::new();
    let mut pieces = Ok(Vec::new());
    for chunk in rest.chunks(step) {
        match (d.decode(chunk), &mut pieces) {
            (Ok(ev), Ok(all)) => all.extend(ev),
            (Err(e), _) => {
                pieces = Err(e);
                break;
            }
            _ => unreachable!(),
        }
    }
    match (whole, pieces) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            // What is held is at most one frame's worth and what came with it.
            assert!(d.pending() <= 4 + MAX_FRAME_LEN + step);
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("at once: {a:?}; in pieces of {step}: {b:?}"),
    }
});
