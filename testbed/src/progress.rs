//! Run progress on the terminal: a live line on a TTY (indicatif), plain lines otherwise;
//! and [`Stderr`], the one way the harness writes to stderr while a live line may be shown.
//!
//! # Design
//! A log or note line written while indicatif draws its line would start in the middle of
//! it, or leave a stale copy of the line behind. Every writer of the harness (tracing,
//! `note!`) goes through [`Stderr`], which writes each line whole with the live line
//! suspended (cleared, then redrawn below it). The live line and the writers share one
//! lock, a [`Screen`]: a line is written whole while the live line is shown and suspended,
//! or while none is shown, never while one is being put up or taken down.

use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A terminal's live progress line, if one is shown, and the lock that orders it with the
/// lines written around it.
pub(crate) struct Screen {
    live: Mutex<Option<ProgressBar>>,
}

/// The screen of stderr.
static SCREEN: Screen = Screen::new();

impl Screen {
    const fn new() -> Self {
        Self { live: Mutex::new(None) }
    }

    /// The live line, locked (a writer that panicked while holding it left nothing half done
    /// that matters here).
    fn live(&self) -> MutexGuard<'_, Option<ProgressBar>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `buf` whole to `out`, with the live line (if any) cleared first and redrawn
    /// after. Nothing may log while this runs: the lock is not reentrant.
    fn write_whole(&self, buf: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let live = self.live();
        match live.as_ref() {
            Some(bar) if !bar.is_finished() => bar.suspend(|| out.write_all(buf)),
            _ => out.write_all(buf),
        }
    }

    /// Puts up a live spinner drawn to `target`; its first frame is drawn under the lock.
    fn show(&self, target: ProgressDrawTarget) -> ProgressBar {
        let mut live = self.live();
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        *live = Some(bar.clone());
        bar
    }

    /// Takes the live line down (cleared from the screen) under the lock.
    fn hide(&self, bar: &ProgressBar) {
        let mut live = self.live();
        bar.finish_and_clear();
        *live = None;
    }
}

/// Stderr, written around the live progress line. Each `write` writes its buffer whole, so
/// a caller that hands it a whole line (tracing does, and `note!`) is never interleaved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        SCREEN.write_whole(buf, &mut std::io::stderr().lock())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Shows real and virtual elapsed time, nodes up, and events.
pub struct Progress {
    screen: &'static Screen,
    bar: Option<ProgressBar>,
    total: usize,
    last_line: Instant,
}

