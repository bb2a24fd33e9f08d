//! The replication stream between a node and its buddy, over TCP on the management
//! network. Every frame is `length: u32 (big endian, kind and body) | kind: u8 | body`,
//! at most `MAX_FRAME` bytes. The sender opens with `Hello`, the receiver answers
//! `Welcome` with the last frame it applied of that sender's run (0: none), then the
//! sender streams numbered frames: `Batch`es of flow events, and snapshots (`Begin`,
//! batches, `End`: the whole table, after which flows not in it are gone). The
//! receiver answers `Ack` with the highest number applied. A number is one more than
//! the previous one, except at `Begin`, where a stream may start over (conntrackd's
//! FTFW works alike: numbered, acknowledged, resent from the last acknowledgement).
//! Events travel as the data path wrote them (`FlowEvent`, little endian): a fleet is
//! one architecture, and `VERSION` changes with the layout.

use privatelink_common::{FlowEvent, FLOW_REMOVED, FLOW_UPSERT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const VERSION: u16 = 1;
/// Events in one batch at most.
pub const MAX_BATCH: usize = 512;
/// A frame's length at most: a full batch and its header.
pub const MAX_FRAME: usize = 1 + 8 + 2 + MAX_BATCH * EVENT_BYTES;
const EVENT_BYTES: usize = size_of::<FlowEvent>();
/// A node's name at most (a DNS label).
const MAX_NAME: usize = 63;

const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const BATCH: u8 = 3;
const BEGIN: u8 = 4;
const END: u8 = 5;
const ACK: u8 = 6;

#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// Who sends: its node name and the run of its daemon (a new run starts a new
    /// stream).
    Hello { node: String, run: u64 },
    Welcome { applied: u64 },
    Batch { seq: u64, events: Vec<FlowEvent> },
    Begin { seq: u64 },
    End { seq: u64 },
    Ack { seq: u64 },
}

impl Frame {
    pub fn seq(&self) -> Option<u64> {
        match self {
            Frame::Batch { seq, .. } | Frame::Begin { seq } | Frame::End { seq } => Some(*seq),
            _ => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        match self {
            Frame::Hello { node, run } => {
                b.push(HELLO);
                b.extend(VERSION.to_be_bytes());
                b.extend(run.to_be_bytes());
                b.push(node.len() as u8);
                b.extend(node.as_bytes());
            }
            Frame::Welcome { applied } => {
                b.push(WELCOME);
                b.extend(applied.to_be_bytes());
            }
            Frame::Batch { seq, events } => {
                b.push(BATCH);
                b.extend(seq.to_be_bytes());
                b.extend((events.len() as u16).to_be_bytes());
                for e in events {
                    b.extend(e.as_bytes());
                }
            }
            Frame::Begin { seq } => {
                b.push(BEGIN);
                b.extend(seq.to_be_bytes());
            }
            Frame::End { seq } => {
                b.push(END);
                b.extend(seq.to_be_bytes());
            }
            Frame::Ack { seq } => {
                b.push(ACK);
                b.extend(seq.to_be_bytes());
            }
        }
        let len = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        b
    }

    /// A frame from its kind and body: every field checked, nothing left over.
    pub fn decode(kind: u8, body: &[u8]) -> Result<Frame, WireError> {
        let mut r = Cursor(body);
        let f = match kind {
            HELLO => {
                let version = u16::from_be_bytes(r.take()?);
                if version != VERSION {
                    return Err(WireError::Version(version));
                }
                let run = u64::from_be_bytes(r.take()?);
                let [n] = r.take()?;
                let name = r.bytes(n as usize)?;
                let node = std::str::from_utf8(name).ok().filter(|s| valid_name(s)).ok_or(WireError::Name)?;
                Frame::Hello { node: node.to_string(), run }
            }
            WELCOME => Frame::Welcome { applied: u64::from_be_bytes(r.take()?) },
            BATCH => {
                let seq = u64::from_be_bytes(r.take()?);
                let count = u16::from_be_bytes(r.take()?) as usize;
                if count == 0 || count > MAX_BATCH {
                    return Err(WireError::Count(count));
                }
                let mut events = Vec::with_capacity(count);
                for _ in 0..count {
                    let e = FlowEvent::from_bytes(&r.take()?);
                    if e.op != FLOW_UPSERT && e.op != FLOW_REMOVED {
                        return Err(WireError::Op(e.op));
                    }
                    events.push(e);
                }
                Frame::Batch { seq, events }
            }
            BEGIN => Frame::Begin { seq: u64::from_be_bytes(r.take()?) },
            END => Frame::End { seq: u64::from_be_bytes(r.take()?) },
            ACK => Frame::Ack { seq: u64::from_be_bytes(r.take()?) },
            k => return Err(WireError::Kind(k)),
        };
        if !r.0.is_empty() {
            return Err(WireError::Trailing(r.0.len()));
        }
        Ok(f)
    }
}

/// A node's name as the fleet allows it (what `--node` accepts).
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Short);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes (at most {MAX_FRAME})")]
    Length(usize),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("protocol version {0} (this node speaks {VERSION})")]
    Version(u16),
    #[error("a node name must be 1-63 letters, digits, '-', '_' or '.'")]
    Name,
    #[error("a batch of {0} events (1 to {MAX_BATCH})")]
    Count(usize),
    #[error("unknown flow event {0}")]
    Op(u8),
    #[error("frame ends early")]
    Short,
    #[error("{0} bytes after the frame's fields")]
    Trailing(usize),
    #[error("{0}")]
    Io(String),
}

