//! The harness of diorama's fuzz targets, on the stable toolchain: each target is a plain
//! `#[test]` that calls [`run`] with its checked-in corpus directory and the function under
//! test.
//!
//! # Design
//! [`run`] first feeds every file of the corpus to the target as it is (the checked-in
//! seeds and every regression input of a crash once found), then hands the target the
//! inputs of [`bolero`]'s random engine for its time budget (`BOLERO_RANDOM_TEST_TIME_MS`,
//! default 1 s; `scripts/fuzz` sets it). Random bytes alone rarely get past a YAML or CSV
//! parser's first line, so half the random inputs are *mutations* of a seed instead
//! ([`mutate`]): an input whose first byte has its high bit set picks a seed and a list of
//! edits (overwrite, insert, delete, splice from another seed, insert a token of the file's
//! syntax). An input starting with a byte below 0x80 is used as it is, so a corpus file (all
//! text) means itself, and a crash found by the random engine is written back as the bytes
//! the target saw.
//!
//! A target must never panic: a panic is a failed test that names the input (as a corpus
//! file, or bolero's seed and input); the input the target saw is also written to
//! `target/fuzz-crashes/<target>/` to be checked in as a regression.
//!
//! # Limitations
//! Not coverage-guided: bolero's random engine under `cargo test` generates blindly. The
//! mutations of real files make up for part of it; `cargo bolero` with libFuzzer (nightly)
//! would use the same targets with coverage.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tokens of YAML, JSON and CSV that mutations insert: structure, and values at the edges
/// of what the parsers accept.
pub const TOKENS: &[&str] = &[
    "\n",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "<<: ",
    "~",
    "null",
    "0",
    "-1",
    "1e400",
    "-0",
    "NaN",
    ".inf",
    "18446744073709551616",
    "0.000000001",
    "999999999999",
    "ms",
    "us",
    "s",
    "h",
    "GiB",
    "Gbit",
    "%",
    "..",
    "[0..0]",
    "[5..1]",
    "\u{feff}",
    "\t",
    "\r\n",
    "\0",
    "é",
    "--",
];

/// The seeds of a target: every file of its corpus directory, sorted by name.
pub fn corpus(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files.into_iter().filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b))).collect()
}

