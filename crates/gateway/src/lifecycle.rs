//! The life of a model request, top to bottom. Every client surface (the
//! server's OpenAI, Anthropic and Ollama handlers) walks these steps in
//! this order, calling the function named at each:
//!
//! 1. **accept** — the server's front reads the request head and body
//!    (bounded by `--body-limit`) and routes it to its surface.
//! 2. **authenticate** — [`authenticate`]: the credential (a virtual key,
//!    a static auth key, a user's session) against the snapshot's keys and
//!    identities, before the body is read; a rejection is answered in the
//!    surface's shape and nothing is metered.
//! 3. **open the meter** — [`open`]: the usage row is drafted and the
//!    finaliser armed; from here on every outcome (an error, a client that
//!    goes away, a stream cut short) settles exactly one row.
//! 4. **plan** — [`plan`]: the requested model resolved (deprecations,
//!    aliases, routes, app mappings) into an ordered chain of targets. The
//!    surface then checks the body lightly and decodes it into the internal
//!    model only if some target needs translation ([`needs_translation`]).
//! 5. **admit** — [`admit`]: once the model is known, the caller's scope
//!    (403), its and the model's limits (429 `Retry-After`) and the budget
//!    reservation of the worst-case cost (429 `insufficient_quota`), before
//!    anything reaches a provider; [`Trail::hold`] hands the admission to the
//!    finaliser, which settles it with the real cost.
//!    Then inside each attempt: a target's breaker, its key pool,
//!    its `rpm`/`tpm` window and its concurrency slot admit the attempt or
//!    skip to the next target (`routing::exec`).
//! 6. **attempts** — [`chat`] / [`embed`] run the plan with retries,
//!    backoff and fallback; a stream may fail over only until its first
//!    chunk has arrived (the peek below).
//! 7. **translate** — a same-format target gets the body with only `model`
//!    rewritten and answers byte for byte; any other target gets the
//!    internal model encoded for its wire, and its answer comes back decoded
//!    for the surface to encode.
//! 8. **finalise** — [`Trail::settle`] adds the routing headers and hands the
//!    usage [`Note`] to the response; [`close`] settles the row when the
//!    response body ends or is dropped (`crate::meter`), and the row goes to
//!    the usage writer's queue. Nothing on this path waits on the database.

use crate::error::ApiError;
use crate::govern::{Admission, Ask, Governor, Principal};
use crate::identity::Identities;
use crate::meter::{Note, Pending};
use crate::presets::Wire;
use crate::providers::{Endpoint, EventStream, ForwardBody, Forwarded};
use crate::routing::exec::{self, RouteLog};
use crate::routing::upstream::InflightGuard;
use crate::routing::{ModelRouter, Plan};
use crate::snapshot::Runtime;
use crate::usage::Recorder;
use axum_core::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use llm_link_protocol::ir::{
    ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent,
};
use llm_link_protocol::json::RawObject;
use std::time::{Duration, Instant};

/// What step 2 found out about the caller.
#[derive(Debug)]
pub enum Credential<'h> {
    /// No credential needed (nothing configured), or a static `--auth-key`.
    Open,
    /// A virtual key (and its user).
    Principal(Principal),
    /// A session token (JWT) the server checks against its sessions.
    Session(&'h str),
}

