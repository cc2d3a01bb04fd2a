//! Length-prefixed codecs for `/bftnode/consensus/1` and `/bftnode/sync/1`.
//!
//! A frame is a `u32` big-endian length followed by that many bytes. Readers check the length
//! against the cap before allocating. An oversized *request* is returned as
//! [`Frame::Oversized`] (libp2p's request-response does not report `read_request` errors to
//! the behaviour, and the service needs the peer id to count and score it); the body is never
//! read and the stream is reset when the service drops the response channel. An oversized
//! *response* fails with an [`io::Error`] wrapping [`FrameTooLarge`].

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{StreamProtocol, request_response};

/// Longest error string carried in a sync response, in bytes.
const MAX_ERROR_BYTES: usize = 1024;

/// A peer announced a frame longer than the cap. Carried inside an [`io::Error`].
#[derive(Debug, thiserror::Error)]
#[error("frame of {len} bytes exceeds cap of {max} bytes")]
pub(crate) struct FrameTooLarge {
    /// Announced length, in bytes.
    pub len: usize,
    /// Cap, in bytes.
    pub max: usize,
}

/// Whether an I/O error from a codec is a [`FrameTooLarge`].
pub(crate) fn is_frame_too_large(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.downcast_ref::<FrameTooLarge>().is_some())
}

/// An inbound request as read off a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A frame within the cap.
    Data(Vec<u8>),
    /// A frame whose announced length exceeds the cap; its body was not read.
    Oversized {
        /// Announced length, in bytes.
        len: usize,
        /// Cap, in bytes.
        max: usize,
    },
}

/// Reads a request frame, turning an over-cap length into [`Frame::Oversized`].
pub(crate) async fn read_request_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Frame> {
    match read_frame(io, max).await {
        Ok(bytes) => Ok(Frame::Data(bytes)),
        Err(e) => match e.get_ref().and_then(|e| e.downcast_ref::<FrameTooLarge>()) {
            Some(t) => Ok(Frame::Oversized {
                len: t.len,
                max: t.max,
            }),
            None => Err(e),
        },
    }
}

/// Writes a request frame; [`Frame::Oversized`] is never sent.
async fn write_request_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    frame: Frame,
) -> io::Result<()> {
    match frame {
        Frame::Data(bytes) => write_frame(io, &bytes).await,
        Frame::Oversized { .. } => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to write an oversized frame",
        )),
    }
}

/// Reads one length-prefixed frame of at most `max` bytes.
pub(crate) async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            FrameTooLarge { len, max },
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Bodies up to this size are written with their header in one buffer (one write); a larger
/// body is written after its header, uncopied.
const COALESCE_MAX_BYTES: usize = 64 * 1024;

/// Writes one length-prefixed frame: header and body in one write if the body is small, else
/// the header and then the body itself. A large frame is never copied: a sync answer stalled on
/// a peer that reads slowly stays in memory once, not twice, until it is read or times out.
pub(crate) async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than u32"))?;
    if bytes.len() > COALESCE_MAX_BYTES {
        io.write_all(&len.to_be_bytes()).await?;
        return io.write_all(bytes).await;
    }
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    io.write_all(&buf).await
}

/// Codec of `/bftnode/consensus/1`: request = one frame, response = empty ack (stream EOF).
#[derive(Clone, Debug)]
pub(crate) struct ConsensusCodec {
    /// Cap on inbound frames, in bytes.
    pub max_frame_bytes: usize,
}

impl request_response::Codec for ConsensusCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_request_frame(io, self.max_frame_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        // The ack is the peer finishing its side of the stream without sending anything.
        let mut byte = [0u8; 1];
        match io.read(&mut byte).await? {
            0 => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected bytes in consensus ack",
            )),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_request_frame(io, req).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// A sync response on the wire: the payload or the responder's error message.
pub(crate) type SyncReply = Result<Vec<u8>, String>;

/// Codec of `/bftnode/sync/1`: request = one frame; response = tag byte (0 ok, 1 error) ‖ frame.
#[derive(Clone, Debug)]
pub(crate) struct SyncCodec {
    /// Cap on inbound requests, in bytes.
    pub max_request_bytes: usize,
    /// Cap on inbound responses, in bytes.
    pub max_response_bytes: usize,
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = SyncReply;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_request_frame(io, self.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncReply>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut tag = [0u8; 1];
        io.read_exact(&mut tag).await?;
        match tag[0] {
            0 => Ok(Ok(read_frame(io, self.max_response_bytes).await?)),
            1 => {
                let msg = read_frame(io, MAX_ERROR_BYTES).await?;
                Ok(Err(String::from_utf8_lossy(&msg).into_owned()))
            }
            t => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad sync response tag {t}"),
            )),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_request_frame(io, req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncReply,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match res {
            Ok(bytes) => {
                io.write_all(&[0]).await?;
                write_frame(io, &bytes).await
            }
            Err(msg) => {
                io.write_all(&[1]).await?;
                let mut bytes = msg.into_bytes();
                bytes.truncate(MAX_ERROR_BYTES);
                write_frame(io, &bytes).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_cap() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, b"hello").await.unwrap();
            assert_eq!(&buf[..4], &5u32.to_be_bytes());
            let got = read_frame(&mut &buf[..], 5).await.unwrap();
            assert_eq!(got, b"hello");
            let err = read_frame(&mut &buf[..], 4).await.unwrap_err();
            assert!(is_frame_too_large(&err));
            // A huge announced length fails without allocating it.
            let huge = u32::MAX.to_be_bytes();
            let err = read_frame(&mut &huge[..], 1 << 20).await.unwrap_err();
            assert!(is_frame_too_large(&err));
            // Truncated input is an ordinary I/O error, not a panic.
            let err = read_frame(&mut &buf[..6], 5).await.unwrap_err();
            assert!(!is_frame_too_large(&err));
            // A large body (written after its header, uncopied) reads back the same.
            let big: Vec<u8> = (0..COALESCE_MAX_BYTES + 7).map(|i| i as u8).collect();
            let mut buf2 = Vec::new();
            write_frame(&mut buf2, &big).await.unwrap();
            assert_eq!(read_frame(&mut &buf2[..], big.len()).await.unwrap(), big);
            // As a request, an oversized frame is reported, not an error.
            let got = read_request_frame(&mut &buf[..], 4).await.unwrap();
            assert_eq!(got, Frame::Oversized { len: 5, max: 4 });
        });
    }

    #[test]
    fn sync_reply_round_trip() {
        futures::executor::block_on(async {
            let proto = StreamProtocol::new(crate::SYNC_PROTOCOL);
            let mut codec = SyncCodec {
                max_request_bytes: 16,
                max_response_bytes: 16,
            };
            for reply in [Ok(b"blocks".to_vec()), Err("nope".to_string())] {
                let mut buf = Vec::new();
                request_response::Codec::write_response(
                    &mut codec,
                    &proto,
                    &mut buf,
                    reply.clone(),
                )
                .await
                .unwrap();
                let got = request_response::Codec::read_response(&mut codec, &proto, &mut &buf[..])
                    .await
                    .unwrap();
                assert_eq!(got, reply);
            }
        });
    }
}
