use super::*;

/// Opens states of one backend for one scenario: `open` its database (again: a reopen, or
/// another connection), `fresh` another empty one.
pub trait Backend: Sync {
    fn open(&self) -> State;
    fn fresh(&self) -> State;
}

/// SQLite files in a temporary directory.
struct Lite {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
}

impl Lite {
    fn new() -> Lite {
        Lite { dir: tempfile::tempdir().unwrap(), next: std::sync::atomic::AtomicUsize::new(0) }
    }
}

impl Backend for Lite {
    fn open(&self) -> State {
        State::open(&self.dir.path().join("state.db")).unwrap()
    }

    fn fresh(&self) -> State {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        State::open(&self.dir.path().join(format!("fresh-{n}.db"))).unwrap()
    }
}

/// Schemas of a throwaway PostgreSQL server, one per scenario.
struct PgSchema<'a> {
    server: &'a super::pgtest::Server,
    url: String,
    prefix: String,
    next: std::sync::atomic::AtomicUsize,
}

impl Backend for PgSchema<'_> {
    fn open(&self) -> State {
        State::connect(&self.url).unwrap()
    }

    fn fresh(&self) -> State {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        State::connect(&self.server.schema(&format!("{}_{n}", self.prefix))).unwrap()
    }
}

fn v(key: &str, seq: u64, etag: &str) -> Version {
    Version { key: key.into(), seq, etag: Some(etag.into()), size: 10, deleted: false }
}

fn older_events_change_nothing(db: &dyn Backend) {
    let mut s = db.open();
    assert!(s.observe(&v("k", 5, "e5")).unwrap());
    assert!(!s.observe(&v("k", 3, "e3")).unwrap());
    assert!(!s.observe(&v("k", 5, "e5")).unwrap());
    let pending = s.pending(0, 10).unwrap();
    assert_eq!(pending, vec![v("k", 5, "e5")]);
}

fn lock_then_release_marks_done(db: &dyn Backend) {
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    let got = s.lock("k", "w1", 0, 1000).unwrap().unwrap();
    assert_eq!(s.lock("k", "w2", 10, 1010).unwrap(), None, "a live lease excludes others");
    assert_eq!(s.pending(10, 10).unwrap(), vec![]);
    assert_eq!(s.release("k", "w1", got.seq, got.etag.as_deref()).unwrap(), Release::Done);
    assert!(s.converged().unwrap());
}

fn new_version_during_copy_forces_re_replication(db: &dyn Backend) {
    // Interleaving: w1 locks v1, a write lands v2, w1 finishes copying v1.
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    let got = s.lock("k", "w1", 0, 1000).unwrap().unwrap();
    s.observe(&v("k", 2, "b")).unwrap();
    assert_eq!(s.release("k", "w1", got.seq, got.etag.as_deref()).unwrap(), Release::Stale);
    assert!(!s.converged().unwrap());
    let again = s.lock("k", "w1", 1, 1001).unwrap().unwrap();
    assert_eq!((again.seq, again.etag.as_deref()), (2, Some("b")));
    assert_eq!(s.release("k", "w1", 2, Some("b")).unwrap(), Release::Done);
    assert!(s.converged().unwrap());
}

fn copy_that_saw_another_etag_is_not_done(db: &dyn Backend) {
    // The source served a different ETag than the event named (it changed before its event
    // arrived): the copy must not count.
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    s.lock("k", "w1", 0, 1000).unwrap().unwrap();
    assert_eq!(s.release("k", "w1", 1, Some("zzz")).unwrap(), Release::Stale);
    assert!(!s.converged().unwrap());
}

fn expired_lease_is_taken_over_and_the_old_holder_loses(db: &dyn Backend) {
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    s.lock("k", "w1", 0, 100).unwrap().unwrap();
    assert!(s.lock("k", "w2", 50, 150).unwrap().is_none());
    let got = s.lock("k", "w2", 101, 300).unwrap().unwrap();
    assert!(!s.renew("k", "w1", 400).unwrap());
    assert_eq!(s.release("k", "w1", 1, Some("a")).unwrap(), Release::Lost);
    assert_eq!(s.release("k", "w2", got.seq, got.etag.as_deref()).unwrap(), Release::Done);
}

