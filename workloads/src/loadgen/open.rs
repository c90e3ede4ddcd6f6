//! The open-loop dispatcher: requests start at their scheduled times whatever happens to
//! earlier ones (throughput and trace modes, and distributed workers).
//!
//! # Design
//! One dedicated OS thread walks the schedule. It sleeps (with a 1 ns timer slack) until a
//! little before each scheduled start, then spins the last `--spin` (default 50 µs) on the
//! clock, and hands the request to the async runtime, where a task takes a pooled
//! connection (or opens one, within `--connections`) and records the dispatch instant right
//! before writing. Latency is from the *scheduled* start: a dispatcher or a connection pool
//! that falls behind shows up as latency and as `behind`, never as a shifted schedule
//! (wrk2's correction of coordinated omission).
//!
//! The thread checks `loadgen.ctl` every 100 ms of its (virtual) time, also while it waits
//! for a distant start; a new rate re-plans the pending request from the previous scheduled
//! start (never earlier than now) and applies to every later one. In trace mode a rate
//! becomes a speed factor: new speed = rate / the trace's mean rate.
//!
//! # Limitations
//! Spinning costs up to `--spin` of CPU per request; `--spin 0us` trades dispatch precision
//! (the kernel's wake-up latency, typically 50–100 µs) for none.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::http::Target;
use super::memcache::Mix;
use super::record::{Pending, Recorder};
use super::schedule::{Arrivals, Limit, Shape};
use super::trace::Event;
use super::{ErrorKind, Protocol, Request};
use crate::runtime::now_unix_ns;

/// A request with its place in the schedule.
#[derive(Debug, Clone)]
pub struct Planned {
    pub id: u64,
    pub scheduled_ns: i64,
    pub req: Request,
    pub class: String,
}

/// Sends planned requests: connection pool, concurrency cap, timeout, records.
pub struct Issuer<P: Protocol> {
    proto: P,
    pool: Mutex<HashMap<String, Vec<P::Conn>>>,
    permits: tokio::sync::Semaphore,
    timeout: Duration,
    node: String,
    pub recorder: Arc<Recorder>,
    inflight: AtomicUsize,
    /// Set to true to abandon every request in flight (recorded as `cancelled`).
    cancel: tokio::sync::watch::Sender<bool>,
}

impl<P: Protocol> Issuer<P> {
    /// `connections` caps concurrent requests (each holds one connection while in flight).
    pub fn new(proto: P, connections: usize, timeout: Duration, node: String) -> Issuer<P> {
        Issuer {
            proto,
            pool: Mutex::new(HashMap::new()),
            permits: tokio::sync::Semaphore::new(connections.max(1)),
            timeout,
            node,
            recorder: Arc::new(Recorder::default()),
            inflight: AtomicUsize::new(0),
            cancel: tokio::sync::watch::Sender::new(false),
        }
    }

    pub fn protocol(&self) -> &P {
        &self.proto
    }

    /// Opens up to `n` idle connections to `authority` ahead of the start; returns how many.
    pub async fn warm(&self, authority: &str, n: usize) -> usize {
        let mut made = 0;
        for _ in 0..n {
            match self.proto.connect(authority).await {
                Ok(c) => {
                    self.put(authority, c);
                    made += 1;
                }
                Err(_) => break,
            }
        }
        made
    }

    fn take(&self, authority: &str) -> Option<P::Conn> {
        let mut pool = self.pool.lock().ok()?;
        let idle = pool.get_mut(authority)?;
        while let Some(c) = idle.pop() {
            if self.proto.reusable(&c) {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, authority: &str, conn: P::Conn) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.entry(authority.to_owned()).or_default().push(conn);
        }
    }

    /// Requests started and not finished.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Abandons every request in flight: each records itself as `cancelled`.
    pub fn cancel_all(&self) {
        self.cancel.send_replace(true);
    }