/// Step 2: the credential the request presents (`Authorization: Bearer` or
/// `x-api-key`): a virtual key `llk-…` (not revoked, not expired, its user
/// not disabled), a static `--auth-key`, or a user's session token. With
/// no auth keys, no users and no virtual keys, everyone is let in.
pub fn authenticate<'h>(
    headers: &'h HeaderMap,
    rt: &Runtime,
    ids: &Identities,
) -> Result<Credential<'h>, ApiError> {
    let needed = !rt.auth_keys.is_empty() || ids.any();
    let Some(given) = crate::auth::presented_key(headers) else {
        if needed {
            return Err(ApiError::Unauthorized(
                "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`".into(),
            ));
        }
        return Ok(Credential::Open);
    };
    if !needed {
        return Ok(Credential::Open);
    }
    if given.starts_with(crate::identity::KEY_PREFIX) {
        if let Some(k) = ids.key(given) {
            if k.revoked {
                return Err(ApiError::Unauthorized(format!(
                    "the API key `{}` was revoked",
                    k.name
                )));
            }
            if k.expires_at.is_some_and(|t| t <= crate::util::now_ms()) {
                return Err(ApiError::Unauthorized(format!(
                    "the API key `{}` has expired",
                    k.name
                )));
            }
            let user = match k.user_id {
                Some(id) => match ids.user(id) {
                    Some(u) if !u.disabled => Some(u.clone()),
                    _ => {
                        return Err(ApiError::Unauthorized(format!(
                            "the user of the API key `{}` is disabled",
                            k.name
                        )))
                    }
                },
                None => None,
            };
            return Ok(Credential::Principal(Principal {
                key: Some(k.clone()),
                user,
            }));
        }
    }
    if !rt.auth_keys.is_empty() && crate::auth::check(headers, &rt.auth_keys).is_ok() {
        return Ok(Credential::Open);
    }
    if !ids.users.is_empty() && crate::identity::jwt::looks_like(given) {
        return Ok(Credential::Session(given));
    }
    Err(ApiError::Unauthorized("invalid API key".into()))
}

/// Output tokens assumed when neither the request nor the catalog caps them.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

/// The most output tokens a request asks for: `max_tokens`,
/// `max_completion_tokens`, `max_output_tokens` or Ollama's
/// `options.num_predict`; `None` when it sets none.
pub fn requested_max_output(obj: &RawObject<'_>) -> Option<u64> {
    for k in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
        if let Some(n) = obj.raw_text(k).and_then(|t| t.trim().parse::<u64>().ok()) {
            return Some(n);
        }
    }
    #[derive(serde::Deserialize)]
    struct Options {
        num_predict: Option<i64>,
    }
    let o: Option<Options> = obj.get("options").ok().flatten();
    o.and_then(|o| o.num_predict)
        .and_then(|n| u64::try_from(n).ok())
}

/// The (input, output) prices per million tokens a budget reservation
/// assumes: every prompt token at the dearer of the input and cached prices
/// (how many will be cached is not known before the answer). `None` for an
/// unpriced model.
fn worst_price(m: &crate::config::catalog::CatalogModel) -> Option<(f64, f64)> {
    let input = match (m.input_price, m.cached_input_price) {
        (Some(i), Some(c)) => Some(i.max(c)),
        (i, c) => i.or(c),
    };
    match (input, m.output_price) {
        (None, None) => None,
        (i, o) => Some((i.unwrap_or(0.0), o.unwrap_or(0.0))),
    }
}

/// Step 4b, limits and budget reservation: the caller's scope, its limits
/// and the catalog model's, and the request's worst-case cost reserved
/// against every budget it falls under (`crate::govern`). `body_len` is the
/// request's size (the prompt estimate is a token per 3 bytes, generous for
/// any script); `max_output` reads what the request caps its answer at,
/// only when something is governed.
pub async fn admit(
    gov: &std::sync::Arc<Governor>,
    who: &Principal,
    rt: &Runtime,
    model: &str,
    body_len: usize,
    max_output: impl FnOnce() -> Option<u64>,
) -> Result<Admission, ApiError> {
    let cat = rt.catalog.model(model);
    let small = |v: Option<i64>| {
        v.filter(|n| *n > 0)
            .map(|n| n.min(i64::from(u32::MAX)) as u32)
    };
    let limits = cat.map_or((None, None), |m| (small(m.rpm_limit), small(m.tpm_limit)));
    if who.is_empty() && limits == (None, None) {
        return Ok(Admission::none());
    }
    let max_output = max_output()
        .or_else(|| {
            cat.and_then(|m| m.max_tokens)
                .and_then(|n| u64::try_from(n).ok())
        })
        .unwrap_or(DEFAULT_MAX_OUTPUT);
    let price = cat.and_then(worst_price);
    let ask = Ask {
        prompt_tokens: (body_len as u64).div_ceil(3),
        max_output,
        price,
    };
    gov.admit(who, model, limits, ask).await
}

/// Step 3: drafts the usage row of a model call and arms the finaliser;
/// `None` when nothing is recorded (no database, or not a model call).
pub fn open(
    usage: &Recorder,
    app: Option<&str>,
    who: Option<&Principal>,
    req: &http::Request<Body>,
) -> Option<Pending> {
    crate::meter::begin(usage, app, who, req)
}

