//! What a peer process prints, captured line by line from its stdout and
//! stderr, to read and wait on.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Captured lines of a process.
#[derive(Debug, Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Captures `stream` (read on a thread of its own; lossy UTF-8).
    pub fn capture(&self, stream: impl Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                lines
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).trim_end().to_owned());
                buf.clear();
            }
        });
    }

    /// Everything captured so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The first line containing `needle`, waiting up to `within`; `who`
    /// names the process when it never comes.
    pub fn wait_for(&self, who: &str, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.all().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "{who} never printed {needle:?}:\n{}",
                self.all().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `n` lines containing `needle` were printed.
    pub fn wait_count(&self, who: &str, needle: &str, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.all().iter().filter(|l| l.contains(needle)).count() < n {
            assert!(
                Instant::now() < deadline,
                "{who} printed {needle:?} fewer than {n} times:\n{}",
                self.all().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
