//! This machine's HTTP client of a team server: push a batch, pull a page, ask who the key belongs to.
//! Any answer but success becomes [`TeamError::Refused`] with the server's code; no answer at all is
//! [`TeamError::Unreachable`]. It holds no state beyond its connection pool.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{PullAnswer, Push, PushAnswer, TeamError, Whoami};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take (a large page included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one team server with one member's key; cheap to clone.
#[derive(Clone)]
pub struct TeamClient {
    http: reqwest::Client,
    /// The server's address without a trailing slash.
    base: String,
    /// The member's key, sent as a bearer token.
    key: String,
}

impl TeamClient {
    /// A client of the team server at `url` (`http://…` or `https://…`) with `key`.
    pub fn new(url: &str, key: &str) -> TeamClient {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client with the system's TLS builds");
        TeamClient { http, base: url.trim_end_matches('/').to_string(), key: key.trim().to_string() }
    }

    /// Who the key belongs to, with the member's scopes and projects.
    pub async fn whoami(&self) -> Result<Whoami, TeamError> {
        self.send(self.http.get(format!("{}/team/whoami", self.base))).await
    }

    /// Pushes a batch; the server keeps one row per origin, so a retried batch is harmless.
    pub async fn push(&self, push: &Push) -> Result<PushAnswer, TeamError> {
        self.send(self.http.post(format!("{}/team/push", self.base)).json(push)).await
    }

    /// The next page of `project` after the cursor `after`, leaving out `machine`'s own memory.
    pub async fn pull(&self, project: &str, after: i64, limit: i64, machine: &str) -> Result<PullAnswer, TeamError> {
        let after = after.to_string();
        let limit = limit.to_string();
        let query = [("project", project), ("after", &after), ("limit", &limit), ("exclude_machine", machine)];
        self.send(self.http.get(format!("{}/team/pull", self.base)).query(&query)).await
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, TeamError> {
        let response = request.bearer_auth(&self.key).send().await.map_err(TeamError::Unreachable)?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(TeamError::Unreachable);
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let field = |name: &str| body["error"][name].as_str().unwrap_or_default().to_string();
        Err(TeamError::Refused { status: status.as_u16(), code: field("code"), message: field("message") })
    }
}
