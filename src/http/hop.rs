//! The one hop between two hubs that serve different projects of one database: a request this
//! hub cannot serve because another live hub holds its project's lease (`HubError::Elsewhere`)
//! is sent there, marked `HOP` so that it is never passed on again, and the answer is passed
//! back (docs/multi-hub.md, "What routing needs").
//!
//! - REST and MCP (`pass_on`, a middleware of the serving app): a request answered `Elsewhere`
//!   is sent to the holder as it came (method, path, headers, the body its handler read), marked
//!   `HOP`, and the holder's answer relayed as it arrives (an MCP event stream as long as it
//!   runs). Nothing was applied here: `Elsewhere` is answered before a session is touched. An MCP
//!   request finds it when its MCP session is looked up, if it is bound to a participant of such
//!   a project (`mcp::registry`, `Lookup`), or from its tool (a join or create of an MCP session
//!   not bound yet). WebSocket upgrades are not passed on this way: an agent's socket is
//!   bridged whole (`ws::endpoint`, `http::forward_ws`), and a dashboard's serves sessions of
//!   several projects.
//! - A WebSocket client's frame (`ws::relay`) goes through `send` too (sent once more after a
//!   lost connection, but not run here again: its failure is the frame's answer).
//!
//! When the holder cannot serve it, the request is run here again, as often as it takes within
//! `Patience`: its project's lease is taken over here once the holder is gone (at once for a
//! killed hub, whose lease connection ends with it; once its leases expire for a frozen or cut
//! one), or the run finds the hub that took it and passes it on there. That is the case when:
//! - the holder cannot be reached: nothing was applied;
//! - it answers `NOT_SERVED` (a hop it does not serve either): nothing was applied;
//! - the connection broke after the request was sent, for a request that may be sent twice (a
//!   read, a write with a request key, `mcp::resend::resent_with_key`, or one that bears
//!   applying twice): sent once more to the holder, and if that fails too, run here marked
//!   `RESENT` with its key (the hub serving it answers `already_applied` if it was applied);
//! - an MCP read answered as an event stream (a long poll reporting progress) breaks before its
//!   reply: run again, and that answer's events follow on the same stream (`splice`).
//!
//! Any other request whose connection broke after it was sent, or after a timeout (it may still
//! be running), is answered 503 saying it may have been applied.
//!
//! A holder that takes the request and never answers (frozen: stopped, its machine stalled) is
//! waited for one lease; then the request asks every second whether its project is still held
//! there (`moved_from`), and once it is not, it is given up there: run where the project went
//! if it may be sent twice, else answered 503 "may have been applied" (the holder, its lease
//! gone, can no longer commit it).
//!
//! Where a project is served comes from `ProjectLeases::project`, which remembers another hub's
//! projects for a moment (`store::lease::SeenElsewhere`); a hub that did not serve a request is
//! forgotten before the request runs here again, and that run is marked `RunAgain`.

use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use awc::error::SendRequestError;
use futures::StreamExt;

use super::forward;
use super::splice::{self, Again, Chunks};
use crate::error::HubError;
use crate::store::lease::{ProjectLeases, ProjectOwner};

/// What a request answered `Elsewhere` leaves on its response: its project, and the url of the
/// hub serving it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedElsewhere {
    pub url: String,
    pub project: String,
}

/// Marks a request one hub passed on to the hub serving its project: answered where it lands,
/// never passed on again.
pub const HOP: &str = "x-collab-hub-hop";

/// On the answer to a request passed on here (`HOP`) that this hub does not serve either (its
/// project is held by a third hub, or was taken from this one meanwhile): nothing was applied,
/// and the hub that passed it on runs it again itself.
const NOT_SERVED: &str = "x-collab-hub-not-served";

/// On a request run here again after the hub it was passed on to did not serve it: what this
/// hub remembered about it may be stale, and is read again (an MCP session's copy passed on
/// unread, `mcp::registry::Lookup::reread`).
#[derive(Clone, Copy, Debug)]
pub struct RunAgain;

