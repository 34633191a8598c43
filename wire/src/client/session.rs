//! The client's protocol state, without I/O (TigerBeetle's `vsr/client.zig`): it builds the
//! register request and the numbered requests that follow, and decides what each frame from the
//! server means. The driver (`client.rs`) sends and receives; this module decides.
//!
//! Invariants, as in TigerBeetle's client:
//! - request 0 is `register` (parent 0, session 0, a zero `RegisterRequest` body); then requests
//!   1, 2, 3, … carry the session (the register reply's `commit`) and, as `parent`, the previous
//!   reply's `context`;
//! - at most one request is in flight; its bytes are built and sealed once and every resend
//!   sends exactly those bytes, so the server can answer a retry from its reply cache;
//! - `parent` holds the in-flight request's checksum until its reply arrives, then the reply's
//!   `context` (so a reply whose `request_checksum` differs is refused);
//! - a reply is accepted only after `check_server_frame` and `check_reply_to`; replies for
//!   another client or an older request are ignored, any other mismatch is a violation.

use zerocopy::IntoBytes;

use super::error::{ClientError, ProtocolError};
use crate::client_headers::{EvictionReason, ReplyHeader, RequestHeader};
use crate::header::{HeaderLayout, Release, HEADER_SIZE};
use crate::multi_batch::encode_to_vec;
use crate::register::{RegisterRequest, RegisterResult};
use crate::validate::Answer;
use crate::{check_reply_to, check_server_frame, FrameError, Operation, ServerFrame};
use crate::{MESSAGE_BODY_SIZE_MAX, MESSAGE_SIZE_MAX};

/// The request in flight: its header, and the exact bytes (header, then body) every send uses.
#[derive(Debug)]
pub(crate) struct Inflight {
    header: RequestHeader,
    message: Vec<u8>,
}

impl Inflight {
    fn new(header: RequestHeader, body: &[u8]) -> Inflight {
        assert!(header.valid_checksum());
        assert!(header.valid_checksum_body(body));
        assert_eq!(header.frame.size as usize, HEADER_SIZE + body.len());
        let mut message = Vec::with_capacity(HEADER_SIZE + body.len());
        message.extend_from_slice(header.as_bytes());
        message.extend_from_slice(body);
        assert!(message.len() <= MESSAGE_SIZE_MAX);
        Inflight { header, message }
    }

    pub(crate) fn message(&self) -> &[u8] {
        &self.message
    }

    fn body(&self) -> &[u8] {
        &self.message[HEADER_SIZE..]
    }
}

/// What a frame from the server means for the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Nothing for the request in flight (a pong, a stale reply, another client's frame, a
    /// frame TigerBeetle's client logs and drops): keep waiting.
    Ignored,
    /// The byte stream cannot be trusted: close the connection, reconnect, resend.
    Reconnect(FrameError),
    /// The reply to the request in flight, which is now finished.
    Reply {
        operation: Operation,
        timestamp: u64,
        body: Vec<u8>,
    },
    Evicted(EvictionReason),
    Violation(ProtocolError),
}

/// One client's session with a cluster.
#[derive(Debug)]
pub(crate) struct Session {
    cluster: u128,
    client: u128,
    release: Release,
    /// The checksum of the request in flight, else the `context` of the latest reply.
    parent: u128,
    /// Zero until the register reply arrives.
    session: u64,
    /// The number the next request gets.
    request_number: u32,
    /// The largest request body, from the register reply.
    batch_size_limit: Option<u32>,
    /// The highest view seen in replies and pongs.
    view: u32,
    inflight: Option<Inflight>,
}

impl Session {
    pub(crate) fn new(cluster: u128, client: u128, release: Release) -> Session {
        assert!(client != 0, "client ids are non-zero");
        assert!(release.0 != 0);
        Session {
            cluster,
            client,
            release,
            parent: 0,
            session: 0,
            request_number: 0,
            batch_size_limit: None,
            view: 0,
            inflight: None,
        }
    }

    pub(crate) fn client(&self) -> u128 {
        self.client
    }

    pub(crate) fn session(&self) -> u64 {
        self.session
    }

