//! Load and measurement tool for llm-link's benchmark harness (`bench/run`).
//!
//! Subcommands (each prints one JSON object on stdout, except `report`):
//! - `wrk`      run wrk (closed loop, saturation) with a POST body and normalise its summary
//! - `closed`   closed-loop load: C workers, each sends the next request when the last ends;
//!              with `--sse` it also records time to first byte and checks the stream
//!              ends (`data: [DONE]`, `event: message_stop` or NDJSON `"done":true`)
//! - `rate`     open-loop load at a fixed request rate (wrk2-style: a pacing thread sends
//!              on schedule whatever the responses do); per-request latency
//! - `hold`     open N streams at once, wait until all have their first event, sample the
//!              RSS of `--pid` while they are all open, then read them to the end
//! - `startup`  spawn → first 200 from /health, N times; then N restart cycles
//!              (SIGTERM → exit → spawn → healthy)
//! - `freeport` print a free TCP port on 127.0.0.1
//! - `procstat` peak RSS (VmHWM), RSS and CPU seconds (utime+stime) of a pid
//! - `report`   read the JSON-lines results file written by bench/run, print markdown tables
//!
//! Latencies are wall-clock times measured in this process with `Instant`,
//! from just before the request is handed to the HTTP client until the last
//! body byte (or the first body byte for TTFB).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

// ---------------------------------------------------------------- arguments

struct Args {
    flags: BTreeMap<String, String>,
    switches: Vec<String>,
    rest: Vec<String>,
    positional: Vec<String>,
}

const SWITCHES: &[&str] = &["--sse"];

fn parse(argv: &[String]) -> Args {
    let mut a = Args {
        flags: BTreeMap::new(),
        switches: vec![],
        rest: vec![],
        positional: vec![],
    };
    let mut i = 0;
    while i < argv.len() {
        let s = &argv[i];
        if s == "--" {
            a.rest = argv[i + 1..].to_vec();
            break;
        } else if SWITCHES.contains(&s.as_str()) {
            a.switches.push(s.clone());
        } else if let Some(name) = s.strip_prefix("--") {
            let v = argv.get(i + 1).cloned().unwrap_or_default();
            a.flags.insert(name.to_string(), v);
            i += 1;
        } else {
            a.positional.push(s.clone());
        }
        i += 1;
    }
    a
}

impl Args {
    fn str(&self, k: &str) -> Result<String, String> {
        self.flags.get(k).cloned().ok_or_else(|| format!("--{k} is required"))
    }
    fn num(&self, k: &str, d: f64) -> Result<f64, String> {
        match self.flags.get(k) {
            None => Ok(d),
            Some(v) => v.parse().map_err(|e| format!("--{k} {v}: {e}")),
        }
    }
    /// Durations: `10s`, `500ms`, `2m` or a bare number of seconds.
    fn secs(&self, k: &str, d: f64) -> Result<f64, String> {
        match self.flags.get(k) {
            None => Ok(d),
            Some(v) => parse_secs(v).ok_or_else(|| format!("--{k} {v}: not a duration")),
        }
    }
    fn has(&self, s: &str) -> bool {
        self.switches.iter().any(|x| x == s)
    }
}

fn parse_secs(v: &str) -> Option<f64> {
    let v = v.trim();
    let (n, mul) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else {
        (v, 1.0)
    };
    n.trim().parse::<f64>().ok().map(|x| x * mul)
}

// ---------------------------------------------------------------- statistics

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile of sorted microsecond samples, in ms.
fn pct(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    Some(round3(sorted[idx] as f64 / 1000.0))
}

fn dist(prefix: &str, mut us: Vec<u64>, out: &mut serde_json::Map<String, Value>) {
    us.sort_unstable();
    for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)] {
        out.insert(format!("{prefix}{name}_ms"), json!(pct(&us, p)));
    }
}

#[derive(Default)]
struct Errors {
    count: u64,
    kinds: BTreeMap<String, u64>,
}

impl Errors {
    fn add(&mut self, e: String) {
        self.count += 1;
        *self.kinds.entry(e).or_default() += 1;
    }
    fn merge(&mut self, o: Errors) {
        self.count += o.count;
        for (k, v) in o.kinds {
            *self.kinds.entry(k).or_default() += v;
        }
    }
    fn json(&self) -> Value {
        json!(self.kinds)
    }
}

// ---------------------------------------------------------------- HTTP

fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(c)
}

struct Sample {
    ttfb: Duration,
    total: Duration,
    events: usize,
    /// llm-link's `Server-Timing: gateway;dur=X, upstream;dur=Y` (ms), if sent.
    st: Option<(f64, f64)>,
}

fn parse_server_timing(v: &str) -> Option<(f64, f64)> {
    let mut gw = None;
    let mut up = None;
    for part in v.split(',') {
        let mut it = part.trim().split(';');
        let name = it.next()?.trim();
        let dur = it
            .find_map(|p| p.trim().strip_prefix("dur="))
            .and_then(|d| d.parse::<f64>().ok());
        match name {
            "gateway" => gw = dur,
            "upstream" => up = dur,
            _ => {}
        }
    }
    Some((gw?, up.unwrap_or(0.0)))
}

/// Summarises the Server-Timing values of successful responses.
fn server_timing_stats(samples: &[Sample], out: &mut serde_json::Map<String, Value>) {
    let with: Vec<(f64, f64)> = samples.iter().filter_map(|s| s.st).collect();
    if with.is_empty() {
        return;
    }
    out.insert("st_missing".into(), json!(samples.len() - with.len()));
    dist("st_gateway_", with.iter().map(|x| (x.0 * 1000.0) as u64).collect(), out);
    dist("st_upstream_", with.iter().map(|x| (x.1 * 1000.0) as u64).collect(), out);
}