fn every_interleaving_of_two_writes_and_one_copy_converges(db: &dyn Backend) {
    // Steps: observe v1 (always first), then in every order: observe v2, lock, release of
    // what was locked. Whatever the order, a copy is recorded done only for the latest
    // version, and replicating after that converges on v2.
    let orders: [[u8; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    for order in orders {
        let mut s = db.fresh();
        s.observe(&v("k", 1, "a")).unwrap();
        let mut locked: Option<Version> = None;
        let mut released = false;
        let mut latest = 1;
        for step in order {
            match step {
                0 => {
                    s.observe(&v("k", 2, "b")).unwrap();
                    latest = 2;
                }
                1 => locked = s.lock("k", "w", 0, 1000).unwrap(),
                _ => {
                    if let Some(l) = &locked {
                        let r = s.release("k", "w", l.seq, l.etag.as_deref()).unwrap();
                        assert_eq!(r == Release::Done, l.seq == latest, "order {order:?}");
                        released = true;
                    }
                }
            }
        }
        if locked.is_some() && !released {
            let l = locked.take().unwrap();
            s.release("k", "w", l.seq, l.etag.as_deref()).unwrap();
        }
        while let Some(l) = s.lock("k", "w", 0, 1000).unwrap() {
            assert_eq!(s.release("k", "w", l.seq, l.etag.as_deref()).unwrap(), Release::Done);
        }
        assert!(s.converged().unwrap(), "order {order:?}");
        assert_eq!(s.lock("k", "w", 0, 1000).unwrap(), None);
    }
}

fn pool_covers_the_object_and_the_last_report_is_unique(db: &dyn Backend) {
    let mut s = db.open();
    assert_eq!(s.fill_pool("u", 25, 10).unwrap(), 3);
    let mut lens = Vec::new();
    for w in ["w1", "w2", "w3"] {
        let p = s.claim("u", w, 0, 1000).unwrap().unwrap();
        lens.push((p.offset, p.len));
    }
    assert_eq!(s.claim("u", "w4", 0, 1000).unwrap(), None);
    assert_eq!(lens, vec![(0, 10), (10, 10), (20, 5)]);
    assert_eq!(s.finish_part("u", 2, "w2", "e2").unwrap(), Some(false));
    assert_eq!(s.finish_part("u", 2, "w1", "e2").unwrap(), None, "only the claimer reports a part");
    assert_eq!(s.finish_part("u", 1, "w1", "e1").unwrap(), Some(false));
    assert_eq!(s.finish_part("u", 3, "w3", "e3").unwrap(), Some(true));
    assert_eq!(s.finished_parts("u").unwrap(), vec![(1, "e1".into()), (2, "e2".into()), (3, "e3".into())]);
}

fn a_claim_repeated_after_its_answer_was_lost_gets_the_same_part(db: &dyn Backend) {
    // The coordinator committed the claim and was killed before answering; the instance
    // asks again. Before: it got the next part, and the first stayed claimed (and renewed
    // by its heartbeat) with nobody copying it.
    let mut s = db.open();
    s.fill_pool("u", 20, 10).unwrap();
    let first = s.claim("u", "w", 0, 1000).unwrap().unwrap();
    assert_eq!(s.claim("u", "w", 10, 1010).unwrap(), Some(first.clone()));
    assert_eq!(s.claim("u", "other", 10, 1010).unwrap().unwrap().number, 2);
    assert_eq!(s.finish_part("u", 1, "w", "e1").unwrap(), Some(false));
    assert_eq!(s.claim("u", "w", 20, 1020).unwrap(), None, "a finished part is not handed out again");
}

fn a_report_repeated_after_its_answer_was_lost_gets_the_same_answer(db: &dyn Backend) {
    // The coordinator committed the last part's report and was killed before answering;
    // the instance reports again. Before: the repeat answered `None`, so nobody completed
    // the upload and the object was copied again once the job's lease ran out.
    let mut s = db.open();
    s.fill_pool("u", 20, 10).unwrap();
    s.claim("u", "a", 0, 1000).unwrap().unwrap();
    s.claim("u", "b", 0, 1000).unwrap().unwrap();
    assert_eq!(s.finish_part("u", 1, "a", "e1").unwrap(), Some(false));
    assert_eq!(s.finish_part("u", 2, "b", "e2").unwrap(), Some(true));
    assert_eq!(s.finish_part("u", 2, "b", "e2").unwrap(), Some(true), "the completer is told again");
    assert_eq!(s.finish_part("u", 1, "a", "e1").unwrap(), Some(false), "a repeat never makes a second completer");
    assert_eq!(s.finish_part("u", 2, "a", "e2").unwrap(), None, "not a's part");
    assert_eq!(s.finish_part("u", 2, "b", "other").unwrap(), None, "not the bytes b reported");
}

#[test]
fn a_state_file_without_the_part_answers_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE parts (upload TEXT NOT NULL, number INTEGER NOT NULL, offset INTEGER NOT NULL,
             len INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0, owner TEXT, lease_until INTEGER, etag TEXT,
             PRIMARY KEY (upload, number));",
        )
        .unwrap();
    }
    let mut s = State::open(&path).unwrap();
    s.fill_pool("u", 10, 10).unwrap();
    s.claim("u", "w", 0, 1000).unwrap().unwrap();
    assert_eq!(s.finish_part("u", 1, "w", "e").unwrap(), Some(true));
    drop(s);
    assert_eq!(State::open(&path).unwrap().finish_part("u", 1, "w", "e").unwrap(), Some(true));
}

