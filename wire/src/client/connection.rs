//! One TCP connection to a server: sends a request's bytes and reads whole frames back.
//!
//! Invariants: a frame is read as its 256-byte header, whose checksum and `size` are checked
//! before any body byte is read (so a corrupt `size` never makes the client allocate or wait for
//! a bogus body), then exactly `size − 256` body bytes; the full checks run afterwards in
//! `session.rs`. A connection whose read or write was interrupted (timeout, cancelled future)
//! is dropped, never reused: the driver takes it out of the client while it is in use.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::header::{Header, HeaderLayout, HEADER_SIZE};
use crate::{FrameError, MESSAGE_SIZE_MAX};

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The server closed the connection (possibly mid-frame).
    Closed,
    Io(io::Error),
    /// The header is corrupt or announces an impossible size.
    Frame(FrameError),
}

#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    address: SocketAddr,
}

impl Connection {
    pub(crate) async fn open(address: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        // Requests are single writes awaiting a reply: Nagle's delay would only add latency.
        stream.set_nodelay(true)?;
        Ok(Connection { stream, address })
    }

    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    pub(crate) async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        assert!(message.len() >= HEADER_SIZE && message.len() <= MESSAGE_SIZE_MAX);
        self.stream.write_all(message).await?;
        self.stream.flush().await
    }

    /// The next frame: its header bytes and its body.
    pub(crate) async fn read_frame(&mut self) -> Result<([u8; HEADER_SIZE], Vec<u8>), ReadError> {
        let mut header_bytes = [0u8; HEADER_SIZE];
        read_exact(&mut self.stream, &mut header_bytes).await?;
        let header =
            Header::read(&header_bytes).ok_or(ReadError::Frame(FrameError::HeaderSize {
                size: header_bytes.len(),
            }))?;
        if !header.valid_checksum() {
            return Err(ReadError::Frame(FrameError::HeaderChecksum {
                carried: header.frame.checksum,
                computed: header.calculate_checksum(),
            }));
        }
        let size = header.frame.size;
        let body_size = match usize::try_from(size) {
            Ok(size) if (HEADER_SIZE..=MESSAGE_SIZE_MAX).contains(&size) => size - HEADER_SIZE,
            _ => return Err(ReadError::Frame(FrameError::SizeOutOfRange { size })),
        };
        let mut body = vec![0u8; body_size];
        read_exact(&mut self.stream, &mut body).await?;
        Ok((header_bytes, body))
    }
}

async fn read_exact(stream: &mut TcpStream, buffer: &mut [u8]) -> Result<(), ReadError> {
    match stream.read_exact(buffer).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Err(ReadError::Closed),
        Err(error) => Err(ReadError::Io(error)),
    }
}