/// The body a REST handler (`JsonBody`) or the MCP transport read, kept with the request so
/// that it can be sent on.
#[derive(Clone, Debug)]
pub struct ReadBody(pub Bytes);

/// How long a request whose project's holder cannot serve it keeps being run again here
/// (app data; 30 s without it).
#[derive(Clone, Copy, Debug)]
pub struct Patience(pub Duration);

/// The longest an answer's head may take (a REST read answers at once; an export is large).
const HEAD_TIMEOUT: Duration = Duration::from_secs(120);

/// How often a request passed on and not answered for a lease's time asks whether its project
/// is still held where it went (`moved_from`).
const MOVED_CHECK: Duration = Duration::from_secs(1);

/// How long a request waits before it is run here again, after its project's holder could not
/// serve it.
const RUN_AGAIN_AFTER: Duration = Duration::from_millis(100);

/// What one pass-on came to.
enum Passed {
    /// The holder's answer.
    Answered(awc::ClientResponse),
    /// Not served there: the holder could not be reached, answered `NOT_SERVED`, or (a request
    /// that may be sent twice) lost it twice. `maybe_applied`: it may have been applied there.
    NotThere {
        error: HubError,
        maybe_applied: bool,
    },
    Failed(HubError),
}

/// Sends a request built by `build` (told whether it is a second send) with `body`, once more
/// after a connection lost with the request out if `again` (a read, or a keyed write, or one
/// that bears applying twice).
pub async fn send(
    build: impl Fn(bool) -> awc::ClientRequest,
    body: Bytes,
    again: bool,
) -> Result<awc::ClientResponse, HubError> {
    match attempt(build, body, again, std::future::pending()).await {
        Passed::Answered(answer) => Ok(answer),
        Passed::NotThere { error, .. } | Passed::Failed(error) => Err(error),
    }
}

/// `send`, given up once `moved` resolves (its project was taken from the hub it went to, which
/// does not answer): run here again if it may be sent twice, else answered "may have been
/// applied" (the hub it went to can no longer commit it: its lease is gone).
async fn attempt(
    build: impl Fn(bool) -> awc::ClientRequest,
    body: Bytes,
    again: bool,
    moved: impl std::future::Future<Output = ()>,
) -> Passed {
    let mut resent = false;
    tokio::pin!(moved);
    loop {
        // The answer's head within the timeout; its body (an event stream) as long as it runs.
        let sending = tokio::time::timeout(
            HEAD_TIMEOUT,
            build(resent)
                .insert_header((HOP, "1"))
                .send_body(body.clone()),
        );
        let sent = tokio::select! {
            sent = sending => sent.unwrap_or(Err(SendRequestError::Timeout)),
            () = &mut moved => {
                let error = lost("its hub stopped answering, and its project was taken over");
                return match again {
                    true => Passed::NotThere { error, maybe_applied: true },
                    false => Passed::Failed(error),
                };
            }
        };
        match sent {
            Ok(answer) if answer.headers().contains_key(NOT_SERVED) => {
                return Passed::NotThere {
                    error: if resent {
                        lost("it no longer serves the project")
                    } else {
                        HubError::Unavailable(
                            "the hub that held this session's project no longer serves it; retry"
                                .into(),
                        )
                    },
                    maybe_applied: resent,
                };
            }
            Ok(answer) => return Passed::Answered(answer),
            Err(e) if forward::never_delivered(&e) && !resent => {
                return Passed::NotThere {
                    error: HubError::Unavailable(format!(
                        "the hub serving this session's project cannot be reached ({e}); nothing was applied; retry"
                    )),
                    maybe_applied: false,
                };
            }
            // Not after a timeout: the first send may still be running there.
            Err(SendRequestError::Timeout) => return Passed::Failed(lost("no answer in time")),
            Err(e) if again && !resent => {
                log::info!("a request to the hub serving its project was lost ({e}); sent again");
                resent = true;
            }
            Err(e) if again => {
                return Passed::NotThere {
                    error: lost(e),
                    maybe_applied: true,
                };
            }
            Err(e) => return Passed::Failed(lost(e)),
        }
    }
}

