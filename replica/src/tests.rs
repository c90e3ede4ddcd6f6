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
        notify,
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
        reconcile: Duration::from_secs(2),
        records: Some(dir.path().to_owned()),
        system: "lambda".into(),
    };
    let state = crate::state::State::open(&dir.path().join("state.db")).unwrap();
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
}
