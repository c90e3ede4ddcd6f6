//! The Maglev lookup table: a prime number of slots, each naming a backend, filled from
//! per-backend permutations so that a backend added, removed or re-weighted moves few
//! slots.
//!
//! # Design
//! - Backend `i` has `offset = h1(name) mod M` and `skip = h2(name) mod (M-1) + 1`; its
//!   preference list is `offset, offset+skip, …` (mod M), a permutation since M is prime.
//! - Weights are real: each backend gets a slot *quota* (largest-remainder rounding of its
//!   weight share to exactly M slots). Filling proceeds in rounds in which every backend
//!   earns credit in proportion to its quota and claims its next free preferred slot per
//!   unit of credit. Interleaving by credit (rather than Maglev's one-slot-per-turn) keeps
//!   each backend's claims near the front of its own list whatever its weight, which is
//!   what keeps disruption low when a weight changes.
//! - [`MaglevTable::move_slots`] moves exactly `count` slots from one backend to another
//!   (the recipient takes the donor's slots in the recipient's own preference order), so
//!   the δ-shift controller changes no slot it does not have to.
//!
//! # Limitations
//! At most 65,534 backends (slot entries are `u16`). After `move_slots` the table depends
//! on its history, not only on the current quotas; a full [`MaglevTable::build`] from the
//! current shares would give a slightly different table.

use thiserror::Error;

use crate::flow::name_hash;

/// The default table size: the prime the Maglev paper uses for small backend counts.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

const EMPTY: u16 = u16::MAX;
const SEED_OFFSET: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SEED_SKIP: u64 = 0x6d61_676c_6576_736b; // "maglevsk"

/// Why a table cannot be built.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum MaglevError {
    #[error("build a Maglev table of size {size}: the size must be a prime greater than 2")]
    NotPrime { size: u32 },
    #[error("build a Maglev table: no backend has a positive weight")]
    NoBackends,
    #[error("build a Maglev table: {count} backends, at most {max}")]
    TooManyBackends { count: usize, max: usize },
    #[error("build a Maglev table: backend `{name}` has weight {weight}, not a finite non-negative number")]
    BadWeight { name: String, weight: f64 },
    #[error("move Maglev slots: backend index {index} out of range")]
    NoSuchBackend { index: usize },
}

/// A backend's place in the permutation scheme.
#[derive(Debug, Clone, Copy)]
struct Permutation {
    offset: u32,
    skip: u32,
}

/// The lookup table. Backends are identified by their index in the list given to
/// [`MaglevTable::build`].
#[derive(Debug, Clone)]
pub struct MaglevTable {
    size: u32,
    slots: Vec<u16>,
    perms: Vec<Permutation>,
    counts: Vec<u32>,
}

/// Whether `n` is prime (trial division; table sizes are at most a few million).
#[must_use]
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

impl MaglevTable {
    /// Builds the table for `names` with relative `weights` (same length; a weight of 0
    /// gives a backend no slots, e.g. one that is down).
    ///
    /// # Errors
    /// A size that is not an odd prime, a bad weight, no positive weight, or more
    /// backends than slot entries can name.
    pub fn build(size: u32, names: &[&str], weights: &[f64]) -> Result<Self, MaglevError> {
        if size <= 2 || !is_prime(size) {
            return Err(MaglevError::NotPrime { size });
        }
        let max = usize::from(EMPTY);
        if names.len() > max {
            return Err(MaglevError::TooManyBackends { count: names.len(), max });
        }
        for (name, &w) in names.iter().zip(weights) {
            if !w.is_finite() || w < 0.0 {
                return Err(MaglevError::BadWeight { name: (*name).to_owned(), weight: w });
            }
        }
        let quotas = quotas(size, weights).ok_or(MaglevError::NoBackends)?;
        let perms = names
            .iter()
            .map(|n| Permutation {
                offset: reduce(name_hash(n, SEED_OFFSET), size),
                skip: reduce(name_hash(n, SEED_SKIP), size - 1) + 1,
            })
            .collect::<Vec<_>>();
        let slots = populate(size, &perms, &quotas);
        Ok(Self { size, slots, perms, counts: quotas })
    }