fn lost(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(format!(
        "the hub serving this session's project did not answer ({e}); a write may have been applied: read before sending it again"
    ))
}

/// Middleware of the serving app: a REST or MCP request answered `Elsewhere` is served by the hub
/// holding its project, and answered as that hub answered it; run here again while that hub
/// cannot serve it (module doc). A request another hub already passed on is answered here as it
/// is (one hop at most), marked `NOT_SERVED` if it was answered `Elsewhere`.
pub async fn pass_on<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let patience = req
        .app_data::<Patience>()
        .map_or(Duration::from_secs(30), |p| p.0);
    let res = next.call(req).await?;
    if served_elsewhere(&res).is_none() {
        return Ok(res.map_into_boxed_body());
    }
    let req = res.request().clone();
    if req.headers().contains_key(HOP) {
        let mut res = res.map_into_boxed_body();
        res.headers_mut().insert(
            HeaderName::from_static(NOT_SERVED),
            HeaderValue::from_static("1"),
        );
        return Ok(res);
    }
    let body = req.extensions().get::<ReadBody>().map(|b| b.0.clone());
    // A body nobody read (no handler takes one unread) cannot be sent on.
    let body = match (req.headers().contains_key(header::UPGRADE), body) {
        (false, Some(body)) => body,
        (false, None) if req.method().is_safe() => Bytes::new(),
        _ => return Ok(res.map_into_boxed_body()),
    };
    let (method, path) = (req.method(), req.path());
    let key = key_for(&req, &body);
    let mcp_read = crate::mcp::resend::mcp_reads_only(method, path, &body);
    // May be sent twice: a read, a write the holder can tell it applied (its key), one that
    // bears applying twice.
    let again = key.is_some()
        || method.is_safe()
        || mcp_read
        || crate::mcp::resend::rest_bears_applying_twice(method, path);
    drop(req);
    let passing = Passing {
        next,
        body,
        key,
        again,
        until: Instant::now() + patience,
    };
    let (req, outcome) = passing.follow(res, false).await?;
    Ok(match outcome {
        Outcome::There(answer) if mcp_read && forward::is_event_stream(&answer) => {
            // A long poll reporting progress: run again if its holder dies before the reply.
            let head = forward::head_of(&answer);
            let relayed = splice::relay_resending(
                head,
                chunks_of_answer(answer),
                ask_again(req.clone(), passing.body.clone(), passing.key.clone()),
                passing.body.clone(),
            );
            ServiceResponse::new(req, relayed)
        }
        Outcome::There(answer) => ServiceResponse::new(req, forward::relay(answer)),
        Outcome::Here(res) => res,
        Outcome::Refused(error) => {
            let answer = passing.failure(&req, error);
            ServiceResponse::new(req, answer)
        }
    })
}

/// Where the answer says its request's project is served, if it was answered `Elsewhere`.
fn served_elsewhere<B>(res: &ServiceResponse<B>) -> Option<ServedElsewhere> {
    res.response()
        .extensions()
        .get::<ServedElsewhere>()
        .cloned()
}

/// A request answered `Elsewhere`, on its way to the hub serving its project.
struct Passing<B> {
    next: Next<B>,
    body: Bytes,
    /// The key it goes on with (`key_for`), and whether the client gave it (then it is always
    /// sent marked resent: the client may be sending it again).
    key: Option<(HeaderValue, bool)>,
    /// It may be sent twice (see `pass_on`).
    again: bool,
    /// Until when it is run here again while its holder cannot serve it.
    until: Instant,
}

/// How a request passed on was answered.
enum Outcome {
    /// By the hub serving its project.
    There(awc::ClientResponse),
    /// Here, run again once its holder could not serve it.
    Here(ServiceResponse<BoxBody>),
    /// Not at all: why.
    Refused(HubError),
}