    /// The largest request body the server accepts; `None` before registration.
    pub(crate) fn batch_size_limit(&self) -> Option<u32> {
        self.batch_size_limit
    }

    pub(crate) fn inflight(&self) -> Option<&Inflight> {
        self.inflight.as_ref()
    }

    /// Starts request 0, `register`.
    pub(crate) fn begin_register(&mut self) -> &Inflight {
        assert_eq!(self.request_number, 0);
        assert!(self.inflight.is_none());
        assert_eq!(self.parent, 0);
        let mut header = RequestHeader::new(
            self.cluster,
            self.client,
            self.release,
            Operation::Register.as_u8(),
        );
        let body = RegisterRequest::new();
        header.seal(body.as_bytes());
        self.send_first(header, body.as_bytes())
    }

    /// Starts the next request: `batches` (each a whole number of events) encoded as one
    /// multi-batch body. Refuses, sending nothing, a batch the server would not accept.
    pub(crate) fn begin_request(
        &mut self,
        operation: Operation,
        batches: &[&[u8]],
    ) -> Result<&Inflight, ClientError> {
        assert!(operation.is_multi_batch());
        assert!(self.inflight.is_none(), "one request in flight per client");
        assert!(
            self.request_number > 0 && self.session > 0,
            "not registered"
        );
        let limit = self.batch_size_limit.map_or(0, |limit| limit as usize);
        let events_max = if operation.is_batchable() {
            operation.event_max(limit)
        } else {
            1
        };
        for batch in batches {
            assert_eq!(batch.len() % operation.event_size(), 0);
            let events = batch.len() / operation.event_size();
            if events > events_max {
                return Err(ClientError::BatchTooLarge {
                    operation,
                    events,
                    events_max,
                });
            }
        }
        let body = encode_to_vec(operation.event_size(), batches).map_err(|_| {
            ClientError::BatchTooLarge {
                operation,
                events: batches.len(),
                events_max,
            }
        })?;
        if body.len() > limit {
            let events = batches.iter().map(|b| b.len()).sum::<usize>() / operation.event_size();
            return Err(ClientError::BatchTooLarge {
                operation,
                events,
                events_max,
            });
        }
        let mut header =
            RequestHeader::new(self.cluster, self.client, self.release, operation.as_u8());
        header.parent = self.parent;
        header.session = self.session;
        header.request = self.request_number;
        header.frame.view = self.view;
        header.seal(&body);
        Ok(self.send_first(header, &body))
    }

    /// Makes `header` the request in flight: the next request gets the next number, and
    /// `parent` becomes this request's checksum (the reply must name it).
    fn send_first(&mut self, header: RequestHeader, body: &[u8]) -> &Inflight {
        assert_eq!(header.request, self.request_number);
        assert_eq!(header.parent, self.parent);
        self.request_number = self
            .request_number
            .checked_add(1)
            .expect("2^32 requests in one session");
        self.parent = header.frame.checksum;
        self.inflight.insert(Inflight::new(header, body))
    }

    /// What the frame `header_bytes` + `body` from the server means; a reply to the request in
    /// flight finishes it. Never panics on any bytes.
    pub(crate) fn on_frame(&mut self, header_bytes: &[u8], body: Vec<u8>) -> Received {
        match check_server_frame(header_bytes, &body, self.cluster) {
            Err(error) => match error.answer() {
                Answer::CloseConnection => Received::Reconnect(error),
                Answer::Ignore => Received::Ignored,
            },
            Ok(ServerFrame::PongClient(pong)) => {
                self.view = self.view.max(pong.frame.view);
                Received::Ignored
            }
            Ok(ServerFrame::Eviction(eviction)) => {
                if eviction.client != self.client || eviction.frame.view < self.view {
                    return Received::Ignored;
                }
                // check_server_frame accepted only known reasons.
                match EvictionReason::from_u8(eviction.reason) {
                    Some(reason) => Received::Evicted(reason),
                    None => Received::Ignored,
                }
            }
            Ok(ServerFrame::Reply(reply)) => self.on_reply(&reply, body),
        }
    }

