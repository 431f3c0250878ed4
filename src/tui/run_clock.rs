//! A run's time as its events stamp it: wall time since the start, and
//! running time, which leaves out pauses (and, for a resumed run, the time
//! no process was training). Rates and the ETA are over running time, so a
//! pause does not make the run look slower than it trains.

use std::collections::VecDeque;

/// Steps over which steps/s and tokens/s are averaged.
const RATE_WINDOW: usize = 32;

/// One step, placed on the running clock.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StepMark {
    /// Running seconds at the step's event.
    running: f64,
    global_step: u64,
    tokens: u64,
    /// The step's own duration, as the trainer measured it.
    seconds: f64,
}

/// Wall and running time of one run, and the rate of its last steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunClock {
    start: Option<f64>,
    /// Time of the latest event.
    last: Option<f64>,
    /// Seconds of pauses that have ended.
    paused: f64,
    /// Start of the pause under way.
    paused_since: Option<f64>,
    recent: VecDeque<StepMark>,
}

fn usable(t: f64) -> bool {
    t.is_finite() && t > 0.0
}

impl RunClock {
    /// A run that started at `t`.
    pub fn started_at(t: f64) -> Self {
        let mut c = RunClock::default();
        if usable(t) {
            c.start = Some(t);
            c.last = Some(t);
        }
        c
    }

    /// Any event, at `t`: the clock reads up to the latest.
    pub fn observe(&mut self, t: f64) {
        if usable(t) {
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
            self.start.get_or_insert(t);
        }
    }

    /// The run paused at `t`.
    pub fn pause(&mut self, t: f64) {
        if !usable(t) {
            return;
        }
        self.observe(t);
        if self.paused_since.is_none() {
            self.paused_since = self.last;
        }
    }

    /// The run went on at `t` (after a pause, or a resume from a snapshot:
    /// either way the time since it last moved was not training).
    pub fn resume(&mut self, t: f64) {
        self.observe(t);
        if let Some(since) = self.paused_since.take() {
            // Events stamped during the pause may be later than a skewed `t`.
            let end = self.last.unwrap_or(since);
            self.paused += (end - since).max(0.0);
        }
    }

    /// A process resumed the run at `t`; it stood still since the last event.
    pub fn resumed_run(&mut self, t: f64) {
        if self.paused_since.is_none() {
            self.paused_since = self.last;
        }
        self.resume(t);
    }

    /// The run ended at `t` (a stop while paused ends the pause).
    pub fn end(&mut self, t: f64) {
        self.resume(t);
    }

    /// One optimizer step, its event at `t`.
    pub fn step(&mut self, t: f64, global_step: u64, tokens: u64, seconds: f64) {
        // A step means training goes on, whether or not a resume was logged.
        self.resume(t);
        if self.recent.len() == RATE_WINDOW {
            self.recent.pop_front();
        }
        let running = self.running().unwrap_or(0.0);
        self.recent.push_back(StepMark {
            running,
            global_step,
            tokens,
            seconds: if seconds.is_finite() { seconds } else { 0.0 },
        });
    }

    /// Forget steps after `global_step` (a resumed run replaces them).
    pub fn truncate_after(&mut self, global_step: u64) {
        self.recent.retain(|s| s.global_step <= global_step);
    }

    pub fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// Seconds from the start to the latest event.
    pub fn wall(&self) -> Option<f64> {
        Some((self.last? - self.start?).max(0.0))
    }

    /// Wall time less the pauses.
    pub fn running(&self) -> Option<f64> {
        let open = match (self.paused_since, self.last) {
            (Some(since), Some(last)) => (last - since).max(0.0),
            _ => 0.0,
        };
        Some((self.wall()? - self.paused - open).max(0.0))
    }

    /// Seconds the run stood paused so far.
    pub fn paused(&self) -> Option<f64> {
        Some((self.wall()? - self.running()?).max(0.0))
    }

    /// Optimizer steps per running second over the last steps.
    pub fn steps_per_second(&self) -> Option<f64> {
        let (first, last) = (self.recent.front()?, self.recent.back()?);
        let dt = last.running - first.running;
        let ds = last.global_step.saturating_sub(first.global_step) as f64;
        if dt > 0.0 && ds > 0.0 {
            return Some(ds / dt);
        }
        // One step so far, or clock-less logs: fall back to the steps' own time.
        let secs: f64 = self.recent.iter().map(|s| s.seconds).sum();
        (secs > 0.0).then(|| self.recent.len() as f64 / secs)
    }

