//! Progress on stderr: a line per step (what is happening, on which member, how long it took),
//! and, on a terminal, a live line for long transfers (bytes of the total, rate, time left).
//! `--quiet` silences both; when stderr is not a terminal only the step lines are written.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Progress {
    started: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress { started: Instant::now(), quiet }
    }
    /// `[ 0.42s] step: message (12 ms)`
    pub fn step(&self, step: &str, message: &str, took: Option<Duration>) {
        if self.quiet {
            return;
        }
        let t = self.started.elapsed().as_secs_f64();
        match took {
            Some(d) => eprintln!("[{t:6.2}s] {step}: {message} ({} ms)", d.as_millis()),
            None => eprintln!("[{t:6.2}s] {step}: {message}"),
        }
    }
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether live lines are drawn (stderr a terminal, not quiet): worth asking for a total.
    pub fn draws(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    /// A live line for a transfer while the returned [`Watch`] lives: `current` (a file's size,
    /// a counter) read five times a second against `total` when known. Nothing off a terminal.
    pub fn watch(&self, label: &str, total: Option<u64>, current: impl Fn() -> u64 + Send + 'static) -> Watch {
        if !self.draws() {
            return Watch { stop: None, thread: None };
        }
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::no_length(),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(5));
        let template = if total.is_some() {
            "[{elapsed_precise}] {msg}: {bytes} of {total_bytes} ({percent}%), {bytes_per_sec}, about {eta} left"
        } else {
            "[{elapsed_precise}] {msg}: {bytes}, {bytes_per_sec}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message(label.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                bar.set_position(current());
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.finish_and_clear();
        });
        Watch { stop: Some(stop), thread: Some(thread) }
    }
}

/// A live transfer line; cleared when dropped (the step line that follows says how it ended).
pub struct Watch {
    stop: Option<Arc<AtomicBool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(s) = &self.stop {
            s.store(true, Ordering::Relaxed);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_or_quiet_nothing_is_drawn_and_nothing_runs() {
        // the tests' stderr is a pipe or a file: no live line, no thread asking for sizes
        let asked = Arc::new(AtomicBool::new(false));
        let seen = asked.clone();
        for quiet in [true, false] {
            let p = Progress::new(quiet);
            assert!(!p.draws() || !quiet);
            if std::io::stderr().is_terminal() {
                continue;
            }
            let w = p.watch("backup", Some(10), {
                let seen = seen.clone();
                move || {
                    seen.store(true, Ordering::Relaxed);
                    5
                }
            });
            assert!(w.thread.is_none());
        }
        assert!(!asked.load(Ordering::Relaxed));
    }
}