/// Checks a whole streamed body ended properly and counts its events: OpenAI
/// SSE (`data: [DONE]`), Anthropic SSE (`event: message_stop`), or Ollama
/// NDJSON (last line has `"done":true`; every line is an event).
fn stream_events(text: &str) -> Result<usize, String> {
    if text.contains("data: [DONE]") || text.contains("event: message_stop") {
        return Ok(text.lines().filter(|l| l.starts_with("data:")).count());
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.last() {
        Some(l) if l.replace(' ', "").contains("\"done\":true") => Ok(lines.len()),
        _ => Err("stream ended without data: [DONE], message_stop or done:true".into()),
    }
}

/// One request; reads the whole body. With `sse`, checks the stream ended
/// properly (see [`stream_events`]) and counts its events.
/// `BENCH_AUTHORIZATION`, when set and not empty, is sent as the
/// `Authorization` header of every request (bench/run's scenario k sets it
/// to `Bearer llk-…` for the llm-link run; wrk/post.lua reads it too).
fn authorization() -> Option<&'static str> {
    static V: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    V.get_or_init(|| std::env::var("BENCH_AUTHORIZATION").ok().filter(|v| !v.is_empty()))
        .as_deref()
}

async fn one(c: &HttpClient, uri: &Uri, body: &Bytes, sse: bool, t0: Instant) -> Result<Sample, String> {
    let mut req = Request::post(uri.clone()).header(CONTENT_TYPE, "application/json");
    if let Some(v) = authorization() {
        req = req.header(hyper::header::AUTHORIZATION, v);
    }
    let req = req
        .body(Full::new(body.clone()))
        .map_err(|e| format!("build request: {e}"))?;
    let resp = c.request(req).await.map_err(|e| {
        let mut s = format!("{e}");
        if let Some(src) = std::error::Error::source(&e) {
            s.push_str(&format!(": {src}"));
        }
        s
    })?;
    let status = resp.status();
    let st = resp
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_server_timing);
    let mut b = resp.into_body();
    let mut ttfb = None;
    let mut buf = Vec::new();
    while let Some(f) = b.frame().await {
        let f = f.map_err(|e| format!("body: {e}"))?;
        if let Ok(d) = f.into_data() {
            if d.is_empty() {
                continue;
            }
            if ttfb.is_none() {
                ttfb = Some(t0.elapsed());
            }
            if sse {
                buf.extend_from_slice(&d);
            }
        }
    }
    let total = t0.elapsed();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let mut events = 0;
    if sse {
        events = stream_events(&String::from_utf8_lossy(&buf))?;
    }
    Ok(Sample {
        ttfb: ttfb.unwrap_or(total),
        total,
        events,
        st,
    })
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

fn load_body(a: &Args) -> Result<(Uri, Bytes), String> {
    let url = a.str("url")?;
    let uri: Uri = url.parse().map_err(|e| format!("--url {url}: {e}"))?;
    let path = a.str("body-file")?;
    let body = std::fs::read(&path).map_err(|e| format!("--body-file {path}: {e}"))?;
    Ok((uri, Bytes::from(body)))
}

// ---------------------------------------------------------------- closed loop

fn cmd_closed(a: &Args) -> Result<Value, String> {
    let (uri, body) = load_body(a)?;
    let conc = a.num("concurrency", 4.0)? as usize;
    let dur = Duration::from_secs_f64(a.secs("duration", 10.0)?);
    let warm = Duration::from_secs_f64(a.secs("warmup", 1.0)?);
    let timeout = Duration::from_secs_f64(a.secs("timeout", 10.0)?);
    let sse = a.has("--sse");
    let rt = runtime(a.num("threads", 1.0)? as usize)?;
    rt.block_on(async move {
        let c = client();
        let start = Instant::now();
        let measure_from = start + warm;
        let deadline = measure_from + dur;
        let mut tasks = Vec::new();
        for _ in 0..conc.max(1) {
            let (c, uri, body) = (c.clone(), uri.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok: Vec<Sample> = Vec::new();
                let mut errs = Errors::default();
                let mut warm_errs = Errors::default();
                let mut last_end = measure_from;
                // Bounded: stops at the deadline; each request has a timeout.
                loop {
                    let t0 = Instant::now();
                    if t0 >= deadline {
                        break;
                    }
                    let r = tokio::time::timeout(timeout, one(&c, &uri, &body, sse, t0)).await;
                    let end = Instant::now();
                    if t0 < measure_from {
                        match r {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => warm_errs.add(e),
                            Err(_) => warm_errs.add("timeout".into()),
                        }
                        continue;
                    }
                    last_end = last_end.max(end);
                    match r {
                        Ok(Ok(s)) => ok.push(s),
                        Ok(Err(e)) => {
                            errs.add(e);
                            // Do not spin on a dead target.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(_) => errs.add("timeout".into()),
                    }
                }
                (ok, errs, warm_errs, last_end)
            }));
        }
        let mut all = Vec::new();
        let mut errs = Errors::default();
        let mut warm_errs = Errors::default();
        let mut last_end = measure_from;
        for t in tasks {
            let (ok, e, we, le) = t.await.map_err(|e| format!("worker: {e}"))?;
            all.extend(ok);
            errs.merge(e);
            warm_errs.merge(we);
            last_end = last_end.max(le);
        }
        let window = last_end.saturating_duration_since(measure_from).max(dur);
        let n = all.len() as u64;
        let mut out = serde_json::Map::new();
        out.insert("tool".into(), json!("loadgen closed"));
        out.insert(
            "load".into(),
            json!(format!("closed loop, {conc} conn{}", if sse { ", SSE" } else { "" })),
        );
        out.insert("requests".into(), json!(n));
        out.insert("errors".into(), json!(errs.count));
        out.insert("error_kinds".into(), errs.json());
        out.insert("warmup_errors".into(), json!(warm_errs.count));
        out.insert("warmup_error_kinds".into(), warm_errs.json());
        out.insert("rps".into(), json!(round3(n as f64 / window.as_secs_f64())));
        dist("", all.iter().map(|s| s.total.as_micros() as u64).collect(), &mut out);
        dist("ttfb_", all.iter().map(|s| s.ttfb.as_micros() as u64).collect(), &mut out);
        server_timing_stats(&all, &mut out);
        if sse {
            let mut ev: Vec<u64> = all.iter().map(|s| s.events as u64).collect();
            ev.sort_unstable();
            out.insert("events_median".into(), json!(ev.get(ev.len() / 2)));
        }
        Ok(Value::Object(out))
    })
}

