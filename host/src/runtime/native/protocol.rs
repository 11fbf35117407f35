//! The frames the relay and a plugin runner exchange over the runner's
//! stdin (requests) and a private copy of its stdout (replies).
//!
//! A frame is a little-endian `u32` length, then that many bytes: a tag
//! byte, the `u64` id of the request it belongs to, and the tag's fields.
//! Every request is answered by exactly one [`Reply::Done`]; before it,
//! the runner may send any number of `Log`, `Counter` and `Gauge` frames
//! (the plugin's host-service calls, served by the relay as they arrive).
//! Every reply carries the id of the request being served, and the relay
//! takes nothing else: a frame written into the pipe by anything but the
//! runner's protocol code (a library writing to a descriptor it found, a
//! stale frame) does not carry the id and breaks the exchange instead of
//! counting. Ids are random per runner, then counted up. The `describe`
//! exchange, which has no request, uses id 0.
//!
//! | tag | direction | fields |
//! |---|---|---|
//! | `I` init | → runner | [`RunnerInit`] as JSON |
//! | `D` deliver | → runner | `u32` event count, then the batch bytes |
//! | `F` flush | → runner | — |
//! | `S` shutdown | → runner | — (the runner answers, then exits) |
//! | `L` log | ← runner | `u32` level, then the message |
//! | `C` counter | ← runner | `u64` delta, then the name |
//! | `G` gauge | ← runner | `f64` value, then the name |
//! | `R` done | ← runner | `i32` ABI status, then the sink bytes |
//!
//! The runner reads the plugin's secrets from the init frame, so secret
//! lookups never cross the pipe again; everything else the plugin prints
//! goes to the runner's stderr, which the relay logs line by line.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request the runner accepts (a batch is capped well below).
pub const MAX_REQUEST: usize = 1 << 30;
/// Largest reply the relay accepts: a runner cannot make it allocate more.
pub const MAX_REPLY: usize = 64 << 20;

/// What an instance starts with.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunnerInit {
    /// The instance name.
    pub instance: String,
    /// The instance's `config` table.
    pub config: serde_json::Value,
    /// The directory the plugin is told to use.
    pub granted_dir: Option<PathBuf>,
    /// The instance's secrets by name (served inside the runner).
    pub secrets: BTreeMap<String, String>,
}

/// A request from the relay.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    /// Start the instance ([`RunnerInit`] JSON).
    Init(&'a [u8]),
    /// Deliver a batch.
    Deliver {
        /// Events in the batch.
        count: u32,
        /// The batch wire bytes.
        data: &'a [u8],
    },
    /// Flush.
    Flush,
    /// Shut down and exit.
    Shutdown,
}

/// The bytes of a frame after its length: tag and id.
const HEAD_LEN: usize = 1 + 8;

impl<'a> Request<'a> {
    /// Writes the request, with id `id`, as one frame.
    pub fn write_to(&self, id: u64, out: &mut Vec<u8>) {
        let (tag, fields, body): (u8, &[u8], &[u8]) = match self {
            Request::Init(json) => (b'I', &[], json),
            Request::Deliver { count, data } => (b'D', &count.to_le_bytes()[..], data),
            Request::Flush => (b'F', &[], &[]),
            Request::Shutdown => (b'S', &[], &[]),
        };
        // The caller keeps requests far below 4 GiB (MAX_REQUEST).
        let len = (HEAD_LEN + fields.len() + body.len()) as u32;
        out.extend_from_slice(&len.to_le_bytes());
        out.push(tag);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(fields);
        out.extend_from_slice(body);
    }

    /// Reads a frame's bytes (without the length) as a request and its id.
    pub fn parse(frame: &'a [u8]) -> Result<(u64, Self), String> {
        let (&tag, rest) = frame.split_first().ok_or("empty frame")?;
        let (id, rest) = rest
            .split_at_checked(8)
            .ok_or("a frame without a request id")?;
        let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
        Ok((
            id,
            match tag {
                b'I' => Request::Init(rest),
                b'D' if rest.len() >= 4 => Request::Deliver {
                    count: u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")),
                    data: &rest[4..],
                },
                b'F' => Request::Flush,
                b'S' => Request::Shutdown,
                other => return Err(format!("unknown request tag {other:#04x}")),
            },
        ))
    }
}

/// A frame from the runner.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// The plugin logged.
    Log {
        /// `ar_level`.
        level: u32,
        /// The message bytes.
        message: Vec<u8>,
    },
    /// The plugin added to a counter.
    Counter {
        /// The counter.
        name: Vec<u8>,
        /// How much.
        delta: u64,
    },
    /// The plugin set a gauge.
    Gauge {
        /// The gauge.
        name: Vec<u8>,
        /// The value.
        value: f64,
    },
    /// The request's answer.
    Done {
        /// The ABI status (for init: 0 started, 3 refused).
        status: i32,
        /// What the plugin wrote to its sink.
        payload: Vec<u8>,
    },
}