impl<B: MessageBody + 'static> Passing<B> {
    /// Passes on the request `res` answered `Elsewhere`, and runs it here again (after a pause)
    /// while the hub holding its project cannot serve it, until it is served here or there, or
    /// `until` passes. `maybe_applied`: an earlier send may have been applied, so a run here
    /// goes marked `RESENT`, with its key. Returns the request, and how it was answered.
    async fn follow(
        &self,
        mut res: ServiceResponse<B>,
        mut maybe_applied: bool,
    ) -> Result<(HttpRequest, Outcome), actix_web::Error> {
        loop {
            let Some(served) = served_elsewhere(&res) else {
                let req = res.request().clone();
                return Ok((req, Outcome::Here(res.map_into_boxed_body())));
            };
            let req = res.request().clone();
            drop(res);
            // Once it may have been applied, the key goes marked resent wherever it goes next.
            let key = self
                .key
                .as_ref()
                .map(|(key, given)| (key.clone(), *given || maybe_applied));
            match to(&served, &req, self.body.clone(), key.as_ref(), self.again).await {
                Passed::Answered(answer) => return Ok((req, Outcome::There(answer))),
                Passed::NotThere {
                    maybe_applied: applied,
                    error,
                } => {
                    // Where the keeper said it was served is not trusted any more: the run
                    // here asks it again.
                    if let Some(leases) = req.app_data::<ProjectLeases>() {
                        leases.seen_elsewhere().forget_hub(&served.url);
                    }
                    maybe_applied |= applied;
                    if Instant::now() >= self.until {
                        // Never "nothing was applied" once an earlier send may have been.
                        let error = match maybe_applied {
                            true => lost("and no hub took its project over in time"),
                            false => error,
                        };
                        return Ok((req, Outcome::Refused(error)));
                    }
                    log::debug!("{}: {error}; run here again", req.path());
                }
                Passed::Failed(error) => return Ok((req, Outcome::Refused(error))),
            }
            actix_web::rt::time::sleep(RUN_AGAIN_AFTER).await;
            res = self.run_here(req, maybe_applied).await?;
        }
    }

    /// Runs the request here again, with its body; marked `RESENT` with its key if an earlier
    /// send may have been applied.
    async fn run_here(
        &self,
        req: HttpRequest,
        maybe_applied: bool,
    ) -> Result<ServiceResponse<B>, actix_web::Error> {
        req.extensions_mut().remove::<ReadBody>();
        req.extensions_mut().insert(RunAgain);
        let mut again =
            ServiceRequest::from_parts(req, actix_web::dev::Payload::from(self.body.clone()));
        // Routed afresh: the first run's match is still on it.
        again.match_info_mut().reset();
        if let (true, Some((key, _))) = (maybe_applied, &self.key) {
            let headers = again.headers_mut();
            headers.insert(
                HeaderName::from_static(crate::api::REQUEST_KEY),
                key.clone(),
            );
            headers.insert(
                HeaderName::from_static(crate::api::RESENT),
                HeaderValue::from_static("1"),
            );
        }
        self.next.call(again).await
    }

    /// A failure's answer: for an MCP client a JSON-RPC error with its request's id.
    fn failure(&self, req: &HttpRequest, error: HubError) -> HttpResponse {
        if crate::mcp::PATHS.contains(&req.path()) {
            crate::mcp::transport::hub_failure_to(&self.body, error)
        } else {
            error.error_response()
        }
    }
}

