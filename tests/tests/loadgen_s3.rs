//! `diorama-loadgen s3` under `diorama run` (root, docs/loadgen.md "S3 mode"): a writer node
//! replays an object-write trace (PUT small and multipart, APPEND, COPY, MOVE, CONCAT,
//! DELETE) through the S3 client into a replica store node across the emulated network.
//!
//! Checked: the loadgen's records (every operation completed, the ETag it got is the one it
//! expected) and its own `--verify`; then, independently, the store's data directory served
//! again by the replica store on loopback after the run: every traced object's bytes
//! (recomputed from `(key, version)`) and ETag (computed here from those bytes and the layout
//! each row implies), the absence of removed keys, and a changelog record for each
//! COPY/MOVE/CONCAT/APPEND with its op, target, the target's ETag and its sources' ETags.
#![expect(clippy::unwrap_used, reason = "helpers of a test fail it loudly, like the test itself")]

use std::collections::BTreeMap;
use std::path::Path;

use diorama_tests::{artifact, diorama, leftovers, need_root, require, topology};
use futures::TryStreamExt;
use object_store::ObjectStore;
use workloads::loadgen::s3::model::{self, Model, Upload};
use workloads::loadgen::s3::trace;

const MIB: u64 = 1 << 20;
/// Multipart from 6 MiB on, in 5 MiB parts (S3's smallest).
const UPLOAD: Upload = Upload { threshold: 6 * MIB, part_size: 5 * MIB };

/// The trace: times in ms, 150 ms apart at most a few at once.
const TRACE: &str = "time,op,key,size,sources
0,PUT,a,1000,
150,PUT,big,13631488,
300,PUT,b,70000,
450,APPEND,a,2345,
600,COPY,c,,a
750,CONCAT,d,,a;b
900,CONCAT,e,,big;b
1050,MOVE,f,,b
1200,PUT,g,10,
1350,DELETE,g,,
1500,PUT,a,4096,
1650,APPEND,c,5000,
";

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| headers.iter().zip(rec.unwrap().iter()).map(|(h, v)| (h.to_owned(), v.to_owned())).collect())
        .collect()
}

/// Serves `root` with the replica store on a loopback port until dropped.
struct Store(std::process::Child, u16);