    /// The backend index for a flow hash.
    #[must_use]
    pub fn lookup(&self, hash: u64) -> usize {
        usize::from(self.slots[reduce(hash, self.size) as usize])
    }

    /// The table size M.
    #[must_use]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Slots held per backend.
    #[must_use]
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// Slot share per backend (sums to 1).
    #[must_use]
    pub fn shares(&self) -> Vec<f64> {
        self.counts.iter().map(|&c| f64::from(c) / f64::from(self.size)).collect()
    }

    /// The backend of each slot (for comparing two tables).
    #[must_use]
    pub fn slots(&self) -> &[u16] {
        &self.slots
    }

    /// Moves up to `count` of `from`'s slots to `to`; the recipient takes them in its own
    /// preference order. Returns how many moved (fewer if `from` holds fewer).
    ///
    /// # Errors
    /// An index out of range.
    pub fn move_slots(&mut self, from: usize, to: usize, count: u32) -> Result<u32, MaglevError> {
        for index in [from, to] {
            if index >= self.perms.len() {
                return Err(MaglevError::NoSuchBackend { index });
            }
        }
        let count = count.min(self.counts[from]);
        if from == to || count == 0 {
            return Ok(0);
        }
        // Indices are < 65,535, checked at build.
        #[expect(clippy::cast_possible_truncation)]
        let (from16, to16) = (from as u16, to as u16);
        let p = self.perms[to];
        let mut pos = p.offset;
        let mut moved = 0;
        for _ in 0..self.size {
            let slot = &mut self.slots[pos as usize];
            if *slot == from16 {
                *slot = to16;
                moved += 1;
                if moved == count {
                    break;
                }
            }
            pos = step(pos, p.skip, self.size);
        }
        self.counts[from] -= moved;
        self.counts[to] += moved;
        Ok(moved)
    }
}

/// `x mod m` as u32 (m ≤ u32::MAX, so the remainder fits).
fn reduce(x: u64, m: u32) -> u32 {
    #[expect(clippy::cast_possible_truncation)]
    let r = (x % u64::from(m)) as u32;
    r
}

fn step(pos: u32, skip: u32, size: u32) -> u32 {
    let next = u64::from(pos) + u64::from(skip);
    reduce(next, size)
}

/// Largest-remainder apportionment of `size` slots to `weights`; `None` if no weight is
/// positive.
fn quotas(size: u32, weights: &[f64]) -> Option<Vec<u32>> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / total * f64::from(size)).collect();
    // Non-negative and at most `size`, so the floor fits in u32.
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mut q: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
    let assigned: u32 = q.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in order.iter().cycle().take((size - assigned) as usize) {
        q[i] += 1;
    }
    Some(q)
}