    /// Spawns `p` on `handle`, counted in flight from now.
    pub fn spawn(self: &Arc<Self>, handle: &tokio::runtime::Handle, p: Planned) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        handle.spawn(self.clone().issue(p));
    }

    /// Sends `p` and waits for its outcome (closed clients).
    pub async fn issue_now(self: Arc<Self>, p: Planned) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.issue(p).await;
    }

    /// Sends one request and records it (also when dropped unfinished: `cancelled`).
    /// The caller has counted it in flight.
    async fn issue(self: Arc<Self>, p: Planned) {
        let mut cancel = self.cancel.subscribe();
        tokio::select! {
            () = self.clone().attempt(p) => {}
            _ = cancel.wait_for(|c| *c) => {}
        }
    }

    async fn attempt(self: Arc<Self>, p: Planned) {
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _done = Done(&self.inflight);
        let mut pending = Pending::new(self.recorder.clone(), p.id, p.scheduled_ns, p.class, self.node.clone());
        let Ok(_permit) = self.permits.acquire().await else { return };
        let result = {
            let pending = &mut pending;
            let work = async {
                let mut conn = match self.take(&p.req.authority) {
                    Some(c) => c,
                    None => self.proto.connect(&p.req.authority).await?,
                };
                // Recorded in the guard at once, so a cancelled request keeps its dispatch.
                pending.dispatched(now_unix_ns());
                pending.connection(self.proto.local_port(&conn));
                let reply = self.proto.send(&mut conn, &p.req).await?;
                if self.proto.reusable(&conn) {
                    self.put(&p.req.authority, conn);
                }
                Ok::<_, ErrorKind>(reply)
            };
            tokio::time::timeout(self.timeout, work).await.unwrap_or(Err(ErrorKind::Timeout))
        };
        pending.finish(result);
    }
}

/// Where scheduled requests come from.
#[expect(clippy::large_enum_variant, reason = "one per run, never copied")]
pub enum Source {
    Rate(RateSource),
    Trace(TraceSource),
}

/// Requests at a rate with an inter-arrival pattern.
pub struct RateSource {
    arrivals: Arrivals,
    rate: f64,
    limit: Limit,
    start_ns: i64,
    /// Requests emitted.
    n: u64,
    /// Offset of the last emitted request, and of the one before it (for re-planning).
    last: u64,
    before_last: u64,
    target: Target,
    method: String,
    body: Bytes,
    /// Per-request operation and key (memcache), instead of `method`/`target.path`.
    mix: Option<Arc<Mix>>,
}

impl RateSource {
    #[expect(clippy::too_many_arguments, reason = "the open mode's flags, passed through")]
    pub fn new(
        shape: Shape,
        seed: u64,
        rate: f64,
        limit: Limit,
        start_ns: i64,
        target: Target,
        method: String,
        body: Bytes,
    ) -> RateSource {
        RateSource {
            arrivals: Arrivals::new(shape, seed),
            rate,
            limit,
            start_ns,
            n: 0,
            last: 0,
            before_last: 0,
            target,
            method,
            body,
            mix: None,
        }
    }

    /// Draws each request's operation and key from `mix`.
    #[must_use]
    pub fn with_mix(mut self, mix: Option<Arc<Mix>>) -> RateSource {
        self.mix = mix;
        self
    }

    fn next(&mut self) -> Option<Planned> {
        let offset =
            if self.n == 0 { 0 } else { self.last.saturating_add(self.arrivals.next_gap(self.rate, self.last)) };
        if !self.limit.admits(self.n, offset) {
            return None;
        }
        self.before_last = self.last;
        self.last = offset;
        let id = self.n;
        self.n += 1;
        Some(self.planned(id, offset))
    }

    fn planned(&self, id: u64, offset: u64) -> Planned {
        let scheduled_ns = self.start_ns + offset as i64;
        if let Some(mix) = &self.mix {
            let req = mix.request(id, &self.target.authority);
            return Planned { id, scheduled_ns, class: req.method.clone(), req };
        }
        let req = Request {
            method: self.method.clone(),
            authority: self.target.authority.clone(),
            path: self.target.path.clone(),
            body: self.body.clone(),
        };
        Planned { id, scheduled_ns, req, class: self.target.path.clone() }
    }

    /// Re-plans the pending (last emitted) request at the current rate, not before `now_ns`.
    fn replan(&mut self, p: Planned, now_ns: i64) -> Option<Planned> {
        if p.id == 0 {
            return Some(p);
        }
        let earliest = u64::try_from(now_ns - self.start_ns).unwrap_or(0);
        let offset = self.before_last.saturating_add(self.arrivals.next_gap(self.rate, self.before_last)).max(earliest);
        if !self.limit.admits(p.id, offset) {
            return None;
        }
        self.last = offset;
        Some(self.planned(p.id, offset))
    }
}