    fn on_reply(&mut self, reply: &ReplyHeader, body: Vec<u8>) -> Received {
        if reply.client != self.client {
            return Received::Ignored;
        }
        if reply.request >= self.request_number {
            return Received::Violation(ProtocolError::ReplyFromTheFuture {
                reply: reply.request,
                sent: self.request_number.saturating_sub(1),
            });
        }
        let Some(inflight) = &self.inflight else {
            return Received::Ignored; // A duplicate of a reply already taken.
        };
        if reply.request < inflight.header.request {
            return Received::Ignored; // A late reply to an earlier request.
        }
        if let Err(mismatch) = check_reply_to(&inflight.header, inflight.body(), reply, &body) {
            return Received::Violation(ProtocolError::Reply(mismatch));
        }
        // check_reply_to compared the request checksum, which `parent` holds until now.
        assert_eq!(reply.request_checksum, self.parent);
        // check_reply_to matched it with the request's, and the client sends only known ones.
        let operation = Operation::from_u8(reply.operation).expect("a known operation");
        self.parent = reply.context;
        self.view = self.view.max(reply.frame.view);
        self.inflight = None;
        if operation == Operation::Register {
            self.on_register_reply(reply, &body);
        }
        Received::Reply {
            operation,
            timestamp: reply.timestamp,
            body,
        }
    }

