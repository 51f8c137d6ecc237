//! Step-by-step progress on stderr: what is happening, on which member, how long it took.

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
}
