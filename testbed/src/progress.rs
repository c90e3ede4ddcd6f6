//! Run progress on the terminal: a live line on a TTY (indicatif), plain lines otherwise;
//! and [`Stderr`], the one way the harness writes to stderr while a live line may be shown.
//!
//! # Design
//! A log or note line written while indicatif draws its line would start in the middle of
//! it. Every writer of the harness (tracing, `note!`) goes through [`Stderr`], which writes
//! each line whole with the live line suspended (cleared, then redrawn below it).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Shows real and virtual elapsed time, nodes up, and events.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    last_line: Instant,
}

/// The live progress line on screen, if any.
static LIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Stderr, written around the live progress line. Each `write` writes its buffer whole, so
/// a caller that hands it a whole line (tracing does, and `note!`) is never interleaved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let live = LIVE.lock().map_or(None, |l| l.clone());
        let write = || std::io::stderr().lock().write_all(buf);
        match live {
            Some(bar) if !bar.is_finished() => bar.suspend(write)?,
            _ => write()?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Interval of plain progress lines when not on a TTY.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(interactive: bool, total: usize) -> Self {
        let bar = interactive.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            if let Ok(mut live) = LIVE.lock() {
                *live = Some(bar.clone());
            }
            bar
        });
        Self { bar, total, last_line: Instant::now() }
    }

    fn status(virt: f64, real: Duration, up: usize, total: usize) -> String {
        format!("real {:>8.1}s | virtual {:>8.2}s | nodes up {up}/{total}", real.as_secs_f64(), virt)
    }

    pub fn tick(&mut self, virt: f64, real: Duration, up: usize) {
        let line = Self::status(virt, real, up, self.total);
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None if self.last_line.elapsed() >= PLAIN_EVERY => {
                self.last_line = Instant::now();
                crate::note!("{line}");
            }
            None => {}
        }
    }

    pub fn nodes_up(&mut self, up: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("starting: nodes up {up}/{}", self.total));
        }
    }

    pub fn event(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("  {text}")),
            None => crate::note!("  {text}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if let Ok(mut live) = LIVE.lock() {
                *live = None;
            }
            bar.finish_and_clear();
        }
    }
}