fn abandoned_claim_is_reclaimed_and_its_late_report_ignored(db: &dyn Backend) {
    let mut s = db.open();
    s.fill_pool("u", 10, 10).unwrap();
    let p = s.claim("u", "dead", 0, 100).unwrap().unwrap();
    assert_eq!(s.claim("u", "live", 50, 150).unwrap(), None);
    let again = s.claim("u", "live", 101, 300).unwrap().unwrap();
    assert_eq!(again.number, p.number);
    assert_eq!(s.finish_part("u", 1, "dead", "x").unwrap(), None);
    assert_eq!(s.finish_part("u", 1, "live", "y").unwrap(), Some(true));
}

fn concurrent_claimers_on_eight_connections_take_each_part_once(db: &dyn Backend) {
    // Eight threads, each with its own connection to one database, race for 64 parts.
    db.open().fill_pool("u", 64 * 4, 4).unwrap();
    let results: Vec<(Vec<u32>, u32)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || {
                    let mut s = db.open();
                    let owner = format!("w{i}");
                    let (mut mine, mut lasts) = (Vec::new(), 0);
                    while let Some(p) = s.claim("u", &owner, 0, u64::MAX / 4).unwrap() {
                        if s.finish_part("u", p.number, &owner, "e").unwrap() == Some(true) {
                            lasts += 1;
                        }
                        mine.push(p.number);
                    }
                    (mine, lasts)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = Vec::new();
    let mut lasts = 0;
    for (mine, l) in results {
        all.extend(mine);
        lasts += l;
    }
    all.sort_unstable();
    assert_eq!(all, (1..=64).collect::<Vec<u32>>());
    assert_eq!(lasts, 1, "exactly one instance completes the upload");
}

fn listed(etag: &str, size: u64) -> Listed {
    Listed { etag: Some(etag.into()), size }
}

fn done(s: &mut State, key: &str, dst_etag: &str) {
    let l = s.lock(key, "w", 0, 10).unwrap().unwrap();
    assert_eq!(s.release_copy(key, "w", l.seq, l.etag.as_deref(), Some(dst_etag)).unwrap().outcome, Release::Done);
}

fn reconcile_records_a_source_object_whose_event_was_lost_and_a_late_event_still_wins(db: &dyn Backend) {
    let mut s = db.open();
    let before = s.snapshot(0).unwrap();
    let src = BTreeMap::from([("k".to_owned(), listed("a", 10))]);
    let r = s.reconcile(&before, &src, &BTreeMap::new(), 0).unwrap();
    assert_eq!(r, Repairs { unseen: 1, ..Default::default() });
    assert_eq!(s.pending(0, 10).unwrap(), vec![Version { seq: 0, ..v("k", 0, "a") }]);
    // The lost event turns up late: its sequencer is above 0, so it is the latest.
    assert!(s.observe(&v("k", 7, "a")).unwrap());
    done(&mut s, "k", "a");
    assert!(s.converged().unwrap());
}

fn reconcile_replicates_again_a_done_key_the_destination_lost_or_holds_stale(db: &dyn Backend) {
    // A copy whose lease was taken over writes late (or a restarted destination lost it):
    // the table says done, the destination disagrees.
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    s.observe(&v("gone", 2, "g")).unwrap();
    done(&mut s, "k", "a");
    done(&mut s, "gone", "g");
    let src = BTreeMap::from([("k".to_owned(), listed("a", 10)), ("gone".to_owned(), listed("g", 10))]);
    let good = BTreeMap::from([("k".to_owned(), listed("a", 10)), ("gone".to_owned(), listed("g", 10))]);
    let before = s.snapshot(100).unwrap();
    assert!(!s.reconcile(&before, &src, &good, 100).unwrap().any(), "in sync: nothing to repair");
    let bad = BTreeMap::from([("k".to_owned(), listed("old", 10))]);
    let before = s.snapshot(100).unwrap();
    assert_eq!(s.reconcile(&before, &src, &bad, 100).unwrap(), Repairs { drifted: 2, ..Default::default() });
    let mut lagging: Vec<String> = s.pending(100, 10).unwrap().into_iter().map(|v| v.key).collect();
    lagging.sort();
    assert_eq!(lagging, vec!["gone", "k"]);
}

fn reconcile_corrects_the_latest_version_and_a_copy_of_the_old_one_releases_stale(db: &dyn Backend) {
    // The source changed and its event is lost: the copy locked for the old ETag must not
    // count even though its report names the ETag the source now serves.
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    let l = s.lock("k", "w", 0, 1000).unwrap().unwrap();
    let before = s.snapshot(10).unwrap();
    let src = BTreeMap::from([("k".to_owned(), listed("b", 20))]);
    assert_eq!(s.reconcile(&before, &src, &BTreeMap::new(), 10).unwrap().corrected, 1);
    assert_eq!(s.release_copy("k", "w", l.seq, Some("b"), Some("b")).unwrap().outcome, Release::Stale);
    let again = s.lock("k", "w", 20, 1000).unwrap().unwrap();
    assert_eq!((again.seq, again.etag.as_deref(), again.size), (1, Some("b"), 20));
    // A source delete whose event is lost also corrects the key.
    assert_eq!(s.release_copy("k", "w", 1, Some("b"), Some("b")).unwrap().outcome, Release::Done);
    let before = s.snapshot(30).unwrap();
    assert_eq!(s.reconcile(&before, &BTreeMap::new(), &src, 30).unwrap().corrected, 1);
    assert!(s.pending(30, 10).unwrap()[0].deleted);
}

fn reconcile_yields_to_an_event_or_a_copy_that_came_in_after_the_snapshot(db: &dyn Backend) {
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    done(&mut s, "k", "a");
    let before = s.snapshot(0).unwrap();
    // After the snapshot a newer version arrives: the listing's view must not overwrite it.
    s.observe(&v("k", 2, "c")).unwrap();
    let src = BTreeMap::from([("k".to_owned(), listed("b", 10))]);
    assert!(!s.reconcile(&before, &src, &BTreeMap::new(), 0).unwrap().any());
    assert_eq!(s.pending(0, 10).unwrap(), vec![v("k", 2, "c")]);
    // A key held by a live copy is not judged by its destination.
    let mut s = db.fresh();
    s.observe(&v("k", 1, "a")).unwrap();
    done(&mut s, "k", "a");
    s.exec_raw("UPDATE objects SET lock_owner = 'x', lock_until = 1000").unwrap();
    let before = s.snapshot(0).unwrap();
    let src = BTreeMap::from([("k".to_owned(), listed("a", 10))]);
    assert!(!s.reconcile(&before, &src, &BTreeMap::new(), 0).unwrap().any());
}

fn renewed_claims_outlive_their_first_lease(db: &dyn Backend) {
    let mut s = db.open();
    s.fill_pool("u", 10, 10).unwrap();
    s.claim("u", "slow", 0, 100).unwrap().unwrap();
    assert_eq!(s.renew_claims("u", "slow", 500).unwrap(), 1);
    assert_eq!(s.claim("u", "other", 200, 300).unwrap(), None, "a renewed claim is not taken over");
    assert_eq!(s.finish_part("u", 1, "slow", "e").unwrap(), Some(true));
}

fn a_restarted_coordinator_resumes_the_copies_under_way(db: &dyn Backend) {
    // Before the kill: a copy holds k (lease until 100) and a part claim (until 100). The
    // coordinator comes back at 200. Before: the lease had lapsed, so the dispatch loop took
    // k over at once, fencing the copy that was about to finish.
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    s.observe(&v("idle", 1, "b")).unwrap();
    s.lock("k", "old", 0, 100).unwrap().unwrap();
    s.fill_pool("u", 20, 10).unwrap();
    s.claim("u", "old-0", 0, 100).unwrap().unwrap();
    assert_eq!(s.resume_leases(205).unwrap(), 1, "only held locks");
    assert_eq!(s.lock("k", "new", 200, 300).unwrap(), None, "the copy under way keeps its key");
    assert_eq!(s.claim("u", "new-0", 200, 300).unwrap().unwrap().number, 2, "and its part");
    assert_eq!(s.pending(200, 10).unwrap(), vec![v("idle", 1, "b")]);
    assert!(s.renew("k", "old", 400).unwrap(), "its renewals reach the new process");
    assert_eq!(s.release("k", "old", 1, Some("a")).unwrap(), Release::Done);
    // A copy that never comes back loses the key one lease later.
    s.observe(&v("k", 2, "c")).unwrap();
    s.lock("k", "gone", 500, 600).unwrap().unwrap();
    s.resume_leases(700).unwrap();
    assert!(s.lock("k", "next", 701, 800).unwrap().is_some());
}

fn a_lock_whose_copy_was_never_invoked_lapses_one_lease_after_a_restart(db: &dyn Backend) {
    // The coordinator locked k with its start grace (lease 100 + grace 3,000) and was killed
    // before it invoked the instance: nothing will ever renew or release the lock. Before, the
    // restart kept the grace and k waited until 3,100 (the writer of the replica kill test
    // gave up first); now it is taken again one lease after the restart.
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    s.lock("k", "never-invoked", 0, 3_100).unwrap().unwrap();
    assert_eq!(s.resume_leases(300).unwrap(), 1);
    assert_eq!(s.lock("k", "early", 250, 400).unwrap(), None, "held for one lease");
    assert!(s.lock("k", "next", 301, 400).unwrap().is_some(), "then taken again");
}

fn a_copy_covers_its_write_and_every_older_one_and_each_is_timed(db: &dyn Backend) {
    let mut s = db.open();
    s.observe_at(&v("k", 1, "a"), Some(1_000)).unwrap();
    s.observe_at(&v("k", 2, "b"), Some(1_500)).unwrap();
    let l = s.lock("k", "w", 1_600, 9_000).unwrap().unwrap();
    assert_eq!(l.seq, 2, "only the newest version is copied");
    // An old event arriving late is still a write the destination lacks.
    s.observe_at(&v("k", 1, "a"), Some(1_000)).unwrap();
    assert_eq!(s.oldest_pending("k").unwrap(), Some(1_000));
    let r = s.release_copy("k", "w", 2, Some("b"), Some("b")).unwrap();
    assert_eq!(r.outcome, Release::Done);
    let got: Vec<(u64, u64)> = r.writes.iter().map(|w| (w.seq, w.event_ms)).collect();
    assert_eq!(got, [(1, 1_000), (2, 1_500)]);
    assert_eq!(s.oldest_pending("k").unwrap(), None, "nothing pending");
    // A repeated event of a version the destination holds is no write.
    s.observe_at(&v("k", 2, "b"), Some(1_500)).unwrap();
    assert_eq!(s.oldest_pending("k").unwrap(), None);
    // A stale release covers nothing.
    s.observe_at(&v("k", 3, "c"), Some(2_000)).unwrap();
    let l = s.lock("k", "w", 2_000, 9_000).unwrap().unwrap();
    s.observe_at(&v("k", 4, "d"), Some(2_100)).unwrap();
    let r = s.release_copy("k", "w", l.seq, l.etag.as_deref(), None).unwrap();
    assert_eq!((r.outcome, r.writes.len()), (Release::Stale, 0));
    assert_eq!(s.oldest_pending("k").unwrap(), Some(2_000));
}

fn a_write_past_its_slo_is_flagged_once_and_its_late_copy_says_so(db: &dyn Backend) {
    let mut s = db.open();
    s.observe_at(&v("k", 1, "a"), Some(1_000)).unwrap();
    s.observe_at(&v("k", 2, "b"), Some(2_500)).unwrap();
    s.observe_at(&v("other", 1, "x"), Some(2_900)).unwrap();
    assert_eq!(s.overdue(2_999, 2_000).unwrap(), vec![], "nothing past 2 s yet");
    let o = s.overdue(3_001, 2_000).unwrap();
    assert_eq!(o, vec![Overdue { key: "k".into(), seqs: vec![1], oldest_ms: 1_000 }]);
    assert_eq!(s.overdue(3_100, 2_000).unwrap(), vec![], "flagged once");
    let o = s.overdue(5_000, 2_000).unwrap();
    let keys: Vec<(&str, &[u64])> = o.iter().map(|o| (o.key.as_str(), o.seqs.as_slice())).collect();
    assert_eq!(keys, [("k", &[2][..]), ("other", &[1][..])]);
    let l = s.lock("k", "w", 5_000, 9_000).unwrap().unwrap();
    let r = s.release_copy("k", "w", l.seq, l.etag.as_deref(), None).unwrap();
    assert!(r.writes.iter().all(|w| w.flagged) && r.writes.len() == 2, "{r:?}");
}

fn a_failed_copy_backs_off_and_a_success_resets_the_count(db: &dyn Backend) {
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    s.lock("k", "w1", 0, 1_000).unwrap().unwrap();
    assert_eq!(s.fail("k", "other", |_| 0).unwrap(), None, "only the holder reports a failure");
    assert_eq!(s.fail("k", "w1", |n| 100 * u64::from(n)).unwrap(), Some((1, 100)));
    assert_eq!(s.pending(99, 10).unwrap(), vec![], "held back until its retry time");
    assert_eq!(s.pending(100, 10).unwrap().len(), 1);
    s.lock("k", "w2", 100, 1_000).unwrap().unwrap();
    assert_eq!(s.fail("k", "w2", |n| 1_000 * u64::from(n)).unwrap(), Some((2, 2_000)), "the second waits longer");
    let l = s.lock("k", "w3", 2_000, 3_000).unwrap().unwrap();
    assert_eq!(s.release("k", "w3", l.seq, l.etag.as_deref()).unwrap(), Release::Done);
    s.observe(&v("k", 2, "b")).unwrap();
    s.lock("k", "w4", 2_000, 3_000).unwrap().unwrap();
    assert_eq!(s.fail("k", "w4", u64::from).unwrap(), Some((1, 1)), "counting starts again");
}

#[test]
fn a_state_file_of_the_first_replicator_gets_the_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE objects (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, etag TEXT, size INTEGER NOT NULL,
             deleted INTEGER NOT NULL, done_seq INTEGER NOT NULL DEFAULT -1, lock_owner TEXT, lock_seq INTEGER,
             lock_etag TEXT, lock_until INTEGER, dst_etag TEXT, event_ms INTEGER);
             INSERT INTO objects (key, seq, etag, size, deleted) VALUES ('k', 1, 'a', 10, 0);",
        )
        .unwrap();
    }
    let mut s = State::open(&path).unwrap();
    let l = s.lock("k", "w", 0, 10).unwrap().unwrap();
    assert_eq!(s.release_copy("k", "w", l.seq, Some("a"), Some("a")).unwrap().outcome, Release::Done);
    assert_eq!(s.snapshot(0).unwrap()["k"].done_etag.as_deref(), Some("a"));
}