/// What a relayed event stream that broke before its reply does: sends its request again, to
/// this hub's own address as a client would (its pipeline runs it here, or passes it on to
/// where its project is served now, `pass_on`), with its key marked `RESENT`, and gives that
/// answer's events. (Not through the app's service directly: the request is shared with the
/// answer under way, and routing it again would need it alone.)
fn ask_again(req: HttpRequest, body: Bytes, key: Option<(HeaderValue, bool)>) -> splice::AskAgain {
    Box::new(move || {
        let (req, body, key) = (req.clone(), body.clone(), key.clone());
        Box::pin(async move {
            let Some(client) = req.app_data::<awc::Client>() else {
                return Again::Failed("no client for other hubs".into());
            };
            let local = req.app_config().local_addr();
            let ip = match local.ip() {
                ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                ip => ip,
            };
            let target = format!(
                "http://{}{}",
                std::net::SocketAddr::new(ip, local.port()),
                req.uri().path_and_query().map_or("/", |p| p.as_str())
            );
            let mut out = client.request(req.method().clone(), &target);
            for (name, value) in req.headers() {
                if !forward::hop_by_hop(name) || name == header::HOST {
                    out = out.append_header((name.clone(), value.clone()));
                }
            }
            if let Some((key, _)) = key {
                out = out
                    .insert_header((crate::api::REQUEST_KEY, key))
                    .insert_header((crate::api::RESENT, "1"));
            }
            match tokio::time::timeout(HEAD_TIMEOUT, out.send_body(body)).await {
                Ok(Ok(answer)) if forward::is_event_stream(&answer) => {
                    Again::Stream(chunks_of_answer(answer))
                }
                Ok(Ok(mut answer)) => Again::Answer {
                    status: answer.status(),
                    body: answer.body().await.unwrap_or_default(),
                },
                Ok(Err(e)) => Again::Failed(e.to_string()),
                Err(_) => Again::Failed("no answer in time".into()),
            }
        })
    })
}

fn chunks_of_answer(answer: awc::ClientResponse) -> Chunks {
    answer
        .map(|chunk| chunk.map_err(|e| e.to_string()))
        .boxed_local()
}

/// The key a write that records it (`mcp::resend::resent_with_key`) goes on with: the client's
/// own (`given`) or a new one. None for any other request: a key it carries is passed on as it
/// came, and does not make it safe to send twice (its write may not record it).
fn key_for(req: &HttpRequest, body: &Bytes) -> Option<(HeaderValue, bool)> {
    if !crate::mcp::resend::resent_with_key(req.method(), req.path(), body) {
        return None;
    }
    Some(match req.headers().get(crate::api::REQUEST_KEY) {
        Some(given) => (given.clone(), true),
        None => (
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a header value"),
            false,
        ),
    })
}

/// Sends `req` with `body` to the hub serving its project, with `key` if it has one (and marked
/// resent from the first send if its flag says so); once more after a lost connection if it may
/// be sent `again`.
async fn to(
    served: &ServedElsewhere,
    req: &HttpRequest,
    body: Bytes,
    key: Option<&(HeaderValue, bool)>,
    again: bool,
) -> Passed {
    let Some(client) = req.app_data::<awc::Client>() else {
        return Passed::Failed(HubError::Internal("no client for other hubs".into()));
    };
    let method = req.method();
    let target = format!(
        "{}{}",
        served.url.trim_end_matches('/'),
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let build = |resent: bool| {
        let mut out = client.request(method.clone(), &target);
        for (name, value) in req.headers() {
            if !forward::hop_by_hop(name) {
                out = out.append_header((name.clone(), value.clone()));
            }
        }
        if let Some((key, given)) = key {
            out = out.insert_header((crate::api::REQUEST_KEY, key.clone()));
            if resent || *given {
                out = out.insert_header((crate::api::RESENT, "1"));
            }
        }
        out
    };
    attempt(build, body, again, moved_from(req, served)).await
}

/// Resolves once `served`'s project is no longer held by the hub it names, asked after a
/// lease's time and then every `MOVED_CHECK` (answered from `SeenElsewhere` for a moment, so
/// the requests waiting for one project ask the keeper about twice a second between them). A hub
/// that is frozen (stopped, or its machine stalled) still takes connections and never answers;
/// once its lease runs out, the project is taken (here, by this very look, or by another hub)
/// and the request waiting on it goes where the project went. Never, without leases.
async fn moved_from(req: &HttpRequest, served: &ServedElsewhere) {
    let Some(leases) = req.app_data::<ProjectLeases>().cloned() else {
        return std::future::pending().await;
    };
    actix_web::rt::time::sleep(leases.ttl()).await;
    loop {
        match leases.project(&served.project).await {
            Ok(ProjectOwner::Elsewhere { url }) if url == served.url => {}
            // The keeper cannot say now: the answer may still come.
            Err(_) => {}
            Ok(_) => return,
        }
        actix_web::rt::time::sleep(MOVED_CHECK).await;
    }
}
