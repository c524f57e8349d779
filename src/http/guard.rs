//! DNS-rebinding protection for every request: the `Host` must name this hub and a present
//! `Origin` must be one of the same hosts. A web page on another site therefore cannot reach
//! the hub through the user's browser, whatever address its name resolves to.

use std::collections::HashSet;
use std::rc::Rc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HOST, ORIGIN};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};
use serde_json::json;

use crate::error::HubError;

/// Host names (without port) requests may address.
#[derive(Debug, Clone)]
pub struct AllowedHosts(Rc<HashSet<String>>);

impl AllowedHosts {
    /// Loopback names always, plus the names the operator configured.
    pub fn new(extra: &[String]) -> Self {
        let mut set: HashSet<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        set.extend(
            extra
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
        );
        AllowedHosts(Rc::new(set))
    }

    fn allows_host(&self, host_port: &str) -> bool {
        self.0.contains(&host_only(host_port).to_ascii_lowercase())
    }

    fn allows_origin(&self, origin: &str) -> bool {
        match origin.split_once("://") {
            Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
                self.allows_host(rest.split('/').next().unwrap_or(""))
            }
            _ => false, // "null", file:, chrome-extension:…
        }
    }
}

/// `example.com:9700` → `example.com`; `[::1]:9700` → `[::1]`.
fn host_only(host_port: &str) -> &str {
    if host_port.starts_with('[') {
        return host_port
            .split(']')
            .next()
            .map_or(host_port, |h| &host_port[..h.len() + 1]);
    }
    match host_port.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    }
}

pub async fn check_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let allowed = req.app_data::<AllowedHosts>().cloned();
    if let Some(allowed) = allowed {
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let bad_host = header(HOST).is_some_and(|h| !allowed.allows_host(h));
        let bad_origin = header(ORIGIN).is_some_and(|o| !allowed.allows_origin(o));
        if bad_host || bad_origin {
            let what = if bad_origin { "Origin" } else { "Host" };
            let err = HubError::Forbidden(format!(
                "{what} not allowed (DNS-rebinding protection); add the host with --allowed-hosts"
            ));
            let body = if crate::mcp::PATHS.contains(&req.path()) {
                json!({ "jsonrpc": "2.0", "id": null, "error": err.json_rpc() })
            } else {
                json!({ "error": err.body() })
            };
            let resp = HttpResponse::Forbidden().json(body);
            return Ok(req.into_response(resp));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let a = AllowedHosts::new(&["hub.example".into()]);
        assert!(a.allows_host("localhost:9700"));
        assert!(a.allows_host("127.0.0.1"));
        assert!(a.allows_host("[::1]:9700"));
        assert!(a.allows_host("HUB.example:80"));
        assert!(!a.allows_host("evil.example.com"));
        assert!(a.allows_origin("http://localhost:3000"));
        assert!(a.allows_origin("https://hub.example"));
        assert!(!a.allows_origin("http://evil.example.com"));
        assert!(!a.allows_origin("null"));
    }
}
