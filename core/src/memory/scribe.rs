//! The scribe: the one way consumers reach the configured provider. It admits a call only when the provider
//! can take one, learns from every answer, and says when `local` must stand in.
//!
//! Health: a provider that refuses its configuration (401/403) is paused (messages wait, no attempt spent)
//! and probed every `provider_probe_secs` with the config file re-read, so fixing the key resumes it; one
//! that fails `circuit_failures` calls in a row (or rate-limits) opens a circuit breaker that rests, then lets
//! one call through. Budget: tokens spent today (UTC) against `max_tokens_per_day`; past it, `local` makes
//! the memory until the next day, said once by an event.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::provider::{self, Provider, ProviderError, Usage};
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::core::Settings;
use crate::events::{Event, Events};
use crate::status::StatusTrigger;
use crate::store::calls::DAY_MS;

/// The longest rest of an open circuit.
const MAX_COOLDOWN: Duration = Duration::from_secs(600);

/// Re-reads the configuration (the file and the environment), for a paused provider's probe.
pub type Reload = fn() -> Result<Config, ConfigError>;

/// How the provider is doing, for the status, the tray and the inspector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    /// Calls go through.
    #[default]
    Ok,
    /// It refuses its configuration: nothing is called until a probe succeeds.
    Misconfigured,
    /// It failed too many calls in a row: resting until `until`.
    CircuitOpen,
    /// It asked to be left alone until `until`.
    RateLimited,
    /// The day's token ceiling is reached: `local` makes memory until the next day.
    OverBudget,
}

/// The provider's part of the processing status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderStatus {
    /// The configured provider.
    pub name: String,
    /// How it is doing.
    pub health: Health,
    /// Why, when not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Since when (ms), when not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Until when (ms) it rests, or when the next probe is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Tokens spent today (UTC).
    pub tokens_today: u64,
    /// The daily ceiling (0 = none).
    pub max_tokens_per_day: u64,
}

/// What a consumer may do now.
pub enum Admission {
    /// Call the provider (this one: it may have been rebuilt from a fixed configuration); report the result
    /// with [`Scribe::record`].
    Call(Ticket, Arc<dyn Provider>),
    /// Do not call it: have `local` make the memory, marked with this reason.
    Fallback(String),
}

/// One admitted call. Dropped without being recorded (a cancelled call), it frees its probe slot.
#[derive(Debug)]
pub struct Ticket {
    scribe: Scribe,
    probe: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.probe {
            self.scribe.shared.lock().probing = false;
            self.scribe.shared.changed.notify_waiters();
        }
    }
}

/// The scribe's handle; clone freely.
#[derive(Clone)]
pub struct Scribe {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Scribe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scribe").field("provider", &self.shared.name).finish()
    }
}

struct Shared {
    name: String,
    provider: RwLock<Arc<dyn Provider>>,
    /// True when the configured provider is not `local`: memory it cannot make, `local` makes.
    falls_back: bool,
    settings: Limits,
    reload: Option<(Reload, std::path::PathBuf)>,
    clock: Clock,
    state: Mutex<State>,
    /// Woken when the state changes (a probe ended, a rest is over early).
    changed: Notify,
    status: watch::Sender<ProviderStatus>,
    events: Events,
    trigger: StatusTrigger,
}

/// The tunables the scribe reads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tokens a day (0 = none).
    pub max_tokens_per_day: u64,
    /// How often a misconfigured provider is probed.
    pub probe_every: Duration,
    /// Consecutive outages that open the circuit.
    pub circuit_failures: u32,
    /// The first rest of an open circuit.
    pub cooldown: Duration,
}