/// Step 8, last half: settles the row from the response, now or when its
/// body ends.
pub fn close(pending: Pending, resp: http::Response<Body>) -> http::Response<Body> {
    crate::meter::finish(pending, resp)
}

/// What a chat-like request is, once its surface has read it.
pub struct ChatCall<'a> {
    /// The client's wire format.
    pub wire: Wire,
    pub endpoint: Endpoint,
    /// The body's parsed top level, and the body.
    pub obj: &'a RawObject<'a>,
    pub body: &'a Bytes,
    /// The model the client asked for.
    pub model: &'a str,
    pub stream: bool,
    /// The decoded request, when some target translates.
    pub ir: Option<&'a ChatRequest>,
    pub headers: &'a HeaderMap,
    /// Settling needs the answer's real usage (`Admission::needs_usage`):
    /// a forwarded OpenAI stream is asked for it.
    pub want_usage: bool,
}

/// Whether a forwarded OpenAI stream is asked for its usage on the
/// client's behalf (`meter::ask_usage`), to be hidden again
/// (`meter::HideUsage`).
fn injects_usage(call: &ChatCall<'_>) -> bool {
    call.want_usage
        && call.stream
        && call.wire == Wire::OpenAi
        && !crate::meter::asks_usage(call.obj)
}

/// A request that has run its plan: the outcome for the surface to encode,
/// and the trail the finaliser needs.
pub struct Ran<T> {
    pub result: Result<T, ApiError>,
    /// Time from the first attempt to the answer (or the stream's start).
    pub upstream: Duration,
    pub trail: Trail,
}

/// What routing did and the usage note, for the client's response.
pub struct Trail {
    plan: Plan,
    log: RouteLog,
    note: Note,
}

impl Trail {
    /// The request's admission (limits, budget reservation) goes with the
    /// usage note, so the finaliser settles it with the real cost.
    pub fn hold(&mut self, adm: Admission) {
        self.note.hold(adm);
    }

    /// Step 8, first half: the routing headers and the usage note go on the
    /// client's response.
    pub fn settle(self, resp: &mut http::Response<Body>) {
        annotate(resp, &self.plan, &self.log);
        self.note.attach(resp);
    }
}

pub enum ChatOutcome {
    /// A same-format answer, bytes as the upstream sent them.
    Forwarded(Forwarded),
    Response(ChatResponse),
    Stream(EventStream),
}

pub enum EmbedOutcome {
    Forwarded(Forwarded),
    Response(EmbeddingResponse),
}

/// Step 4: the plan for a request: the app mapping of the calling app when it has
/// one (the app is named by an `x-llm-link-app` header, else by this
/// instance's `--app`), otherwise the model's own routes.
pub fn plan(
    instance_app: Option<&str>,
    rt: &Runtime,
    headers: &HeaderMap,
    model: &str,
) -> Result<Plan, ApiError> {
    let app = headers
        .get("x-llm-link-app")
        .and_then(|v| v.to_str().ok())
        .or(instance_app);
    if let Some(m) = app.and_then(|a| rt.catalog.app(a)) {
        return rt.router.plan_app(m, model);
    }
    rt.router.plan(model)
}

/// Whether any target of the plan needs the request in the internal model
/// (the surface decodes the body in full only then).
pub fn needs_translation(router: &ModelRouter, plan: &Plan, wire: Wire) -> bool {
    let ups = router.upstreams();
    plan.chain
        .iter()
        .flat_map(|r| r.targets.iter())
        .any(|t| !ups[t.upstream].primary().passthrough_for(wire))
}

/// The body with only `model` changed (every other byte kept), from its
/// already parsed top level.
pub fn rewrite_model_in(
    obj: &RawObject<'_>,
    body: &Bytes,
    requested: &str,
    upstream: &str,
) -> Bytes {
    if requested == upstream {
        return body.clone();
    }
    let quoted = serde_json::Value::String(upstream.to_string()).to_string();
    Bytes::from(obj.with_field("model", &quoted))
}

