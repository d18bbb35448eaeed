//! One session's consumer: claims the session's messages strictly in order (a summarize alone, consecutive
//! tool uses as one batch when the provider takes batches), asks the scribe for their memory, and commits
//! the memory of the whole batch, the call's tokens and every message's new state in one transaction
//! together with the next claim. A crash mid-batch reprocesses the whole batch, never half of it.
//!
//! It is a task with a wake channel (new work), a cancellation token (delete, shutdown) and a linger
//! deadline (no work): the shape of a debouncer. A summarize ends its run; cancellation hands the
//! in-flight batch back to `pending`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rusqlite::Connection;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::message::{Claimed, Payload, SummaryRequest, ToolUse};
use super::{Command, Waker};
use crate::core::Settings;
use crate::events::{Event, Events};
use crate::memory::local::LocalProvider;
use crate::memory::provider::{ProviderError, SessionContext, Usage};
use crate::memory::scribe::{Admission, Scribe};
use crate::memory::{MadeBy, NewObservation, NewSummary, Observation, Summary};
use crate::status::StatusTrigger;
use crate::store::calls::{self, NewCall};
use crate::store::messages::{self, AfterFailure, BatchClaim};
use crate::store::{self, Store, StoreError, memories, sessions};

/// Observations kept as context for the next provider call in a run.
const RECENT_CONTEXT: usize = 50;
/// The span's latest observations read as context for a provider that wants the span (its prompt shows 20).
const SPAN_CONTEXT: u32 = 20;
/// The longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long to wait before trying the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// A batch's answers, waiting to be committed.
#[derive(Debug, Clone)]
struct Done {
    items: Vec<Item>,
    /// The provider call to record, when it spent tokens.
    call: Option<NewCall>,
}

/// One claimed message's answer.
#[derive(Debug, Clone)]
struct Item {
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
    Observed(Vec<NewObservation>, MadeBy),
    /// `None`: the model found nothing worth a summary.
    Summarized(Option<NewSummary>, MadeBy),
    Failed {
        error: String,
        retry_at: Option<i64>,
    },
    /// Back to `pending` until `at`, attempt refunded (the provider asked for a rest).
    Postponed {
        error: String,
        at: i64,
    },
}

/// What committing an item produced, for the events that follow the commit.
enum Applied {
    Observations(Vec<i64>, Vec<NewObservation>, MadeBy),
    Summary(i64, NewSummary, MadeBy),
    Failure(AfterFailure, String),
    /// Nothing to announce: a skipped summary, a postponed message, or a message retried, aborted or
    /// reset meanwhile (nothing was written).
    Quiet,
}

/// What every consumer works with; built once by the queue.
pub(super) struct Context {
    pub(super) store: Store,
    pub(super) scribe: Scribe,
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
    /// The session as known at run start: project, agent id, current prompt.
    session: Option<sessions::Session>,
    /// This run's observations, newest last: context for the next call.
    recent: VecDeque<NewObservation>,
}

/// What became of a claimed batch.
enum Processed {
    /// The provider answered (or failed): commit this.
    Done(Done),
    /// Cancelled before the provider answered.
    Cancelled,
    /// The provider refuses its configuration: the batch goes back untouched and waits.
    Refused,
    /// The store could not give the provider its context: the batch goes back untouched.
    StoreFailed(StoreError),
}

