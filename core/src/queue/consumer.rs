//! One session's consumer: claims the session's messages strictly in order, one at a time, hands each to the
//! provider, and commits the memory together with the message's completion (and the next claim).
//!
//! It is a task with a wake channel (new work), a cancellation token (delete, shutdown) and a linger
//! deadline (no work): the shape of a debouncer. A summarize ends its batch; cancellation hands the
//! in-flight message back to `pending`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::message::{Claimed, Payload};
use super::{Command, Waker};
use crate::core::Settings;
use crate::events::{Event, Events};
use crate::memory::provider::{Provider, ProviderError, SessionContext};
use crate::memory::{NewObservation, NewSummary, Observation, Summary};
use crate::status::StatusTrigger;
use crate::store::messages::{self, AfterFailure, Claim};
use crate::store::{self, Store, StoreError, memories, sessions};

/// Observations kept as context for the next provider call in a batch.
const RECENT_CONTEXT: usize = 50;
/// The longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long to wait before trying the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// A provider's answer for a claimed message, waiting to be committed.
#[derive(Debug, Clone)]
struct Done {
    message_id: i64,
    attempt: u32,
    prompt_number: i64,
    tool: ToolLabel,
    outcome: Outcome,
}

/// Which tool an observation message is about, and who used it (empty for a summarize).
#[derive(Debug, Clone, Default)]
struct ToolLabel {
    name: String,
    /// The subagent that used it, when not the main agent.
    subagent: Option<String>,
}

#[derive(Debug, Clone)]
enum Outcome {
    Observed(Vec<NewObservation>),
    Summarized(NewSummary),
    Failed { error: String, retry_at: Option<i64> },
}

/// What committing a `Done` produced, for the events that follow the commit.
enum Applied {
    Observations(Vec<i64>, Vec<NewObservation>),
    Summary(i64, NewSummary),
    Failure(AfterFailure, String),
    /// The message was retried, aborted or reset meanwhile: nothing was written.
    Stale,
}

/// What every consumer works with; built once by the queue.
pub(super) struct Context {
    pub(super) store: Store,
    pub(super) provider: Arc<dyn Provider>,
    pub(super) settings: Arc<Settings>,
    /// Caps concurrent provider calls across all sessions; a consumer holds a permit for one call.
    pub(super) provider_permits: Semaphore,
    /// True while processing is paused; the queue holds the sender.
    pub(super) paused: watch::Receiver<bool>,
    pub(super) events: Events,
    pub(super) trigger: StatusTrigger,
    /// To the queue's actor: retire, exit, and wake a successor.
    pub(super) waker: Waker,
}

impl Context {
    /// Asks the actor whether this consumer may exit (no wake waiting). Yes when the actor is gone.
    async fn retire(&self, session_id: i64, generation: u64) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.waker.commands.send(Command::Retire { session_id, generation, reply }).is_err() {
            return true;
        }
        answer.await.unwrap_or(true)
    }

    fn exited(&self, session_id: i64, generation: u64) {
        let _ = self.waker.commands.send(Command::Exited { session_id, generation });
    }
}

/// One session's consumer.
pub(super) struct Consumer {
    ctx: Arc<Context>,
    session_id: i64,
    generation: u64,
    /// The session as known at batch start: project, agent id, current prompt.
    session: Option<sessions::Session>,
    /// This batch's observations, newest last: context for the next call.
    recent: VecDeque<NewObservation>,
}

/// What became of a claimed message.
enum Processed {
    /// The provider answered (or failed): commit this.
    Done(Done),
    /// Cancelled before the provider answered.
    Cancelled,
    /// The store could not give the provider its context: the message goes back untouched.
    StoreFailed(StoreError),
}

impl Consumer {
    pub(super) fn new(ctx: Arc<Context>, session_id: i64, generation: u64) -> Consumer {
        Consumer { ctx, session_id, generation, session: None, recent: VecDeque::new() }
    }