fn hint(op: crate::changelog::Op, key: &str, etag: &str, sources: &[(&str, &str)]) -> crate::changelog::Hint {
    crate::changelog::Hint {
        op,
        key: key.into(),
        etag: etag.into(),
        sources: sources
            .iter()
            .map(|(k, e)| crate::changelog::Source { key: (*k).into(), etag: (*e).into() })
            .collect(),
        append: None,
    }
}

fn a_hint_is_found_by_its_target_version_until_resolved_and_survives_a_reopen(db: &dyn Backend) {
    use crate::changelog::Op;
    let mut s = db.open();
    let h = hint(Op::Copy, "t", "e1", &[("src", "e0")]);
    assert!(s.add_hint(".changelog/t/1", &h, 100).unwrap());
    assert!(!s.add_hint(".changelog/t/1", &h, 200).unwrap(), "a record read twice is one hint");
    // Looked up by the target's ETag as the event carries it (quoted or not).
    assert_eq!(s.hint_for("t", "\"e1\"").unwrap(), Some((".changelog/t/1".into(), h.clone())));
    assert_eq!(s.hint_for("t", "e2").unwrap(), None, "another version of the target has no hint");
    drop(s);
    let mut s = db.open();
    assert!(s.hint_for("t", "e1").unwrap().is_some(), "hints are in the database");
    assert_eq!(s.resolve_hints("t", "e1", true).unwrap(), 1);
    assert_eq!(s.hint_for("t", "e1").unwrap(), None, "a resolved hint is not applied twice");
}