/// As [`rewrite_model_in`], for a body not parsed as a top level yet.
fn rewrite_model(body: &Bytes, requested: &str, upstream: &str) -> Result<Bytes, ApiError> {
    if requested == upstream {
        return Ok(body.clone());
    }
    Ok(rewrite_model_in(
        &RawObject::parse(body)?,
        body,
        requested,
        upstream,
    ))
}

/// Waits for a stream's first item: a failure before it is an ordinary
/// (retryable) error; after it the stream is the client's. `first` may turn
/// the first item into an error too (an in-band upstream error event). The
/// guard lives as long as the body.
async fn peek<T: Send + 'static>(
    mut s: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, ApiError>> + Send>>,
    guard: InflightGuard,
    first: fn(T) -> Result<T, ApiError>,
) -> Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, ApiError>> + Send>>, ApiError>
{
    let head = match s.next().await {
        Some(item) => first(item?)?,
        None => {
            return Err(ApiError::BadGateway(
                "the provider closed the stream without sending anything".into(),
            ))
        }
    };
    let rest = s.map(move |item| {
        let _held = &guard;
        item
    });
    Ok(Box::pin(
        futures_util::stream::once(async move { Ok(head) }).chain(rest),
    ))
}

fn bytes_start(b: Bytes) -> Result<Bytes, ApiError> {
    Ok(b)
}

fn event_start(ev: StreamEvent) -> Result<StreamEvent, ApiError> {
    match ev {
        StreamEvent::Error(e) => Err(ApiError::BadGateway(e.message)),
        ev => Ok(ev),
    }
}

/// Steps 5–7 for a chat-like request (`/v1/chat/completions`,
/// `/v1/messages`, `/api/chat`, `/api/generate`): runs the plan and reads
/// the answer's usage into the note.
pub async fn chat(
    rt: &Runtime,
    usage: &Recorder,
    plan: Plan,
    call: ChatCall<'_>,
) -> Ran<ChatOutcome> {
    let t0 = Instant::now();
    let (mut result, log) = attempts(&rt.router, &plan, &call).await;
    let upstream = t0.elapsed();
    let mut note = Note::new(usage, rt, call.model, &log, call.stream);
    match &mut result {
        Err(e) => note.failed(e),
        Ok(ChatOutcome::Forwarded(fwd)) => {
            note.forwarded(fwd, call.wire);
            if injects_usage(&call) {
                hide_usage(fwd);
            }
            if call.wire == Wire::Responses {
                remember_encrypted(fwd, &log);
            }
        }
        Ok(ChatOutcome::Response(r)) => note.answered(r.usage),
        Ok(ChatOutcome::Stream(events)) => note.watch(events),
    }
    Ran {
        result,
        upstream,
        trail: Trail { plan, log, note },
    }
}

/// The attempts of a chat-like request: forwarded bytes to a same-format
/// target, the internal model to any other.
async fn attempts(
    router: &ModelRouter,
    plan: &Plan,
    call: &ChatCall<'_>,
) -> (Result<ChatOutcome, ApiError>, RouteLog) {
    let ChatCall {
        wire: client_wire,
        endpoint,
        obj,
        body,
        model,
        stream,
        ir,
        headers,
        want_usage: _,
    } = *call;
    let inject = injects_usage(call);
    let est = (body.len() / 4) as u64;
    // Encrypted reasoning goes back to the key that made it (affinity).
    let encrypted = (client_wire == Wire::Responses)
        .then(|| llm_link_protocol::responses::first_encrypted(body))
        .flatten();
    let prefer = encrypted.and_then(crate::routing::affinity::origin);
    let prefer = prefer.as_ref();
    exec::execute_preferring(router, plan, est, prefer, |a| async move {
        if a.provider.passthrough_for(client_wire) {
            let mut out = rewrite_model_in(obj, body, model, &a.upstream_model);
            if inject {
                out = crate::meter::ask_usage(&out);
            }
            if encrypted.is_some() && prefer != Some(&a.origin) {
                if let Some(stripped) = llm_link_protocol::responses::strip_encrypted(&out) {
                    tracing::info!(
                        provider = %a.origin.0,
                        key = a.origin.1,
                        "reasoning encrypted by another provider key dropped from the request: this key cannot read it"
                    );
                    out = Bytes::from(stripped);
                }
            }
            let mut fwd = a.provider.forward(endpoint, out, stream, headers).await?;
            fwd.body = match fwd.body {
                ForwardBody::Stream(s) => ForwardBody::Stream(peek(s, a.guard, bytes_start).await?),
                full => full,
            };
            return Ok(ChatOutcome::Forwarded(fwd));
        }
        let mut req = ir
            .cloned()
            .ok_or_else(|| ApiError::Internal("request was not decoded for translation".into()))?;
        req.model = a.upstream_model.clone();
        if stream {
            let events = a.provider.chat_stream(req).await?;
            Ok(ChatOutcome::Stream(
                peek(events, a.guard, event_start).await?,
            ))
        } else {
            Ok(ChatOutcome::Response(a.provider.chat(req).await?))
        }
    })
    .await
}