// ---------------------------------------------------------------- open loop, fixed rate

fn cmd_rate(a: &Args) -> Result<Value, String> {
    let (uri, body) = load_body(a)?;
    let rate = a.num("rate", 1000.0)?.max(1.0);
    let dur = a.secs("duration", 10.0)?;
    let warm = a.secs("warmup", 1.0)?;
    let timeout = Duration::from_secs_f64(a.secs("timeout", 5.0)?);
    let max_inflight = a.num("max-inflight", 2000.0)? as usize;
    let rt = runtime(a.num("threads", 1.0)? as usize)?;
    let handle = rt.handle().clone();
    let warm_n = (rate * warm).round() as u64;
    let total_n = (rate * dur).round() as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let c = client();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, Duration, Duration, Result<Sample, String>)>();
    let inflight = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));

    // The pacing thread: sends on schedule (absolute deadlines, so no drift),
    // never waits for responses. Bounded by warm_n + total_n.
    let pacer = {
        let (inflight, dropped) = (inflight.clone(), dropped.clone());
        std::thread::spawn(move || {
            let start = Instant::now() + Duration::from_millis(20);
            for i in 0..warm_n + total_n {
                let target = start + period.mul_f64(i as f64);
                let now = Instant::now();
                if target > now {
                    std::thread::sleep(target - now);
                }
                if inflight.load(Ordering::Relaxed) >= max_inflight {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                inflight.fetch_add(1, Ordering::Relaxed);
                let (c, uri, body, tx, inflight) =
                    (c.clone(), uri.clone(), body.clone(), tx.clone(), inflight.clone());
                let measured = i >= warm_n;
                handle.spawn(async move {
                    let t0 = Instant::now();
                    let late = t0.saturating_duration_since(target);
                    let r = match tokio::time::timeout(timeout, one(&c, &uri, &body, false, t0)).await {
                        Ok(r) => r,
                        Err(_) => Err("timeout".into()),
                    };
                    let from_sched = target.elapsed();
                    inflight.fetch_sub(1, Ordering::Relaxed);
                    let _ = tx.send((measured, late, from_sched, r));
                });
            }
            start + period.mul_f64((warm_n + total_n) as f64)
        })
    };
    let (lat, sched, lates, errs, warm_errs, samples) = rt.block_on(async {
        let mut lat = Vec::new();
        let mut samples = Vec::new();
        let mut sched = Vec::new();
        let mut lates = Vec::new();
        let mut errs = Errors::default();
        let mut warm_errs = Errors::default();
        // Ends when the pacer and every request task have dropped their sender.
        while let Some((measured, late, from_sched, r)) = rx.recv().await {
            if !measured {
                if let Err(e) = r {
                    warm_errs.add(e);
                }
                continue;
            }
            lates.push(late.as_micros() as u64);
            match r {
                Ok(s) => {
                    lat.push(s.total.as_micros() as u64);
                    sched.push(from_sched.as_micros() as u64);
                    samples.push(s);
                }
                Err(e) => errs.add(e),
            }
        }
        (lat, sched, lates, errs, warm_errs, samples)
    });
    let _ = pacer.join();
    let dropped = dropped.load(Ordering::Relaxed) as u64;
    let n = lat.len() as u64;
    let late_1ms = lates.iter().filter(|&&l| l > 1000).count();
    let mut out = serde_json::Map::new();
    out.insert("tool".into(), json!("loadgen rate"));
    out.insert("load".into(), json!(format!("open loop, fixed {rate} req/s")));
    out.insert("requests".into(), json!(n));
    out.insert("errors".into(), json!(errs.count + dropped));
    let mut kinds = errs.kinds.clone();
    if dropped > 0 {
        kinds.insert(format!("not sent: {max_inflight} already in flight"), dropped);
    }
    out.insert("error_kinds".into(), json!(kinds));
    out.insert("warmup_errors".into(), json!(warm_errs.count));
    out.insert("warmup_error_kinds".into(), warm_errs.json());
    // Achieved rate of successful responses over the scheduled window.
    out.insert("rps".into(), json!(round3(n as f64 / dur)));
    out.insert("target_rps".into(), json!(rate));
    dist("", lat, &mut out);
    dist("sched_", sched, &mut out);
    server_timing_stats(&samples, &mut out);
    out.insert("late_over_1ms".into(), json!(late_1ms));
    dist("late_", lates, &mut out);
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------- many open streams

fn read_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// TcpExt ListenOverflows from /proc/net/netstat: connections the kernel
/// refused because an accept queue was full (machine-wide).
fn listen_overflows() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let idx = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

fn cmd_hold(a: &Args) -> Result<Value, String> {
    let (uri, body) = load_body(a)?;
    let n = a.num("streams", 1000.0)? as usize;
    let pid = a.num("pid", 0.0)? as u32;
    let open_timeout = Duration::from_secs_f64(a.secs("open-timeout", 20.0)?);
    let total_timeout = Duration::from_secs_f64(a.secs("timeout", 120.0)?);
    let rt = runtime(a.num("threads", 1.0)? as usize)?;
    rt.block_on(async move {
        let c = client();
        let rss_before = if pid > 0 { read_status_kb(pid, "VmRSS:") } else { None };
        let overflows_before = listen_overflows();
        let opened = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (c, uri, body, opened, finished) =
                (c.clone(), uri.clone(), body.clone(), opened.clone(), finished.clone());
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let r = tokio::time::timeout(total_timeout, async {
                    let req = Request::post(uri)
                        .header(CONTENT_TYPE, "application/json")
                        .body(Full::new(body))
                        .map_err(|e| e.to_string())?;
                    let resp = c.request(req).await.map_err(|e| format!("{e}"))?;
                    if !resp.status().is_success() {
                        return Err(format!("HTTP {}", resp.status().as_u16()));
                    }
                    let mut b = resp.into_body();
                    let mut ttfb = None;
                    let mut tail = Vec::new();
                    while let Some(f) = b.frame().await {
                        let f = f.map_err(|e| format!("body: {e}"))?;
                        if let Ok(d) = f.into_data() {
                            if d.is_empty() {
                                continue;
                            }
                            if ttfb.is_none() {
                                ttfb = Some(t0.elapsed());
                                opened.fetch_add(1, Ordering::Relaxed);
                            }
                            // Keep only the end, enough to see [DONE].
                            tail.extend_from_slice(&d);
                            if tail.len() > 256 {
                                tail.drain(..tail.len() - 256);
                            }
                        }
                    }
                    let total = t0.elapsed();
                    if !String::from_utf8_lossy(&tail).contains("data: [DONE]") {
                        return Err("stream ended without data: [DONE]".into());
                    }
                    Ok((ttfb.unwrap_or(total), total))
                })
                .await;
                finished.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(r) => r,
                    Err(_) => Err("timeout".into()),
                }
            }));
        }
        // Wait (bounded) until every stream has its first event or has ended.
        let open_deadline = start + open_timeout;
        loop {
            let o = opened.load(Ordering::Relaxed);
            let f = finished.load(Ordering::Relaxed);
            if o >= n || o + f >= n || Instant::now() >= open_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let open_time = start.elapsed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut rss_open = None::<u64>;
        let mut open_at_sample = usize::MAX;
        for _ in 0..5 {
            let now_open = opened
                .load(Ordering::Relaxed)
                .saturating_sub(finished.load(Ordering::Relaxed));
            open_at_sample = open_at_sample.min(now_open);
            if pid > 0 {
                if let Some(r) = read_status_kb(pid, "VmRSS:") {
                    rss_open = Some(rss_open.map_or(r, |m| m.max(r)));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let hwm = if pid > 0 { read_status_kb(pid, "VmHWM:") } else { None };
        let mut ttfb = Vec::new();
        let mut total = Vec::new();
        let mut errs = Errors::default();
        for t in tasks {
            match t.await {
                Ok(Ok((a, b))) => {
                    ttfb.push(a.as_micros() as u64);
                    total.push(b.as_micros() as u64);
                }
                Ok(Err(e)) => errs.add(e),
                Err(e) => errs.add(format!("task: {e}")),
            }
        }
        let mut out = serde_json::Map::new();
        out.insert("tool".into(), json!("loadgen hold"));
        out.insert(
            "listen_overflows".into(),
            json!(listen_overflows().zip(overflows_before).map(|(a, b)| a.saturating_sub(b))),
        );
        out.insert("load".into(), json!(format!("{n} concurrent streams, 1 conn each")));
        out.insert("streams".into(), json!(n));
        out.insert("requests".into(), json!(total.len()));
        out.insert("errors".into(), json!(errs.count));
        out.insert("error_kinds".into(), errs.json());
        out.insert("open_ms".into(), json!(round3(ms(open_time))));
        out.insert("open_at_sample".into(), json!(open_at_sample));
        out.insert("rss_before_kb".into(), json!(rss_before));
        out.insert("rss_open_kb".into(), json!(rss_open));
        out.insert("hwm_kb".into(), json!(hwm));
        dist("", ttfb, &mut out);
        dist("total_", total, &mut out);
        Ok(Value::Object(out))
    })
}

// ---------------------------------------------------------------- start-up

fn health_ok(addr: &SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    buf[..got].starts_with(b"HTTP/1.1 200")
}

/// Polls /health every 250 µs until 200 or `limit`.
fn wait_healthy(addr: &SocketAddr, child: &mut Child, limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    loop {
        if health_ok(addr) {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("llm-link exited before healthy: {st}"));
        }
        if t.elapsed() > limit {
            return Err(format!("not healthy after {limit:?}"));
        }
        std::thread::sleep(Duration::from_micros(250));
    }
}

