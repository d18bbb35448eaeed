//! `GET /stream`: server-sent events. The current `processing_status` first, then every core event and
//! every status change as they happen. A subscriber that falls behind skips what it missed; the stream ends
//! when the server stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use super::AppState;

pub(super) async fn stream(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let status = WatchStream::new(state.manager.status())
        .map(|status| SseEvent::default().event("processing_status").json_data(status).expect("status serializes"));
    let events = BroadcastStream::new(state.manager.events().subscribe()).filter_map(|event| {
        let event = event.ok()?;
        Some(SseEvent::default().event(event.name()).json_data(&event).expect("events serialize"))
    });
    let stopping = state.stopping.clone();
    let merged =
        futures_util::StreamExt::take_until(status.merge(events).map(Ok), async move { stopping.cancelled().await });
    Sse::new(merged).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