/// Requests of a trace (sorted by time).
pub struct TraceSource {
    events: Vec<Event>,
    idx: usize,
    target: Target,
    method: Option<String>,
    /// Requests are dispatched this much ahead of the trace's time (`timeAdjustmentMs`).
    adjust_ns: i64,
    /// Speed at the start and now (2 = twice as fast).
    initial_speed: f64,
    speed: f64,
    /// Trace time (ns) and absolute time (ns) of the last re-anchoring.
    anchor_t: f64,
    anchor_abs: i64,
    /// The trace's mean rate at the initial speed.
    pub base_rate: Option<f64>,
    /// A request's class is its method (the S3 mode's operation) instead of its path.
    class_by_method: bool,
}

impl TraceSource {
    /// `start_ns` is the absolute time of trace time 0.
    pub fn new(
        events: Vec<Event>,
        start_ns: i64,
        speed: f64,
        adjust_ms: f64,
        target: Target,
        method: Option<String>,
    ) -> TraceSource {
        let span_ms = events.last().map_or(0.0, |e| e.time) - events.first().map_or(0.0, |e| e.time);
        let base_rate =
            (events.len() > 1 && span_ms > 0.0).then(|| (events.len() - 1) as f64 / (span_ms / 1e3) * speed);
        TraceSource {
            events,
            idx: 0,
            target,
            method,
            adjust_ns: (adjust_ms * 1e6).round() as i64,
            initial_speed: speed,
            speed,
            anchor_t: 0.0,
            anchor_abs: start_ns,
            class_by_method: false,
            base_rate,
        }
    }

    fn scheduled(&self, e: &Event) -> i64 {
        self.anchor_abs + ((e.time * 1e6 - self.anchor_t) / self.speed).round() as i64 - self.adjust_ns
    }

    fn next(&mut self) -> Option<Planned> {
        let e = self.events.get(self.idx)?;
        self.idx += 1;
        let scheduled_ns = self.scheduled(e);
        let t = self.target.resolve(&e.endpoint).unwrap_or_else(|_| self.target.clone());
        let method = e.method.clone().or_else(|| self.method.clone()).unwrap_or_else(|| {
            if e.payload.is_empty() {
                "GET".into()
            } else {
                "POST".into()
            }
        });
        let class = if self.class_by_method { method.clone() } else { t.path.clone() };
        let req = Request { method, authority: t.authority, path: t.path, body: Bytes::from(e.payload.clone()) };
        Some(Planned { id: e.event_id, scheduled_ns, req, class })
    }

    /// Classes requests by their method (the S3 mode's operations) instead of their path.
    #[must_use]
    pub fn classed_by_method(mut self) -> TraceSource {
        self.class_by_method = true;
        self
    }

    fn set_rate(&mut self, rate: f64, now_ns: i64) {
        let Some(base) = self.base_rate else { return };
        let abs = now_ns + self.adjust_ns;
        self.anchor_t += (abs - self.anchor_abs) as f64 * self.speed;
        self.anchor_abs = abs;
        self.speed = self.initial_speed * rate / base;
    }

    fn replan(&mut self, mut p: Planned, now_ns: i64) -> Option<Planned> {
        let e = self.events.get(self.idx.checked_sub(1)?)?;
        p.scheduled_ns = self.scheduled(e).max(now_ns);
        Some(p)
    }
}

impl Source {
    fn next(&mut self) -> Option<Planned> {
        match self {
            Source::Rate(s) => s.next(),
            Source::Trace(s) => s.next(),
        }
    }

    /// The rate a `loadgen.ctl` change is compared with.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Source::Rate(s) => Some(s.rate),
            Source::Trace(s) => s.base_rate.map(|b| b * s.speed / s.initial_speed),
        }
    }

    fn set_rate(&mut self, rate: f64, now_ns: i64) {
        match self {
            Source::Rate(s) => s.rate = rate,
            Source::Trace(s) => s.set_rate(rate, now_ns),
        }
    }

    fn replan(&mut self, p: Planned, now_ns: i64) -> Option<Planned> {
        match self {
            Source::Rate(s) => s.replan(p, now_ns),
            Source::Trace(s) => s.replan(p, now_ns),
        }
    }
}