fn sigterm_and_wait(child: &mut Child, limit: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    // SAFETY: plain kill(2) on a pid we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    if rc != 0 {
        return Err("kill(SIGTERM) failed".into());
    }
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not exit within {limit:?} of SIGTERM"));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn cmd_startup(a: &Args) -> Result<Value, String> {
    let bin = a.str("bin")?;
    let port = a.num("port", 0.0)? as u16;
    if port == 0 {
        return Err("--port must be a fixed free port".into());
    }
    let runs = a.num("runs", 10.0)? as usize;
    let limit = Duration::from_secs_f64(a.secs("limit", 10.0)?);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let spawn = || {
        Command::new(&bin)
            .args(&a.rest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {bin}: {e}"))
    };
    if health_ok(&addr) {
        return Err(format!("something already answers on {addr}"));
    }
    // Cold starts: spawn → healthy, then stop (untimed).
    let mut start_us = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut child = spawn()?;
        wait_healthy(&addr, &mut child, limit)?;
        start_us.push(t.elapsed().as_micros() as u64);
        sigterm_and_wait(&mut child, Duration::from_secs(40))?;
    }
    // Restart cycles on the same port: SIGTERM → exit → spawn → healthy.
    let mut child = spawn()?;
    wait_healthy(&addr, &mut child, limit)?;
    let mut cycle_us = Vec::new();
    let mut exit_us = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let exit = sigterm_and_wait(&mut child, Duration::from_secs(40))?;
        child = spawn()?;
        wait_healthy(&addr, &mut child, limit)?;
        cycle_us.push(t.elapsed().as_micros() as u64);
        exit_us.push(exit.as_micros() as u64);
    }
    sigterm_and_wait(&mut child, Duration::from_secs(40))?;
    let mut out = serde_json::Map::new();
    out.insert("tool".into(), json!("loadgen startup"));
    out.insert("runs".into(), json!(runs));
    dist("start_", start_us.clone(), &mut out);
    out.insert("start_min_ms".into(), json!(start_us.iter().min().map(|&v| round3(v as f64 / 1000.0))));
    dist("cycle_", cycle_us, &mut out);
    dist("exit_", exit_us, &mut out);
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------- wrk

