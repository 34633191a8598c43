//! The client's settings: where the cluster is, who the client is, and how long it waits.
//!
//! Invariants (checked by [`ClientConfig::validate`] before a client starts): 1..=`REPLICAS_MAX`
//! addresses, non-zero timeouts with `request_timeout <= request_timeout_max`, reconnect delays
//! with `min <= max`, and a non-zero client id when one is given.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::ClientError;
use crate::{Release, REPLICAS_MAX};

/// The release Kassa's client announces: the TigerBeetle release whose protocol it speaks.
pub const CLIENT_RELEASE: Release = Release::new(0, 17, 8);
/// How long one call may take, resends included, unless configured otherwise.
pub const DEADLINE_DEFAULT: Duration = Duration::from_secs(30);
/// How long the client waits for a reply before it reconnects and resends.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_millis(1000);
/// The request timeout doubles after each timeout, up to this.
pub const REQUEST_TIMEOUT_MAX_DEFAULT: Duration = Duration::from_secs(8);
/// The pause before the first reconnect of a call; it doubles after each failure.
pub const RECONNECT_DELAY_MIN_DEFAULT: Duration = Duration::from_millis(10);
/// The longest pause between reconnects.
pub const RECONNECT_DELAY_MAX_DEFAULT: Duration = Duration::from_secs(1);

/// How a [`super::Client`] reaches a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The cluster's nodes, in the cluster's replica order. The client connects to one at a
    /// time and moves to the next after a failure.
    pub addresses: Vec<SocketAddr>,
    pub cluster: u128,
    /// The client's id; `None` draws a random one (the usual case: two clients must never share
    /// an id). Tests pass one to be deterministic.
    pub client_id: Option<u128>,
    /// The release to announce; replies must echo it.
    pub release: Release,
    /// How long one call (connects, sends and resends included) may take before it returns
    /// [`ClientError::Timeout`].
    pub deadline: Duration,
    pub request_timeout: Duration,
    pub request_timeout_max: Duration,
    pub reconnect_delay_min: Duration,
    pub reconnect_delay_max: Duration,
}

impl ClientConfig {
    /// Defaults for a cluster at `addresses`.
    pub fn new(addresses: Vec<SocketAddr>, cluster: u128) -> ClientConfig {
        ClientConfig {
            addresses,
            cluster,
            client_id: None,
            release: CLIENT_RELEASE,
            deadline: DEADLINE_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            request_timeout_max: REQUEST_TIMEOUT_MAX_DEFAULT,
            reconnect_delay_min: RECONNECT_DELAY_MIN_DEFAULT,
            reconnect_delay_max: RECONNECT_DELAY_MAX_DEFAULT,
        }
    }

    pub fn validate(&self) -> Result<(), ClientError> {
        if self.addresses.is_empty() || self.addresses.len() > REPLICAS_MAX {
            return Err(ClientError::Config("between 1 and 6 addresses are needed"));
        }
        if self.client_id == Some(0) {
            return Err(ClientError::Config("the client id must not be zero"));
        }
        if self.release.0 == 0 {
            return Err(ClientError::Config("the release must not be zero"));
        }
        if self.request_timeout.is_zero() || self.request_timeout > self.request_timeout_max {
            return Err(ClientError::Config(
                "request_timeout must be non-zero and at most request_timeout_max",
            ));
        }
        if self.reconnect_delay_min.is_zero() || self.reconnect_delay_min > self.reconnect_delay_max
        {
            return Err(ClientError::Config(
                "reconnect_delay_min must be non-zero and at most reconnect_delay_max",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_refused() {
        let address: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let config = ClientConfig::new(vec![address], 0);
        assert!(config.validate().is_ok());
        let none = ClientConfig::new(Vec::new(), 0);
        assert!(matches!(none.validate(), Err(ClientError::Config(_))));
        let mut zero_id = config.clone();
        zero_id.client_id = Some(0);
        assert!(zero_id.validate().is_err());
        let mut inverted = config;
        inverted.request_timeout = inverted.request_timeout_max * 2;
        assert!(inverted.validate().is_err());
    }
}
