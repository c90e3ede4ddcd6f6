//! In-process tests over loopback: a real store served by `s3s`, the real S3 client, the
//! coordinator with in-process instances.

use crate::client::{connect, Endpoint};
use crate::etag;
use crate::event::Notification;
use crate::planner::Dist;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn start_store(root: &std::path::Path, region: &str, notify: Option<String>) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cfg = crate::server::Config {
        root: root.to_owned(),
        region: region.into(),
        access_key: "ak".into(),
        secret_key: "sk".into(),
        buckets: vec!["data".into()],
        notify: notify.into_iter().collect(),
    };
    tokio::spawn(crate::server::serve(cfg, listener));
    Endpoint { url, bucket: "data".into(), region: region.into(), access_key: "ak".into(), secret_key: "sk".into() }
}

/// An event receiver that keeps every body.
async fn start_sink() -> (String, Arc<Mutex<Vec<Notification>>>) {
    let got: Arc<Mutex<Vec<Notification>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |axum::Json(n): axum::Json<Notification>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(n);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_speaks_s3_with_s3_etags_and_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, got) = start_sink().await;
    let ep = start_store(dir.path(), "eu-1", Some(sink)).await;
    let s3 = connect(&ep).unwrap();

    // Single PUT: the MD5 of the body.
    let small = Path::from("a/small");
    let put = s3.put(&small, PutPayload::from(b"hello world".to_vec())).await.unwrap();
    assert_eq!(put.e_tag.as_deref().map(etag::normalize).as_deref(), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));

    // Multipart: MD5 of the part MD5s, "-N".
    let big = Path::from("a/big");
    let data = body(11 << 20, 1);
    let mut up = WriteMultipart::new_with_chunk_size(s3.put_multipart(&big).await.unwrap(), 5 << 20);
    up.write(&data);
    up.finish().await.unwrap();
    let head = s3.head(&big).await.unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.e_tag.as_deref().map(etag::normalize), Some(etag::multipart_of(&data, 5 << 20)));

    // GET with a range.
    let range = GetOptions { range: Some(GetRange::Bounded(100..200)), ..Default::default() };
    let part = s3.get_opts(&big, range).await.unwrap().bytes().await.unwrap();
    assert_eq!(&part[..], &data[100..200]);

    // CopyObject and ListObjectsV2.
    let copy = Path::from("b/copy");
    s3.copy(&small, &copy).await.unwrap();
    assert_eq!(&s3.get(&copy).await.unwrap().bytes().await.unwrap()[..], b"hello world");
    let listed = s3.list_with_delimiter(Some(&Path::from("a"))).await.unwrap();
    let mut names: Vec<String> = listed.objects.iter().map(|o| o.location.to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["a/big", "a/small"]);
    // The listing carries each object's S3 ETag, as S3's does.
    let tags: std::collections::BTreeMap<String, crate::state::Listed> =
        crate::coordinator::listing(&ep).await.unwrap();
    assert_eq!(tags["a/small"].etag.as_deref(), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));
    assert_eq!(tags["a/big"].etag, Some(etag::multipart_of(&data, 5 << 20)));
    assert_eq!(tags["a/big"].size, data.len() as u64);

    // DELETE.
    s3.delete(&small).await.unwrap();
    assert!(matches!(s3.head(&small).await, Err(object_store::Error::NotFound { .. })));

    // One event per mutation, in order, in the AWS shape.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events: Vec<_> = got.lock().unwrap().iter().flat_map(|n| n.records.clone()).collect();
    let names: Vec<(&str, &str)> = events.iter().map(|r| (r.event_name.as_str(), r.s3.object.key.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ("ObjectCreated:Put", "a/small"),
            ("ObjectCreated:CompleteMultipartUpload", "a/big"),
            ("ObjectCreated:Copy", "b/copy"),
            ("ObjectRemoved:Delete", "a/small"),
        ]
    );
    assert_eq!(events[1].s3.object.size, Some(data.len() as u64));
    assert_eq!(events[1].s3.object.e_tag, Some(etag::multipart_of(&data, 5 << 20)));
    assert_eq!(events[0].aws_region, "eu-1");
    let seqs: Vec<u64> = events.iter().map(|r| r.sequence().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_converges_on_the_latest_versions() {
    replication_converges(None).await;
}

/// The same with the coordinator's state in PostgreSQL: its blocking calls run inside the
/// coordinator's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_converges_with_the_state_in_postgres() {
    let test = "replication_converges_with_the_state_in_postgres";
    let server = match crate::state::pgtest::Server::start() {
        Ok(s) => s,
        Err(crate::state::pgtest::Skip(reason)) => {
            println!("SKIPPED: {test}: {reason}");
            return;
        }
    };
    replication_converges(Some(server.schema("loopback"))).await;
}

