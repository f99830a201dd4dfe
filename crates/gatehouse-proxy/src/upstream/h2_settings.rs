//! Reads an HTTP/2 server's first SETTINGS frame as it goes by, for the one value hyper does not expose:
//! MAX_CONCURRENT_STREAMS, the most requests the connection may carry at once (see
//! [`crate::upstream::sender`]). The server's connection preface is a SETTINGS frame (RFC 9113 §3.4); the
//! bytes are passed on untouched, and once that frame has been read the wrapper only forwards.

use super::sender::H2Streams;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// A SETTINGS frame larger than this is not one we need to read (there are six settings defined).
const MAX_PAYLOAD: usize = 1024;

pub struct SettingsReader<S> {
    inner: S,
    streams: Arc<H2Streams>,
    /// The first frame so far; `None` once it has been read.
    first: Option<Vec<u8>>,
}

impl<S> SettingsReader<S> {
    pub fn new(inner: S, streams: Arc<H2Streams>) -> Self {
        SettingsReader {
            inner,
            streams,
            first: Some(Vec::with_capacity(64)),
        }
    }

    fn see(&mut self, bytes: &[u8]) {
        let Some(frame) = self.first.as_mut() else {
            return;
        };
        frame.extend_from_slice(bytes);
        if frame.len() < FRAME_HEADER {
            return;
        }
        let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
        if frame[3] != SETTINGS || len > MAX_PAYLOAD {
            // Not a server preface we can read: no limit we know of.
            self.streams.set_max(u32::MAX);
            self.first = None;
            return;
        }
        if frame.len() < FRAME_HEADER + len {
            return;
        }
        let max = max_concurrent_streams(&frame[FRAME_HEADER..FRAME_HEADER + len]);
        self.streams.set_max(max.unwrap_or(u32::MAX));
        self.first = None;
    }
}

/// MAX_CONCURRENT_STREAMS in a SETTINGS payload, if it is there.
fn max_concurrent_streams(payload: &[u8]) -> Option<u32> {
    // The last occurrence wins (RFC 9113 §6.5: settings are processed in order).
    payload
        .chunks_exact(6)
        .rev()
        .find(|s| u16::from_be_bytes([s[0], s[1]]) == MAX_CONCURRENT_STREAMS)
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
}

impl<S: AsyncRead + Unpin> AsyncRead for SettingsReader<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.first.is_some() && buf.filled().len() > before {
            self.see(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SettingsReader<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_read_from_a_settings_frame_split_anywhere() {
        // SETTINGS: INITIAL_WINDOW_SIZE = 65535, MAX_CONCURRENT_STREAMS = 2.
        let mut frame = vec![0, 0, 12, SETTINGS, 0, 0, 0, 0, 0];
        frame.extend_from_slice(&[0, 4, 0, 0, 0xff, 0xff, 0, 3, 0, 0, 0, 2]);
        for split in 0..frame.len() {
            let streams = Arc::new(H2Streams::default());
            let mut r = SettingsReader::new((), streams.clone());
            r.see(&frame[..split]);
            r.see(&frame[split..]);
            assert!(r.first.is_none(), "split at {split}");
            assert_eq!(max_concurrent_streams(&frame[9..]), Some(2));
        }
        let mut r = SettingsReader::new((), Arc::new(H2Streams::default()));
        r.see(&[0, 0, 0, 0x1, 0, 0, 0, 0, 1]); // a HEADERS frame: not a preface we read
        assert!(r.first.is_none());
    }

    /// One stream (the opener's) until the first SETTINGS frame; then its limit, or none if it names none
    /// or cannot be read.
    #[test]
    fn a_connection_lends_one_stream_until_its_settings_are_read() {
        let takes = |s: &H2Streams| (0..10).filter(|_| s.take()).count();
        let limited = [0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3];
        let silent = [0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0xff, 0xff];
        let headers = [0, 0, 0, 0x1, 0, 0, 0, 0, 1];
        for (frame, want) in [(&limited[..], 3), (&silent[..], 11), (&headers[..], 11)] {
            let streams = Arc::new(H2Streams::default());
            assert!(streams.take(), "the opener's stream");
            assert!(!streams.take(), "no second one before the SETTINGS");
            let mut r = SettingsReader::new((), streams.clone());
            r.see(frame);
            assert_eq!(1 + takes(&streams), want, "after {frame:?}");
        }
    }
}