fn cmd_wrk(a: &Args) -> Result<Value, String> {
    let url = a.str("url")?;
    let body_file = a.str("body-file")?;
    let script = a.str("script")?;
    let conns = a.num("connections", 50.0)? as u64;
    let threads = a.num("threads", 2.0)? as u64;
    let dur = a.secs("duration", 10.0)?.round().max(1.0) as u64;
    let warm = a.secs("warmup", 1.0)?.round() as u64;
    let run = |secs: u64| -> Result<String, String> {
        let out = Command::new("wrk")
            .args([
                "-t",
                &threads.to_string(),
                "-c",
                &conns.to_string(),
                "-d",
                &format!("{secs}s"),
                "--timeout",
                "5s",
                "-s",
                &script,
                &url,
            ])
            .env("WRK_BODY_FILE", &body_file)
            .output()
            .map_err(|e| format!("cannot run wrk: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            return Err(format!(
                "wrk failed: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(text)
    };
    let summary = |text: &str| -> Result<Value, String> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("BENCH_JSON "))
            .ok_or_else(|| format!("no BENCH_JSON line in wrk output:\n{text}"))?;
        serde_json::from_str(line).map_err(|e| format!("wrk summary: {e}: {line}"))
    };
    const ERROR_KINDS: [&str; 5] = ["connect", "read", "write", "status", "timeout"];
    // The warm-up's errors are reported apart (a benchmark that measured
    // refusals during its warm-up should say so).
    let mut warm_errors = 0.0;
    let mut warm_kinds = serde_json::Map::new();
    if warm > 0 {
        let w = summary(&run(warm)?)?;
        for k in ERROR_KINDS {
            let n = w.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            if n > 0.0 {
                warm_errors += n;
                warm_kinds.insert(k.into(), json!(n as u64));
            }
        }
    }
    let text = run(dur)?;
    let w = summary(&text)?;
    let g = |k: &str| w.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let secs = g("duration_us") / 1e6;
    let mut kinds = serde_json::Map::new();
    for k in ERROR_KINDS {
        if g(k) > 0.0 {
            kinds.insert(k.into(), json!(g(k) as u64));
        }
    }
    let errors: f64 = ERROR_KINDS.iter().map(|k| g(k)).sum();
    Ok(json!({
        "tool": "wrk",
        "load": format!("closed loop (saturation), wrk {threads}t/{conns}c"),
        "requests": g("requests") as u64,
        "errors": errors as u64,
        "error_kinds": kinds,
        "warmup_errors": warm_errors as u64,
        "warmup_error_kinds": warm_kinds,
        "rps": round3(g("requests") / secs.max(1e-9)),
        "p50_ms": round3(g("p50_us") / 1000.0),
        "p90_ms": round3(g("p90_us") / 1000.0),
        "p99_ms": round3(g("p99_us") / 1000.0),
        "max_ms": round3(g("max_us") / 1000.0),
        "bytes": g("bytes") as u64,
    }))
}

// ---------------------------------------------------------------- procstat

fn cmd_procstat(a: &Args) -> Result<Value, String> {
    let pid = a.num("pid", 0.0)? as u32;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("pid {pid}: {e}"))?;
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5) are utime and stime; `after` starts at field 3.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(json!({
        "pid": pid,
        "hwm_kb": read_status_kb(pid, "VmHWM:"),
        "rss_kb": read_status_kb(pid, "VmRSS:"),
        "cpu_s": round3((ticks(11) + ticks(12)) / hz),
        "threads": read_status_kb(pid, "Threads:"),
    }))
}

// ---------------------------------------------------------------- report

fn f(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{x:.3}"))
}

fn fmt_mib(kb: Option<f64>) -> String {
    kb.map_or("—".into(), |k| format!("{:.1} MiB", k / 1024.0))
}