/// The writer's mix through a coordinator whose state is SQLite (`None`) or PostgreSQL (a URL).
async fn replication_converges(state_db: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let coord = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let coord_addr = coord.local_addr().unwrap();
    drop(coord);
    let src = start_store(&dir.path().join("src"), "region-a", Some(format!("http://{coord_addr}/events"))).await;
    let dst = start_store(&dir.path().join("dst"), "region-b", None).await;
    let (threshold, part_size) = (12u64 << 20, 5u64 << 20);
    let cfg = crate::coordinator::Config {
        listen: coord_addr,
        url: format!("http://{coord_addr}"),
        src: src.clone(),
        dst: dst.clone(),
        platforms: vec![("region-a".into(), None), ("region-b".into(), None)],
        threshold,
        part_size,
        max_instances: 4,
        lease: Duration::from_secs(5),
        start_grace: Duration::from_secs(30),
        slo: Duration::from_secs(1),
        models: vec![
            crate::coordinator::model("region-a", &Dist::Const(0.05), &Dist::Const(0.1), 5e6, 1 << 20),
            crate::coordinator::model("region-b", &Dist::Const(0.05), &Dist::Const(0.1), 5e6, 1 << 20),
        ],
        fitting: crate::fit::Fitting { window: 200, min_samples: 4 },
        reconcile: Duration::from_secs(2),
        records: Some(dir.path().to_owned()),
        system: crate::coordinator::System::Lambda,
        assignment: crate::coordinator::Assignment::Pool,
        fee: None,
        changelog: true,
        batching: false,
        batch_margin: Duration::from_millis(200),
    };
    let state = match &state_db {
        Some(url) => crate::state::State::connect(url).unwrap(),
        None => crate::state::State::open(&dir.path().join("state.db")).unwrap(),
    };
    tokio::spawn(crate::coordinator::serve(cfg, state));

    // Writes: overwrites of hot keys, a large object in parts (replicated through the pool),
    // a large object overwritten while it may be copying, deletes.
    let params = crate::writer::Params {
        ops: 40,
        keys: 10,
        hot: 2,
        small_max: 64 << 10,
        large_size: 16 << 20,
        large_every: 13,
        delete_every: 7,
        part_size: 5 << 20,
        pause: Duration::from_millis(5),
        seed: 7,
        hint_every: 0,
        hint_settle: Duration::ZERO,
    };
    let written = crate::writer::run(&src, &params).await.unwrap();
    assert!(written.multipart >= 2 && written.deletes >= 4, "{written:?}");
    // One large object that stays: the destination must hold it as a multipart copy.
    let big = body(16 << 20, 9);
    connect(&src).unwrap().put(&Path::from("big/one"), PutPayload::from(big)).await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let verdict = loop {
        let v = crate::verify::compare(&src, &dst, threshold, part_size).await.unwrap();
        if v.ok() || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(verdict.ok(), "{verdict:?}");
    assert!(verdict.source_objects > 0);
    // The large object went through the part pool: its destination ETag is multipart.
    let head = connect(&dst).unwrap().head(&Path::from("big/one")).await.unwrap();
    let tag = head.e_tag.as_deref().map(etag::normalize).unwrap_or_default();
    assert!(tag.ends_with("-4"), "16 MiB in 5 MiB parts: {tag}");
    // Its record counts the whole object, not the completing instance's own parts.
    let records = std::fs::read_to_string(dir.path().join("replication.jsonl")).unwrap();
    let big_one: Vec<serde_json::Value> = records
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["record"] == "replicated" && r["key"] == "big/one")
        .collect();
    assert!(!big_one.is_empty(), "{records}");
    for r in &big_one {
        assert_eq!((r["bytes"].as_u64(), r["wan_bytes"].as_u64()), (Some(16 << 20), Some(16 << 20)), "{r}");
        assert!(!r["writes"].as_array().unwrap().is_empty() && r["system"] == "lambda", "{r}");
    }
    // The planner plans with what the copies measured: the coordinator records, per region,
    // the model in force (written once a second when it changed).
    let models = fitted_models(dir.path()).await;
    let total = |kind: &str| models.iter().map(|m| m[kind]["total"].as_u64().unwrap()).sum::<u64>();
    assert!(total("invoke") > 0 && total("setup") > 0 && total("per_chunk") > 0, "{models:?}");
    let m = models.iter().find(|m| m["setup"]["source"] == "fitted").unwrap_or_else(|| panic!("{models:?}"));
    assert!(m["setup"]["samples"].as_u64().unwrap() >= 4 && m["setup"]["dist"]["kind"] == "lognormal", "{m}");
    assert_eq!(m["invoke"]["source"], "fitted", "{m}");
    // In this process there is no platform, so no ready delay: D measured is 0.
    assert_eq!(m["ready"]["dist"], serde_json::json!({"kind": "const", "value": 0.0}), "{m}");
}