    pub(super) async fn run(mut self, wake: mpsc::Receiver<()>, cancel: CancellationToken) {
        let summarized = self.consume(wake, &cancel).await;
        // However it ended, this consumer no longer runs; a later one of the same session is left alone.
        self.ctx.exited(self.session_id, self.generation);
        if summarized {
            self.after_summary().await;
        }
    }

    /// Claims and processes until there is nothing to do. True when it ended its batch with a summary.
    async fn consume(&mut self, mut wake: mpsc::Receiver<()>, cancel: &CancellationToken) -> bool {
        let mut paused = self.ctx.paused.clone();
        let mut done: Option<Done> = None;
        let mut end_batch = false;
        loop {
            let claim_next = !cancel.is_cancelled() && !*paused.borrow() && !end_batch;
            if done.is_none() && !claim_next {
                if end_batch {
                    return true;
                }
                if cancel.is_cancelled() {
                    return false;
                }
                // Paused: wait to be resumed (or stopped). Nothing is claimed meanwhile.
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = paused.wait_for(|p| !*p) => {}
                }
                continue;
            }
            let claim = match self.step(done.clone(), claim_next).await {
                Ok(claim) => {
                    done = None;
                    claim
                }
                Err(e) => {
                    tracing::warn!(session_id = self.session_id, error = %e, "store unavailable to the consumer; trying again");
                    tokio::select! {
                        _ = cancel.cancelled() => return false,
                        _ = tokio::time::sleep(STORE_RETRY) => continue,
                    }
                }
            };
            match claim {
                None => {}
                Some(Claim::Empty) => {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = wake.recv() => {}
                        _ = tokio::time::sleep(self.ctx.settings.linger) => {
                            if self.ctx.retire(self.session_id, self.generation).await {
                                return false;
                            }
                        }
                    }
                }
                Some(Claim::NotBefore(at)) => {
                    let wait = Duration::from_millis((at - self.ctx.settings.clock.now_ms()).max(0) as u64);
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = wake.recv() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Some(Claim::Message(message)) => match self.process(&message, cancel).await {
                    Processed::Done(answer) => {
                        end_batch = matches!(answer.outcome, Outcome::Summarized(_));
                        done = Some(answer);
                    }
                    Processed::Cancelled => {
                        self.release(&message).await;
                        return false;
                    }
                    Processed::StoreFailed(e) => {
                        // Not the message's fault: hand it back with its attempt, and try again later.
                        tracing::warn!(message_id = message.id, error = %e, "cannot read the provider's context; trying again");
                        self.release(&message).await;
                        tokio::select! {
                            _ = cancel.cancelled() => return false,
                            _ = tokio::time::sleep(STORE_RETRY) => {}
                        }
                    }
                },
            }
        }
    }

    /// One write: commit the previous answer (if any) and claim the next message (if asked).
    async fn step(&mut self, done: Option<Done>, claim_next: bool) -> Result<Option<Claim>, StoreError> {
        let (session_id, clock) = (self.session_id, self.ctx.settings.clock);
        let (applied, claim) = self
            .ctx
            .store
            .write(move |c| {
                let now = clock.now_ms();
                let applied = done.map(|d| apply(c, session_id, d, now)).transpose()?;
                let claim = if claim_next { Some(messages::claim_next(c, session_id, now)?) } else { None };
                Ok((applied, claim))
            })
            .await?;
        let changed = applied.is_some() || matches!(claim, Some(Claim::Message(_)));
        if let Some((done_message, applied)) = applied {
            self.publish(done_message, applied);
        }
        if changed {
            self.ctx.trigger.changed();
        }
        Ok(claim)
    }

    /// Asks the provider about one message.
    async fn process(&mut self, message: &Claimed, cancel: &CancellationToken) -> Processed {
        let (context, tool) = match self.context(message).await {
            Ok(c) => c,
            Err(e) => return Processed::StoreFailed(e),
        };
        let ctx = &self.ctx;
        let settings = &ctx.settings;
        let call = async {
            let _permit = ctx.provider_permits.acquire().await.expect("the permit semaphore is never closed");
            let provider = &ctx.provider;
            let answer = tokio::time::timeout(settings.provider_timeout, async {
                match &message.payload {
                    Payload::Observation(tool) => provider.observe(&context, tool).await.map(Outcome::Observed),
                    Payload::Summarize(request) => provider.summarize(&context, request).await.map(Outcome::Summarized),
                }
            })
            .await;
            answer.unwrap_or(Err(ProviderError::Timeout(settings.provider_timeout)))
        };
        let answer = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Processed::Cancelled,
            answer = call => answer,
        };
        Processed::Done(match answer {
            Ok(outcome) => Done {
                message_id: message.id,
                attempt: message.attempts,
                prompt_number: message.prompt_number,
                tool,
                outcome,
            },
            Err(e) => self.failed(message, tool, e),
        })
    }

    /// The provider's context for a message: the session, the prompt, what was seen before.
    async fn context(&mut self, message: &Claimed) -> Result<(SessionContext, ToolLabel), StoreError> {
        let session_id = self.session_id;
        if self.session.is_none() || self.session.as_ref().is_some_and(|s| s.prompt_counter < message.prompt_number) {
            self.session = self.ctx.store.read(move |c| sessions::get(c, session_id)).await?;
        }
        // A session deleted under us: its messages are gone too, so this context is never used for memory.
        let session = self.session.clone().unwrap_or_default();
        let mut context = SessionContext {
            session_id,
            agent_session_id: session.agent_session_id.clone(),
            project: session.project.clone(),
            prompt_number: message.prompt_number,
            prompts: Vec::new(),
            observations: Vec::new(),
            tool_uses: Vec::new(),
        };
        let tool = match &message.payload {
            Payload::Observation(tool) => {
                context.prompts.extend(session.current_prompt.clone());
                context.observations = self.recent.iter().cloned().collect();
                ToolLabel { name: tool.tool_name.clone(), subagent: tool.subagent.clone() }
            }
            Payload::Summarize(_) => {
                let prompt_number = message.prompt_number;
                let span = move |c: &Connection| {
                    Ok((
                        memories::span(c, session_id, prompt_number)?,
                        messages::span_tool_uses(c, session_id, prompt_number)?,
                    ))
                };
                let ((prompts, observations), tool_uses) = self.ctx.store.read(span).await?;
                context.prompts = prompts;
                context.observations = observations;
                context.tool_uses = tool_uses;
                ToolLabel::default()
            }
        };
        Ok((context, tool))
    }

    fn failed(&self, message: &Claimed, tool: ToolLabel, error: ProviderError) -> Done {
        let settings = &self.ctx.settings;
        let now = settings.clock.now_ms();
        let out_of_attempts = message.attempts >= settings.max_attempts;
        let retry_at = match &error {
            ProviderError::GiveUp(_) => None,
            _ if out_of_attempts => None,
            ProviderError::RetryAfter { after, .. } => Some(now + after.as_millis() as i64),
            ProviderError::Retry(_) | ProviderError::Timeout(_) => {
                let factor = 2u32.saturating_pow(message.attempts.saturating_sub(1));
                let backoff = settings.retry_backoff.saturating_mul(factor).min(MAX_BACKOFF);
                Some(now + backoff.as_millis() as i64)
            }
        };
        tracing::warn!(message_id = message.id, attempt = message.attempts, error = %error, retry = retry_at.is_some(), "provider failed");
        Done {
            message_id: message.id,
            attempt: message.attempts,
            prompt_number: message.prompt_number,
            tool,
            outcome: Outcome::Failed { error: error.to_string(), retry_at },
        }
    }

    /// Hands a claimed message back untouched (cancelled mid-way).
    async fn release(&self, message: &Claimed) {
        let (id, attempt) = (message.id, message.attempts);
        if let Err(e) = self.ctx.store.write(move |c| messages::release(c, id, attempt)).await {
            tracing::warn!(message_id = id, error = %e, "could not hand a message back; shutdown's sweep will");
        }
        self.ctx.trigger.changed();
    }

    /// After a summarize this consumer is done; work queued behind the summarize starts a new batch. Called
    /// once the actor was told of the exit, so a wake sent after this check starts a new consumer.
    async fn after_summary(&self) {
        let session_id = self.session_id;
        match self.ctx.store.read(move |c| messages::has_pending(c, session_id)).await {
            Ok(false) => {}
            Ok(true) => self.ctx.waker.wake(session_id),
            Err(e) => tracing::warn!(session_id, error = %e, "cannot check for work after a summary"),
        }
    }

    /// Publishes what a commit produced and keeps this batch's context.
    fn publish(&mut self, done: DoneMessage, applied: Applied) {
        let events = &self.ctx.events;
        let project = self.session.as_ref().map(|s| s.project.clone()).unwrap_or_default();
        let now = self.ctx.settings.clock.now_ms();
        match applied {
            Applied::Observations(ids, observations) => {
                for (id, memory) in ids.into_iter().zip(observations) {
                    self.recent.push_back(memory.clone());
                    if self.recent.len() > RECENT_CONTEXT {
                        self.recent.pop_front();
                    }
                    events.publish(Event::NewObservation {
                        observation: Box::new(Observation {
                            id,
                            session_id: self.session_id,
                            project: project.clone(),
                            message_id: Some(done.message_id),
                            prompt_number: done.prompt_number,
                            tool_name: done.tool.name.clone(),
                            subagent: done.tool.subagent.clone(),
                            memory,
                            created_at: now,
                        }),
                    });
                }
            }
            Applied::Summary(id, memory) => {
                self.recent.clear();
                events.publish(Event::NewSummary {
                    summary: Box::new(Summary {
                        id,
                        session_id: self.session_id,
                        project,
                        message_id: Some(done.message_id),
                        prompt_number: done.prompt_number,
                        memory,
                        created_at: now,
                    }),
                });
            }
            Applied::Failure(AfterFailure::Failed, error) => events.publish(Event::MessageFailed {
                session_id: self.session_id,
                message_id: done.message_id,
                project,
                error,
            }),
            Applied::Failure(..) | Applied::Stale => {}
        }
    }
}