    fn on_register_reply(&mut self, reply: &ReplyHeader, body: &[u8]) {
        assert_eq!(self.session, 0);
        assert!(self.batch_size_limit.is_none());
        assert!(reply.commit > 0);
        // check_reply_to checked the size and the limit's range.
        let result = <RegisterResult as zerocopy::FromBytes>::read_from_bytes(body)
            .expect("register reply checked");
        assert!(result.batch_size_limit as usize <= MESSAGE_BODY_SIZE_MAX);
        self.session = reply.commit;
        self.batch_size_limit = Some(result.batch_size_limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{build_eviction, build_reply, ReplyFields, Sender};
    use crate::{Account, AccountId};

    const RELEASE: Release = Release::new(0, 17, 8);

    fn fields(commit: u64) -> ReplyFields {
        ReplyFields {
            view: 0,
            replica: 0,
            commit,
            timestamp: 1_000 + commit,
        }
    }

    /// A session that registered with the given limit.
    fn registered(limit: u32) -> Session {
        let mut session = Session::new(0, 42, RELEASE);
        let request = session.begin_register().header;
        let body = RegisterResult::new(limit);
        let reply = build_reply(&request, fields(7), body.as_bytes());
        let received = session.on_frame(reply.as_bytes(), body.as_bytes().to_vec());
        assert!(matches!(received, Received::Reply { .. }));
        assert_eq!(session.session(), 7);
        session
    }

    fn accounts_body(count: usize) -> Vec<u8> {
        let accounts: Vec<Account> = (0..count)
            .map(|index| Account {
                id: AccountId(index as u128 + 1),
                ..Account::default()
            })
            .collect();
        accounts.as_bytes().to_vec()
    }

    fn results_body(count: usize) -> Vec<u8> {
        let mut results = Vec::new();
        for index in 0..count as u64 {
            results.extend_from_slice(&index.to_le_bytes());
            results.extend_from_slice(&u32::MAX.to_le_bytes());
            results.extend_from_slice(&[0; 4]);
        }
        encode_to_vec(16, &[&results]).unwrap()
    }

    #[test]
    fn requests_are_numbered_and_chained_on_the_previous_reply() {
        let mut session = registered(MESSAGE_BODY_SIZE_MAX as u32);
        let mut parent = session.parent;
        for number in 1..=3u32 {
            let events = accounts_body(2);
            let request = session
                .begin_request(Operation::CreateAccounts, &[&events])
                .unwrap()
                .header;
            assert_eq!(request.request, number);
            assert_eq!(request.session, 7);
            assert_eq!(request.parent, parent);
            let body = results_body(2);
            let reply = build_reply(&request, fields(7 + u64::from(number)), &body);
            let received = session.on_frame(reply.as_bytes(), body);
            assert!(matches!(received, Received::Reply { .. }));
            assert_eq!(session.parent, reply.context);
            parent = reply.context;
        }
    }

    #[test]
    fn stale_and_foreign_replies_are_ignored_and_a_mismatch_is_a_violation() {
        let mut session = registered(MESSAGE_BODY_SIZE_MAX as u32);
        let events = accounts_body(1);
        let first = session
            .begin_request(Operation::CreateAccounts, &[&events])
            .unwrap()
            .header;
        let body = results_body(1);
        let reply_first = build_reply(&first, fields(8), &body);
        session.on_frame(reply_first.as_bytes(), body.clone());
        let second = session
            .begin_request(Operation::CreateAccounts, &[&events])
            .unwrap()
            .header;
        // The first reply again (a resend answered twice): ignored.
        let again = session.on_frame(reply_first.as_bytes(), body.clone());
        assert_eq!(again, Received::Ignored);
        // A reply for another client: ignored.
        let mut foreign = second;
        foreign.client = 43;
        foreign.seal(&events);
        let reply = build_reply(&foreign, fields(9), &body);
        assert_eq!(
            session.on_frame(reply.as_bytes(), body.clone()),
            Received::Ignored
        );
        // A reply to request 2 naming another checksum: the chain is broken.
        let mut other = second;
        other.parent ^= 1;
        other.seal(&events);
        let reply = build_reply(&other, fields(9), &body);
        let received = session.on_frame(reply.as_bytes(), body.clone());
        assert!(matches!(
            received,
            Received::Violation(ProtocolError::Reply(
                crate::ReplyMismatch::RequestChecksum { .. }
            ))
        ));
        assert!(
            session.inflight().is_some(),
            "state unchanged on a refused reply"
        );
    }

    #[test]
    fn a_corrupt_reply_closes_the_connection_and_leaves_the_request_in_flight() {
        let mut session = registered(MESSAGE_BODY_SIZE_MAX as u32);
        let events = accounts_body(1);
        let request = session
            .begin_request(Operation::CreateAccounts, &[&events])
            .unwrap()
            .header;
        let body = results_body(1);
        let reply = build_reply(&request, fields(8), &body);
        let mut bytes = reply.as_bytes().to_vec();
        bytes[200] ^= 1;
        let received = session.on_frame(&bytes, body.clone());
        assert!(matches!(
            received,
            Received::Reconnect(FrameError::HeaderChecksum { .. })
        ));
        let mut corrupt_body = body.clone();
        corrupt_body[0] ^= 1;
        let received = session.on_frame(reply.as_bytes(), corrupt_body);
        assert!(matches!(
            received,
            Received::Reconnect(FrameError::BodyChecksum { .. })
        ));
        assert!(session.inflight().is_some());
        let received = session.on_frame(reply.as_bytes(), body);
        assert!(matches!(received, Received::Reply { .. }));
    }

    #[test]
    fn eviction_of_this_client_is_reported() {
        let mut session = registered(MESSAGE_BODY_SIZE_MAX as u32);
        let sender = Sender {
            cluster: 0,
            replica: 0,
            view: 0,
            release: RELEASE,
        };
        let other = build_eviction(sender, 43, EvictionReason::NoSession);
        assert_eq!(
            session.on_frame(other.as_bytes(), Vec::new()),
            Received::Ignored
        );
        let ours = build_eviction(sender, 42, EvictionReason::SessionTooLow);
        assert_eq!(
            session.on_frame(ours.as_bytes(), Vec::new()),
            Received::Evicted(EvictionReason::SessionTooLow)
        );
    }

    #[test]
    fn batches_over_the_announced_limit_are_refused_before_sending() {
        // Room for 3 accounts: 3 × 128 + 128 bytes of trailer.
        let mut session = registered(512);
        let events = accounts_body(4);
        let error = session
            .begin_request(Operation::CreateAccounts, &[&events])
            .unwrap_err();
        assert!(matches!(
            error,
            ClientError::BatchTooLarge {
                events: 4,
                events_max: 3,
                ..
            }
        ));
        assert!(session.inflight().is_none());
        assert_eq!(session.request_number, 1, "no number was used");
        let events = accounts_body(3);
        assert!(session
            .begin_request(Operation::CreateAccounts, &[&events])
            .is_ok());
    }
}
