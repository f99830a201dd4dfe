//! A response body compressed on its way to the client: the inner body's data frames through an
//! async-compression encoder, in constant memory. The encoder flushes whenever the inner body has nothing
//! more ready (async-compression's bufread encoders do so when their reader is pending), so server-sent
//! events and other slow streams arrive event by event, not when a buffer fills.

use super::ResponseBody;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use futures_util::Stream;
use gatehouse_config::{Codec, CompressLevel};
use http_body::Body;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// Compressed bytes, as the response body's stream.
pub type Encoded = ReaderStream<Pin<Box<dyn AsyncRead + Send>>>;

/// The output chunk size: a few TCP segments, the size of hyper's own write buffer.
const CHUNK: usize = 16 * 1024;

pub fn encode(inner: ResponseBody, codec: Codec, level: CompressLevel) -> Encoded {
    let reader = StreamReader::new(DataStream(inner));
    let level = |default: i32| match level {
        CompressLevel::Fastest => Level::Fastest,
        CompressLevel::Best => Level::Best,
        CompressLevel::Default => Level::Precise(default),
        CompressLevel::Precise(n) => Level::Precise(n),
    };
    let enc: Pin<Box<dyn AsyncRead + Send>> = match codec {
        Codec::Gzip => Box::pin(GzipEncoder::with_quality(reader, level(5))),
        Codec::Br => Box::pin(BrotliEncoder::with_quality(reader, level(4))),
        Codec::Zstd => Box::pin(ZstdEncoder::with_quality(reader, level(3))),
    };
    ReaderStream::with_capacity(enc, CHUNK)
}

/// The inner body's data frames (trailers are dropped: they would describe the uncompressed bytes).
struct DataStream(ResponseBody);

impl Stream for DataStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(Pin::new(&mut self.0).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
            }
        }
    }
}
