//! The VM-style baseline over loopback with real processes: two stores, the coordinator
//! with `--system vm`, and a VM pool whose VMs are `diorama-replica --role vm` processes (the
//! pool re-runs its own executable), to a second bucket of the destination store.
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use replica::client::{connect, Endpoint};
use std::time::{Duration, Instant};

/// Children killed when the test ends, passed or not.
struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `diorama-replica` with `args` (split at whitespace) in `dir`.
fn spawn(procs: &mut Procs, dir: &std::path::Path, args: &str) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_diorama-replica"))
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(child);
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn endpoint(port: u16, bucket: &str, region: &str) -> Endpoint {
    Endpoint {
        url: format!("http://127.0.0.1:{port}"),
        bucket: bucket.into(),
        region: region.into(),
        access_key: "diorama".into(),
        secret_key: "diorama-secret".into(),
    }
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vm_baseline_copies_on_provisioned_vms_kept_alive_and_billed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |name: &str| {
        let p = tmp.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (src_port, dst_port, coord_port, pool_port) = (port(), port(), port(), port());
    let coord = format!("http://127.0.0.1:{coord_port}");
    let mut procs = Procs(Vec::new());
    let (src_dir, dst_dir, coord_dir, pool_dir) = (d("src"), d("dst"), d("coord"), d("pool"));
    let at = |p: u16| format!("127.0.0.1:{p}");
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let (src_at, dst_at, pool_at, coord_at) = (at(src_port), at(dst_port), at(pool_port), at(coord_port));
    let (src_url, dst_url, pool_url) = (url(src_port), url(dst_port), url(pool_port));
    spawn(&mut procs, &src_dir, &format!("--role store --listen {src_at} --root objects --notify {coord}/events"));
    spawn(
        &mut procs,
        &dst_dir,
        &format!("--role store --listen {dst_at} --root objects --region region-b --buckets dst-vm"),
    );
    spawn(
        &mut procs,
        &pool_dir,
        &format!("--role vm-pool --listen {pool_at} --provision 0.3 --keep-alive 1 --max-vms 2 --price-vm-hour 3600"),
    );
    spawn(
        &mut procs,
        &coord_dir,
        &format!(
            "--role coordinator --listen {coord_at} --coordinator-url {coord} --root state --src {src_url} \
             --dst {dst_url} --dst-bucket dst-vm --src-platform {pool_url} --system vm --streams 3 --threshold 6291456 \
             --part-size 5242880 --slo 10 --reconcile 1 --price-request 0.001 --price-egress-gb 0.02"
        ),
    );
    for p in [src_port, dst_port, pool_port, coord_port] {
        wait_listening(p);
    }
    let (src, dst) = (endpoint(src_port, "data", "region-a"), endpoint(dst_port, "dst-vm", "region-b"));
    let s = connect(&src).unwrap();
    for i in 0..4u8 {
        let body: Vec<u8> = (0..50_000u32).map(|b| (b as u8).wrapping_add(i)).collect();
        s.put(&Path::from(format!("small/{i}")), PutPayload::from(body)).await.unwrap();
    }
    // 16 MiB: 4 parts, copied by one VM in 3 streams.
    let big: Vec<u8> = (0..16u32 << 20).map(|b| (b.wrapping_mul(7) >> 3) as u8).collect();
    s.put(&Path::from("big"), PutPayload::from(big)).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let verdict = loop {
        let v = replica::verify::compare(&src, &dst, 6 << 20, 5 << 20).await.unwrap();
        if v.ok() || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(verdict.ok() && verdict.source_objects == 5, "{verdict:?}");
    // The default bucket of the destination got nothing: the VM baseline wrote to its own.
    let other = connect(&endpoint(dst_port, "data", "region-b")).unwrap();
    assert!(matches!(other.head(&Path::from("big")).await, Err(object_store::Error::NotFound { .. })));

    // Idle past the keep-alive: every VM is shut down and its life billed.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let records = lines(&coord_dir.join("replication.jsonl"));
    let copies: Vec<&serde_json::Value> = records.iter().filter(|r| r["record"] == "replicated").collect();
    assert!(copies.len() >= 5, "{records:?}");
    for r in &copies {
        assert_eq!((r["system"].as_str(), r["instances"].as_u64()), (Some("vm"), Some(1)), "{r}");
        // Requests and egress, at the coordinator's prices.
        assert!(r["cost_usd"].as_f64().unwrap() >= 0.002, "{r}");
    }
    let jobs = lines(&pool_dir.join("vm-jobs.jsonl"));
    assert!(jobs.iter().all(|j| j["ok"] == true), "{jobs:?}");
    let provisioned = jobs.iter().filter(|j| j["provisioned"] == true).count();
    // Five copies on at most two VMs at a time: VMs were reused.
    assert!(provisioned >= 1 && jobs.len() > provisioned, "{jobs:?}");
    let costs: Vec<serde_json::Value> =
        lines(&pool_dir.join("replication.jsonl")).into_iter().filter(|r| r["record"] == "cost").collect();
    let shut: usize = costs.iter().filter(|c| c["what"].as_str().unwrap().contains("shutdown")).count();
    assert_eq!(shut, provisioned, "every VM shut down after the keep-alive: {costs:?}");
    // At a dollar a VM-second: at least provisioning and the keep-alive of each VM.
    let usd: f64 = costs.iter().map(|c| c["usd"].as_f64().unwrap()).sum();
    assert!(usd >= provisioned as f64 * 1.3, "{usd}: {costs:?}");
}
