//! Waiting for a change to go INSYNC, with as few GetChange calls as the
//! wait allows.

use super::{INSYNC_TIMEOUT, Inner, PROVIDER};
use crate::dns::DnsError;
use aws_sdk_route53::types::ChangeStatus;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::{Instant, sleep};

impl Inner {
    /// How long changes take to go INSYNC, as far as we know: what the
    /// last one took, or how long the oldest one waiting has been PENDING
    /// if longer (so the first minute of a run, before any change went
    /// INSYNC, already gathers like a slow Route53 deserves).
    pub(super) fn insync(&self) -> Duration {
        let learned = Duration::from_millis(self.insync_ms.load(Ordering::Relaxed));
        let pending = self
            .waiting
            .lock()
            .expect("waiting")
            .values()
            .min()
            .map(|since| since.elapsed())
            .unwrap_or_default();
        learned.max(pending)
    }

    /// Asks until the change is INSYNC: first when the last change took to
    /// get there after its submission (half a second, the first time), then
    /// more and more rarely; one change at a time, oldest first. A minute
    /// PENDING costs a handful of calls for the first change of a run and
    /// about one for each later one.
    pub(super) async fn wait_insync(&self, change_id: &str) -> Result<(), DnsError> {
        let submitted = Instant::now();
        let deadline = submitted + INSYNC_TIMEOUT;
        let estimate = Duration::from_millis(self.insync_ms.load(Ordering::Relaxed));
        let waiting = Waiting::new(self, change_id, submitted);
        let mut delay = if estimate.is_zero() {
            Duration::from_millis(500)
        } else {
            estimate.mul_f64(0.9).max(Duration::from_millis(200))
        };
        let _turn = self.polling.lock().await;
        let first_look = submitted + delay;
        // Waited behind older changes past our first look: an INSYNC at
        // once then says nothing about how long it took.
        let late = Instant::now() > first_look;
        tokio::time::sleep_until(first_look).await;
        let mut polls = 0;
        loop {
            polls += 1;
            let out = self
                .call("GetChange", change_id, || {
                    self.client.get_change().id(change_id).send()
                })
                .await?;
            if out.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync) {
                let took = submitted.elapsed();
                // INSYNC at the first look may have come much earlier: aim
                // the next first look sooner.
                let learned = match (polls, late) {
                    (1, true) => None,
                    (1, false) => Some(took / 2),
                    _ => Some(took),
                };
                if let Some(e) = learned {
                    self.insync_ms
                        .store(e.as_millis() as u64, Ordering::Relaxed);
                }
                drop(waiting);
                tracing::debug!(
                    event = "dns.route53.insync",
                    change = change_id,
                    waited_ms = took.as_millis() as u64,
                    polls
                );
                return Ok(());
            }
            if Instant::now() + delay > deadline {
                return Err(DnsError::Api {
                    provider: PROVIDER,
                    operation: "GetChange",
                    name: change_id.to_string(),
                    message: format!("change not INSYNC after {}s", INSYNC_TIMEOUT.as_secs()),
                    code: None,
                });
            }
            delay = if estimate.is_zero() {
                delay.mul_f64(1.5)
            } else {
                estimate / 10
            }
            .clamp(Duration::from_secs(1), Duration::from_secs(5));
            sleep(delay).await;
        }
    }
}

/// A change PENDING, noted in `Inner::waiting` while it is asked about.
struct Waiting<'a> {
    inner: &'a Inner,
    id: String,
}

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner, id: &str, since: Instant) -> Self {
        inner
            .waiting
            .lock()
            .expect("waiting")
            .insert(id.to_string(), since);
        Waiting {
            inner,
            id: id.to_string(),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner.waiting.lock().expect("waiting").remove(&self.id);
    }
}