/// The input a target sees for the random bytes `raw`: `raw` itself, or (high bit of the
/// first byte set) a seed of `seeds` edited as `raw` says.
pub fn mutate(seeds: &[Vec<u8>], raw: &[u8]) -> Vec<u8> {
    let (Some(&first), false) = (raw.first(), seeds.is_empty()) else { return raw.to_vec() };
    if first < 0x80 {
        return raw.to_vec();
    }
    let pick = |b: u8| &seeds[usize::from(b) % seeds.len()];
    let mut out = pick(raw.get(1).copied().unwrap_or(0)).clone();
    for op in raw.get(2..).unwrap_or_default().chunks(4) {
        let [kind, hi, lo, arg] = [0, 1, 2, 3].map(|i| op.get(i).copied().unwrap_or(0));
        let pos = usize::from(u16::from_be_bytes([hi, lo]));
        let at = if out.is_empty() { 0 } else { pos % (out.len() + 1) };
        match kind % 6 {
            0 if at < out.len() => out[at] = arg,
            1 => out.insert(at, arg),
            2 => {
                let end = (at + usize::from(arg % 32) + 1).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 => {
                // Splice: a line of another seed (or of this one) at `at`.
                let other = pick(arg);
                let lines: Vec<&[u8]> = other.split_inclusive(|&b| b == b'\n').collect();
                if let Some(line) = lines.get(pos % lines.len().max(1)) {
                    out.splice(at..at, line.iter().copied());
                }
            }
            4 => {
                let token = TOKENS[usize::from(arg) % TOKENS.len()].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            _ => {
                // Duplicate a stretch: lists grow, names repeat.
                let end = (at + usize::from(arg)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
        }
        if out.len() > 1 << 16 {
            out.truncate(1 << 16);
        }
    }
    out
}

/// Runs the fuzz target `name`: every file of `corpus_dir` as it is, then random and
/// mutated inputs for bolero's time budget. `target` must not panic on any input.
pub fn run(name: &str, corpus_dir: &Path, target: impl Fn(&[u8])) {
    let seeds = corpus(corpus_dir);
    assert!(!seeds.is_empty(), "fuzz target {name}: no corpus in {}", corpus_dir.display());
    let watchdog = Watchdog::start(name, input_timeout());
    for (path, bytes) in &seeds {
        let _running = watchdog.watch(bytes);
        if catch_unwind(AssertUnwindSafe(|| target(bytes))).is_err() {
            panic!("fuzz target {name}: corpus input {} panics", path.display());
        }
    }
    let seeds: Vec<Vec<u8>> = seeds.into_iter().map(|(_, b)| b).collect();
    // Every input starts afresh: a target keeps no state between inputs worth protecting.
    let target = AssertUnwindSafe(target);
    bolero::check!().for_each(|raw: &[u8]| {
        let input = mutate(&seeds, raw);
        let _running = watchdog.watch(&input);
        if catch_unwind(AssertUnwindSafe(|| (*target)(&input))).is_err() {
            let saved = save_crash(name, &input);
            panic!("fuzz target {name}: input panics (saved to {saved}): {:?}", String::from_utf8_lossy(&input));
        }
    });
}

/// How long one input may run before it counts as a hang: `FUZZ_INPUT_TIMEOUT_MS`, default
/// 10 s (the slowest seed takes milliseconds).
fn input_timeout() -> Duration {
    let ms = std::env::var("FUZZ_INPUT_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    Duration::from_millis(ms)
}

/// Ends the process when one input runs longer than its timeout, after saving and printing
/// the input: a hang cannot be unwound like a panic, and left alone it runs until CI's own
/// timeout kills the whole suite without naming the input (libFuzzer's `-timeout` does the
/// same).
struct Watchdog {
    current: Current,
}

/// The input under test and since when, shared with the watchdog's thread.
type Current = Arc<Mutex<Option<(Instant, Vec<u8>)>>>;

/// Marks the input under test; the watchdog forgets it when this is dropped.
struct Running<'a>(&'a Watchdog);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.0.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Watchdog {
    fn start(name: &str, timeout: Duration) -> Watchdog {
        let current: Current = Arc::default();
        let watched = Arc::downgrade(&current);
        let name = name.to_string();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200).min(timeout));
            let Some(current) = watched.upgrade() else { return };
            let guard = current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((since, input)) = guard.as_ref() {
                if since.elapsed() > timeout {
                    let saved = save_crash(&name, input);
                    eprintln!(
                        "fuzz target {name}: input runs longer than {timeout:?} (saved to {saved}): {:?}",
                        String::from_utf8_lossy(input)
                    );
                    std::process::exit(101);
                }
            }
        });
        Watchdog { current }
    }

    fn watch(&self, input: &[u8]) -> Running<'_> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), input.to_vec()));
        Running(self)
    }
}

/// Writes a crashing input to `target/fuzz-crashes/<name>/<hash>` and returns the path.
fn save_crash(name: &str, input: &[u8]) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    input.hash(&mut h);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes").join(name);
    let path = dir.join(format!("{:016x}", h.finish()));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("nowhere: {e}"),
    }
}

/// The input as text, as a file would be read (invalid UTF-8 is what a reader rejects
/// first; targets that read text take it lossily so the rest of the parser is reached).
pub fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_below_0x80_are_taken_as_they_are() {
        let seeds = vec![b"name: a\n".to_vec()];
        assert_eq!(mutate(&seeds, b"abc"), b"abc");
        assert_eq!(mutate(&[], &[0xff, 0]), vec![0xff, 0]);
    }

    #[test]
    fn high_inputs_edit_a_seed() {
        let seeds = vec![b"name: a\n".to_vec(), b"x: 1\n".to_vec()];
        // Seed 1, then overwrite byte 0 with 'y'.
        assert_eq!(mutate(&seeds, &[0x80, 1, 0, 0, 0, b'y']), b"y: 1\n");
        // Seed 0, insert token 1 (": ") at 4.
        assert_eq!(mutate(&seeds, &[0x80, 0, 4, 0, 4, 1]), b"name: : a\n");
        // Deleting past the end stops at the end.
        assert_eq!(mutate(&seeds, &[0x80, 1, 2, 0, 3, 200]), b"x: ");
    }

    #[test]
    fn a_panicking_corpus_input_fails_the_run() {
        let dir = tempdir();
        std::fs::write(dir.join("boom"), b"boom").unwrap();
        let r = catch_unwind(|| run("t", &dir, |b| assert_ne!(b, b"boom")));
        assert!(r.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("fuzzing-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
