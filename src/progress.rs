//! What `trips ingest` draws on a terminal while it loads (indicatif): one line per file being loaded,
//! fed by that file's status events (the payloads every listener gets, so the bar moves with each
//! progress update, `--progress-secs`). A file of known size gets a bar with percent and ETA; standard
//! input a spinner. Every other line the process writes to stderr while bars are drawn (outcomes,
//! warnings, log records) goes through `above`, which lifts the bars, prints, and draws them again, so
//! that nothing tears.

use crate::status::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

/// Every bar of the process; hidden until `draw_on_stderr`.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

fn bars() -> &'static MultiProgress {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::hidden()))
}

/// Starts drawing bars on stderr. `always` draws even when stderr is not a terminal (`--progress
/// always`; 79 columns are assumed there).
pub fn draw_on_stderr(always: bool) {
    let target = if always && !std::io::stderr().is_terminal() {
        ProgressDrawTarget::term_like(Box::new(console::Term::stderr()))
    } else {
        ProgressDrawTarget::stderr()
    };
    bars().set_draw_target(target);
}

/// Runs `print` (which writes lines to stderr) with the bars lifted off the screen.
pub fn above<R>(print: impl FnOnce() -> R) -> R {
    match BARS.get() {
        Some(bars) => bars.suspend(print),
        None => print(),
    }
}

/// Standard error for the logger: each record printed above the bars.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        above(|| std::io::stderr().write_all(buf)).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The line of one file being loaded. The file's name is cut to 20 columns and the bar takes what is
/// left of the terminal's width, so the line never wraps on an 80-column terminal.
pub struct FileBar(ProgressBar);

impl FileBar {
    pub fn new(event: &Event) -> FileBar {
        // Added to the bars before anything is set: a bar draws on its own until it is added.
        let (bar, template) = match event.total_bytes {
            Some(total) if total > 0 => (
                ProgressBar::new(total as u64),
                "{prefix:20!} [{wide_bar}] {percent:>3}% {msg} eta {eta}",
            ),
            _ => (
                ProgressBar::new_spinner(),
                "{spinner} {prefix:20!} {msg}, {elapsed}",
            ),
        };
        let bar = bars().add(bar);
        let style = ProgressStyle::with_template(template).expect("a valid template");
        bar.set_style(style.progress_chars("=> "));
        let name = std::path::Path::new(&event.file)
            .file_name()
            .map_or(event.file.clone(), |n| n.to_string_lossy().into_owned());
        bar.set_prefix(name);
        if bar.length().is_none() {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        FileBar(bar)
    }

    pub fn update(&self, event: &Event) {
        self.0.set_position(event.bytes.max(0) as u64);
        self.0.set_message(message(event));
    }

    pub fn finish(self) {
        self.0.finish_and_clear();
        bars().remove(&self.0);
    }
}

/// `loading 1.2M rows, 340k/s` (and `, 12 rejected`): at most about 40 columns.
fn message(event: &Event) -> String {
    let rate = (event.rows as f64 / event.elapsed_s.max(1e-3)) as i64;
    let rejected = match event.rejected {
        0 => String::new(),
        n => format!(", {} rejected", short(n)),
    };
    format!(
        "{} {} rows, {}/s{rejected}",
        event.state,
        short(event.rows),
        short(rate)
    )
}

/// A count in a few characters: 9999, 12.3k, 456k, 7.8M, 123M, 1.2G.
fn short(n: i64) -> String {
    let v = n as f64;
    match n.unsigned_abs() {
        0..10_000 => n.to_string(),
        10_000..100_000 => format!("{:.1}k", v / 1e3),
        100_000..1_000_000 => format!("{:.0}k", v / 1e3),
        1_000_000..100_000_000 => format!("{:.1}M", v / 1e6),
        100_000_000..1_000_000_000 => format!("{:.0}M", v / 1e6),
        _ => format!("{:.1}G", v / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_short() {
        let cases = [
            (0, "0"),
            (9999, "9999"),
            (12_345, "12.3k"),
            (456_000, "456k"),
            (7_800_000, "7.8M"),
            (123_000_000, "123M"),
            (1_200_000_000, "1.2G"),
        ];
        for (n, text) in cases {
            assert_eq!(short(n), text);
        }
    }

    #[test]
    fn the_message_says_state_rows_and_rate() {
        let event = Event {
            job: 1,
            file: "f.csv".into(),
            state: "loading".into(),
            rows: 1_200_000,
            rejected: 12,
            bytes: 50,
            total_bytes: Some(100),
            elapsed_s: 2.0,
            error: None,
            duplicate_of: None,
            rejects_file: None,
        };
        assert_eq!(message(&event), "loading 1.2M rows, 600k/s, 12 rejected");
    }
}