/// Fills the table: rounds in which each backend earns quota/max_quota credit and claims
/// one free slot, in its preference order, per whole unit of credit.
fn populate(size: u32, perms: &[Permutation], quotas: &[u32]) -> Vec<u16> {
    let mut slots = vec![EMPTY; size as usize];
    let max_quota = f64::from(quotas.iter().copied().max().unwrap_or(1).max(1));
    let rate: Vec<f64> = quotas.iter().map(|&q| f64::from(q) / max_quota).collect();
    let mut credit = vec![0.0f64; perms.len()];
    let mut left = quotas.to_vec();
    let mut pos: Vec<u32> = perms.iter().map(|p| p.offset).collect();
    let mut filled = 0u32;
    while filled < size {
        for i in 0..perms.len() {
            if left[i] == 0 {
                continue;
            }
            credit[i] += rate[i];
            while credit[i] >= 1.0 && left[i] > 0 {
                credit[i] -= 1.0;
                while slots[pos[i] as usize] != EMPTY {
                    pos[i] = step(pos[i], perms[i].skip, size);
                }
                // i < 65,535, checked by the caller.
                #[expect(clippy::cast_possible_truncation)]
                {
                    slots[pos[i] as usize] = i as u16;
                }
                pos[i] = step(pos[i], perms[i].skip, size);
                left[i] -= 1;
                filled += 1;
            }
        }
        // Every backend with slots left has a positive rate, so each round makes
        // progress and float rounding at the end costs at most one extra round.
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("server{i}")).collect()
    }

    fn table(n: usize, weights: &[f64]) -> MaglevTable {
        let names = names(n);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        MaglevTable::build(DEFAULT_TABLE_SIZE, &refs, weights).unwrap()
    }

    fn changed(a: &MaglevTable, b: &MaglevTable) -> f64 {
        let diff = a.slots().iter().zip(b.slots()).filter(|(x, y)| x != y).count();
        diff as f64 / f64::from(a.size())
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(MaglevTable::build(65_536, &["a"], &[1.0]).unwrap_err(), MaglevError::NotPrime { size: 65_536 });
        assert_eq!(MaglevTable::build(7, &["a"], &[0.0]).unwrap_err(), MaglevError::NoBackends);
        assert!(matches!(MaglevTable::build(7, &["a"], &[f64::NAN]).unwrap_err(), MaglevError::BadWeight { .. }));
    }

    #[test]
    fn every_slot_is_filled_and_counts_match() {
        let t = table(5, &[1.0, 2.0, 3.0, 0.0, 1.5]);
        assert!(t.slots().iter().all(|&s| s != EMPTY));
        let mut counted = [0u32; 5];
        for &s in t.slots() {
            counted[usize::from(s)] += 1;
        }
        assert_eq!(&counted, t.counts());
        assert_eq!(counted[3], 0);
    }

    #[test]
    fn equal_weights_balance_within_one_percent() {
        for n in [2, 3, 7, 10, 50] {
            let t = table(n, &vec![1.0; n]);
            let ideal = 1.0 / n as f64;
            for share in t.shares() {
                assert!((share - ideal).abs() / ideal < 0.01, "n={n} share={share}");
            }
        }
    }

    #[test]
    fn weights_are_real() {
        let t = table(3, &[1.0, 2.0, 1.0]);
        let s = t.shares();
        assert!((s[1] - 0.5).abs() < 1e-4, "{s:?}");
        assert!((s[0] - 0.25).abs() < 1e-4, "{s:?}");
    }

    #[test]
    fn removing_one_of_n_disrupts_about_one_nth() {
        for n in [5usize, 10, 20] {
            let before = table(n, &vec![1.0; n]);
            let mut w = vec![1.0; n];
            w[n / 2] = 0.0;
            let after = table(n, &w);
            let d = changed(&before, &after);
            let ideal = 1.0 / n as f64;
            // Maglev is near-minimal, not minimal: the paper reports a little extra.
            assert!(d >= ideal * 0.99 && d < ideal * 1.6, "n={n}: {d} vs {ideal}");
        }
    }

    #[test]
    fn adding_a_backend_disrupts_about_its_share() {
        let before = table(9, &[1.0; 9]);
        let names10 = names(10);
        let refs: Vec<&str> = names10.iter().map(String::as_str).collect();
        let mut w = vec![1.0; 10];
        w[9] = 1.0;
        let after = MaglevTable::build(DEFAULT_TABLE_SIZE, &refs, &w).unwrap();
        // Compare only the first nine backends' slots: a slot changed if its owner did.
        let d = changed(&before, &after);
        assert!(d > 0.099 && d < 0.16, "{d}");
    }

    #[test]
    fn reweighting_one_backend_disrupts_about_its_change() {
        let before = table(10, &[1.0; 10]);
        let mut w = vec![1.0; 10];
        w[0] = 0.9;
        let after = table(10, &w);
        let ideal = 0.1 - 0.9 / 9.9;
        let d = changed(&before, &after);
        assert!(d >= ideal * 0.99 && d < ideal * 1.5, "{d} vs {ideal}");
    }

    #[test]
    fn move_slots_moves_exactly_the_count() {
        let mut t = table(4, &[1.0; 4]);
        let before = t.clone();
        let moved = t.move_slots(0, 2, 1000).unwrap();
        assert_eq!(moved, 1000);
        assert_eq!(t.counts()[0], before.counts()[0] - 1000);
        assert_eq!(t.counts()[2], before.counts()[2] + 1000);
        let diff = t.slots().iter().zip(before.slots()).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 1000);
        // Asking for more than the donor holds moves what it holds.
        let all = t.counts()[1];
        assert_eq!(t.move_slots(1, 3, u32::MAX).unwrap(), all);
        assert_eq!(t.counts()[1], 0);
        assert!(t.move_slots(9, 0, 1).is_err());
    }
}