/// Remembers which upstream and key produced the encrypted reasoning of a
/// forwarded Responses answer (the winning step of `log`), reading the
/// answer as it passes.
fn remember_encrypted(fwd: &mut Forwarded, log: &RouteLog) {
    let Some(step) = log.steps.iter().rev().find(|s| s.outcome == "ok") else {
        return;
    };
    let Some(key) = step.key else { return };
    let origin: crate::routing::affinity::Origin = (step.provider.clone(), key);
    match &mut fwd.body {
        ForwardBody::Full(b) => {
            if let Some(h) = llm_link_protocol::responses::first_encrypted(b) {
                crate::routing::affinity::remember(h, origin);
            }
        }
        ForwardBody::Stream(s) => {
            let inner = std::mem::replace(s, Box::pin(futures_util::stream::empty()));
            let mut scanner = llm_link_protocol::responses::EncryptedScanner::default();
            let mut origin = Some(origin);
            *s = Box::pin(inner.map(move |item| {
                if let (Ok(b), Some(_)) = (&item, &origin) {
                    if let Some(h) = scanner.feed(b) {
                        if let Some(o) = origin.take() {
                            crate::routing::affinity::remember(h, o);
                        }
                    }
                }
                item
            }));
        }
    }
}

/// Steps 5–7 for an endpoint that is only ever forwarded (the legacy
/// `/v1/completions`): a target that speaks another wire is refused with
/// `refuse`'s error, and a stream keeps its in-flight slot until it ends.
pub async fn forward_only(
    rt: &Runtime,
    usage: &Recorder,
    plan: Plan,
    call: ChatCall<'_>,
    refuse: fn(&str, Wire) -> ApiError,
) -> Ran<Forwarded> {
    let t0 = Instant::now();
    let est = (call.body.len() / 4) as u64;
    let inject = injects_usage(&call);
    let (mut result, log) = exec::execute(&rt.router, &plan, est, |a| {
        let call = &call;
        async move {
            if a.provider.wire() != call.wire {
                return Err(refuse(a.provider.name(), a.provider.wire()));
            }
            let mut out = rewrite_model_in(call.obj, call.body, call.model, &a.upstream_model);
            if inject {
                out = crate::meter::ask_usage(&out);
            }
            let mut fwd = a
                .provider
                .forward(call.endpoint, out, call.stream, call.headers)
                .await?;
            if let ForwardBody::Stream(s) = fwd.body {
                let guard = a.guard;
                fwd.body = ForwardBody::Stream(Box::pin(s.map(move |item| {
                    let _held = &guard;
                    item
                })));
            }
            Ok(fwd)
        }
    })
    .await;
    let upstream = t0.elapsed();
    let mut note = Note::new(usage, rt, call.model, &log, call.stream);
    match &mut result {
        Err(e) => note.failed(e),
        Ok(fwd) => {
            note.forwarded(fwd, call.wire);
            if inject {
                hide_usage(fwd);
            }
        }
    }
    Ran {
        result,
        upstream,
        trail: Trail { plan, log, note },
    }
}

/// Takes the usage chunk llm-link asked for out of a forwarded stream (after
/// the meter has read it).
fn hide_usage(fwd: &mut Forwarded) {
    if let ForwardBody::Stream(s) = &mut fwd.body {
        let inner = std::mem::replace(s, Box::pin(futures_util::stream::empty()));
        *s = Box::pin(crate::meter::HideUsage::new(inner));
    }
}

