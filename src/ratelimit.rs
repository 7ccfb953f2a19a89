//! A token bucket: `rate` requests per second, bursts up to `burst`.
//! Shared by everything that talks to one rate-limited API (Route53 per
//! account, each endpoint of an ACME CA).

use std::time::Duration;
use tokio::time::Instant;

pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        let rate = rate.max(0.1);
        let burst = burst.max(1.0);
        Self {
            rate,
            burst,
            state: tokio::sync::Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits for a token. Waiters queue on the lock, so they are served in turn.
    pub async fn acquire(&self) {
        let mut state = self.state.lock().await;
        loop {
            let now = Instant::now();
            let (tokens, last) = *state;
            let tokens =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
            if tokens >= 1.0 {
                *state = (tokens - 1.0, now);
                return;
            }
            *state = (tokens, now);
            tokio::time::sleep(Duration::from_secs_f64((1.0 - tokens) / self.rate)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let bucket = TokenBucket::new(5.0, 5.0);
        let start = Instant::now();
        for _ in 0..15 {
            bucket.acquire().await;
        }
        // 5 at once, then 10 more at 5/s.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(2100),
            "{elapsed:?}"
        );
    }
}