impl From<&Config> for Limits {
    fn from(c: &Config) -> Limits {
        Limits {
            max_tokens_per_day: c.max_tokens_per_day,
            probe_every: Duration::from_secs(c.provider_probe_secs.max(1)),
            circuit_failures: c.circuit_failures.max(1),
            cooldown: Duration::from_secs(c.circuit_cooldown_secs.max(1)),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    health: Health,
    reason: Option<String>,
    since: Option<i64>,
    /// When a rest ends or the next probe is due (ms).
    until: i64,
    /// A probe call is in flight: nobody else calls.
    probing: bool,
    /// Outages in a row.
    failures: u32,
    /// The next rest of the circuit.
    cooldown: Duration,
    /// The UTC day `spent` counts, and the tokens spent on it.
    day: i64,
    spent: u64,
    /// The ceiling was announced for `day`.
    announced: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Scribe {
    /// A scribe over `provider` with the settings' limits, fallback and reload (which rebuilds a paused
    /// provider with its files under `data_dir`). `spent_today` is what the store says was spent so far today.
    pub(crate) fn new(
        provider: Arc<dyn Provider>,
        settings: &Settings,
        data_dir: std::path::PathBuf,
        spent_today: u64,
        events: Events,
        trigger: StatusTrigger,
    ) -> Scribe {
        let (limits, clock, falls_back) = (settings.provider_limits, settings.clock, settings.fallback_to_local);
        let reload = settings.provider_reload.map(|reload| (reload, data_dir));
        let now = clock.now_ms();
        let state =
            State { cooldown: limits.cooldown, day: now.div_euclid(DAY_MS), spent: spent_today, ..State::default() };
        let name = provider.name().to_string();
        let (status, _) = watch::channel(ProviderStatus { name: name.clone(), ..ProviderStatus::default() });
        let scribe = Scribe {
            shared: Arc::new(Shared {
                name,
                provider: RwLock::new(provider),
                falls_back,
                settings: limits,
                reload,
                clock,
                state: Mutex::new(state),
                changed: Notify::new(),
                status,
                events,
                trigger,
            }),
        };
        scribe.publish(&scribe.shared.lock());
        scribe
    }

    /// The provider as configured now.
    pub fn provider(&self) -> Arc<dyn Provider> {
        self.shared.provider.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when `local` stands in for what the configured provider cannot make.
    pub fn falls_back(&self) -> bool {
        self.shared.falls_back
    }

    /// Follows the provider's status.
    pub fn status(&self) -> watch::Receiver<ProviderStatus> {
        self.shared.status.subscribe()
    }

    /// Waits until a call may be made (or `local` must stand in). Cancel by dropping the future.
    pub async fn admit(&self) -> Admission {
        loop {
            let changed = self.shared.changed.notified();
            let now = self.shared.clock.now_ms();
            let wait_until = {
                let mut state = self.shared.lock();
                if let Some(reason) = self.over_budget(&mut state, now) {
                    return Admission::Fallback(reason);
                }
                match state.health {
                    Health::Ok | Health::OverBudget => {
                        return Admission::Call(Ticket { scribe: self.clone(), probe: false }, self.provider());
                    }
                    Health::RateLimited if now >= state.until && !state.probing => {
                        state.health = Health::Ok;
                        (state.reason, state.since) = (None, None);
                        self.publish(&state);
                        return Admission::Call(Ticket { scribe: self.clone(), probe: false }, self.provider());
                    }
                    Health::Misconfigured | Health::CircuitOpen if now >= state.until && !state.probing => {
                        state.probing = true;
                        let misconfigured = state.health == Health::Misconfigured;
                        drop(state);
                        if misconfigured {
                            self.reload();
                        }
                        return Admission::Call(Ticket { scribe: self.clone(), probe: true }, self.provider());
                    }
                    _ if state.probing => None,
                    _ => Some(state.until),
                }
            };
            match wait_until {
                Some(at) => {
                    let wait = Duration::from_millis((at - now).max(0) as u64);
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Learns from a call's result: its tokens, and what it says of the provider's health.
    pub fn record(&self, ticket: Ticket, result: Result<&Usage, &ProviderError>) {
        let now = self.shared.clock.now_ms();
        let limits = self.shared.settings;
        let mut state = self.shared.lock();
        let usage = match result {
            Ok(usage) => Some(usage),
            Err(e) => e.usage(),
        };
        if let Some(usage) = usage {
            self.spend(&mut state, now, usage.total());
        }
        // `local` (wrapped with injected faults in tests) has no health to keep: its failures are the
        // messages' own, retried and then `failed` as they are.
        let result = if self.shared.falls_back { result } else { Ok(&Usage::default()) };
        match result {
            Err(ProviderError::Misconfigured(reason)) => {
                if state.health != Health::Misconfigured {
                    tracing::warn!(provider = %self.shared.name, error = %reason, "the provider refuses its configuration; pausing it");
                    state.since = Some(now);
                }
                state.health = Health::Misconfigured;
                state.reason = Some(reason.to_string());
                state.until = now + limits.probe_every.as_millis() as i64;
            }
            Err(e) if e.is_outage() => {
                state.failures += 1;
                let rest = match e {
                    ProviderError::RetryAfter { after, .. } => Some((Health::RateLimited, *after)),
                    _ if ticket.probe || state.failures >= limits.circuit_failures => {
                        let rest = state.cooldown;
                        state.cooldown = (state.cooldown * 2).min(MAX_COOLDOWN);
                        Some((Health::CircuitOpen, rest))
                    }
                    _ => None,
                };
                if let Some((health, rest)) = rest {
                    if state.health != health {
                        state.since = Some(now);
                    }
                    if health == Health::CircuitOpen {
                        tracing::warn!(provider = %self.shared.name, failures = state.failures, rest = ?rest, error = %e, "circuit open");
                    }
                    state.health = health;
                    state.reason = Some(e.to_string());
                    state.until = state.until.max(now + rest.as_millis() as i64);
                }
            }
            // It answered (even if this message's answer was no use): the provider itself is fine.
            _ => {
                if state.health != Health::Ok && state.health != Health::OverBudget {
                    tracing::info!(provider = %self.shared.name, "the provider answers again");
                }
                state.failures = 0;
                state.cooldown = limits.cooldown;
                if state.health != Health::OverBudget {
                    state.health = Health::Ok;
                    (state.reason, state.since) = (None, None);
                }
            }
        }
        if ticket.probe {
            state.probing = false;
        }
        self.publish(&state);
        drop(state);
        let mut ticket = ticket;
        ticket.probe = false;
        self.shared.changed.notify_waiters();
    }

    /// The reason `local` stands in today, when the ceiling is reached; rolls the day over.
    fn over_budget(&self, state: &mut State, now: i64) -> Option<String> {
        let ceiling = self.shared.settings.max_tokens_per_day;
        let day = now.div_euclid(DAY_MS);
        if day != state.day {
            (state.day, state.spent, state.announced) = (day, 0, false);
            if state.health == Health::OverBudget {
                state.health = Health::Ok;
                (state.reason, state.since) = (None, None);
            }
            self.publish(state);
        }
        (ceiling > 0 && state.spent >= ceiling).then(|| format!("the daily token ceiling ({ceiling}) is reached"))
    }

    fn spend(&self, state: &mut State, now: i64, tokens: u64) {
        let _ = self.over_budget(state, now);
        state.spent += tokens;
        let ceiling = self.shared.settings.max_tokens_per_day;
        if ceiling > 0 && state.spent >= ceiling && !state.announced {
            state.announced = true;
            if state.health == Health::Ok {
                state.health = Health::OverBudget;
                state.reason = Some(format!(
                    "the daily token ceiling ({ceiling}) is reached; local makes memory until tomorrow (UTC)"
                ));
                state.since = Some(now);
            }
            tracing::warn!(spent = state.spent, ceiling, "daily token ceiling reached; falling back to local");
            self.shared.events.publish(Event::TokenCeilingReached {
                provider: self.shared.name.clone(),
                spent: state.spent,
                ceiling,
            });
        }
    }

    /// Rebuilds the provider from the configuration as it is now; keeps the old one when that fails.
    fn reload(&self) {
        let Some((reload, data_dir)) = &self.shared.reload else { return };
        let rebuilt = reload().map_err(|e| e.to_string()).and_then(|mut config| {
            config.data_dir = data_dir.clone();
            provider::from_config(&config).map_err(|e| e.to_string())
        });
        match rebuilt {
            Ok(provider) => *self.shared.provider.write().unwrap_or_else(|e| e.into_inner()) = provider,
            Err(e) => tracing::warn!(error = %e, "cannot re-read the provider's configuration; probing as it was"),
        }
    }

    fn publish(&self, state: &State) {
        let healthy = state.health == Health::Ok;
        let status = ProviderStatus {
            name: self.shared.name.clone(),
            health: state.health,
            reason: state.reason.clone(),
            since: state.since,
            until: (!healthy && state.health != Health::OverBudget).then_some(state.until),
            tokens_today: state.spent,
            max_tokens_per_day: self.shared.settings.max_tokens_per_day,
        };
        if self.shared.status.send_if_modified(|s| {
            if *s != status {
                *s = status;
                true
            } else {
                false
            }
        }) {
            self.shared.trigger.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::local::LocalProvider;
    use crate::memory::provider::BoxError;

    fn scribe(limits: Limits, spent_today: u64) -> (Scribe, Events) {
        let settings = Settings {
            clock: Clock::tokio(),
            provider_limits: limits,
            fallback_to_local: true,
            ..Settings::from(&Config::default())
        };
        let events = Events::new(16);
        let (trigger, _publisher, _status) = crate::status::channel();
        let scribe =
            Scribe::new(Arc::new(LocalProvider), &settings, "/nowhere".into(), spent_today, events.clone(), trigger);
        (scribe, events)
    }

    fn limits() -> Limits {
        Limits {
            max_tokens_per_day: 0,
            probe_every: Duration::from_secs(30),
            circuit_failures: 3,
            cooldown: Duration::from_secs(10),
        }
    }

    fn error(text: &str) -> BoxError {
        text.to_string().into()
    }

    async fn call(scribe: &Scribe) -> Ticket {
        match scribe.admit().await {
            Admission::Call(ticket, _) => ticket,
            Admission::Fallback(reason) => panic!("fallback: {reason}"),
        }
    }

    /// True when `admit` is still waiting after `wait` of simulated time.
    async fn waits(scribe: &Scribe, wait: Duration) -> bool {
        tokio::time::timeout(wait, scribe.admit()).await.is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_configuration_pauses_every_call_until_a_probe_one_at_a_time() {
        let (scribe, _) = scribe(limits(), 0);
        let ticket = call(&scribe).await;
        scribe.record(ticket, Err(&ProviderError::Misconfigured(error("401 invalid x-api-key"))));
        let status = scribe.status().borrow().clone();
        assert_eq!(status.health, Health::Misconfigured);
        assert_eq!(status.reason.as_deref(), Some("401 invalid x-api-key"));
        assert!(waits(&scribe, Duration::from_secs(29)).await, "no call before the probe is due");
        let probe = call(&scribe).await;
        assert!(waits(&scribe, Duration::from_secs(5)).await, "one probe at a time");
        scribe.record(probe, Ok(&Usage::default()));
        assert_eq!(scribe.status().borrow().health, Health::Ok);
        let _ = call(&scribe).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_frees_its_slot() {
        let (scribe, _) = scribe(limits(), 0);
        scribe.record(call(&scribe).await, Err(&ProviderError::Misconfigured(error("403"))));
        tokio::time::advance(Duration::from_secs(31)).await;
        drop(call(&scribe).await);
        let _ = tokio::time::timeout(Duration::from_millis(1), call(&scribe)).await.expect("the next probe may go");
    }

    #[tokio::test(start_paused = true)]
    async fn outages_in_a_row_open_the_circuit_and_each_failed_probe_doubles_the_rest() {
        let (scribe, _) = scribe(limits(), 0);
        let outage = || ProviderError::Retry(error("500 api_error"));
        for _ in 0..2 {
            scribe.record(call(&scribe).await, Err(&outage()));
        }
        assert_eq!(scribe.status().borrow().health, Health::Ok, "two are not yet three");
        // A refused request is an answer: the provider is up, and the count starts again.
        scribe.record(call(&scribe).await, Err(&ProviderError::GiveUp(error("400"))));
        scribe.record(call(&scribe).await, Err(&outage()));
        assert_eq!(scribe.status().borrow().health, Health::Ok, "one outage since the answer");
        for _ in 0..2 {
            scribe.record(call(&scribe).await, Err(&outage()));
        }
        assert_eq!(scribe.status().borrow().health, Health::CircuitOpen);
        assert!(waits(&scribe, Duration::from_millis(9_900)).await, "resting for the cooldown");
        let probe = call(&scribe).await;
        scribe.record(probe, Err(&outage()));
        assert!(waits(&scribe, Duration::from_millis(19_900)).await, "the second rest is twice as long");
        let probe = call(&scribe).await;
        scribe.record(probe, Ok(&Usage::default()));
        assert_eq!(scribe.status().borrow().health, Health::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_holds_every_call_that_long() {
        let (scribe, _) = scribe(limits(), 0);
        let limited = ProviderError::RetryAfter { after: Duration::from_secs(7), source: error("429") };
        scribe.record(call(&scribe).await, Err(&limited));
        assert_eq!(scribe.status().borrow().health, Health::RateLimited);
        assert!(waits(&scribe, Duration::from_millis(6_900)).await);
        let _ = tokio::time::timeout(Duration::from_millis(200), call(&scribe)).await.expect("free after 7 s");
        assert_eq!(scribe.status().borrow().health, Health::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn the_daily_ceiling_falls_back_to_local_says_so_once_and_ends_with_the_day() {
        let (scribe, events) = scribe(Limits { max_tokens_per_day: 1_000, ..limits() }, 900);
        let mut heard = events.subscribe();
        let spent = Usage { model: None, input_tokens: 80, output_tokens: 40 };
        scribe.record(call(&scribe).await, Ok(&spent));
        assert_eq!(scribe.status().borrow().health, Health::OverBudget);
        assert_eq!(scribe.status().borrow().tokens_today, 1_020);
        for _ in 0..2 {
            match scribe.admit().await {
                Admission::Fallback(reason) => assert!(reason.contains("daily token ceiling (1000)"), "{reason}"),
                Admission::Call(..) => panic!("a call past the ceiling"),
            }
        }
        assert!(matches!(heard.try_recv(), Ok(Event::TokenCeilingReached { spent: 1_020, ceiling: 1_000, .. })));
        assert!(heard.try_recv().is_err(), "said once");
        tokio::time::advance(Duration::from_millis(DAY_MS as u64)).await;
        let _ = call(&scribe).await;
        assert_eq!(scribe.status().borrow().health, Health::Ok, "a new day");
        assert_eq!(scribe.status().borrow().tokens_today, 0);
    }
}
