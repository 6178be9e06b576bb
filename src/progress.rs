//! What `trips ingest` draws on a terminal while it loads (indicatif): one line per file being loaded,
//! fed by that file's status events (src/status.rs: the payloads every listener gets, so the bar moves
//! with each progress update, `--progress-secs`). A file of known size gets a bar with percent and ETA; standard
//! input a spinner. Every other line the process writes to stderr while bars are drawn (outcomes,
//! warnings, log records) goes through `above`, which lifts the bars, prints, and draws them again, so
//! that nothing tears.

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
    /// The line of `file`, with a bar if its size is known.
    pub fn new(file: &str, total_bytes: Option<u64>) -> FileBar {
        // Added to the bars before anything is set: a bar draws on its own until it is added.
        let (bar, template) = match total_bytes {
            Some(total) if total > 0 => (
                ProgressBar::new(total),
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
        let name = std::path::Path::new(file)
            .file_name()
            .map_or(file.to_string(), |n| n.to_string_lossy().into_owned());
        bar.set_prefix(name);
        if bar.length().is_none() {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        FileBar(bar)
    }

    /// `bytes` read so far, and what to say beside the bar (about 40 columns at most).
    pub fn update(&self, bytes: u64, message: String) {
        self.0.set_position(bytes);
        self.0.set_message(message);
    }

    pub fn finish(self) {
        self.0.finish_and_clear();
        bars().remove(&self.0);
    }
}
