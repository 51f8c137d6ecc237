//! Progress on stderr: a line per step (what is happening, on which member, how long it took),
//! and, on a terminal, a live line for long transfers (bytes of the total, rate, time left) and
//! for work done member by member (defrag, upgrade, downgrade: the member at work, how much is
//! done, time left at the rate so far).
//! `--quiet` silences both; when stderr is not a terminal only the step lines are written.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Progress {
    started: Instant,
    quiet: bool,
    /// The member-by-member line on screen, if any: step lines are printed above it.
    live: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress { started: Instant::now(), quiet, live: std::sync::Mutex::new(None) }
    }
    /// `[ 0.42s] step: message (12 ms)`
    pub fn step(&self, step: &str, message: &str, took: Option<Duration>) {
        if self.quiet {
            return;
        }
        let t = self.started.elapsed().as_secs_f64();
        let line = match took {
            Some(d) => format!("[{t:6.2}s] {step}: {message} ({} ms)", d.as_millis()),
            None => format!("[{t:6.2}s] {step}: {message}"),
        };
        match self.live.lock().ok().and_then(|l| l.clone()) {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
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

/// What a member-by-member line counts: bytes (defrag: each member weighs its database's size)
/// or members (upgrade, downgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Members,
}

impl Progress {
    /// A live line for an operation done one member at a time while the returned [`Rounds`]
    /// lives: the member at work, how much of `total` is done, and the time left at the rate
    /// so far (ticking while a member takes long). Nothing off a terminal.
    pub fn rounds(&self, unit: Unit, total: u64) -> Rounds<'_> {
        if !self.draws() {
            return Rounds { bar: None, progress: self, done_at: Arc::default() };
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(5));
        // short enough for an 80-column terminal; the member at work is cut to fit
        let template = match unit {
            Unit::Bytes => "[{elapsed_precise}] {bytes} of {total_bytes}, {left}: {wide_msg}",
            Unit::Members => "[{elapsed_precise}] {pos}/{len} members, {left}: {wide_msg}",
        };
        let done_at = Arc::new(AtomicU64::new(0));
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            let at = done_at.clone();
            let style = style.with_key("left", move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let done_at = Duration::from_millis(at.load(Ordering::Relaxed));
                let _ = w.write_str(&time_left(s.pos(), s.len().unwrap_or(0), done_at, s.elapsed()));
            });
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(500));
        if let Ok(mut live) = self.live.lock() {
            *live = Some(bar.clone());
        }
        Rounds { bar: Some(bar), progress: self, done_at }
    }
}

/// The time left when `done` of `total` was finished `done_at` into the work and it is now
/// `now`: the rate of what is done, less the time the member at work has taken already (at
/// least a second while unfinished). Unknown until a member is done.
pub fn time_left(done: u64, total: u64, done_at: Duration, now: Duration) -> String {
    if done == 0 {
        return "time left after one".into();
    }
    if done >= total {
        return "finishing".into();
    }
    let whole = done_at.mul_f64(total as f64 / done as f64);
    let left = whole.saturating_sub(now).max(Duration::from_secs(1));
    format!("about {} left", short(left))
}

/// `4 s`, `3 min 20 s`, `2 h 5 min`: short enough for the line.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// A member-by-member live line; cleared when dropped.
pub struct Rounds<'a> {
    bar: Option<indicatif::ProgressBar>,
    progress: &'a Progress,
    /// When (ms into the line) the last member was finished.
    done_at: Arc<AtomicU64>,
}

impl Rounds<'_> {
    /// Now at work: `what` (e.g. "defrag https://10.0.0.12:2379 (2 of 3)"), with `done` of the
    /// total finished before it.
    pub fn at(&self, what: &str, done: u64) {
        if let Some(b) = &self.bar {
            if done != b.position() {
                self.done_at.store(u64::try_from(b.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            b.set_position(done);
            b.set_message(what.to_string());
        }
    }
}

impl Drop for Rounds<'_> {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            if let Ok(mut live) = self.progress.live.lock() {
                *live = None;
            }
            b.finish_and_clear();
        }
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
    fn time_left_is_unknown_until_a_member_is_done_then_follows_the_rate_so_far() {
        let s = Duration::from_secs;
        assert_eq!(time_left(0, 3, s(0), s(5)), "time left after one");
        assert_eq!(time_left(1, 3, s(20), s(20)), "about 40 s left");
        // ten seconds into the second member, ten fewer left
        assert_eq!(time_left(1, 3, s(20), s(30)), "about 30 s left");
        assert_eq!(time_left(2, 3, s(20), s(20)), "about 10 s left");
        // a big member done first: the rest is estimated by bytes, not by members
        assert_eq!(time_left(3 << 30, 4 << 30, s(90), s(90)), "about 30 s left");
        // a member slower than the ones before: never "0 left" while unfinished
        assert_eq!(time_left(1, 3, s(20), s(90)), "about 1 s left");
        assert_eq!(time_left(1, 7, s(100), s(100)), "about 10 min 0 s left");
        assert_eq!(time_left(1, 5, s(1800), s(1800)), "about 2 h 0 min left");
        assert_eq!(time_left(3, 3, s(20), s(20)), "finishing");
        assert_eq!(time_left(5, 3, s(20), s(20)), "finishing");
    }

    #[test]
    fn rounds_off_a_terminal_draw_nothing() {
        if std::io::stderr().is_terminal() {
            return;
        }
        let p = Progress::new(false);
        let r = p.rounds(Unit::Members, 3);
        assert!(r.bar.is_none());
        r.at("upgrade etcd-1 (1 of 3)", 0);
    }

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