/// Steps 5–7 for an embeddings request, which every surface decodes in
/// full (so every field is checked before anything goes upstream).
#[allow(clippy::too_many_arguments)]
pub async fn embed(
    rt: &Runtime,
    usage: &Recorder,
    plan: Plan,
    client_wire: Wire,
    endpoint: Endpoint,
    body: &Bytes,
    ir: &EmbeddingRequest,
    headers: &HeaderMap,
) -> Ran<EmbedOutcome> {
    let t0 = Instant::now();
    let model = ir.model.as_str();
    let (mut result, log) =
        exec::execute(&rt.router, &plan, (body.len() / 4) as u64, |a| async move {
            if a.provider.passthrough_for(client_wire) {
                let out = rewrite_model(body, model, &a.upstream_model)?;
                let fwd = a.provider.forward(endpoint, out, false, headers).await?;
                return Ok(EmbedOutcome::Forwarded(fwd));
            }
            let mut req = ir.clone();
            req.model = a.upstream_model.clone();
            Ok(EmbedOutcome::Response(a.provider.embed(req).await?))
        })
        .await;
    let upstream = t0.elapsed();
    let mut note = Note::new(usage, rt, model, &log, false);
    match &mut result {
        Err(e) => note.failed(e),
        // An embeddings answer is always whole.
        Ok(EmbedOutcome::Forwarded(fwd)) if matches!(fwd.body, ForwardBody::Full(_)) => {
            note.forwarded(fwd, client_wire)
        }
        Ok(EmbedOutcome::Forwarded(_)) => {}
        Ok(EmbedOutcome::Response(r)) => note.answered(Some(r.usage)),
    }
    Ran {
        result,
        upstream,
        trail: Trail { plan, log, note },
    }
}

/// Adds what routing decided to a response: the route taken and, for a
/// deprecated model, a warning (and the sunset date).
fn annotate<B>(resp: &mut http::Response<B>, plan: &Plan, log: &RouteLog) {
    let h = resp.headers_mut();
    if !log.steps.is_empty() {
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(log.header())) {
            h.insert("x-llm-link-route", v);
        }
    }
    if let Some(d) = &plan.deprecation {
        let text = if d.mapped {
            format!(
                "model {} was retired on {}; this request was served by {}",
                d.model, d.sunset, d.replacement
            )
        } else {
            format!(
                "model {} is deprecated and will be replaced by {} on {}",
                d.model, d.replacement, d.sunset
            )
        };
        tracing::warn!(model = %d.model, replacement = %d.replacement, sunset = %d.sunset, mapped = d.mapped, "deprecated model requested");
        if let Ok(v) = HeaderValue::from_str(&text) {
            h.insert("x-llm-link-deprecation", v);
        }
        if let Ok(v) = HeaderValue::from_str(&d.sunset) {
            h.insert("sunset", v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::catalog::CatalogModel;

    fn priced(input: Option<f64>, output: Option<f64>, cached: Option<f64>) -> CatalogModel {
        CatalogModel {
            id: 1,
            model_id: "m".into(),
            served_by: "p".into(),
            model_type: "chat".into(),
            context_window: None,
            max_tokens: None,
            supports_vision: false,
            supports_tools: false,
            input_price: input,
            output_price: output,
            cached_input_price: cached,
            rpm_limit: None,
            tpm_limit: None,
        }
    }

    #[test]
    fn the_worst_case_takes_the_dearer_input_price() {
        assert_eq!(worst_price(&priced(None, None, None)), None);
        // A cheaper cached price does not lower the reservation.
        assert_eq!(
            worst_price(&priced(Some(2.0), Some(8.0), Some(0.5))),
            Some((2.0, 8.0))
        );
        assert_eq!(
            worst_price(&priced(Some(2.0), None, None)),
            Some((2.0, 0.0))
        );
        assert_eq!(
            worst_price(&priced(None, Some(8.0), None)),
            Some((0.0, 8.0))
        );
        // Only a cached price: every prompt token might be cached.
        assert_eq!(
            worst_price(&priced(None, None, Some(0.5))),
            Some((0.5, 0.0))
        );
        assert_eq!(
            worst_price(&priced(Some(1.0), Some(3.0), Some(4.0))),
            Some((4.0, 3.0))
        );
    }
}
