//! A small blocking client of a running memtray server, for the command line (`memtray status`).
//! It never starts a runtime; every call has a short timeout.

use std::time::Duration;

use serde_json::Value;

/// Errors talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the port.
    #[error("no memtray server is running on 127.0.0.1:{port} (start one with `memtray serve` or `make run`)")]
    NotRunning {
        /// The port tried.
        port: u16,
    },
    /// Something answered, but not as memtray does.
    #[error("the server on 127.0.0.1:{port} answered unexpectedly: {source}")]
    Unexpected {
        /// The port.
        port: u16,
        /// The cause.
        source: ureq::Error,
    },
}

/// A client of the API on one port.
pub struct Client {
    port: u16,
    agent: ureq::Agent,
}

impl Client {
    /// A client of `127.0.0.1:port`.
    pub fn new(port: u16) -> Client {
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(3))).build().into();
        Client { port, agent }
    }

    /// GETs an API path and returns its JSON.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let port = self.port;
        let mut response = self.agent.get(&url).call().map_err(|e| match e {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_) => ClientError::NotRunning { port },
            source => ClientError::Unexpected { port, source },
        })?;
        response.body_mut().read_json().map_err(|source| ClientError::Unexpected { port, source })
    }
}
