//! The broker's message decoder (`pasid_broker_client::framing`), which reads what any
//! local process may write to the broker's socket: arbitrary bytes must decode to a
//! request, a response or an error, never a panic; a stream of them must split into
//! frames the way the broker's reader splits them, within the size cap; and whatever
//! decodes must encode back to a frame that decodes to the same message.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use pasid_broker_client::framing::{self, FrameError, MAX_FRAME};
use pasid_broker_client::protocol::{Request, Response};

fuzz_target!(|data: &[u8]| {
    // One frame, as both sides decode it.
    if let Ok(req) = framing::decode::<Request>(data) {
        let again = framing::encode(&req).expect("a decoded request encodes");
        assert_eq!(framing::decode::<Request>(&again).expect("round trip"), req);
    }
    if let Ok(resp) = framing::decode::<Response>(data) {
        let again = framing::encode(&resp).expect("a decoded response encodes");
        assert_eq!(
            framing::decode::<Response>(&again).expect("round trip"),
            resp
        );
    }
    // A stream, as the broker's connection reader sees it.
    let mut reader = BufReader::new(data);
    let mut buf = Vec::new();
    loop {
        match framing::read_message::<Request>(&mut reader, &mut buf) {
            Ok(_) | Err(FrameError::Decode(_)) => assert!(buf.len() <= MAX_FRAME),
            Err(FrameError::Closed) | Err(FrameError::Io(_)) | Err(FrameError::TooLong) => break,
            Err(FrameError::Encode(_)) => unreachable!("reading never encodes"),
        }
    }
});