/// Interval of plain progress lines when not on a TTY.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(interactive: bool, total: usize) -> Self {
        Self::on(&SCREEN, interactive.then(ProgressDrawTarget::stderr), total)
    }

    /// Progress on `screen`: a live line drawn to `target`, or plain lines without one.
    fn on(screen: &'static Screen, target: Option<ProgressDrawTarget>, total: usize) -> Self {
        let bar = target.map(|t| screen.show(t));
        Self { screen, bar, total, last_line: Instant::now() }
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
            self.screen.hide(bar);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    /// A terminal 80 columns wide that keeps every row it was shown: the text moves and
    /// wraps as on a VT100 (a character past the last column wraps to the next row).
    #[derive(Debug, Clone, Default)]
    struct Term(Arc<Mutex<Grid>>);

    #[derive(Debug, Default)]
    struct Grid {
        rows: Vec<Vec<char>>,
        row: usize,
        col: usize,
    }

    const WIDTH: usize = 80;

    impl Grid {
        fn newline(&mut self) {
            self.row += 1;
            self.col = 0;
        }

        fn put(&mut self, text: &str) {
            for c in text.chars() {
                match c {
                    '\n' => self.newline(),
                    '\r' => self.col = 0,
                    c => {
                        if self.col == WIDTH {
                            self.newline();
                        }
                        if self.rows.len() <= self.row {
                            self.rows.resize(self.row + 1, Vec::new());
                        }
                        let row = &mut self.rows[self.row];
                        if row.len() <= self.col {
                            row.resize(self.col + 1, ' ');
                        }
                        row[self.col] = c;
                        self.col += 1;
                    }
                }
            }
        }
    }

    impl Term {
        fn grid(&self) -> MutexGuard<'_, Grid> {
            self.0.lock().unwrap()
        }

        /// Every row ever shown, trailing blanks trimmed, empty rows left out.
        fn rows(&self) -> Vec<String> {
            let grid = self.grid();
            let rows = grid.rows.iter().map(|r| r.iter().collect::<String>().trim_end().to_owned());
            rows.filter(|r| !r.is_empty()).collect()
        }
    }

    impl indicatif::TermLike for Term {
        fn width(&self) -> u16 {
            WIDTH as u16
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            let mut g = self.grid();
            g.row = g.row.saturating_sub(n);
            Ok(())
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.grid().row += n;
            Ok(())
        }
        fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
            let mut g = self.grid();
            g.col = (g.col + n).min(WIDTH);
            Ok(())
        }
        fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
            let mut g = self.grid();
            g.col = g.col.saturating_sub(n);
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            let mut g = self.grid();
            g.put(s);
            g.newline();
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.grid().put(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            let mut g = self.grid();
            let row = g.row;
            if let Some(r) = g.rows.get_mut(row) {
                r.clear();
            }
            g.col = 0;
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The terminal as a byte stream, for log lines (each `write` is one write to the tty).
    impl Write for Term {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.grid().put(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    static TEST_SCREEN: Screen = Screen::new();

    /// What the harness's tracing writer is, on the test's screen and terminal.
    struct Writer(Term);

    impl Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            TEST_SCREEN.write_whole(buf, &mut self.0)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const LOGGERS: usize = 3;
    const LINES: usize = 150;

    /// Logs from several threads through tracing while the live line is put up, updated,
    /// printed above and taken down; then checks the screen: every row is one whole log or
    /// event line, and no copy of the live line is left between them.
    #[test]
    fn log_lines_and_the_live_line_never_share_a_row() {
        let term = Term::default();
        let writer_term = term.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Writer(writer_term.clone()))
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        let dispatch = tracing::Dispatch::new(subscriber);
        let start = Arc::new(Barrier::new(LOGGERS + 1));
        let loggers: Vec<_> = (0..LOGGERS)
            .map(|t| {
                let (dispatch, start) = (dispatch.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        start.wait();
                        for i in 0..LINES {
                            tracing::info!("log {t}-{i} end");
                            if i % 16 == 0 {
                                std::thread::yield_now();
                            }
                        }
                    });
                })
            })
            .collect();
        start.wait();
        // The live line comes and goes while the loggers write: up, ticks and events, down.
        let mut events = 0;
        for round in 0..4 {
            let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
            let mut progress = Progress::on(&TEST_SCREEN, Some(target), 3);
            for i in 0..200_u32 {
                progress.tick(f64::from(i) / 10.0, Duration::from_millis(u64::from(i)), round);
                if i % 50 == 0 {
                    progress.event(&format!("event {events}"));
                    events += 1;
                }
            }
            drop(progress);
        }
        for l in loggers {
            l.join().unwrap();
        }

        let rows = term.rows();
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for row in &rows {
            let line = row.trim_start();
            let whole_log = line.strip_prefix("INFO log ").is_some_and(|rest| rest.ends_with(" end"))
                && line.matches("log ").count() == 1;
            let whole_event = line.starts_with("event ") && line.split(' ').count() == 2;
            assert!(whole_log || whole_event, "a row that is not one whole line: {row:?}\n{rows:#?}");
            *seen.entry(line.to_owned()).or_default() += 1;
        }
        for t in 0..LOGGERS {
            for i in 0..LINES {
                let line = format!("INFO log {t}-{i} end");
                assert_eq!(seen.get(&line), Some(&1), "{line:?} not shown once, whole");
            }
        }
        for e in 0..events {
            assert_eq!(seen.get(&format!("event {e}")), Some(&1), "event {e}");
        }
    }
}