fn fmt_added(g: Option<f64>, d: Option<f64>) -> String {
    match (g, d) {
        (Some(g), Some(d)) => format!("{:+.3}", g - d),
        _ => "—".into(),
    }
}

fn errs_cell(r: &Value) -> String {
    let n = r.get("errors").and_then(Value::as_u64).unwrap_or(0);
    let kinds = r.get("error_kinds").and_then(Value::as_object);
    match kinds {
        Some(k) if n > 0 && !k.is_empty() => {
            let parts: Vec<String> = k.iter().take(3).map(|(a, b)| format!("{a}: {b}")).collect();
            format!("{n} ({})", parts.join("; ").replace('|', "/"))
        }
        _ => n.to_string(),
    }
}

struct Rec {
    v: Value,
}

impl Rec {
    fn s(&self, k: &str) -> &str {
        self.v.get(k).and_then(Value::as_str).unwrap_or("")
    }
}

fn cmd_report(a: &Args) -> Result<Value, String> {
    let path = a.positional.first().ok_or("report FILE")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let recs: Vec<Rec> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .map(|v| Rec { v })
        .collect();
    let find = |id: &str, target: &str| recs.iter().find(|r| r.s("scenario") == id && r.s("target") == target);
    let mut order: Vec<(String, String, String)> = Vec::new();
    for r in &recs {
        let id = r.s("scenario").to_string();
        if !id.is_empty() && r.s("target") != "" && !order.iter().any(|o| o.0 == id) {
            order.push((id, r.s("label").to_string(), r.s("kind").to_string()));
        }
    }
    // llm-link CPU µs per request it forwarded, over its load run (warm-up
    // included): bench/run reads its CPU time before (`proc_before`) and
    // after (`proc`) and the mock's request counter (`upstream_requests`).
    let cpu_per_req = |rec: &Rec| -> Option<f64> {
        let cpu = |k: &str| f(rec.v.get(k).and_then(|p| p.get("cpu_s")));
        let n = f(rec.v.get("upstream_requests")).filter(|n| *n > 0.0)?;
        Some((cpu("proc")? - cpu("proc_before")?) * 1e6 / n)
    };
    let mut o = String::new();
    o.push_str("| scenario | path | load | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | errors | llm-link peak RSS | llm-link CPU s | llm-link CPU µs/req |\n");
    o.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
    for (id, label, kind) in &order {
        let (d, g) = (find(id, "direct"), find(id, "gateway"));
        let variants: Vec<(&str, &str)> = if kind == "stream" {
            vec![("ttfb_", "time to first byte"), ("", "total")]
        } else if kind == "hold" {
            vec![("", "time to first event")]
        } else {
            vec![("", "")]
        };
        for (prefix, what) in &variants {
            let name = if what.is_empty() {
                format!("{id}. {label}")
            } else {
                format!("{id}. {label} — {what}")
            };
            let reference = find(id, "reference");
            let mut targets = vec![("direct", d), ("llm-link", g)];
            if reference.is_some() {
                targets.push(("nginx (reference)", reference));
            }
            for (target, rec) in targets {
                let Some(rec) = rec else {
                    o.push_str(&format!("| {name} | {target} | — | failed, see log | | | | | | | | | |\n"));
                    continue;
                };
                let r = rec.v.get("result").cloned().unwrap_or(Value::Null);
                if let Some(err) = r.get("failed").and_then(Value::as_str) {
                    o.push_str(&format!("| {name} | {target} | — | failed: {} | | | | | | | | | |\n", err.replace('|', "/")));
                    continue;
                }
                let get = |p: &str| f(r.get(format!("{prefix}{p}_ms").as_str()));
                let (added50, added99, rss, cpu, per_req) = if target == "llm-link" {
                    let dr = d.and_then(|d| d.v.get("result"));
                    let dget = |p: &str| f(dr.and_then(|x| x.get(format!("{prefix}{p}_ms").as_str())));
                    let p = rec.v.get("proc");
                    (
                        fmt_added(get("p50"), dget("p50")),
                        fmt_added(get("p99"), dget("p99")),
                        fmt_mib(f(p.and_then(|p| p.get("hwm_kb")))),
                        f(p.and_then(|p| p.get("cpu_s"))).map_or("—".into(), |c| format!("{c:.2}")),
                        cpu_per_req(rec).map_or("—".into(), |c| format!("{c:.1}")),
                    )
                } else {
                    ("".into(), "".into(), "".into(), "".into(), "".into())
                };
                let rps = if kind == "hold" {
                    "—".to_string()
                } else {
                    f(r.get("rps")).map_or("—".into(), |x| format!("{x:.0}"))
                };
                o.push_str(&format!(
                    "| {name} | {target} | {} | {rps} | {} | {} | {} | {added50} | {added99} | {} | {rss} | {cpu} | {per_req} |\n",
                    r.get("load").and_then(Value::as_str).unwrap_or(""),
                    fmt_ms(get("p50")),
                    fmt_ms(get("p90")),
                    fmt_ms(get("p99")),
                    errs_cell(&r),
                ));
            }
        }
    }

    // Governance on vs plain forwarding (scenario k): CPU per request.
    let mut governance: Vec<(String, String, Option<f64>)> = Vec::new();
    for r in recs.iter().filter(|r| r.s("target") == "gateway") {
        let Some(base_id) = r.v.get("baseline").and_then(Value::as_str) else {
            continue;
        };
        let id = r.s("scenario");
        let base = find(base_id, "gateway");
        let (g, p) = (cpu_per_req(r), base.and_then(cpu_per_req));
        let ratio = match (g, p) {
            (Some(g), Some(p)) if p > 0.0 => Some(g / p),
            _ => None,
        };
        o.push_str(&format!(
            "\n_{id} vs {base_id}: llm-link CPU per request, governed {} µs / plain {} µs = {} ({})._",
            g.map_or("—".into(), |v| format!("{v:.1}")),
            p.map_or("—".into(), |v| format!("{v:.1}")),
            ratio.map_or("—".into(), |v| format!("×{v:.3}")),
            ratio.map_or("not measured".into(), |v| format!("{:+.1} %", (v - 1.0) * 100.0)),
        ));
        governance.push((id.to_string(), base_id.to_string(), ratio));
    }
    if !governance.is_empty() {
        o.push('\n');
    }

    // How the fixed-rate scenario was measured, so the numbers can be judged.
    for (id, _, kind) in &order {
        if kind != "rate" {
            continue;
        }
        for (target, t) in [("direct", "direct"), ("llm-link", "gateway")] {
            if let Some(r) = find(id, t).and_then(|r| r.v.get("result")) {
                if r.get("failed").is_some() {
                    continue;
                }
                o.push_str(&format!(
                    "\n_{id}. {target}: {} of {} requests sent more than 1 ms after their scheduled time (send lag p99 {} ms); \
                     latency measured from the scheduled time instead: p50 {} / p99 {} ms._",
                    r.get("late_over_1ms").and_then(Value::as_u64).unwrap_or(0),
                    r.get("requests").and_then(Value::as_u64).unwrap_or(0),
                    fmt_ms(f(r.get("late_p99_ms"))),
                    fmt_ms(f(r.get("sched_p50_ms"))),
                    fmt_ms(f(r.get("sched_p99_ms"))),
                ));
            }
        }
        o.push('\n');
    }

    for (id, _, _) in &order {
        let Some(r) = find(id, "gateway").and_then(|r| r.v.get("result")) else {
            continue;
        };
        if let Some(g50) = f(r.get("st_gateway_p50_ms")) {
            o.push_str(&format!(
                "\n_{id}. llm-link's own Server-Timing over the measured responses: gateway p50 {} / p99 {} ms, \
                 upstream p50 {} / p99 {} ms; {} responses without the header._",
                fmt_ms(Some(g50)),
                fmt_ms(f(r.get("st_gateway_p99_ms"))),
                fmt_ms(f(r.get("st_upstream_p50_ms"))),
                fmt_ms(f(r.get("st_upstream_p99_ms"))),
                r.get("st_missing").and_then(Value::as_u64).unwrap_or(0),
            ));
        }
    }
    o.push('\n');
    for (id, _, kind) in &order {
        if kind != "hold" {
            continue;
        }
        for (target, t) in [("direct", "direct"), ("llm-link", "gateway")] {
            let r = find(id, t).and_then(|r| r.v.get("result"));
            if let Some(n) = r.and_then(|r| r.get("listen_overflows")).and_then(Value::as_u64) {
                if n > 0 {
                    o.push_str(&format!(
                        "\n_{id}. {target}: the kernel dropped {n} connection attempts because an accept queue was full \
                         (listen backlog too small); each costs a 1 s SYN retry, visible in the p90/p99 above._\n"
                    ));
                }
            }
        }
    }

    // Memory and start-up.
    let idle = recs.iter().find(|r| r.s("kind") == "idle");
    let hold = order
        .iter()
        .find(|x| x.2 == "hold")
        .and_then(|x| find(&x.0, "gateway"))
        .and_then(|r| r.v.get("result").cloned());
    let startup = recs
        .iter()
        .find(|r| r.s("kind") == "startup")
        .and_then(|r| r.v.get("result").cloned());
    o.push_str("\n| llm-link memory and start-up | value |\n|---|---|\n");
    let idle_kb = idle.and_then(|r| f(r.v.get("proc").and_then(|p| p.get("rss_kb"))));
    o.push_str(&format!(
        "| f. idle RSS after start (VmRSS, 1 s after healthy) | {} |\n",
        fmt_mib(idle_kb)
    ));
    let mut streams_kb = None;
    if let Some(h) = &hold {
        if h.get("failed").is_none() {
            let before = f(h.get("rss_before_kb"));
            let open = f(h.get("rss_open_kb"));
            let n = f(h.get("open_at_sample")).unwrap_or(0.0);
            streams_kb = open;
            o.push_str(&format!(
                "| e. RSS with {} streams open (before → open, peak VmRSS over 5 samples) | {} → {} |\n",
                n,
                fmt_mib(before),
                fmt_mib(open)
            ));
            if let (Some(b), Some(op)) = (before, open) {
                if n > 0.0 {
                    o.push_str(&format!(
                        "| e. added memory per open stream | {:.1} KiB |\n",
                        (op - b) / n
                    ));
                }
            }
            o.push_str(&format!(
                "| e. time to open all streams (last first event) | {} ms |\n",
                fmt_ms(f(h.get("open_ms")))
            ));
        } else {
            o.push_str("| e. RSS with streams open | failed, see log |\n");
        }
    }
    let mut start_p50 = None;
    if let Some(s) = &startup {
        if let Some(e) = s.get("failed").and_then(Value::as_str) {
            o.push_str(&format!("| g. start-up | failed: {} |\n", e.replace('|', "/")));
        } else {
            start_p50 = f(s.get("start_p50_ms"));
            let runs = s.get("runs").and_then(Value::as_u64).unwrap_or(0);
            o.push_str(&format!(
                "| g. start → healthy, median of {runs} (min / p90 / max) | {} ms ({} / {} / {}) |\n",
                fmt_ms(start_p50),
                fmt_ms(f(s.get("start_min_ms"))),
                fmt_ms(f(s.get("start_p90_ms"))),
                fmt_ms(f(s.get("start_max_ms")))
            ));
            o.push_str(&format!(
                "| g. restart cycle SIGTERM → exit → start → healthy, median of {runs} (p90 / max) | {} ms ({} / {}) |\n",
                fmt_ms(f(s.get("cycle_p50_ms"))),
                fmt_ms(f(s.get("cycle_p90_ms"))),
                fmt_ms(f(s.get("cycle_max_ms")))
            ));
            o.push_str(&format!(
                "| g. of which SIGTERM → exit (idle server), median | {} ms |\n",
                fmt_ms(f(s.get("exit_p50_ms")))
            ));
        }
    }

    // Budget from issue #3.
    let res = |id: &str, t: &str| find(id, t).and_then(|r| r.v.get("result").cloned());
    // The budget is about the plain OpenAI path (b and a), not the
    // translation rows (h1, h2) of the same kinds.
    let rate_kind = order.iter().find(|x| x.2 == "rate" && x.0 == "b").map(|x| x.0.clone());
    let sat_kind = order.iter().find(|x| x.2 == "saturation" && x.0 == "a").map(|x| x.0.clone());
    o.push_str("\n| budget (issue #3) | target | measured | verdict |\n|---|---|---|---|\n");
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "not measured",
    };
    let mut row = |name: &str, target: &str, measured: Option<f64>, unit: &str, ok: Option<bool>| {
        o.push_str(&format!(
            "| {name} | {target} | {} | {} |\n",
            measured.map_or("—".into(), |m| format!("{m:.3}{unit}")),
            verdict(ok)
        ));
    };
    let (mut a50, mut a99) = (None, None);
    if let Some(id) = &rate_kind {
        let (d, g) = (res(id, "direct"), res(id, "gateway"));
        let x = |r: &Option<Value>, k: &str| f(r.as_ref().and_then(|r| r.get(k)));
        if let (Some(gd), Some(dd)) = (x(&g, "p50_ms"), x(&d, "p50_ms")) {
            a50 = Some(gd - dd);
        }
        if let (Some(gd), Some(dd)) = (x(&g, "p99_ms"), x(&d, "p99_ms")) {
            a99 = Some(gd - dd);
        }
    }
    row("added latency p50 at the fixed rate", "≤ 0.1 ms", a50, " ms", a50.map(|v| v <= 0.1));
    row("added latency p99 at the fixed rate", "≤ 1 ms", a99, " ms", a99.map(|v| v <= 1.0));
    let mut ratio = None;
    if let Some(id) = &sat_kind {
        let (d, g) = (res(id, "direct"), res(id, "gateway"));
        if let (Some(gr), Some(dr)) = (
            f(g.as_ref().and_then(|r| r.get("rps"))),
            f(d.as_ref().and_then(|r| r.get("rps"))),
        ) {
            if dr > 0.0 {
                ratio = Some(100.0 * gr / dr);
            }
        }
    }
    row("saturated throughput through llm-link vs direct", "≥ 50 %", ratio, " %", ratio.map(|v| v >= 50.0));
    let idle_mib = idle_kb.map(|k| k / 1024.0);
    row("idle RSS", "≤ 20 MiB", idle_mib, " MiB", idle_mib.map(|v| v <= 20.0));
    let s_mib = streams_kb.map(|k| k / 1024.0);
    row("RSS with 1,000 open streams", "≤ 120 MiB", s_mib, " MiB", s_mib.map(|v| v <= 120.0));
    row("start to healthy (median)", "≤ 100 ms", start_p50, " ms", start_p50.map(|v| v <= 100.0));
    for (id, base_id, ratio) in &governance {
        let extra = ratio.map(|r| (r - 1.0) * 100.0);
        row(
            &format!("CPU per request, governed ({id}) vs plain forwarding ({base_id}) (issue 15)"),
            "≤ +25 %",
            extra,
            " %",
            extra.map(|v| v <= 25.0),
        );
    }
    if let Some(id) = &sat_kind {
        let (d, n) = (res(id, "direct"), res(id, "reference"));
        if let (Some(nr), Some(dr)) = (
            f(n.as_ref().and_then(|r| r.get("rps"))),
            f(d.as_ref().and_then(|r| r.get("rps"))),
        ) {
            if dr > 0.0 {
                o.push_str(&format!(
                    "| (reference, no verdict) saturated throughput through nginx vs direct | — | {:.3} % | — |\n",
                    100.0 * nr / dr
                ));
            }
        }
    }
    print!("{o}");
    Ok(Value::Null)
}

// ---------------------------------------------------------------- main

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("usage: loadgen wrk|closed|rate|hold|startup|procstat|report ...");
        std::process::exit(2);
    };
    let a = parse(&argv[1..]);
    let r = match cmd.as_str() {
        "wrk" => cmd_wrk(&a),
        "closed" => cmd_closed(&a),
        "rate" => cmd_rate(&a),
        "hold" => cmd_hold(&a),
        "startup" => cmd_startup(&a),
        "procstat" => cmd_procstat(&a),
        "freeport" => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| json!(a.port()))
            .map_err(|e| format!("freeport: {e}")),
        "report" => cmd_report(&a),
        _ => Err(format!("unknown subcommand {cmd}")),
    };
    match r {
        Ok(Value::Null) => {}
        Ok(v) => println!("{v}"),
        Err(e) => {
            // Still one JSON object, so bench/run can record the failure.
            println!("{}", json!({ "failed": e }));
            eprintln!("loadgen {cmd}: {e}");
            std::process::exit(1);
        }
    }
}