fn a_source_of_an_open_hint_is_held_back_until_the_hint_resolves_or_ages(db: &dyn Backend) {
    use crate::changelog::Op;
    let mut s = db.open();
    // MOVE src → t: the source's delete event comes right after the target's copy event.
    s.observe(&v("t", 1, "e0")).unwrap();
    s.observe(&Version { key: "src".into(), seq: 2, etag: None, size: 0, deleted: true }).unwrap();
    s.add_hint(".changelog/t/1", &hint(Op::Move, "t", "e0", &[("src", "e0")]), 1_000).unwrap();
    let keys = |s: &State, since| -> Vec<String> {
        s.pending_hinted(2_000, since, 10).unwrap().into_iter().map(|v| v.key).collect()
    };
    assert_eq!(keys(&s, 500), ["t"], "the delete of the source waits for the hint");
    assert_eq!(keys(&s, 1_001), ["t", "src"], "a hint older than the bound holds nothing");
    s.resolve_hints("t", "e0", true).unwrap();
    assert_eq!(keys(&s, 500), ["t", "src"]);
    // A hint whose target version was overwritten before its copy holds nothing either.
    s.add_hint(".changelog/t/3", &hint(Op::Copy, "t", "e5", &[("src", "e0")]), 1_000).unwrap();
    assert_eq!(keys(&s, 500), ["t", "src"], "the target's latest version is not the hint's");
    s.observe(&v("t", 3, "e5")).unwrap();
    assert_eq!(keys(&s, 500), ["t"], "now it is");
    // An APPEND names its own key: that never holds the key back.
    s.resolve_hints("t", "e5", false).unwrap();
    s.add_hint(".changelog/t/4", &hint(Op::Append, "t", "e5", &[("t", "e0")]), 1_000).unwrap();
    assert!(s.hint_for("t", "e5").unwrap().is_some());
    assert_eq!(keys(&s, 500), ["src", "t"], "in sequencer order");
}