/// Watches `loadgen.ctl` (contract 4): `{"rate": F}` in requests/s.
pub struct Ctl {
    path: PathBuf,
    next_check_ns: i64,
    last_text: Option<String>,
}

const CTL_EVERY_NS: i64 = 100_000_000;

impl Ctl {
    pub fn new(path: PathBuf) -> Ctl {
        Ctl { path, next_check_ns: 0, last_text: None }
    }

    /// A new rate, when the file changed since the last look and holds a valid one.
    pub fn poll(&mut self, now_ns: i64) -> Option<f64> {
        if now_ns < self.next_check_ns {
            return None;
        }
        self.next_check_ns = now_ns + CTL_EVERY_NS;
        let text = std::fs::read_to_string(&self.path).ok()?;
        if self.last_text.as_deref() == Some(text.as_str()) {
            return None;
        }
        self.last_text = Some(text.clone());
        let rate = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("rate").and_then(serde_json::Value::as_f64));
        match rate {
            Some(r) if r.is_finite() && r > 0.0 => Some(r),
            _ => {
                tracing::warn!(path = %self.path.display(), content = %text.trim(), "ignoring control file: want {{\"rate\": F}} with F > 0");
                None
            }
        }
    }

    pub fn next_check_ns(&self) -> i64 {
        self.next_check_ns
    }
}

/// How the dispatcher waits.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Spin (instead of sleeping) this long before each start.
    pub spin_ns: u64,
    /// The control file; `None` disables run-time rate changes.
    pub ctl: Option<PathBuf>,
}

/// What the dispatcher did.
#[derive(Debug, Clone, Default)]
pub struct DispatchOutcome {
    pub issued: u64,
    pub rate_changes: u64,
    /// (virtual unix ns, new rate) of every change.
    pub rate_log: Vec<(i64, f64)>,
}

/// Walks `source`, spawning each request on `handle` at its scheduled time, until the
/// source ends or `stop` is set. Runs on its own thread.
pub fn dispatch<P: Protocol>(
    mut source: Source,
    issuer: Arc<Issuer<P>>,
    handle: &tokio::runtime::Handle,
    stop: &AtomicBool,
    cfg: &DispatchConfig,
) -> DispatchOutcome {
    // A precise wake-up: the default 50 µs slack would be most of the dispatch budget.
    if let Err(err) = nix::sys::prctl::set_timerslack(1) {
        tracing::debug!(%err, "could not lower the timer slack");
    }
    let mut ctl = cfg.ctl.clone().map(Ctl::new);
    let mut out = DispatchOutcome::default();
    let spin = cfg.spin_ns as i64;
    let mut pending = source.next();
    'requests: while let Some(mut p) = pending.take() {
        loop {
            if stop.load(Ordering::Acquire) {
                break 'requests;
            }
            let now = now_unix_ns();
            if let Some(new_rate) = ctl.as_mut().and_then(|c| c.poll(now)) {
                if source.rate() != Some(new_rate) {
                    tracing::info!(from = ?source.rate(), to = new_rate, "rate change");
                    source.set_rate(new_rate, now);
                    out.rate_changes += 1;
                    out.rate_log.push((now, new_rate));
                    match source.replan(p, now) {
                        Some(q) => p = q,
                        None => break 'requests,
                    }
                }
            }
            let remaining = p.scheduled_ns - now;
            if remaining <= 0 {
                break;
            }
            if remaining > spin {
                let mut nap = remaining - spin;
                if let Some(c) = ctl.as_ref() {
                    nap = nap.min((c.next_check_ns() - now).max(1_000_000));
                }
                std::thread::sleep(Duration::from_nanos(nap.min(CTL_EVERY_NS) as u64));
            } else {
                std::hint::spin_loop();
            }
        }
        issuer.spawn(handle, p);
        out.issued += 1;
        pending = source.next();
    }
    out
}