/// Read one frame (None: the peer closed between frames).
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(WireError::Io(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(WireError::Length(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| WireError::Io(e.to_string()))?;
    Frame::decode(body[0], &body[1..]).map(Some)
}

pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> Result<(), WireError> {
    w.write_all(&f.encode()).await.map_err(|e| WireError::Io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use privatelink_common::{CtKey, CtValue, CT_KIND_FORWARD};

    fn event(op: u8) -> FlowEvent {
        FlowEvent {
            at_ns: 7,
            op,
            key: CtKey { src_ip_be: 1, dst_ip_be: 2, src_port_be: 3, dst_port_be: 4, vpc_id: 5, proto: 6, _pad: 0 },
            fwd: CtValue { endpoint: 9, kind: CT_KIND_FORWARD, ..Default::default() },
            ..Default::default()
        }
    }

    fn round(f: &Frame) -> Result<Frame, WireError> {
        let b = f.encode();
        assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()) as usize, b.len() - 4);
        Frame::decode(b[4], &b[5..])
    }

    #[test]
    fn every_frame_comes_back_as_it_went() {
        for f in [
            Frame::Hello { node: "gw-1.z1".into(), run: u64::MAX },
            Frame::Welcome { applied: 42 },
            Frame::Batch { seq: 3, events: vec![event(FLOW_UPSERT), event(FLOW_REMOVED)] },
            Frame::Batch { seq: 4, events: vec![event(FLOW_UPSERT); MAX_BATCH] },
            Frame::Begin { seq: 1 },
            Frame::End { seq: 2 },
            Frame::Ack { seq: 9 },
        ] {
            assert_eq!(round(&f), Ok(f.clone()));
        }
        assert_eq!(Frame::Batch { seq: 4, events: vec![event(FLOW_UPSERT); MAX_BATCH] }.encode().len(), 4 + MAX_FRAME);
    }

    #[test]
    fn forged_frames_are_refused_with_a_reason() {
        let hello = Frame::Hello { node: "gw1".into(), run: 1 }.encode();
        // Another version, a name with a slash or a NUL, truncated, trailing bytes.
        let mut v2 = hello.clone();
        v2[5..7].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(Frame::decode(v2[4], &v2[5..]), Err(WireError::Version(2)));
        for bad in ["gw/1", "gw\u{0}", "", "é"] {
            let mut b = vec![HELLO];
            b.extend(VERSION.to_be_bytes());
            b.extend(1u64.to_be_bytes());
            b.push(bad.len() as u8);
            b.extend(bad.as_bytes());
            assert_eq!(Frame::decode(b[0], &b[1..]), Err(WireError::Name), "{bad:?}");
        }
        assert_eq!(Frame::decode(hello[4], &hello[5..hello.len() - 1]), Err(WireError::Short));
        let mut long = hello.clone();
        long.push(0);
        assert_eq!(Frame::decode(long[4], &long[5..]), Err(WireError::Trailing(1)));
        // A name longer than its length byte says is trailing, a shorter one short.
        let mut b = vec![BATCH];
        b.extend(1u64.to_be_bytes());
        b.extend(0u16.to_be_bytes());
        assert_eq!(Frame::decode(b[0], &b[1..]), Err(WireError::Count(0)));
        let mut b = vec![BATCH];
        b.extend(1u64.to_be_bytes());
        b.extend(513u16.to_be_bytes());
        assert_eq!(Frame::decode(b[0], &b[1..]), Err(WireError::Count(513)));
        // Two events announced, one sent.
        let mut b = vec![BATCH];
        b.extend(1u64.to_be_bytes());
        b.extend(2u16.to_be_bytes());
        b.extend(event(FLOW_UPSERT).as_bytes());
        assert_eq!(Frame::decode(b[0], &b[1..]), Err(WireError::Short));
        let bad = Frame::Batch { seq: 1, events: vec![event(9)] }.encode();
        assert_eq!(Frame::decode(bad[4], &bad[5..]), Err(WireError::Op(9)));
        assert_eq!(Frame::decode(0, &[]), Err(WireError::Kind(0)));
        assert_eq!(Frame::decode(200, &[1, 2]), Err(WireError::Kind(200)));
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_before_it_is_read() {
        let mut huge = Vec::new();
        huge.extend(((MAX_FRAME + 1) as u32).to_be_bytes());
        huge.push(BATCH);
        let mut r = &huge[..];
        assert_eq!(read(&mut r).await, Err(WireError::Length(MAX_FRAME + 1)));
        let mut r: &[u8] = &[0, 0, 0, 0];
        assert_eq!(read(&mut r).await, Err(WireError::Length(0)));
        // A frame cut short by the peer closing, and a clean close between frames.
        let f = Frame::Ack { seq: 1 }.encode();
        let mut r = &f[..f.len() - 2];
        assert!(matches!(read(&mut r).await, Err(WireError::Io(_))));
        let mut r: &[u8] = &[];
        assert_eq!(read(&mut r).await, Ok(None));
        let mut r = &f[..];
        assert_eq!(read(&mut r).await, Ok(Some(Frame::Ack { seq: 1 })));
    }
}
