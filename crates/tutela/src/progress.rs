//! A small progress bar for long commands: redrawn in place with `\r` on standard error when it
//! is a terminal (at most ten times a second), silent otherwise (logs and pipes stay clean).

use std::io::Write;
use std::time::{Duration, Instant};

const WIDTH: u64 = 30;

pub struct Progress {
    label: &'static str,
    enabled: bool,
    last_draw: Option<Instant>,
    drawn: bool,
    done: u64,
    total: u64,
}

impl Progress {
    pub fn new(label: &'static str, enabled: bool) -> Self {
        Progress {
            label,
            enabled,
            last_draw: None,
            drawn: false,
            done: 0,
            total: 0,
        }
    }

    /// Records progress; redraws when enough time has passed (or at the end).
    pub fn update(&mut self, done: u64, total: u64) {
        self.done = done;
        self.total = total;
        let due = self
            .last_draw
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if self.enabled && (due || done >= total) {
            self.draw();
        }
    }

    /// The bar's text for the current state.
    pub fn line(&self) -> String {
        let (done, total) = (self.done, self.total.max(self.done));
        let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        format!(
            "{} [{}{}] {pct:>3}% {done}/{total}",
            self.label,
            "#".repeat(filled as usize),
            ".".repeat((WIDTH - filled) as usize),
        )
    }

    fn draw(&mut self) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}", self.line());
        let _ = err.flush();
        self.last_draw = Some(Instant::now());
        self.drawn = true;
    }

    /// Draws the final state and ends the line.
    pub fn finish(&mut self) {
        if self.enabled {
            self.draw();
            if self.drawn {
                eprintln!();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_text() {
        let mut p = Progress::new("purging", false);
        p.update(0, 0);
        assert!(p.line().ends_with("100% 0/0"), "{}", p.line());
        p.update(250, 1000);
        assert_eq!(
            p.line(),
            format!(
                "purging [{}{}]  25% 250/1000",
                "#".repeat(7),
                ".".repeat(23)
            )
        );
        p.update(1000, 1000);
        assert!(p.line().contains(&"#".repeat(30)));
    }
}