/// Runs the dispatcher to the end of its source or until `external_stop` resolves (SIGTERM,
/// SIGINT, a controller's stop), then waits for the requests in flight: up to `timeout` + 1 s after
/// a normal end, up to `drain` after a stop. Requests still in flight afterwards are
/// abandoned and recorded as `cancelled`.
pub fn run<P: Protocol>(
    rt: &tokio::runtime::Runtime,
    source: Source,
    issuer: Arc<Issuer<P>>,
    cfg: DispatchConfig,
    timeout: Duration,
    drain: Duration,
    external_stop: impl std::future::Future<Output = ()>,
) -> DispatchOutcome {
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = {
        let (issuer, stop, handle) = (issuer.clone(), stop.clone(), rt.handle().clone());
        std::thread::Builder::new().name("dispatch".into()).spawn(move || {
            let out = dispatch(source, issuer, &handle, &stop, &cfg);
            let _ = done_tx.send(());
            out
        })
    };
    let thread = match thread {
        Ok(t) => t,
        Err(err) => {
            tracing::error!(%err, "could not start the dispatcher thread");
            return DispatchOutcome::default();
        }
    };
    rt.block_on(async {
        tokio::pin!(external_stop);
        let stopped = tokio::select! {
            () = &mut external_stop => { tracing::info!("stopping"); true }
            _ = done_rx => false,
        };
        stop.store(true, Ordering::Release);
        let wait = if stopped { drain } else { timeout + Duration::from_secs(1) };
        let deadline = tokio::time::Instant::now() + wait;
        while issuer.inflight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = &mut external_stop, if !stopped => { tracing::info!("stopping while draining"); break; }
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        abandon(&issuer).await;
    });
    thread.join().unwrap_or_default()
}

