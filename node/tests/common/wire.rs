//! A tiny raw-socket client of the wire port, built on `kassa_wire`'s codec: it sends exactly
//! the bytes a test makes (well-formed or not) and reads what comes back.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use kassa_wire::header::{HeaderLayout, Release};
use kassa_wire::multi_batch::encode_to_vec;
use kassa_wire::{
    EvictionHeader, EvictionReason, Header, Operation, PingClientHeader, RegisterRequest,
    ReplyHeader, RequestHeader, HEADER_SIZE,
};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

pub const RELEASE: Release = Release::new(0, 17, 8);
/// How long a test waits for an answer the protocol requires.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the node did with a frame.
#[derive(Debug)]
pub enum Answer {
    Frame(Box<Header>, Vec<u8>),
    Closed,
}

/// One connection and one client id.
pub struct RawClient {
    pub stream: TcpStream,
    pub cluster: u128,
    pub client: u128,
    pub session: u64,
    pub request: u32,
    pub parent: u128,
}

impl RawClient {
    pub fn connect(address: SocketAddr, cluster: u128, client: u128) -> RawClient {
        RawClient::connect_checked(address, cluster, client).expect("connect to the wire port")
    }

    /// Connects, or `None` if nothing listens (a node killed).
    pub fn connect_checked(address: SocketAddr, cluster: u128, client: u128) -> Option<RawClient> {
        let stream = TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
        Some(RawClient {
            stream,
            cluster,
            client,
            session: 0,
            request: 0,
            parent: 0,
        })
    }

    /// A sealed register request.
    pub fn register_frame(&self) -> Vec<u8> {
        let body = RegisterRequest::new().as_bytes().to_vec();
        let mut header = RequestHeader::new(self.cluster, self.client, RELEASE, 2);
        header.frame.size = (HEADER_SIZE + body.len()) as u32;
        header.seal(&body);
        frame(header.as_bytes(), &body)
    }

    /// The sealed next request of this session with `body`.
    pub fn request_frame(&self, operation: u8, body: &[u8]) -> Vec<u8> {
        let mut header = RequestHeader::new(self.cluster, self.client, RELEASE, operation);
        header.session = self.session;
        header.request = self.request + 1;
        header.parent = self.parent;
        header.frame.size = (HEADER_SIZE + body.len()) as u32;
        header.seal(body);
        frame(header.as_bytes(), body)
    }

    /// A sealed ping.
    pub fn ping_frame(&self) -> Vec<u8> {
        let mut ping = PingClientHeader::new_zeroed();
        ping.frame = kassa_wire::Frame::new(kassa_wire::Command::PingClient, self.cluster);
        ping.frame.release = RELEASE;
        ping.client = self.client;
        ping.session = self.session;
        ping.ping_timestamp_monotonic = 42;
        ping.seal(&[]);
        ping.as_bytes().to_vec()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The next frame, or `Closed` once the node closed the connection.
    pub fn receive(&mut self) -> Answer {
        let mut header = [0u8; HEADER_SIZE];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if closed(&error) => return Answer::Closed,
            Err(error) => panic!("no answer from the node: {error}"),
        }
        let header = Header::read(&header).expect("256 bytes");
        assert!(header.valid_checksum(), "the node's frame is sealed");
        let mut body = vec![0u8; header.frame.size as usize - HEADER_SIZE];
        self.stream.read_exact(&mut body).expect("the frame's body");
        assert!(header.valid_checksum_body(&body));
        Answer::Frame(Box::new(header), body)
    }

    /// The next frame, `Closed` once the node closed the connection, or `None` if no answer
    /// came in time or the read failed otherwise.
    pub fn try_receive(&mut self) -> Option<Answer> {
        let mut header = [0u8; HEADER_SIZE];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if closed(&error) => return Some(Answer::Closed),
            Err(_) => return None,
        }
        let header = Header::read(&header).expect("256 bytes");
        assert!(header.valid_checksum(), "the node's frame is sealed");
        let mut body = vec![0u8; header.frame.size as usize - HEADER_SIZE];
        if let Err(error) = self.stream.read_exact(&mut body) {
            return closed(&error).then_some(Answer::Closed);
        }
        assert!(header.valid_checksum_body(&body));
        Some(Answer::Frame(Box::new(header), body))
    }

    /// Registers; panics unless the node replies.
    pub fn register(&mut self) {
        let frame = self.register_frame();
        self.send(&frame);
        let (reply, _) = self.expect_reply();
        self.session = reply.commit;
        self.parent = reply.context;
        assert!(self.session > 0);
    }

    /// Sends the next request and returns the reply (advancing the session).
    pub fn call(&mut self, operation: Operation, batches: &[&[u8]]) -> (ReplyHeader, Vec<u8>) {
        let body = encode_to_vec(operation.event_size(), batches).expect("encodes");
        let frame = self.request_frame(operation.as_u8(), &body);
        self.send(&frame);
        let (reply, body) = self.expect_reply();
        self.request = reply.request;
        self.parent = reply.context;
        (reply, body)
    }

    pub fn expect_reply(&mut self) -> (ReplyHeader, Vec<u8>) {
        match self.receive() {
            Answer::Frame(header, body) => {
                let reply = ReplyHeader::from_header(&header).expect("a reply");
                assert_eq!(reply.client, self.client);
                (reply, body)
            }
            Answer::Closed => panic!("the node closed the connection instead of replying"),
        }
    }

    pub fn expect_eviction(&mut self) -> EvictionReason {
        match self.receive() {
            Answer::Frame(header, _) => {
                let eviction = EvictionHeader::from_header(&header).expect("an eviction");
                assert_eq!(eviction.client, self.client);
                EvictionReason::from_u8(eviction.reason).expect("a known reason")
            }
            Answer::Closed => panic!("the node closed the connection instead of evicting"),
        }
    }

    pub fn expect_closed(&mut self) {
        match self.receive() {
            Answer::Closed => {}
            Answer::Frame(header, _) => panic!("expected a closed connection, got {header:?}"),
        }
    }

    /// The frames before were dropped without an answer: a ping sent now gets the next answer
    /// (the node serves a connection's frames in order), and it is a pong.
    pub fn expect_dropped(&mut self) {
        let ping = self.ping_frame();
        self.send(&ping);
        match self.receive() {
            Answer::Frame(header, _) => assert_eq!(
                header.frame.command,
                kassa_wire::Command::PongClient.as_u8(),
                "expected only a pong, got {header:?}"
            ),
            Answer::Closed => panic!("the node closed the connection"),
        }
    }
}

/// Header and body as one frame.
pub fn frame(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut frame = header.to_vec();
    frame.extend_from_slice(body);
    frame
}

/// A request header read back from a frame, to be changed and resealed by a test.
pub fn request_header(frame: &[u8]) -> RequestHeader {
    RequestHeader::read_from_bytes(&frame[..HEADER_SIZE]).expect("256 bytes")
}

fn closed(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
    )
}