/// The identity of a committed answer, kept for its events.
struct DoneMessage {
    message_id: i64,
    prompt_number: i64,
    tool: ToolLabel,
}

/// Commits one answer: the message's new state and, only if the claim is still current, its memory.
fn apply(c: &Connection, session_id: i64, done: Done, now: i64) -> store::Result<(DoneMessage, Applied)> {
    let Done { message_id, attempt, mut prompt_number, tool, outcome } = done;
    let applied = match outcome {
        Outcome::Observed(observations) => {
            if let Some(filed_under) = messages::complete(c, message_id, attempt, now)? {
                prompt_number = filed_under;
                let of = memories::ObservationOf {
                    session_id,
                    message_id,
                    prompt_number,
                    tool_name: &tool.name,
                    subagent: tool.subagent.as_deref(),
                };
                let ids = memories::insert_observations(c, of, &observations, now)?;
                Applied::Observations(ids, observations)
            } else {
                Applied::Stale
            }
        }
        Outcome::Summarized(summary) => {
            if let Some(filed_under) = messages::complete(c, message_id, attempt, now)? {
                prompt_number = filed_under;
                let id = memories::insert_summary(c, session_id, message_id, prompt_number, &summary, now)?;
                messages::drop_span_payloads(c, session_id, prompt_number)?;
                Applied::Summary(id, summary)
            } else {
                Applied::Stale
            }
        }
        Outcome::Failed { error, retry_at } => {
            Applied::Failure(messages::fail_attempt(c, message_id, attempt, &error, retry_at, now)?, error)
        }
    };
    Ok((DoneMessage { message_id, prompt_number, tool }, applied))
}
