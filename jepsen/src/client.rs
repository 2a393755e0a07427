//! The HTTP client every workload uses, and how an HTTP outcome becomes a history outcome.
//!
//! Every answer body is scanned for the run's secrets (the admin token and the cluster secret):
//! a member must never send either back, and a find is recorded as an `auth` `leak`.
//!
//! Outcomes of writes: a 2xx happened; a 4xx certainly did not (steward answers 4xx only before
//! it proposes anything, or for a guard that failed); a 5xx, a timeout or a broken connection
//! may have happened (steward's 503 after a proposal reached a leader is indeterminate). A
//! request whose connection could not even be opened was never sent, so it certainly did not
//! happen.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::history::{Op, OpType, Process, Recorder};
use crate::net::Host;

/// Rundeck's token header.
pub const TOKEN_HEADER: &str = "X-Rundeck-Auth-Token";
/// steward's member-to-member secret header (on `/internal/*`).
pub const SECRET_HEADER: &str = "x-steward-cluster-secret";
/// The API version the harness speaks.
pub const API: &str = "/api/45";

/// What a request carries to authenticate.
#[derive(Debug, Clone)]
pub enum Cred {
    /// The admin token.
    Admin,
    /// Nothing.
    None,
    /// This string as the token header.
    Token(String),
    /// This string as `Authorization: Bearer`.
    Bearer(String),
    /// This string as the cluster-secret header (internal routes).
    Secret(String),
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    None,
    Json(&'a Value),
    /// `bytes` sent as they are, with this `Content-Type`.
    Raw {
        content_type: &'a str,
        bytes: &'a [u8],
    },
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Rundeck's error message, for the history.
    pub fn error(&self) -> String {
        let msg = self.body["message"].as_str().or(self.body.as_str()).unwrap_or("");
        let code = self.body["errorCode"].as_str().unwrap_or("");
        format!("{} {code} {msg}", self.status).trim().to_string()
    }
}

/// A request that got no answer.
#[derive(Debug, Clone)]
pub enum NoAnswer {
    /// The connection could not be opened: the request was never sent.
    NotSent(String),
    Timeout,
    /// Sent (perhaps partly), then the connection failed.
    Broken(String),
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::NotSent(e) => write!(f, "not sent: {e}"),
            NoAnswer::Timeout => f.write_str("timeout"),
            NoAnswer::Broken(e) => write!(f, "connection failed: {e}"),
        }
    }
}

/// The history outcome of a write that got `res`.
pub fn write_outcome(res: &Result<Answer, NoAnswer>) -> (OpType, Option<String>) {
    match res {
        Ok(a) if a.ok() => (OpType::Ok, None),
        Ok(a) if a.status < 500 => (OpType::Fail, Some(a.error())),
        Ok(a) => (OpType::Info, Some(a.error())),
        Err(NoAnswer::NotSent(e)) => (OpType::Fail, Some(format!("not sent: {e}"))),
        Err(e) => (OpType::Info, Some(e.to_string())),
    }
}

/// The history outcome of a read that got `res` (a read has no effect: `fail` unless it timed
/// out, which is recorded as `info` for fidelity; checkers drop both).
pub fn read_outcome(res: &Result<Answer, NoAnswer>) -> (OpType, Option<String>) {
    match res {
        Ok(a) if a.ok() => (OpType::Ok, None),
        Ok(a) => (OpType::Fail, Some(a.error())),
        Err(NoAnswer::Timeout) => (OpType::Info, Some("timeout".into())),
        Err(e) => (OpType::Fail, Some(e.to_string())),
    }
}

/// The client, shared by every workload.
pub struct Api {
    http: reqwest::Client,
    token: String,
    /// (what, secret) pairs that must never appear in an answer.
    canaries: Vec<(&'static str, String)>,
    recorder: Arc<Recorder>,
    /// Default timeout: longer than steward's own 5 s request timeout, so that its 503 arrives
    /// before the client gives up.
    pub timeout: Duration,
}

impl Api {
    pub fn new(token: &str, secret: &str, recorder: Arc<Recorder>) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            // Members are reached directly, whatever proxy the environment names.
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Api {
            http,
            token: token.to_string(),
            canaries: vec![("admin token", token.to_string()), ("cluster secret", secret.to_string())],
            recorder,
            timeout: Duration::from_secs(7),
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Sends one request to `host` and reads the whole answer, within `timeout`.
    pub async fn request(
        &self,
        host: &Host,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Answer, NoAnswer> {
        self.send(host, method, path, cred, body.map(Body::Json).unwrap_or(Body::None), None, timeout).await
    }

    /// As [`Api::request`], with a body of any content type and an `Accept` header: key storage
    /// takes a key's value as the raw body and answers a public key's content as-is.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        host: &Host,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Body<'_>,
        accept: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Answer, NoAnswer> {
        let url = format!("{}{path}", host.url());
        let mut req = self.http.request(method, &url).timeout(timeout.unwrap_or(self.timeout));
        req = match cred {
            Cred::Admin => req.header(TOKEN_HEADER, &self.token),
            Cred::None => req,
            Cred::Token(t) => req.header(TOKEN_HEADER, t),
            Cred::Bearer(t) => req.header(reqwest::header::AUTHORIZATION, format!("Bearer {t}")),
            Cred::Secret(s) => req.header(SECRET_HEADER, s),
        };
        req = match body {
            Body::None => req,
            Body::Json(b) => req.json(b),
            Body::Raw { content_type, bytes } => {
                req.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes.to_vec())
            }
        };
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                NoAnswer::Timeout
            } else if e.is_connect() {
                NoAnswer::NotSent(short(&e))
            } else {
                NoAnswer::Broken(short(&e))
            }
        };
        let resp = req.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(classify)?;
        self.scan(host, path, &text);
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    /// Records a leak when `text` holds a secret.
    fn scan(&self, host: &Host, path: &str, text: &str) {
        for (what, secret) in &self.canaries {
            if !secret.is_empty() && text.contains(secret.as_str()) {
                self.recorder.record(
                    Op::new(OpType::Info, Process::Named("scanner".into()), "auth", "leak")
                        .node(host.name.clone())
                        .value(json!({ "secret": what, "where": format!("answer to {path}") })),
                );
            }
        }
    }
}

/// An error's chain in one line, without the URL (which is in the history already).
fn short(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(i) = s.find(" for url (") {
        s.truncate(i);
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(status: u16) -> Result<Answer, NoAnswer> {
        Ok(Answer { status, body: json!({ "errorCode": "x", "message": "m" }) })
    }

    #[test]
    fn write_outcomes_are_definite_only_when_steward_certainly_did_nothing() {
        assert_eq!(write_outcome(&a(201)).0, OpType::Ok);
        assert_eq!(write_outcome(&a(409)).0, OpType::Fail);
        assert_eq!(write_outcome(&a(503)).0, OpType::Info);
        assert_eq!(write_outcome(&Err(NoAnswer::Timeout)).0, OpType::Info);
        assert_eq!(write_outcome(&Err(NoAnswer::Broken("reset".into()))).0, OpType::Info);
        assert_eq!(write_outcome(&Err(NoAnswer::NotSent("refused".into()))).0, OpType::Fail);
        assert_eq!(read_outcome(&a(503)).0, OpType::Fail);
        assert_eq!(read_outcome(&Err(NoAnswer::Timeout)).0, OpType::Info);
    }
}