fn what_the_destination_holds_is_the_last_released_copy(db: &dyn Backend) {
    let mut s = db.open();
    s.observe(&v("k", 1, "a")).unwrap();
    assert_eq!(s.held("k").unwrap(), None, "nothing copied yet");
    let l = s.lock("k", "w", 0, 10).unwrap().unwrap();
    s.release_copy("k", "w", l.seq, Some("a"), Some("a-2")).unwrap();
    // A newer version lagging does not change what the destination holds.
    s.observe(&v("k", 2, "b")).unwrap();
    assert_eq!(s.held("k").unwrap(), Some((Some("a".into()), Some("a-2".into()))));
}

fn a_batch_hold_keeps_the_earliest_end_and_coalesces_writes_into_the_newest_version(db: &dyn Backend) {
    let mut s = db.open();
    s.observe_at(&v("k", 1, "a"), Some(1_000)).unwrap();
    assert_eq!(s.hold_batch("k", 1_000, 2_500).unwrap(), Some(2_500));
    s.observe_at(&v("k", 2, "b"), Some(1_200)).unwrap();
    // A newer write's later end does not push the hold; an earlier one pulls it in.
    assert_eq!(s.hold_batch("k", 1_200, 2_700).unwrap(), Some(2_500));
    s.observe_at(&v("k", 3, "c"), Some(1_400)).unwrap();
    assert_eq!(s.hold_batch("k", 1_400, 2_400).unwrap(), Some(2_400));
    assert_eq!(s.pending(2_399, 10).unwrap(), vec![], "held");
    // A restarted coordinator finds the hold where it was.
    drop(s);
    let mut s = db.open();
    assert_eq!(s.pending(2_399, 10).unwrap(), vec![], "still held after a reopen");
    // When the hold ends only the newest version is copied, and it covers all three writes.
    assert_eq!(s.pending(2_400, 10).unwrap(), vec![v("k", 3, "c")]);
    let l = s.lock("k", "w", 2_400, 9_000).unwrap().unwrap();
    let r = s.release_copy("k", "w", l.seq, l.etag.as_deref(), Some("c")).unwrap();
    let covered: Vec<u64> = r.writes.iter().map(|w| w.seq).collect();
    assert_eq!((r.outcome, covered), (Release::Done, vec![1, 2, 3]));
    // A hold that ended counts as none: the next write gets its own.
    s.observe_at(&v("k", 4, "d"), Some(5_000)).unwrap();
    assert_eq!(s.hold_batch("k", 5_000, 6_000).unwrap(), Some(6_000));
}