/// The claimed tool uses of a batch, or its summarize.
enum Work<'a> {
    Tools(Vec<&'a ToolUse>),
    Summarize(&'a SummaryRequest),
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

    /// Claims and processes until there is nothing to do. True when it ended its run with a summary.
    async fn consume(&mut self, mut wake: mpsc::Receiver<()>, cancel: &CancellationToken) -> bool {
        let mut paused = self.ctx.paused.clone();
        let mut done: Option<Done> = None;
        let mut end_run = false;
        loop {
            let mut claim_next = !cancel.is_cancelled() && !*paused.borrow() && !end_run;
            if done.is_none() && !claim_next {
                if end_run {
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
            // Nothing is claimed while the provider cannot be called: what was answered is committed first,
            // then the consumer waits with its messages `pending`.
            let mut admission = None;
            if claim_next {
                let admit = self.ctx.scribe.admit();
                tokio::pin!(admit);
                match (&mut admit).now_or_never() {
                    Some(ready) => admission = Some(ready),
                    None if done.is_some() => claim_next = false,
                    None => {
                        tokio::select! {
                            _ = cancel.cancelled() => return false,
                            // Paused or cancelled meanwhile? Look again; the next admission comes at once.
                            _ = admit => continue,
                        }
                    }
                }
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
                Some(BatchClaim::Empty) => {
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
                Some(BatchClaim::NotBefore(at)) => {
                    let wait = Duration::from_millis((at - self.ctx.settings.clock.now_ms()).max(0) as u64);
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = wake.recv() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Some(BatchClaim::Batch(batch)) => {
                    let admission = admission.expect("a claim is made only once admitted");
                    match self.process(&batch, admission, cancel).await {
                        Processed::Done(answer) => {
                            end_run = answer.items.iter().any(|i| matches!(i.outcome, Outcome::Summarized(..)));
                            done = Some(answer);
                        }
                        Processed::Cancelled => {
                            self.release(&batch).await;
                            return false;
                        }
                        Processed::Refused => self.release(&batch).await,
                        Processed::StoreFailed(e) => {
                            // Not the messages' fault: hand them back with their attempts, and try again later.
                            tracing::warn!(session_id = self.session_id, error = %e, "cannot read the provider's context; trying again");
                            self.release(&batch).await;
                            tokio::select! {
                                _ = cancel.cancelled() => return false,
                                _ = tokio::time::sleep(STORE_RETRY) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// One write: commit the previous answers (if any) and claim the next batch (if asked).
    async fn step(&mut self, done: Option<Done>, claim_next: bool) -> Result<Option<BatchClaim>, StoreError> {
        let (session_id, clock) = (self.session_id, self.ctx.settings.clock);
        let batching = self.ctx.scribe.provider().batching();
        let (applied, claim) = self
            .ctx
            .store
            .write(move |c| {
                let now = clock.now_ms();
                let applied = done.map(|d| apply(c, session_id, d, now)).transpose()?;
                let claim = if claim_next {
                    Some(messages::claim_batch(c, session_id, now, batching.max_items, batching.max_tokens)?)
                } else {
                    None
                };
                Ok((applied, claim))
            })
            .await?;
        let changed = applied.is_some() || matches!(claim, Some(BatchClaim::Batch(_)));
        for (item, applied) in applied.into_iter().flatten() {
            self.publish(item, applied);
        }
        if changed {
            self.ctx.trigger.changed();
        }
        Ok(claim)
    }

    /// Asks for the memory of one claimed batch.
    async fn process(&mut self, batch: &[Claimed], admission: Admission, cancel: &CancellationToken) -> Processed {
        let first = &batch[0];
        let work = match &first.payload {
            Payload::Summarize(request) => Work::Summarize(request),
            Payload::Observation(_) => Work::Tools(
                batch
                    .iter()
                    .filter_map(|m| match &m.payload {
                        Payload::Observation(tool) => Some(tool.as_ref()),
                        Payload::Summarize(_) => None,
                    })
                    .collect(),
            ),
        };
        let wants_span = match &admission {
            Admission::Call(_, provider) => provider.wants_span(),
            Admission::Fallback(_) => false,
        };
        let context = match self.context(batch, &work, wants_span).await {
            Ok(c) => c,
            Err(e) => return Processed::StoreFailed(e),
        };
        let (ticket, provider) = match admission {
            Admission::Call(ticket, provider) => (ticket, provider),
            Admission::Fallback(reason) => {
                return Processed::Done(Done { items: fallback(batch, &context, &work, &reason), call: None });
            }
        };
        let ctx = &self.ctx;
        let settings = &ctx.settings;
        let call = async {
            let _permit = ctx.provider_permits.acquire().await.expect("the permit semaphore is never closed");
            let answer = tokio::time::timeout(settings.provider_timeout, async {
                match &work {
                    Work::Tools(tools) => {
                        let tools: Vec<ToolUse> = tools.iter().map(|t| (*t).clone()).collect();
                        provider.observe(&context, &tools).await.map(|made| (Some(made.memory), None, made.usage))
                    }
                    Work::Summarize(request) => {
                        provider.summarize(&context, request).await.map(|made| (None, Some(made.memory), made.usage))
                    }
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
        ctx.scribe.record(ticket, answer.as_ref().map(|(_, _, usage)| usage));
        let project = context.project.clone();
        let call_of = |usage: &Usage, readable: bool| {
            usage.spent().then(|| NewCall {
                provider: provider.name().to_string(),
                model: usage.model.clone(),
                project: project.clone(),
                session_id: self.session_id,
                messages: batch.len(),
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                readable,
            })
        };
        match answer {
            Ok((observed, summarized, usage)) => {
                let made_by = MadeBy::provider(provider.name(), usage.model.clone().filter(|_| usage.spent()));
                let items = match (observed, summarized) {
                    (Some(per_tool), _) => batch
                        .iter()
                        .zip(per_tool.into_iter().chain(std::iter::repeat_with(Vec::new)))
                        .map(|(m, observations)| item(m, Outcome::Observed(observations, made_by.clone())))
                        .collect(),
                    (None, summary) => vec![item(first, Outcome::Summarized(summary.flatten(), made_by))],
                };
                Processed::Done(Done { items, call: call_of(&usage, true) })
            }
            Err(ProviderError::Misconfigured(_)) => Processed::Refused,
            Err(error) => {
                let call = error.usage().and_then(|usage| call_of(usage, false));
                Processed::Done(Done { items: self.failed(batch, &context, &work, error), call })
            }
        }
    }

    /// The provider's context for a batch: the session, its prompts, what was seen before.
    async fn context(
        &mut self,
        batch: &[Claimed],
        work: &Work<'_>,
        wants_span: bool,
    ) -> Result<SessionContext, StoreError> {
        let session_id = self.session_id;
        let prompt_number = batch.iter().map(|m| m.prompt_number).max().unwrap_or_default();
        if self.session.is_none() || self.session.as_ref().is_some_and(|s| s.prompt_counter < prompt_number) {
            self.session = self.ctx.store.read(move |c| sessions::get(c, session_id)).await?;
        }
        // A session deleted under us: its messages are gone too, so this context is never used for memory.
        let session = self.session.clone().unwrap_or_default();
        let mut context = SessionContext {
            session_id,
            agent_session_id: session.agent_session_id.clone(),
            project: session.project.clone(),
            prompt_number,
            prompts: Vec::new(),
            observations: Vec::new(),
            tool_uses: Vec::new(),
        };
        match work {
            Work::Tools(_) if wants_span => {
                let span = move |c: &Connection| memories::span_latest(c, session_id, prompt_number, SPAN_CONTEXT);
                (context.prompts, context.observations) = self.ctx.store.read(span).await?;
            }
            Work::Tools(_) => {
                context.prompts.extend(session.current_prompt.clone());
                context.observations = self.recent.iter().cloned().collect();
            }
            Work::Summarize(_) => {
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
            }
        }
        Ok(context)
    }

    /// A failed call: each message retries with backoff (or after the provider's wait), and once out of
    /// attempts (or refused outright) gets `local`'s memory when `local` stands in, else is `failed`.
    fn failed(&self, batch: &[Claimed], context: &SessionContext, work: &Work<'_>, error: ProviderError) -> Vec<Item> {
        let settings = &self.ctx.settings;
        let now = settings.clock.now_ms();
        let text = error.to_string();
        tracing::warn!(session_id = self.session_id, messages = batch.len(), attempt = batch[0].attempts, error = %text, "provider failed");
        if let ProviderError::RetryAfter { after, .. } = &error {
            let at = now + after.as_millis() as i64;
            return batch.iter().map(|m| item(m, Outcome::Postponed { error: text.clone(), at })).collect();
        }
        let final_error = matches!(error, ProviderError::GiveUp(_));
        let out_of_attempts = batch.iter().all(|m| m.attempts >= settings.max_attempts);
        if (final_error || out_of_attempts) && self.ctx.scribe.falls_back() {
            let reason = format!("{} failed: {text}", self.ctx.scribe.provider().name());
            return fallback(batch, context, work, &reason);
        }
        batch
            .iter()
            .map(|m| {
                let retry_at = if final_error || m.attempts >= settings.max_attempts {
                    None
                } else {
                    let factor = 2u32.saturating_pow(m.attempts.saturating_sub(1));
                    let backoff = settings.retry_backoff.saturating_mul(factor).min(MAX_BACKOFF);
                    Some(now + backoff.as_millis() as i64)
                };
                item(m, Outcome::Failed { error: text.clone(), retry_at })
            })
            .collect()
    }

    /// Hands a claimed batch back untouched (cancelled mid-way, or the provider is paused).
    async fn release(&self, batch: &[Claimed]) {
        let claims: Vec<(i64, u32)> = batch.iter().map(|m| (m.id, m.attempts)).collect();
        let released = self
            .ctx
            .store
            .write(move |c| {
                for (id, attempt) in &claims {
                    messages::release(c, *id, *attempt)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = released {
            tracing::warn!(session_id = self.session_id, error = %e, "could not hand messages back; shutdown's sweep will");
        }
        self.ctx.trigger.changed();
    }

    /// After a summarize this consumer is done; work queued behind the summarize starts a new run. Called
    /// once the actor was told of the exit, so a wake sent after this check starts a new consumer.
    async fn after_summary(&self) {
        let session_id = self.session_id;
        match self.ctx.store.read(move |c| messages::has_pending(c, session_id)).await {
            Ok(false) => {}
            Ok(true) => self.ctx.waker.wake(session_id),
            Err(e) => tracing::warn!(session_id, error = %e, "cannot check for work after a summary"),
        }
    }

    /// Publishes what a commit produced and keeps this run's context.
    fn publish(&mut self, done: DoneMessage, applied: Applied) {
        let events = &self.ctx.events;
        let project = self.session.as_ref().map(|s| s.project.clone()).unwrap_or_default();
        let now = self.ctx.settings.clock.now_ms();
        match applied {
            Applied::Observations(ids, observations, made_by) => {
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
                            made_by: made_by.clone(),
                            created_at: now,
                        }),
                    });
                }
            }
            Applied::Summary(id, memory, made_by) => {
                self.recent.clear();
                events.publish(Event::NewSummary {
                    summary: Box::new(Summary {
                        id,
                        session_id: self.session_id,
                        project,
                        message_id: Some(done.message_id),
                        prompt_number: done.prompt_number,
                        memory,
                        made_by,
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
            Applied::Failure(..) | Applied::Quiet => {}
        }
    }
}

fn item(message: &Claimed, outcome: Outcome) -> Item {
    let tool = match &message.payload {
        Payload::Observation(tool) => ToolLabel { name: tool.tool_name.clone(), subagent: tool.subagent.clone() },
        Payload::Summarize(_) => ToolLabel::default(),
    };
    Item { message_id: message.id, attempt: message.attempts, prompt_number: message.prompt_number, tool, outcome }
}

/// `local`'s memory for a whole batch, marked with why it stood in.
fn fallback(batch: &[Claimed], context: &SessionContext, work: &Work<'_>, reason: &str) -> Vec<Item> {
    let made_by = MadeBy::fallback(reason);
    match work {
        Work::Summarize(request) => {
            vec![item(&batch[0], Outcome::Summarized(Some(LocalProvider::summary(context, request)), made_by))]
        }
        Work::Tools(tools) => batch
            .iter()
            .zip(tools)
            .map(|(m, tool)| item(m, Outcome::Observed(vec![LocalProvider::observation(tool)], made_by.clone())))
            .collect(),
    }
}

/// The identity of a committed answer, kept for its events.
struct DoneMessage {
    message_id: i64,
    prompt_number: i64,
    tool: ToolLabel,
}

/// Commits a batch's answers: the call, then each message's new state and, only where its claim is still
/// current, its memory.
fn apply(c: &Connection, session_id: i64, done: Done, now: i64) -> store::Result<Vec<(DoneMessage, Applied)>> {
    let call_id = done.call.as_ref().map(|call| calls::insert(c, call, now)).transpose()?;
    let mut applied = Vec::with_capacity(done.items.len());
    for Item { message_id, attempt, mut prompt_number, tool, outcome } in done.items {
        let result = match outcome {
            Outcome::Observed(observations, made_by) => match messages::complete(c, message_id, attempt, now)? {
                Some(filed_under) => {
                    prompt_number = filed_under;
                    let of = memories::ObservationOf {
                        session_id,
                        message_id,
                        prompt_number,
                        tool_name: &tool.name,
                        subagent: tool.subagent.as_deref(),
                        made_by: &made_by,
                        call_id,
                    };
                    let ids = memories::insert_observations(c, of, &observations, now)?;
                    Applied::Observations(ids, observations, made_by)
                }
                None => Applied::Quiet,
            },
            Outcome::Summarized(summary, made_by) => match messages::complete(c, message_id, attempt, now)? {
                Some(filed_under) => {
                    prompt_number = filed_under;
                    messages::drop_span_payloads(c, session_id, prompt_number)?;
                    match summary {
                        Some(summary) => {
                            let of = memories::SummaryOf {
                                session_id,
                                message_id,
                                prompt_number,
                                made_by: &made_by,
                                call_id,
                            };
                            let id = memories::insert_summary(c, of, &summary, now)?;
                            Applied::Summary(id, summary, made_by)
                        }
                        None => Applied::Quiet,
                    }
                }
                None => Applied::Quiet,
            },
            Outcome::Failed { error, retry_at } => {
                Applied::Failure(messages::fail_attempt(c, message_id, attempt, &error, retry_at, now)?, error)
            }
            Outcome::Postponed { error, at } => {
                messages::postpone(c, message_id, attempt, &error, at)?;
                Applied::Quiet
            }
        };
        applied.push((DoneMessage { message_id, prompt_number, tool }, result));
    }
    Ok(applied)
}
