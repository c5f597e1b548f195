//! The backend state machine, free of I/O: events and the clock in, state and
//! factor out.

use std::time::Instant;

use super::Settings;

/// Where a backend stands. The names are the ones `/status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    Warming = 0,
    Ready = 1,
    Down = 2,
    Ejected = 3,
}

/// Something a probe or the proxy saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A 2xx within the probe timeout, with the application's own warm-up percent if it
    /// sent `x-cutover-warmup`.
    ProbePassed {
        warmup_percent: Option<u8>,
    },
    ProbeFailed,
    /// A connect error, reset or timeout on real traffic. `may_eject` is false when the
    /// pool already has its maximum share ejected.
    RequestFailed {
        may_eject: bool,
    },
    RequestSucceeded,
}

/// Per-backend health logic. Owned by [`super::Backend`] behind a mutex that only
/// probes and failure reports take.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    state: State,
    settings: Settings,
    passes: u32,
    fails: u32,
    request_failures: u32,
    /// When the backend last entered `ready`; slow start counts from here.
    ready_since: Option<Instant>,
    /// Taken as already warm: present at start and passing its first probe.
    warm: bool,
    /// True until the first probe result: decides whether `warm` applies.
    first_probe_pending: bool,
    app_percent: Option<u8>,
    ejected_until: Option<Instant>,
    times_ejected: u32,
}

impl State {
    pub(crate) fn from_u8(v: u8) -> State {
        match v {
            1 => State::Ready,
            2 => State::Down,
            3 => State::Ejected,
            _ => State::Warming,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Warming => "warming",
            State::Ready => "ready",
            State::Down => "down",
            State::Ejected => "ejected",
        }
    }
}

impl Machine {
    /// A backend of a pool run on `settings`. `at_start` marks backends present when
    /// cutover starts: if their first probe passes they are taken as warm and skip slow
    /// start.
    pub(crate) fn new(settings: Settings, at_start: bool, now: Instant) -> Self {
        let has_probe = settings.has_probe();
        Machine {
            state: if has_probe {
                State::Warming
            } else {
                State::Ready
            },
            settings,
            passes: 0,
            fails: 0,
            request_failures: 0,
            ready_since: (!has_probe).then_some(now),
            warm: at_start,
            first_probe_pending: has_probe && at_start,
            app_percent: None,
            ejected_until: None,
            times_ejected: 0,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// The share of its configured weight the backend gets at `now`, in [0, 1].
    pub(crate) fn factor(&self, now: Instant) -> f64 {
        if self.state != State::Ready {
            return 0.0;
        }
        if let Some(p) = self.app_percent {
            return f64::from(p.min(100)) / 100.0;
        }
        match (&self.settings.slow_start, self.ready_since) {
            (Some(s), Some(since)) if !self.warm => {
                let t = now.saturating_duration_since(since).as_secs_f64();
                let x = (t / s.window.as_secs_f64()).min(1.0);
                let floor = f64::from(s.min_percent) / 100.0;
                // In whole percent: every change of the factor makes the pool rebuild its
                // pick table, and finer steps would not change a pick anyone could see.
                let f = x.powf(1.0 / s.aggression).max(floor).min(1.0);
                (f * 100.0).floor() / 100.0
            }
            _ => 1.0,
        }
    }

    /// Applies one event; returns the new state when it changed.
    pub(crate) fn observe(&mut self, event: Event, now: Instant) -> Option<State> {
        let probe_event = matches!(event, Event::ProbePassed { .. } | Event::ProbeFailed);
        if probe_event && !self.settings.has_probe() {
            // A probe that was on its way when a reload took the pool's probe away: no
            // probe will ever undo what it would do, so it does nothing.
            return None;
        }
        let before = self.state;
        self.expire_ejection(now);
        match event {
            Event::ProbePassed { warmup_percent } => {
                self.fails = 0;
                self.passes = self.passes.saturating_add(1);
                self.app_percent = warmup_percent;
                let first = std::mem::take(&mut self.first_probe_pending);
                match self.state {
                    State::Warming if first && self.warm => self.become_ready(now, true),
                    State::Warming | State::Down if self.passes >= self.settings.healthy() => {
                        self.become_ready(now, false)
                    }
                    State::Ejected if self.ejected_until.is_none() => self.become_ready(now, false),
                    _ => {}
                }
            }
            Event::ProbeFailed => {
                self.first_probe_pending = false;
                self.passes = 0;
                self.fails = self.fails.saturating_add(1);
                if self.state == State::Ready && self.fails >= self.settings.unhealthy() {
                    self.state = State::Down;
                }
            }
            Event::RequestFailed { may_eject } => {
                self.request_failures = self.request_failures.saturating_add(1);
                let eject = &self.settings.eject;
                if self.state == State::Ready
                    && may_eject
                    && self.request_failures >= eject.consecutive_failures
                {
                    let exp = self.times_ejected.min(20);
                    let spell = eject.base.saturating_mul(1u32 << exp).min(eject.max);
                    self.times_ejected = self.times_ejected.saturating_add(1);
                    self.ejected_until = Some(now + spell);
                    self.request_failures = 0;
                    self.passes = 0;
                    self.state = State::Ejected;
                }
            }
            Event::RequestSucceeded => self.request_failures = 0,
        }
        (self.state != before).then_some(self.state)
    }

    /// Ends an ejection whose time is up: straight back to ready without a probe,
    /// otherwise the next passing probe readmits it.
    pub(crate) fn expire_ejection(&mut self, now: Instant) -> Option<State> {
        match self.ejected_until {
            Some(until) if self.state == State::Ejected && now >= until => {
                self.ejected_until = None;
                if !self.settings.has_probe() {
                    self.become_ready(now, false);
                    return Some(State::Ready);
                }
                None
            }
            _ => None,
        }
    }

    /// Runs on `settings` from now on, keeping the state and the progress made: the
    /// counts of passes and failures, slow start's clock, a running ejection and how
    /// often the backend was ejected. New thresholds apply from the next event.
    ///
    /// Settings without a probe readmit a backend that was waiting for one (warming,
    /// down, or ejected with its time up), since no probe would ever move it again; it
    /// slow-starts, as any readmitted backend does. Returns the new state when it changed.
    /// A reload calls it for every backend that stays ([`super::Backend::apply`]).
    pub(crate) fn set_settings(&mut self, settings: Settings, now: Instant) -> Option<State> {
        let before = self.state;
        self.settings = settings;
        if !self.settings.has_probe() {
            self.first_probe_pending = false;
            // The application's own warm-up figure came with the probe, and goes with it.
            self.app_percent = None;
            let waiting = match self.state {
                State::Warming | State::Down => true,
                State::Ejected => self.ejected_until.is_none(),
                State::Ready => false,
            };
            if waiting {
                self.become_ready(now, false);
            }
        }
        (self.state != before).then_some(self.state)
    }

    fn become_ready(&mut self, now: Instant, warm: bool) {
        self.state = State::Ready;
        self.warm = warm;
        self.ready_since = Some(now);
        self.fails = 0;
        self.request_failures = 0;
    }

    /// How long until the current ejection ends, if one is running.
    #[cfg(test)]
    pub(crate) fn ejected_for(&self, now: Instant) -> Option<std::time::Duration> {
        self.ejected_until.map(|u| u.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests;