fn a_hinted_target_waits_for_its_source_version_to_be_replicated_first(db: &dyn Backend) {
    use crate::changelog::Op;
    let mut s = db.open();
    // COPY of a source just written: the source's version is pending, then the target's.
    s.observe(&v("src", 1, "e0")).unwrap();
    s.observe(&v("t", 2, "e0")).unwrap();
    s.add_hint(".changelog/t/1", &hint(Op::Copy, "t", "e0", &[("src", "e0")]), 1_000).unwrap();
    let keys = |s: &State, since| -> Vec<String> {
        s.pending_hinted(2_000, since, 10).unwrap().into_iter().map(|v| v.key).collect()
    };
    assert_eq!(keys(&s, 500), ["src"], "the source first: the hint can then apply");
    assert_eq!(keys(&s, 1_001), ["src", "t"], "not past the bound");
    let l = s.lock("src", "w", 2_000, 9_000).unwrap().unwrap();
    s.release_copy("src", "w", l.seq, Some("e0"), Some("e0")).unwrap();
    assert_eq!(keys(&s, 500), ["t"]);
    // A source overwritten since: its new version waits for the target (rule one), and the
    // target does not wait for it (it is not the version named): no deadlock.
    s.observe(&v("src", 3, "e1")).unwrap();
    assert_eq!(keys(&s, 500), ["t"]);
}

