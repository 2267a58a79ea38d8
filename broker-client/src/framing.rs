//! The one frame format both sides use: a message is postcard-encoded, COBS-stuffed
//! (so it holds no 0 byte) and ended by a single 0 byte.
//!
//! A 0 delimiter (rather than a length prefix) means a reader never trusts a length
//! the peer wrote: it reads at most [`MAX_FRAME`] bytes looking for the 0, and a
//! corrupt frame costs only itself, the next 0 starts a clean one. postcard does both
//! the encoding and the COBS step, so no framing code of our own is involved.

use std::io::{self, BufRead, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The longest frame either side accepts, delimiter included (64 KiB). The longest
/// real message (a reclaim listing a few thousand PASIDs, or an admin's status with
/// many leases) stays well below it.
pub const MAX_FRAME: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The socket failed (or closed inside a frame).
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// No delimiter within [`MAX_FRAME`] bytes.
    #[error("frame longer than {MAX_FRAME} bytes")]
    TooLong,
    /// The frame is not a valid COBS/postcard encoding of the expected message.
    #[error("frame does not decode: {0}")]
    Decode(postcard::Error),
    /// The message does not fit in a frame.
    #[error("message does not encode into a frame: {0}")]
    Encode(postcard::Error),
}

/// Encodes `message` into one frame, delimiter included.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let bytes = postcard::to_stdvec_cobs(message).map_err(FrameError::Encode)?;
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::Encode(postcard::Error::SerializeBufferFull));
    }
    Ok(bytes)
}

/// Decodes one frame (with or without its delimiter). Never panics, whatever the
/// bytes: the decoder of untrusted input, and what the fuzz target calls.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    if frame.len() > MAX_FRAME {
        return Err(FrameError::TooLong);
    }
    // COBS is undone in place, so decode a copy; frames are small.
    let mut buf = frame.to_vec();
    postcard::from_bytes_cobs(&mut buf).map_err(FrameError::Decode)
}

/// Writes `message` as one frame and flushes.
pub fn write_message<T: Serialize>(out: &mut impl Write, message: &T) -> Result<(), FrameError> {
    let bytes = encode(message)?;
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(())
}

/// Reads the next frame's bytes (delimiter included) into `buf`, reading at most
/// [`MAX_FRAME`] bytes.
pub fn read_frame(input: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    buf.clear();
    let n = input.take(MAX_FRAME as u64).read_until(0, buf)?;
    match buf.last() {
        _ if n == 0 => Err(FrameError::Closed),
        Some(0) => Ok(()),
        _ if n >= MAX_FRAME => Err(FrameError::TooLong),
        _ => Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
    }
}

/// Reads and decodes the next message.
pub fn read_message<T: DeserializeOwned>(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
) -> Result<T, FrameError> {
    read_frame(input, buf)?;
    decode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Request, Response};

    #[test]
    fn a_message_round_trips_and_bad_frames_are_errors() {
        let frame = encode(&Request::Alloc { count: 3 }).unwrap();
        assert_eq!(frame.last(), Some(&0));
        assert_eq!(frame.iter().filter(|b| **b == 0).count(), 1);
        let back: Request = decode(&frame).unwrap();
        assert_eq!(back, Request::Alloc { count: 3 });
        assert!(decode::<Request>(&[0xff, 0xff, 0xff, 0]).is_err());
        assert!(decode::<Response>(&[]).is_err());
        assert!(matches!(
            decode::<Request>(&vec![1u8; MAX_FRAME + 1]),
            Err(FrameError::TooLong)
        ));
    }

    #[test]
    fn a_reader_stops_at_the_size_cap_and_at_a_truncated_frame() {
        let mut long = io::Cursor::new(vec![1u8; MAX_FRAME * 2]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_frame(&mut long, &mut buf),
            Err(FrameError::TooLong)
        ));
        let mut cut = io::Cursor::new(vec![3u8, 1, 2]);
        assert!(matches!(
            read_frame(&mut cut, &mut buf),
            Err(FrameError::Io(_))
        ));
        let mut empty = io::Cursor::new(Vec::new());
        assert!(matches!(
            read_frame(&mut empty, &mut buf),
            Err(FrameError::Closed)
        ));
    }
}