/// Cancels what is still in flight and waits (briefly) until each has recorded itself.
pub async fn abandon<P: Protocol>(issuer: &Issuer<P>) {
    if issuer.inflight() == 0 {
        return;
    }
    tracing::warn!(inflight = issuer.inflight(), "requests still in flight are recorded as cancelled");
    issuer.cancel_all();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while issuer.inflight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::schedule::Pattern;

    fn target() -> Target {
        Target { authority: "h:1".into(), path: "/".into() }
    }

    #[test]
    fn rate_source_follows_the_plan_and_replans() {
        let limit = Limit { count: Some(5), duration_ns: None };
        let mut s = RateSource::new(
            Shape { pattern: Pattern::Uniform, ..Shape::default() },
            1,
            10.0,
            limit,
            1_000,
            target(),
            "GET".into(),
            Bytes::new(),
        );
        let a = s.next().unwrap();
        let b = s.next().unwrap();
        assert_eq!((a.scheduled_ns, b.scheduled_ns), (1_000, 100_001_000));
        s.rate = 100.0;
        let b2 = s.replan(b, 0).unwrap();
        assert_eq!(b2.scheduled_ns, 10_001_000);
        assert_eq!(s.next().unwrap().scheduled_ns, 20_001_000);
        // Never re-planned into the past.
        s.rate = 1000.0;
        let c = s.next().unwrap();
        assert_eq!(s.replan(c, 50_000_000).unwrap().scheduled_ns, 50_000_000);
    }

    #[test]
    fn trace_source_adjusts_and_changes_speed() {
        let ev = |id, time| Event {
            event_id: id,
            time,
            node_id: "0".into(),
            endpoint: "/e".into(),
            payload: String::new(),
            method: None,
        };
        let events = vec![ev(0, 0.0), ev(1, 100.0), ev(2, 200.0), ev(3, 300.0)];
        let mut s = TraceSource::new(events, 1_000_000_000, 1.0, 2.0, target(), None);
        assert_eq!(s.base_rate, Some(10.0));
        let a = s.next().unwrap();
        assert_eq!((a.id, a.scheduled_ns, a.req.method.as_str(), a.class.as_str()), (0, 998_000_000, "GET", "/e"));
        assert_eq!(s.next().unwrap().scheduled_ns, 1_098_000_000);
        // At trace time 100 ms, double the rate: the rest comes twice as fast.
        s.set_rate(20.0, 1_098_000_000);
        assert_eq!(s.next().unwrap().scheduled_ns, 1_148_000_000);
        assert_eq!(s.next().unwrap().scheduled_ns, 1_198_000_000);
    }

    #[test]
    fn ctl_file_changes_are_seen_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loadgen.ctl");
        let mut c = Ctl::new(path.clone());
        assert_eq!(c.poll(0), None);
        std::fs::write(&path, r#"{"rate": 500.0}"#).unwrap();
        assert_eq!(c.poll(50_000_000), None, "checked only every 100 ms");
        assert_eq!(c.poll(100_000_000), Some(500.0));
        assert_eq!(c.poll(300_000_000), None, "same content");
        std::fs::write(&path, r#"{"rate": -1}"#).unwrap();
        assert_eq!(c.poll(400_000_000), None);
        std::fs::write(&path, r#"{"rate": 20}"#).unwrap();
        assert_eq!(c.poll(500_000_000), Some(20.0));
    }

    #[test]
    fn dispatcher_keeps_the_plan_against_a_real_server() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        rt.spawn(crate::loadgen::http::serve(addr, Bytes::from_static(b"ok"), std::future::pending()));
        let issuer = Arc::new(Issuer::new(crate::loadgen::http::Http, 16, Duration::from_secs(5), "t".into()));
        let t = Target { authority: addr.to_string(), path: "/p".into() };
        let made = rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            issuer.warm(&t.authority, 2).await
        });
        assert_eq!(made, 2);
        let start = now_unix_ns() + 20_000_000;
        let limit = Limit { count: Some(100), duration_ns: None };
        let source =
            Source::Rate(RateSource::new(Shape::default(), 1, 200.0, limit, start, t, "GET".into(), Bytes::new()));
        let cfg = DispatchConfig { spin_ns: 50_000, ctl: None };
        let out = run(
            &rt,
            source,
            issuer.clone(),
            cfg,
            Duration::from_secs(5),
            Duration::from_secs(1),
            std::future::pending(),
        );
        assert_eq!(out.issued, 100);
        let records = issuer.recorder.take();
        assert_eq!(records.len(), 100);
        for r in &records {
            assert_eq!((r.status, r.error, r.bytes), (200, None, 2), "{r:?}");
            // Scheduled exactly on the plan: 5 ms apart from the start.
            assert_eq!((r.scheduled_ns - start) % 5_000_000, 0);
            assert!(r.dispatch_ns >= r.scheduled_ns && r.complete_ns >= r.dispatch_ns);
        }
    }

    #[test]
    fn a_stop_cancels_what_is_in_flight() {
        // A server that accepts and never answers: every request is in flight at the stop.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let issuer = Arc::new(Issuer::new(crate::loadgen::http::Http, 16, Duration::from_secs(30), "t".into()));
        let t = Target { authority: addr.to_string(), path: "/".into() };
        let limit = Limit { count: Some(3), duration_ns: None };
        let source = Source::Rate(RateSource::new(
            Shape::default(),
            1,
            100.0,
            limit,
            now_unix_ns(),
            t,
            "GET".into(),
            Bytes::new(),
        ));
        let cfg = DispatchConfig { spin_ns: 0, ctl: None };
        let stop = async { tokio::time::sleep(Duration::from_millis(200)).await };
        run(&rt, source, issuer.clone(), cfg, Duration::from_secs(30), Duration::from_millis(50), stop);
        let records = issuer.recorder.take();
        assert_eq!(records.len(), 3);
        assert!(records.iter().all(|r| r.error == Some(ErrorKind::Cancelled) && r.dispatch_ns != 0), "{records:?}");
    }

    #[test]
    fn refused_connections_are_connect_errors() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let issuer = Arc::new(Issuer::new(crate::loadgen::http::Http, 4, Duration::from_secs(5), "t".into()));
        let t = Target { authority: format!("127.0.0.1:{port}"), path: "/".into() };
        let limit = Limit { count: Some(2), duration_ns: None };
        let source = Source::Rate(RateSource::new(
            Shape::default(),
            1,
            100.0,
            limit,
            now_unix_ns(),
            t,
            "GET".into(),
            Bytes::new(),
        ));
        run(
            &rt,
            source,
            issuer.clone(),
            DispatchConfig { spin_ns: 0, ctl: None },
            Duration::from_secs(5),
            Duration::from_secs(1),
            std::future::pending(),
        );
        let records = issuer.recorder.take();
        assert_eq!(records.len(), 2);
        assert!(
            records.iter().all(|r| r.error == Some(ErrorKind::Connect) && r.dispatch_ns == 0 && r.status == 0),
            "{records:?}"
        );
    }
}
