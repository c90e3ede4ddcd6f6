//! Rust probe for libdilation.so: std and tokio timers, same line protocol as probe.c.

use std::io::Write;
use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn check(name: &str, req: Duration, f: impl FnOnce()) {
    println!("B {name}");
    let _ = std::io::stdout().flush();
    let t0 = Instant::now();
    f();
    let dt = t0.elapsed();
    println!("E {name} {} {}", req.as_nanos(), dt.as_nanos());
    let _ = std::io::stdout().flush();
}

fn main() {
    let ms: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let req = Duration::from_millis(ms);
    check("thread::sleep", req, || std::thread::sleep(req));
    check("Instant", req, || {
        let t = Instant::now();
        while t.elapsed() < req {
            // Short steps: the overshoot of this loop is at most one step.
            std::thread::sleep(Duration::from_micros(100));
        }
    });
    check("Condvar::wait_timeout", req, || {
        let pair = (Mutex::new(false), Condvar::new());
        let guard = pair.0.lock().expect("probe set-up");
        let _ = pair.1.wait_timeout(guard, req).expect("probe set-up");
    });
    check("mpsc::recv_timeout", req, || {
        let (_tx, rx) = mpsc::channel::<()>();
        let _ = rx.recv_timeout(req);
    });
    // tokio's timer wheel rounds deadlines up to the next millisecond (natively too), so its
    // checks use a request long enough that 2% covers that rounding.
    let req = req.max(Duration::from_millis(100));
    for (flavor, rt) in [
        ("current_thread", tokio::runtime::Builder::new_current_thread().enable_all().build().expect("probe set-up")),
        (
            "multi_thread",
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("probe set-up"),
        ),
    ] {
        check(&format!("tokio::sleep[{flavor}]"), req, || rt.block_on(async { tokio::time::sleep(req).await }));
        check(&format!("tokio::interval[{flavor}]"), req * 3, || {
            rt.block_on(async {
                let mut i = tokio::time::interval(req);
                for _ in 0..4 {
                    i.tick().await; // the first tick is immediate
                }
            })
        });
        check(&format!("tokio::timeout[{flavor}]"), req, || {
            rt.block_on(async {
                let _ = tokio::time::timeout(req, std::future::pending::<()>()).await;
            })
        });
    }
    let t0 = Instant::now();
    let mut last = t0;
    for _ in 0..10_000 {
        let now = Instant::now();
        if now < last {
            println!("BACK Instant");
        }
        last = now;
    }
    println!("DONE");
}