/// The last `model` record of each region, once one has a fitted term (at most 10 s).
async fn fitted_models(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("replication.jsonl")).unwrap_or_default();
        let mut last = std::collections::BTreeMap::new();
        for r in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
            if r["record"] == "model" {
                last.insert(r["region"].as_str().unwrap_or_default().to_owned(), r);
            }
        }
        let models: Vec<serde_json::Value> = last.into_values().collect();
        let fitted = models.iter().any(|m| m["setup"]["source"] == "fitted" && m["invoke"]["source"] == "fitted");
        if fitted || std::time::Instant::now() > deadline {
            return models;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two stores (no notifications) and a client of each.
async fn two_stores(
    dir: &std::path::Path,
) -> (Endpoint, Endpoint, object_store::aws::AmazonS3, object_store::aws::AmazonS3) {
    let src = start_store(&dir.join("src"), "region-a", None).await;
    let dst = start_store(&dir.join("dst"), "region-b", None).await;
    let (s, d) = (connect(&src).unwrap(), connect(&dst).unwrap());
    (src, dst, s, d)
}

/// PUTs `body` to `store` at `key`; its ETag.
async fn put(store: &object_store::aws::AmazonS3, key: &str, body: &[u8]) -> String {
    let r = store.put(&Path::from(key), PutPayload::from(body.to_vec())).await.unwrap();
    etag::normalize(r.e_tag.as_deref().unwrap())
}

/// Writes `body` in parts of `part` bytes; its ETag.
async fn put_parts(store: &object_store::aws::AmazonS3, key: &str, body: &[u8], part: usize) -> String {
    let mut up = WriteMultipart::new_with_chunk_size(store.put_multipart(&Path::from(key)).await.unwrap(), part);
    up.write(body);
    up.finish().await.unwrap();
    etag::normalize(store.head(&Path::from(key)).await.unwrap().e_tag.as_deref().unwrap())
}

async fn get(store: &object_store::aws::AmazonS3, key: &str) -> Option<(Vec<u8>, String)> {
    match store.get(&Path::from(key)).await {
        Ok(g) => {
            let tag = etag::normalize(g.meta.e_tag.as_deref().unwrap());
            Some((g.bytes().await.unwrap().to_vec(), tag))
        }
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

const LAYOUT: (u64, u64) = (6 << 20, 5 << 20);

/// A copy task of `system` for version `etag` (`size` bytes) of `key` between two stores.
fn version_task(
    key: &str,
    system: &str,
    (src, dst): (&Endpoint, &Endpoint),
    etag: &str,
    size: u64,
) -> crate::task::Task {
    crate::task::Task {
        etag: Some(etag.into()),
        size,
        src: src.clone(),
        dst: dst.clone(),
        lease_ms: 5_000,
        ..crate::task::test_task(key, system)
    }
}

/// Applies `hint` for the target's version `etag` of `size` bytes, the expected destination
/// ETags of its sources computed as the coordinator does from `held`.
async fn apply(
    src: &Endpoint,
    dst: &Endpoint,
    hint: &crate::changelog::Hint,
    held: &[Option<crate::changelog::Held>],
    etag: &str,
    size: u64,
) -> (crate::task::Applied, crate::task::Meter) {
    let expect: Vec<Vec<String>> =
        hint.sources.iter().zip(held).map(|(s, h)| crate::changelog::expected_dst_etags(&s.etag, h.clone())).collect();
    let task = version_task(&hint.key, "lambda", (src, dst), etag, size);
    let (s, d) = (connect(src).unwrap(), connect(dst).unwrap());
    let path = Path::from(hint.key.as_str());
    let (http, held_lock, meter, throttle) = (
        reqwest::Client::new(),
        std::sync::atomic::AtomicBool::new(true),
        crate::task::Meter::default(),
        crate::task::Throttle::new(None),
    );
    let ctx = crate::task::Copying {
        task: &task,
        src: &s,
        dst: &d,
        path: &path,
        http: &http,
        held: &held_lock,
        m: &meter,
        throttle: &throttle,
    };
    let applied = crate::task::apply_hint(&ctx, hint, &expect, LAYOUT).await.unwrap();
    (applied, meter)
}

fn hint(op: crate::changelog::Op, key: &str, etag: &str, sources: &[(&str, &str)]) -> crate::changelog::Hint {
    let sources =
        sources.iter().map(|(k, e)| crate::changelog::Source { key: (*k).into(), etag: (*e).into() }).collect();
    crate::changelog::Hint { op, key: key.into(), etag: etag.into(), sources, append: None }
}

fn wan(a: &crate::task::Applied) -> u64 {
    match a {
        crate::task::Applied::Done { wan_bytes, .. } => *wan_bytes,
        crate::task::Applied::Refused(why) => panic!("refused: {why}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hint_builds_its_target_at_the_destination_from_what_is_there() {
    use crate::changelog::{Append, Op};
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, s, d) = two_stores(dir.path()).await;
    // Sources replicated already: two small objects, and a large one written at the source in
    // 6 MiB parts that the destination holds in its own layout (5 MiB parts): other ETags.
    let (a, b, big) = (body(3 << 20, 1), body(4 << 20, 2), body(9 << 20, 3));
    let (ea, eb) = (put(&s, "a", &a).await, put(&s, "b", &b).await);
    assert_eq!((put(&d, "a", &a).await, put(&d, "b", &b).await), (ea.clone(), eb.clone()));
    let src_big = put_parts(&s, "big", &big, 6 << 20).await;
    let dst_big = put_parts(&d, "big", &big, 5 << 20).await;
    assert_ne!(src_big, dst_big);
    let held_big = Some((Some(src_big.clone()), Some(dst_big.clone())));

    // COPY: a server-side copy at the destination; no byte crosses the WAN.
    s.copy(&Path::from("a"), &Path::from("c1")).await.unwrap();
    let (r, m) = apply(&src, &dst, &hint(Op::Copy, "c1", &ea, &[("a", &ea)]), &[None], &ea, a.len() as u64).await;
    assert_eq!((wan(&r), m.bytes.load(std::sync::atomic::Ordering::Relaxed)), (0, 0));
    assert_eq!(get(&d, "c1").await.unwrap(), (a.clone(), ea.clone()));
    // MOVE of the large object: matched through the state's record of its copy.
    s.copy(&Path::from("big"), &Path::from("m1")).await.unwrap();
    let h = hint(Op::Move, "m1", &src_big, &[("big", &src_big)]);
    let (r, _) = apply(&src, &dst, &h, std::slice::from_ref(&held_big), &src_big, big.len() as u64).await;
    assert_eq!(wan(&r), 0);
    assert_eq!(get(&d, "m1").await.unwrap(), (big.clone(), dst_big.clone()));

    // CONCAT: built from the destination's copies, in the destination's layout (7 MiB is over
    // the 6 MiB threshold: two parts of 5 MiB and 2 MiB).
    let ab: Vec<u8> = [a.clone(), b.clone()].concat();
    let eab = put(&s, "cat", &ab).await;
    let h = hint(Op::Concat, "cat", &eab, &[("a", &ea), ("b", &eb)]);
    let (r, _) = apply(&src, &dst, &h, &[None, None], &eab, ab.len() as u64).await;
    assert_eq!(wan(&r), 0);
    assert_eq!(get(&d, "cat").await.unwrap(), (ab.clone(), etag::for_layout(&ab, LAYOUT.0, LAYOUT.1)));

    // APPEND: only the appended range is read from the source.
    let tail = body(1000, 4);
    let grown: Vec<u8> = [b.clone(), tail.clone()].concat();
    let eg = put(&s, "b", &grown).await;
    let mut h = hint(Op::Append, "b", &eg, &[("b", &eb)]);
    h.append = Some(Append { offset: b.len() as u64, length: tail.len() as u64 });
    let (r, m) = apply(&src, &dst, &h, &[None], &eg, grown.len() as u64).await;
    assert_eq!((wan(&r), m.bytes.load(std::sync::atomic::Ordering::Relaxed)), (1000, 1000));
    assert_eq!(get(&d, "b").await.unwrap(), (grown.clone(), etag::single(&grown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_whose_check_fails_is_refused_before_anything_is_written() {
    use crate::changelog::{Append, Op};
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, s, d) = two_stores(dir.path()).await;
    let (a, a2) = (body(1000, 1), body(1000, 2));
    let (ea, ea2) = (put(&s, "a", &a).await, etag::single(&a2));
    put(&d, "a", &a2).await; // the destination holds another version of the source
    let refused = |r: crate::task::Applied| match r {
        crate::task::Applied::Refused(why) => why,
        crate::task::Applied::Done { .. } => panic!("applied"),
    };
    // ETag mismatch at the destination.
    let h = hint(Op::Copy, "t", &ea, &[("a", &ea)]);
    let why = refused(apply(&src, &dst, &h, &[None], &ea, 1000).await.0);
    assert!(why.contains(&ea2) && why.contains("hint needs"), "{why}");
    // A source missing at the destination.
    let h = hint(Op::Concat, "t", &ea, &[("missing", &ea)]);
    let why = refused(apply(&src, &dst, &h, &[None], &ea, 1000).await.0);
    assert!(why.contains("not at the destination"), "{why}");
    // A hint of another version of the target than the one being copied.
    let h = hint(Op::Copy, "t", &ea, &[("a", &ea2)]);
    let why = refused(apply(&src, &dst, &h, &[None], &ea2, 1000).await.0);
    assert!(why.contains("the hint is for"), "{why}");
    // A hint whose sources check out but whose result is not the target's bytes.
    let h = hint(Op::Concat, "t", &ea, &[("a", &ea2)]);
    let why = refused(apply(&src, &dst, &h, &[None], &ea, 1000).await.0);
    assert!(why.contains("MD5"), "{why}");
    // An APPEND whose old version at the destination is not as long as the hint says.
    let mut h = hint(Op::Append, "a", &ea, &[("a", &ea2)]);
    h.append = Some(Append { offset: 10, length: 990 });
    let why = refused(apply(&src, &dst, &h, &[None], &ea, 1000).await.0);
    assert!(why.contains("appends at 10"), "{why}");
    assert!(get(&d, "t").await.is_none(), "nothing was written");
    assert_eq!(get(&d, "a").await.unwrap().0, a2);
}

/// The coordinator of `src` → `dst` in this process (its tasks too), with `batching`.
async fn coordinator(dir: &std::path::Path, batching: bool, slo: Duration) -> (Endpoint, Endpoint) {
    coordinator_with(dir, slo, |cfg| cfg.batching = batching).await
}

/// The coordinator of `src` → `dst` in this process, its configuration changed by `tweak`.
async fn coordinator_with(
    dir: &std::path::Path,
    slo: Duration,
    tweak: impl FnOnce(&mut crate::coordinator::Config),
) -> (Endpoint, Endpoint) {
    let coord = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let coord_addr = coord.local_addr().unwrap();
    drop(coord);
    let src = start_store(&dir.join("src"), "region-a", Some(format!("http://{coord_addr}/events"))).await;
    let dst = start_store(&dir.join("dst"), "region-b", None).await;
    let model = |r: &str| crate::coordinator::model(r, &Dist::Const(0.05), &Dist::Const(0.1), 5e6, 1 << 20);
    let cfg = crate::coordinator::Config {
        listen: coord_addr,
        url: format!("http://{coord_addr}"),
        src: src.clone(),
        dst: dst.clone(),
        platforms: vec![("region-a".into(), None), ("region-b".into(), None)],
        threshold: LAYOUT.0,
        part_size: LAYOUT.1,
        max_instances: 4,
        lease: Duration::from_secs(5),
        start_grace: Duration::from_secs(30),
        slo,
        models: vec![model("region-a"), model("region-b")],
        fitting: crate::fit::Fitting::default(),
        reconcile: Duration::from_secs(2),
        records: Some(dir.to_owned()),
        system: crate::coordinator::System::Lambda,
        assignment: crate::coordinator::Assignment::Pool,
        fee: None,
        changelog: true,
        batching: false,
        batch_margin: Duration::from_millis(200),
    };
    let mut cfg = cfg;
    tweak(&mut cfg);
    let state = crate::state::State::open(&dir.join("state.db")).unwrap();
    tokio::spawn(crate::coordinator::serve(cfg, state));
    (src, dst)
}

async fn converged(src: &Endpoint, dst: &Endpoint) -> crate::verify::Verdict {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = crate::verify::compare(src, dst, LAYOUT.0, LAYOUT.1).await.unwrap();
        if v.ok() || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn replicated(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("replication.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["record"] == "replicated")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hinted_operations_replicate_without_their_bytes_and_a_late_record_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = coordinator(dir.path(), false, Duration::from_secs(5)).await;
    let params = crate::writer::Params {
        ops: 24,
        keys: 8,
        hot: 0,
        small_max: 256 << 10,
        large_size: 0,
        large_every: 0,
        delete_every: 0,
        part_size: 5 << 20,
        pause: Duration::from_millis(150),
        seed: 3,
        hint_every: 2,
        hint_settle: Duration::ZERO,
    };
    let written = crate::writer::run(&src, &params).await.unwrap();
    assert!(written.hinted.len() == 4, "every op was issued: {written:?}");
    // A COPY whose record is written after it: no hint when its copy starts; bytes it is.
    let s = connect(&src).unwrap();
    let e = put(&s, "late/src", &body(50_000, 5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.copy(&Path::from("late/src"), &Path::from("late/dst")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h = hint(crate::changelog::Op::Copy, "late/dst", &e, &[("late/src", &e)]);
    let record = Path::parse(crate::changelog::record_key("late/dst", 1)).unwrap();
    s.put(&record, PutPayload::from(h.to_body())).await.unwrap();

    let verdict = converged(&src, &dst).await;
    assert!(verdict.ok(), "{verdict:?}");
    // The records are never replicated as objects.
    use futures::TryStreamExt;
    let keys: Vec<String> =
        connect(&dst).unwrap().list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
    assert!(keys.iter().all(|k| !k.starts_with(".changelog")), "{keys:?}");
    let records = replicated(dir.path());
    let hinted: Vec<&serde_json::Value> = records.iter().filter(|r| r["via"] != "bytes").collect();
    let refused: Vec<&serde_json::Value> = records.iter().filter_map(|r| r.get("hint_refused")).collect();
    println!("written {written:?}; applied {} hint(s); refused {refused:?}", hinted.len());
    assert!(!hinted.is_empty(), "{records:?}");
    for r in &hinted {
        assert!(r["wan_bytes"].as_u64().unwrap() < r["bytes"].as_u64().unwrap(), "{r}");
    }
    let late: Vec<&serde_json::Value> = records.iter().filter(|r| r["key"] == "late/dst").collect();
    assert!(!late.is_empty() && late.iter().all(|r| r["via"] == "bytes"), "{late:?}");
    let (bytes, wan): (u64, u64) = records
        .iter()
        .map(|r| (r["bytes"].as_u64().unwrap(), r["wan_bytes"].as_u64().unwrap()))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    assert!(wan < bytes, "{wan} WAN bytes of {bytes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_copies_a_hot_key_once_for_its_writes_within_the_slo() {
    let dir = tempfile::tempdir().unwrap();
    let slo = Duration::from_secs(3);
    let (src, dst) = coordinator(dir.path(), true, slo).await;
    let s = connect(&src).unwrap();
    // Five writes 100 ms apart: the hold (about 3 − 0.4 − 0.2 s) outlasts them all.
    for i in 0..5u8 {
        put(&s, "hot", &body(10_000, i)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verdict = converged(&src, &dst).await;
    assert!(verdict.ok(), "{verdict:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hot: Vec<serde_json::Value> = replicated(dir.path()).into_iter().filter(|r| r["key"] == "hot").collect();
    assert_eq!(hot.len(), 1, "one copy: {hot:?}");
    assert_eq!((hot[0]["writes"].as_array().unwrap().len(), hot[0]["coalesced"].as_u64()), (5, Some(4)), "{hot:?}");
    // Each write has its own delay sample; the first waited longest and still met the SLO.
    let delays: Vec<f64> =
        hot[0]["writes"].as_array().unwrap().iter().map(|w| w["delay_s"].as_f64().unwrap()).collect();
    assert!(delays.windows(2).all(|w| w[0] >= w[1]), "{delays:?}");
    assert!(delays[0] > 1.5 && delays[0] <= slo.as_secs_f64(), "held towards the deadline: {delays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_baseline_copies_whole_objects_after_its_delay_and_records_its_fee() {
    let dir = tempfile::tempdir().unwrap();
    let fee = crate::task::Fee { per_object: 0.01, per_gb: 0.015, per_request: 5e-6, per_egress_gb: 0.02 };
    let (src, dst) = coordinator_with(dir.path(), Duration::from_secs(10), |cfg| {
        cfg.system = crate::coordinator::System::Provider { delay: Dist::Const(0.4) };
        cfg.fee = Some(fee);
    })
    .await;
    let s = connect(&src).unwrap();
    put(&s, "small", &body(100_000, 1)).await;
    // Over the threshold: still one copier, in the destination's layout (parts one by one).
    let big = body(11 << 20, 2);
    put_parts(&s, "big", &big, 5 << 20).await;
    let verdict = converged(&src, &dst).await;
    assert!(verdict.ok() && verdict.source_objects == 2, "{verdict:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = replicated(dir.path());
    for key in ["small", "big"] {
        let r = records.iter().find(|r| r["key"] == key).unwrap_or_else(|| panic!("{key}: {records:?}"));
        assert_eq!((r["system"].as_str(), r["instances"].as_u64()), (Some("provider"), Some(1)), "{r}");
        assert!(r["predicted_s"].is_null() && r["via"] == "bytes", "no plan, no hint: {r}");
        // The delay before the copy starts is in every write's delay.
        let delays: Vec<f64> = r["writes"].as_array().unwrap().iter().map(|w| w["delay_s"].as_f64().unwrap()).collect();
        assert!(!delays.is_empty() && delays.iter().all(|d| *d >= 0.4), "{r}");
        // The fee: per object, per GB, per request (at least a GET and a PUT), egress.
        let bytes = r["bytes"].as_u64().unwrap() as f64;
        let floor = 0.01 + 0.015 * bytes / 1e9 + 2.0 * 5e-6 + 0.02 * bytes / 1e9;
        let cost = r["cost_usd"].as_f64().unwrap();
        assert!(cost >= floor - 1e-12 && cost < floor + 10.0 * 5e-6, "{cost} vs {floor}: {r}");
    }
    let tag = connect(&dst).unwrap().head(&Path::from("big")).await.unwrap().e_tag.unwrap();
    assert!(etag::normalize(&tag).ends_with("-3"), "11 MiB in 5 MiB parts: {tag}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_assignment_gives_each_planned_instance_its_run_of_parts() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = coordinator_with(dir.path(), Duration::from_secs(3), |cfg| {
        cfg.assignment = crate::coordinator::Assignment::Static;
    })
    .await;
    let s = connect(&src).unwrap();
    // 21 MiB in 5 MiB parts: 5 parts; at 5 MB/s one instance cannot meet 3 s.
    let big = body(21 << 20, 3);
    put(&s, "big", &big).await;
    let verdict = converged(&src, &dst).await;
    assert!(verdict.ok(), "{verdict:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = replicated(dir.path());
    let r = records.iter().find(|r| r["key"] == "big").unwrap_or_else(|| panic!("{records:?}"));
    // Nobody claims under static assignment: the upload completed only because every planned
    // instance copied its own run.
    assert!(r["instances"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["wan_bytes"].as_u64(), Some(21 << 20), "{r}");
    let tag = connect(&dst).unwrap().head(&Path::from("big")).await.unwrap().e_tag.unwrap();
    assert!(etag::normalize(&tag).ends_with("-5"), "{tag}");
}

/// The provider's streamed copy of `key` for a task of version `etag`: (ETag served, bytes
/// copied, destination ETag).
async fn stream(
    src: &Endpoint,
    dst: &Endpoint,
    key: &str,
    etag: &str,
    size: u64,
) -> (Option<String>, u64, Option<String>) {
    let task = version_task(key, "provider", (src, dst), etag, size);
    let (s, d) = (connect(src).unwrap(), connect(dst).unwrap());
    let path = Path::from(key);
    let (held, m, throttle) =
        (std::sync::atomic::AtomicBool::new(true), crate::task::Meter::default(), crate::task::Throttle::new(None));
    let parts =
        crate::task::Parts { task: &task, src: &s, dst: &d, path: &path, held: &held, m: &m, throttle: &throttle };
    crate::task::stream_parts(parts, size, LAYOUT.1).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_copy_writes_the_layout_and_stops_at_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, s, d) = two_stores(dir.path()).await;
    let big = body(12 << 20, 7);
    let tag = put_parts(&s, "big", &big, 6 << 20).await;
    // Part by part in 5 MiB parts: the destination's ETag is the layout's, not the source's.
    let (seen, n, dst_tag) = stream(&src, &dst, "big", &tag, big.len() as u64).await;
    let want = s3util::etag::for_layout(&big, LAYOUT.0, LAYOUT.1);
    assert_eq!((seen.as_deref(), n, dst_tag.as_deref()), (Some(tag.as_str()), big.len() as u64, Some(want.as_str())));
    assert_eq!(get(&d, "big").await.unwrap(), (big.clone(), want));
    // A task of an older version: the first part's GET serves another ETag; nothing is
    // written and the upload is abandoned.
    let (seen, n, dst_tag) = stream(&src, &dst, "big", "0123456789abcdef0123456789abcdef-2", big.len() as u64).await;
    assert_eq!((seen, n, dst_tag), (Some(tag), 0, None));
    // The source gone: no ETag served.
    s.delete(&Path::from("big")).await.unwrap();
    let (seen, n, dst_tag) = stream(&src, &dst, "big", "x", big.len() as u64).await;
    assert_eq!((seen, n, dst_tag), (None, 0, None));
}