impl Reply {
    /// Writes the reply, for request `id`, as one frame.
    pub fn write_to(&self, id: u64, out: &mut impl Write) -> io::Result<()> {
        let mut field = [0u8; 8];
        let (tag, width, body): (u8, usize, &[u8]) = match self {
            Reply::Log { level, message } => {
                field[..4].copy_from_slice(&level.to_le_bytes());
                (b'L', 4, message)
            }
            Reply::Done { status, payload } => {
                field[..4].copy_from_slice(&status.to_le_bytes());
                (b'R', 4, payload)
            }
            Reply::Counter { name, delta } => {
                field = delta.to_le_bytes();
                (b'C', 8, name)
            }
            Reply::Gauge { name, value } => {
                field = value.to_le_bytes();
                (b'G', 8, name)
            }
        };
        let fields = &field[..width];
        let body = &body[..body.len().min(MAX_REPLY - 32)];
        let len = (HEAD_LEN + fields.len() + body.len()) as u32;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&[tag])?;
        out.write_all(&id.to_le_bytes())?;
        out.write_all(fields)?;
        out.write_all(body)
    }

    /// Reads a frame's bytes (without the length) as a reply and the id
    /// of the request it belongs to.
    pub fn parse(mut frame: Vec<u8>) -> Result<(u64, Self), String> {
        let malformed = || format!("a malformed frame ({} bytes)", frame.len());
        let tag = *frame.first().ok_or_else(malformed)?;
        let width = match tag {
            b'L' | b'R' => 4,
            b'C' | b'G' => 8,
            other => return Err(format!("a frame with unknown tag {other:#04x}")),
        };
        if frame.len() < HEAD_LEN + width {
            return Err(malformed());
        }
        let id = u64::from_le_bytes(frame[1..HEAD_LEN].try_into().expect("8 bytes"));
        let mut field = [0u8; 8];
        field[..width].copy_from_slice(&frame[HEAD_LEN..HEAD_LEN + width]);
        let body = frame.split_off(HEAD_LEN + width);
        let four = || field[..4].try_into().expect("4 bytes");
        Ok((
            id,
            match tag {
                b'L' => Reply::Log {
                    level: u32::from_le_bytes(four()),
                    message: body,
                },
                b'R' => Reply::Done {
                    status: i32::from_le_bytes(four()),
                    payload: body,
                },
                b'C' => Reply::Counter {
                    name: body,
                    delta: u64::from_le_bytes(field),
                },
                _ => Reply::Gauge {
                    name: body,
                    value: f64::from_le_bytes(field),
                },
            },
        ))
    }
}

/// Reads one frame into `buffer` (replacing its contents). `Ok(false)` on
/// a clean end of input before a frame starts.
pub fn read_frame(input: &mut impl Read, buffer: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = frame_len(len, max)?;
    buffer.clear();
    buffer.resize(len, 0);
    input.read_exact(buffer)?;
    Ok(true)
}

/// [`read_frame`] for the relay's async side; returns the frame.
pub async fn read_frame_async(
    input: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).await?;
    let len = frame_len(len, max)?;
    let mut frame = vec![0u8; len];
    input.read_exact(&mut frame).await?;
    Ok(frame)
}

fn frame_len(len: [u8; 4], max: usize) -> io::Result<usize> {
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (at most {max} allowed)"),
        ));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unframe(bytes: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        assert!(read_frame(&mut &bytes[..], &mut frame, MAX_REQUEST).unwrap());
        frame
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Init(br#"{"instance":"x"}"#),
            Request::Deliver {
                count: 3,
                data: b"abc",
            },
            Request::Flush,
            Request::Shutdown,
        ] {
            let mut bytes = Vec::new();
            request.write_to(7, &mut bytes);
            assert_eq!(Request::parse(&unframe(&bytes)).unwrap(), (7, request));
        }
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Log {
                level: 3,
                message: b"careful".to_vec(),
            },
            Reply::Counter {
                name: b"sent".to_vec(),
                delta: 1 << 40,
            },
            Reply::Gauge {
                name: b"depth".to_vec(),
                value: -2.5,
            },
            Reply::Done {
                status: -1,
                payload: b"{}".to_vec(),
            },
        ] {
            let mut bytes = Vec::new();
            reply.write_to(u64::MAX - 1, &mut bytes).unwrap();
            assert_eq!(
                Reply::parse(unframe(&bytes)).unwrap(),
                (u64::MAX - 1, reply)
            );
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        assert!(
            Reply::parse(b"R\x01".to_vec())
                .unwrap_err()
                .contains("malformed")
        );
        assert!(
            Reply::parse(b"Z....".to_vec())
                .unwrap_err()
                .contains("unknown tag")
        );
        assert!(Request::parse(b"D\x01").is_err());
        assert!(
            Request::parse(b"F\x01\x02")
                .unwrap_err()
                .contains("request id")
        );
        let huge = (MAX_REPLY as u32 + 1).to_le_bytes();
        let error = read_frame(&mut &huge[..], &mut Vec::new(), MAX_REPLY).unwrap_err();
        assert!(error.to_string().contains("at most"));
        // A clean end before a frame is not an error.
        assert!(!read_frame(&mut &b""[..], &mut Vec::new(), MAX_REPLY).unwrap());
    }
}