impl Store {
    fn start(root: &Path) -> Store {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(artifact("diorama-replica"))
            .args(["--role", "store", "--listen", &format!("127.0.0.1:{port}"), "--root"])
            .arg(root)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the store did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Store(child, port)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ETag S3 gives `bytes` in `layout`, computed here.
fn etag_of(bytes: &[u8], multipart: bool) -> String {
    if multipart {
        s3util::etag::multipart_of(bytes, (5 * MIB) as usize)
    } else {
        s3util::etag::single(bytes)
    }
}

#[test]
fn s3_mode_writes_every_traced_object_and_its_changelog() {
    require!("s3_mode_writes_every_traced_object_and_its_changelog", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let trace_path = tmp.path().join("writes.csv");
    std::fs::write(&trace_path, TRACE).unwrap();
    let yaml = format!(
        r#"
name: lgs3
tdf: auto
duration: 60s
defaults: {{cpus: 0.5, memory: 256MiB}}
switches: [sw]
nodes:
  - name: store
    run: {{workload: replica, args: {{role: store, listen: "0.0.0.0:9000", root: objects}}}}
    ready: {{tcp: 9000}}
    link: {{to: sw, rate: 1Gbit, delay: 2ms}}
  - name: writer
    main: true
    depends_on: [store]
    run: {{command: ["{loadgen}", "s3", "--endpoint", "http://store:9000", "--trace", "{trace}",
                    "--multipart-threshold", "6291456", "--part-size", "5242880", "--verify"]}}
    link: {{to: sw, rate: 1Gbit, delay: 2ms}}
"#,
        loadgen = artifact("diorama-loadgen").display(),
        trace = trace_path.display(),
    );
    let topo = topology(tmp.path(), "lgs3", &yaml);
    let out = tmp.path().join("out");
    let started = std::time::Instant::now();
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    println!("lgs3: {:.1} s wall", started.elapsed().as_secs_f64());
    let writer = out.join("nodes/writer");
    let verdict = std::fs::read_to_string(writer.join("s3_verify.json")).unwrap_or_default();
    println!("s3_verify.json: {verdict}");
    assert_eq!(r.code, Some(0), "{r:?}");

    // The loadgen's records: every operation completed, classed by operation, with the ETag
    // it expected.
    let rows = trace::read(&trace_path).unwrap();
    let requests = csv_rows(&writer.join("requests.csv"));
    assert_eq!(requests.len(), rows.len());
    assert!(requests.iter().all(|q| q["error"].is_empty() && q["status"] == "200"), "{requests:?}");
    let classes: std::collections::BTreeSet<&str> = requests.iter().map(|q| q["class"].as_str()).collect();
    assert_eq!(classes, ["APPEND", "CONCAT", "COPY", "DELETE", "MOVE", "PUT"].into_iter().collect());
    let ops = csv_rows(&writer.join("s3_ops.csv"));
    assert_eq!(ops.len(), rows.len());
    for o in &ops {
        assert!(o["error"].is_empty(), "{o:?}");
        assert_eq!(o["etag"], o["expected_etag"], "{o:?}");
    }
    let v: serde_json::Value = serde_json::from_str(&verdict).unwrap();
    assert_eq!(v["mismatched"], serde_json::json!([]), "{v}");
    assert_eq!(v["changelog_missing"], serde_json::json!([]), "{v}");
    assert_eq!((v["objects"].as_u64(), v["changelog_found"].as_u64()), (Some(6), Some(6)), "{v}");

    // Independently: the store's directory served again, read through the S3 client.
    let (_, model) = Model::plan(&rows, UPLOAD).unwrap();
    let keys: Vec<&str> = model.objects.keys().map(String::as_str).collect();
    assert_eq!(keys, ["a", "big", "c", "d", "e", "f"]);
    // Written in parts: `big` (13 MiB), `e` (big + b); `c` is a ~3 KiB APPEND result, `d` a
    // small CONCAT, `f` a move of the single-PUT `b`.
    let multipart = |k: &str| k == "big" || k == "e";
    let store = Store::start(&out.join("nodes/store/objects"));
    let s3 = s3util::client::connect(&s3util::client::Endpoint {
        url: format!("http://127.0.0.1:{}", store.1),
        bucket: "data".into(),
        region: "region-a".into(),
        access_key: "diorama".into(),
        secret_key: "diorama-secret".into(),
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut etags = BTreeMap::new();
        for (key, obj) in &model.objects {
            let got = s3.get(&object_store::path::Path::from(key.as_str())).await.unwrap();
            let etag = s3util::etag::normalize(got.meta.e_tag.as_deref().unwrap());
            let bytes = got.bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, obj.size(), "{key}");
            assert!(bytes[..] == obj.bytes()[..], "{key}: bytes differ");
            assert_eq!(etag, etag_of(&bytes, multipart(key)), "{key}");
            etags.insert(key.clone(), etag);
        }
        // `a`'s third version: its own stream of version 3.
        let mut a3 = vec![0u8; 4096];
        model::fill(model::seed("a", 3), 0, &mut a3);
        assert_eq!(model.objects["a"].bytes(), a3);
        for gone in ["b", "g"] {
            assert!(s3.head(&object_store::path::Path::from(gone)).await.is_err(), "{gone} should be gone");
        }
        // One changelog record per COPY/MOVE/CONCAT/APPEND, under its target's prefix.
        let listed: Vec<_> = s3.list(Some(&object_store::path::Path::from(".changelog"))).try_collect().await.unwrap();
        let mut records = Vec::new();
        for m in &listed {
            let body = s3.get(&m.location).await.unwrap().bytes().await.unwrap();
            let rec: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let name = m.location.as_ref().to_owned();
            let parts: Vec<&str> = name.split('/').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert_eq!(parts[1], rec["key"].as_str().unwrap(), "{name}: the target's prefix");
            assert_eq!(parts[2].len(), 20, "{name}: 20-digit ns");
            records.push(rec);
        }
        assert_eq!(records.len(), 6, "{records:?}");
        let find = |op: &str, key: &str| {
            records
                .iter()
                .find(|r| r["op"] == op && r["key"] == key)
                .unwrap_or_else(|| panic!("no {op} {key}: {records:?}"))
        };
        let q = |k: &str| format!("\"{}\"", etags[k]);
        // COPY c ← a (a's version 2, which c held until its APPEND): the copy's ETag is a's.
        let mut a2 = Model::default();
        for row in &rows[..4] {
            a2.apply(row, UPLOAD).unwrap();
        }
        let a2_etag = format!("\"{}\"", s3util::etag::single(&a2.objects["a"].bytes()));
        let copy = find("COPY", "c");
        assert_eq!((copy["etag"].as_str(), copy["sources"][0]["key"].as_str()), (Some(a2_etag.as_str()), Some("a")));
        assert_eq!(copy["sources"][0]["etag"].as_str(), Some(a2_etag.as_str()));
        assert!(copy.get("append").is_none());
        // CONCAT e = big + b: a multipart result, sources in order with their ETags.
        let concat = find("CONCAT", "e");
        assert_eq!(concat["etag"].as_str(), Some(q("e").as_str()));
        assert!(q("e").ends_with("-3\""), "{}", q("e"));
        assert_eq!(concat["sources"][0]["key"], "big");
        assert_eq!(concat["sources"][0]["etag"].as_str(), Some(q("big").as_str()));
        assert_eq!(concat["sources"][1]["key"], "b");
        assert_eq!(concat["sources"][1]["etag"].as_str(), Some(q("f").as_str()), "b moved to f unchanged");
        assert_eq!(find("CONCAT", "d")["etag"].as_str(), Some(q("d").as_str()));
        // MOVE f ← b.
        let mv = find("MOVE", "f");
        assert_eq!(
            (mv["etag"].as_str(), mv["sources"][0]["etag"].as_str()),
            (Some(q("f").as_str()), Some(q("f").as_str()))
        );
        // APPEND c: offset = the old object's bytes, length = the row's size.
        let app = find("APPEND", "c");
        assert_eq!(app["etag"].as_str(), Some(q("c").as_str()));
        assert_eq!(app["sources"][0]["key"], "c");
        assert_eq!(app["sources"][0]["etag"].as_str(), Some(a2_etag.as_str()));
        assert_eq!(app["append"], serde_json::json!({"offset": 3345, "length": 5000}));
        let app_a = find("APPEND", "a");
        assert_eq!(app_a["append"], serde_json::json!({"offset": 1000, "length": 2345}));
        assert_eq!(app_a["etag"].as_str(), Some(a2_etag.as_str()));
    });
    drop(store);
    let mine: Vec<String> = leftovers().into_iter().filter(|l| l.contains("lgs3")).collect();
    assert!(mine.is_empty(), "{mine:?}");
}
