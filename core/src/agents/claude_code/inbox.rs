//! The hook inbox: events `memtray hook` stored in the database itself while no server answered. The
//! server takes them in when it starts and whenever a turn-level hook reaches it, oldest first, each
//! removed once handled (and the WAL checkpointed after, so no copy of the raw event lingers); replays are
//! keyed, so an event delivered twice is stored once.

use super::HookEvent;
use super::dispatch;
use crate::core::Result;
use crate::intake::Intake;

/// How many inbox events are read at a time.
const BATCH: u32 = 100;

/// Dispatches the events `memtray hook` left in the inbox, oldest first, each removed once it is handled.
/// Returns how many were dispatched. A malformed body is dropped with a warning.
pub async fn drain(intake: &Intake) -> Result<usize> {
    let mut done = 0;
    loop {
        let batch = intake.inbox_oldest(BATCH).await?;
        if batch.is_empty() {
            if done > 0 {
                intake.inbox_wipe().await;
            }
            return Ok(done);
        }
        for (id, body) in batch {
            match HookEvent::parse(body.as_bytes()) {
                Ok(event) => dispatch(intake, event, Some(&format!("inbox:{id}"))).await?,
                Err(e) => tracing::warn!(inbox_id = id, error = %e, "dropping a malformed inbox event"),
            }
            intake.inbox_remove(id).await?;
            done += 1;
        }
    }
}