    /// Tokens per running second over the last steps.
    pub fn tokens_per_second(&self) -> Option<f64> {
        let (first, last) = (self.recent.front()?, self.recent.back()?);
        // Summed as floats: a corrupt log's token counts near 2^64 overflow u64.
        let tokens: f64 = self.recent.iter().skip(1).map(|s| s.tokens as f64).sum();
        let dt = last.running - first.running;
        if dt > 0.0 && tokens > 0.0 {
            return Some(tokens / dt);
        }
        let secs: f64 = self.recent.iter().map(|s| s.seconds).sum();
        let all: f64 = self.recent.iter().map(|s| s.tokens as f64).sum();
        (secs > 0.0).then(|| all / secs)
    }

    /// Running seconds that `steps_left` more steps take at the present rate.
    pub fn eta(&self, steps_left: u64) -> Option<f64> {
        Some(steps_left as f64 / self.steps_per_second()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps one second apart from t = 100, `n` of them, from global step `from`.
    fn steps(c: &mut RunClock, t0: f64, from: u64, n: u64) {
        for i in 0..n {
            c.step(t0 + i as f64, from + i, 10, 0.9);
        }
    }

    /// Found by tests/mutation.rs (10^5 mutated logs): token counts near
    /// 2^64 overflowed the u64 sum behind tokens/s.
    #[test]
    fn token_counts_near_the_largest_integer_do_not_overflow() {
        let mut c = RunClock::started_at(0.0);
        c.step(1.0, 1, u64::MAX, 1.0);
        c.step(2.0, 2, u64::MAX, 1.0);
        c.step(3.0, 3, u64::MAX, 1.0);
        let tps = c.tokens_per_second().expect("a rate");
        // Two steps' tokens over the two seconds between the first and last.
        assert!((tps / (u64::MAX as f64) - 1.0).abs() < 1e-12, "{tps}");
    }

    #[test]
    fn a_pause_counts_toward_wall_time_only() {
        let mut c = RunClock::started_at(100.0);
        steps(&mut c, 101.0, 1, 10); // steps 1..=10 at t = 101..=110
        c.pause(110.5);
        c.resume(146.5); // 36 s paused
        steps(&mut c, 147.0, 11, 10); // steps 11..=20 at t = 147..=156
        assert_eq!(c.wall(), Some(56.0));
        assert_eq!(c.running(), Some(20.0));
        assert_eq!(c.paused(), Some(36.0));
        // 19 steps in 19 running seconds (20 s less the first step's second).
        assert!((c.steps_per_second().unwrap() - 1.0).abs() < 1e-12);
        assert!((c.tokens_per_second().unwrap() - 10.0).abs() < 1e-12);
        // The case: 185 steps left at 1 step/s is 3:05, not 6:10.
        assert!((c.eta(185).unwrap() - 185.0).abs() < 1e-9);
    }

    #[test]
    fn while_paused_the_running_clock_stands_still() {
        let mut c = RunClock::started_at(0.5);
        steps(&mut c, 1.0, 1, 4);
        c.pause(4.0);
        assert!(c.is_paused());
        c.observe(20.0); // another event while paused (a manual snapshot)
        assert_eq!(c.running(), Some(3.5));
        assert_eq!(c.wall(), Some(19.5));
        assert!((c.steps_per_second().unwrap() - 1.0).abs() < 1e-12);
        // A stop while paused ends the pause at the run's end.
        c.end(30.0);
        assert!(!c.is_paused());
        assert_eq!((c.running(), c.wall()), (Some(3.5), Some(29.5)));
    }

    #[test]
    fn a_resumed_run_does_not_count_the_time_no_process_trained() {
        let mut c = RunClock::started_at(1.0);
        steps(&mut c, 2.0, 1, 5); // last event at 6
        c.resumed_run(3606.0); // an hour later
        steps(&mut c, 3607.0, 6, 5);
        assert_eq!(c.running(), Some(10.0));
        assert!((c.steps_per_second().unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn odd_logs_do_not_break_the_clock() {
        let mut c = RunClock::default();
        assert_eq!(
            (c.wall(), c.running(), c.steps_per_second()),
            (None, None, None)
        );
        c.resume(5.0); // a resume without a pause
        c.pause(f64::NAN);
        c.pause(7.0);
        c.pause(9.0); // a second pause before any resume keeps the first start
        c.resume(4.0); // a resume stamped before its pause: it ends at the last event
        assert_eq!(c.wall(), Some(4.0));
        assert_eq!(c.running(), Some(2.0));
        // Clock-less steps: the steps' own durations give the rate.
        let mut c = RunClock::default();
        c.step(0.0, 1, 100, 0.5);
        c.step(0.0, 2, 100, 0.5);
        assert_eq!(c.steps_per_second(), Some(2.0));
        assert_eq!(c.tokens_per_second(), Some(200.0));
    }
}