/// Every scenario above: one `#[test]` each on SQLite (module `sqlite`), and all of them, each
/// in its own schema, on one throwaway PostgreSQL server ([`every_scenario_on_postgres`]).
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::Lite::new()); } )*
        }
        const SCENARIOS: &[(&str, fn(&dyn Backend))] = &[$((stringify!($name), $name)),*];
    };
}

scenarios!(
    older_events_change_nothing,
    lock_then_release_marks_done,
    new_version_during_copy_forces_re_replication,
    copy_that_saw_another_etag_is_not_done,
    expired_lease_is_taken_over_and_the_old_holder_loses,
    every_interleaving_of_two_writes_and_one_copy_converges,
    pool_covers_the_object_and_the_last_report_is_unique,
    a_claim_repeated_after_its_answer_was_lost_gets_the_same_part,
    a_report_repeated_after_its_answer_was_lost_gets_the_same_answer,
    abandoned_claim_is_reclaimed_and_its_late_report_ignored,
    concurrent_claimers_on_eight_connections_take_each_part_once,
    reconcile_records_a_source_object_whose_event_was_lost_and_a_late_event_still_wins,
    reconcile_replicates_again_a_done_key_the_destination_lost_or_holds_stale,
    reconcile_corrects_the_latest_version_and_a_copy_of_the_old_one_releases_stale,
    reconcile_yields_to_an_event_or_a_copy_that_came_in_after_the_snapshot,
    renewed_claims_outlive_their_first_lease,
    a_restarted_coordinator_resumes_the_copies_under_way,
    a_lock_whose_copy_was_never_invoked_lapses_one_lease_after_a_restart,
    a_copy_covers_its_write_and_every_older_one_and_each_is_timed,
    a_write_past_its_slo_is_flagged_once_and_its_late_copy_says_so,
    a_failed_copy_backs_off_and_a_success_resets_the_count,
    a_hint_is_found_by_its_target_version_until_resolved_and_survives_a_reopen,
    a_source_of_an_open_hint_is_held_back_until_the_hint_resolves_or_ages,
    what_the_destination_holds_is_the_last_released_copy,
    a_batch_hold_keeps_the_earliest_end_and_coalesces_writes_into_the_newest_version,
    a_hinted_target_waits_for_its_source_version_to_be_replicated_first,
);

/// The same scenarios on PostgreSQL (one server for all: `initdb` takes seconds). Each runs in
/// a schema of its own; a failing one is named and the others still run.
#[test]
fn every_scenario_on_postgres() {
    let test = "every_scenario_on_postgres";
    let server = match super::pgtest::Server::start() {
        Ok(s) => s,
        Err(super::pgtest::Skip(reason)) => {
            println!("SKIPPED: {test}: {reason}");
            return;
        }
    };
    let mut failed = Vec::new();
    for (i, (name, scenario)) in SCENARIOS.iter().enumerate() {
        let prefix = format!("s{i}");
        let db = PgSchema {
            server: &server,
            url: server.schema(&prefix),
            prefix,
            next: std::sync::atomic::AtomicUsize::new(0),
        };
        let start = std::time::Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&db))) {
            Ok(()) => println!("postgres: {name}: ok ({:.2} s)", start.elapsed().as_secs_f64()),
            Err(_) => {
                println!("postgres: {name}: FAILED");
                failed.push(*name);
            }
        }
    }
    assert!(failed.is_empty(), "failed on PostgreSQL: {failed:?} (server log in {})", server.dir().display());
}

#[test]
fn postgres_state_url_is_chosen_by_its_scheme() {
    // A path opens SQLite; a postgres:// URL is tried as PostgreSQL (nothing listens here).
    let dir = tempfile::tempdir().unwrap();
    let s = State::open_spec(Some(dir.path().join("x.db").to_str().unwrap()), Path::new("unused")).unwrap();
    assert_eq!(s.backend(), "sqlite");
    let s = State::open_spec(None, &dir.path().join("default.db")).unwrap();
    assert_eq!(s.backend(), "sqlite");
    assert!(dir.path().join("default.db").exists());
    let err = State::open_spec(Some("postgres://nobody:secret@127.0.0.1:1/db"), Path::new("unused"))
        .err()
        .expect("nothing listens on port 1");
    let text = crate::error_chain(&err);
    assert!(text.contains("connect to the state database") && !text.contains("secret"), "{text}");
}
