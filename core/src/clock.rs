//! The one clock the core reads: milliseconds since the Unix epoch for every row it writes and every
//! deadline it compares against a row (retry backoff, stuck claims, retention).
//!
//! Production reads the system time. Tests read tokio's clock, which they can pause and advance, so linger,
//! backoff, stuck detection and retention are tested on simulated time instead of the wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now"; cheap to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, Default)]
enum Kind {
    #[default]
    System,
    /// Follows `tokio::time::Instant`, starting from the system time at creation.
    Tokio { start: tokio::time::Instant, start_ms: i64 },
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { kind: Kind::System }
    }

    /// A clock that follows tokio's time (paused and advanced by tests), starting at the current system
    /// time. Must be created inside a runtime.
    pub fn tokio() -> Clock {
        Clock { kind: Kind::Tokio { start: tokio::time::Instant::now(), start_ms: system_ms() } }
    }

    /// True when this clock follows tokio's time, which tests pause and advance.
    pub fn is_simulated(&self) -> bool {
        matches!(self.kind, Kind::Tokio { .. })
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self.kind {
            Kind::System => system_ms(),
            Kind::Tokio { start, start_ms } => start_ms + start.elapsed().as_millis() as i64,
        }
    }
}

fn system_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_only_with_tokio_time() {
        let clock = Clock::tokio();
        let t0 = clock.now_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now_ms(), t0, "paused time does not move with the wall clock");
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms(), t0 + 90_000);
    }
}
