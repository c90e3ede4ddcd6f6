//! Run progress on the terminal: a live line on a TTY (indicatif), plain lines otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Shows real and virtual elapsed time, nodes up, and events.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    last_line: Instant,
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
            bar.finish_and_clear();
        }
    }
}
