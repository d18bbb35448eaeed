//! `GET /stream`: server-sent events. The current `processing_status` first, then every core event and
//! every status change as they happen, each named by its [`Event::name`] with the event's JSON as data. A
//! subscriber that falls behind skips what it missed; the stream ends when the server stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use super::Stopping;
use crate::events::{Event, Updates};

pub(super) async fn stream(
    State(updates): State<Updates>,
    State(Stopping(stopping)): State<Stopping>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = updates.stream();
    let events = stream
        .map(|event: Event| Ok(SseEvent::default().event(event.name()).json_data(&event).expect("events serialize")));
    let stream = events.take_until(async move { stopping.cancelled().await });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
