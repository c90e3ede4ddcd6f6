//! Teardown work spread over threads: removing a thousand nodes' objects one after the
//! other waits on the kernel (RCU grace periods, journalled unlinks on the state disk) a
//! thousand times in a row; the waits overlap when several threads issue them.

/// Threads that tear down at once (the work waits on the kernel, it does not use CPU).
const THREADS: usize = 16;

/// Calls `f` on every item, on up to [`THREADS`] threads, and returns the results in the
/// items' order once every call has returned.
pub(crate) fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let per = items.len().div_ceil(THREADS).max(1);
    let mut items = items;
    let mut batches = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(per.min(items.len()));
        batches.push(std::mem::replace(&mut items, rest));
    }
    let f = &f;
    // Each batch waits in a slot: a thread that could not be spawned leaves its batch for
    // this thread to run.
    let slots: Vec<std::sync::Mutex<Option<Vec<T>>>> =
        batches.into_iter().map(|b| std::sync::Mutex::new(Some(b))).collect();
    let take = |slot: &std::sync::Mutex<Option<Vec<T>>>| -> Vec<R> {
        let batch = slot.lock().map(|mut s| s.take()).unwrap_or_default().unwrap_or_default();
        batch.into_iter().map(f).collect()
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = slots
            .iter()
            .map(|slot| std::thread::Builder::new().name("teardown".into()).spawn_scoped(scope, || take(slot)))
            .collect();
        handles
            .into_iter()
            .zip(&slots)
            .flat_map(|(h, slot)| match h {
                Ok(h) => h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => take(slot),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_item_is_mapped_once_in_order() {
        for n in [0, 1, 15, 16, 17, 1000] {
            let out = super::map((0..n).collect(), |i: usize| i * 2);
            assert_eq!(out, (0..n).map(|i| i * 2).collect::<Vec<_>>(), "{n} items");
        }
    }
}
