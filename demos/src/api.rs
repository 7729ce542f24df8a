//! JSON over HTTP to the demo's processes: the gateway's admin API and
//! the simulators' control APIs (plain HTTP on loopback). Every request
//! has a deadline, so a process that stops answering fails the demo with
//! its name instead of hanging it.

use anyhow::{Context, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// A request's deadline; cloudsim's commands wait up to 20 s for the
/// gateway's result.
const DEADLINE: Duration = Duration::from_secs(25);

/// One process's API.
#[derive(Debug, Clone)]
pub struct Api {
    name: &'static str,
    at: SocketAddr,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer: its status and its body as JSON (`Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
}

impl Answer {
    /// The body, when the status is 2xx.
    pub fn ok(self, what: &str) -> anyhow::Result<Value> {
        if (200..300).contains(&self.status) {
            Ok(self.json)
        } else {
            Err(anyhow!("{what}: {} {}", self.status, self.json))
        }
    }
}

impl Api {
    /// `name`'s API at `at`; with `token`, commands carry it as a bearer
    /// token (the gateway's admin API).
    pub fn new(name: &'static str, at: SocketAddr, token: Option<String>) -> Api {
        Api {
            name,
            at,
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET path`, 2xx expected.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.request("GET", path, None)
            .await?
            .ok(&format!("{} GET {path}", self.name))
    }

    /// `GET path`: none when it answers 404, 2xx expected otherwise.
    pub async fn find(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let a = self.request("GET", path, None).await?;
        if a.status == 404 {
            return Ok(None);
        }
        a.ok(&format!("{} GET {path}", self.name)).map(Some)
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        self.request("POST", path, Some(body)).await
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.at));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(
            body.map(Value::to_string).unwrap_or_default(),
        )))?;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(Answer {
                status,
                json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            })
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .map_err(|_| {
                anyhow!(
                    "{} did not answer {method} {path} within {} s",
                    self.name,
                    DEADLINE.as_secs()
                )
            })?
            .with_context(|| format!("{} {method} {path} ({})", self.name, self.at))
    }
}
