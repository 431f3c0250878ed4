//! Learning-rate schedules, as transformers defines them: linear warmup from
//! 0, then constant, linear decay to 0, or half-cosine decay to 0; or
//! warmup-stable-decay (constant, then a half-cosine to 0 over the last
//! `decay` steps).

use crate::recipe::Schedule;

/// Learning rate for the optimizer step that follows `done` completed steps
/// (transformers' `lr_lambda(current_step)`).
pub fn lr_at(schedule: Schedule, base: f64, done: u64, warmup: u64, total: u64, decay: u64) -> f64 {
    if done < warmup {
        return base * done as f64 / warmup.max(1) as f64;
    }
    if schedule == Schedule::Wsd {
        let start = total.saturating_sub(decay).max(warmup);
        if done < start {
            return base;
        }
        let progress = ((done - start) as f64 / total.saturating_sub(start).max(1) as f64).min(1.0);
        return base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    }
    let decay_steps = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((done - warmup) as f64 / decay_steps).min(1.0);
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => base * (1.0 - progress).max(0.0),
        Schedule::Cosine | Schedule::Wsd => {
            base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay_by_hand() {
        // 10 steps, 2 warmup: lambdas 0, 0.5, then cosine over 8 steps.
        assert_eq!(lr_at(Schedule::Cosine, 1.0, 0, 2, 10, 0), 0.0);
        assert_eq!(lr_at(Schedule::Cosine, 1.0, 1, 2, 10, 0), 0.5);
        assert_eq!(lr_at(Schedule::Cosine, 1.0, 2, 2, 10, 0), 1.0);
        // Halfway through decay: cos(π/2) → 0.5.
        assert!((lr_at(Schedule::Cosine, 1.0, 6, 2, 10, 0) - 0.5).abs() < 1e-12);
        assert!((lr_at(Schedule::Linear, 2.0, 6, 2, 10, 0) - 1.0).abs() < 1e-12);
        assert_eq!(lr_at(Schedule::Constant, 3.0, 9, 2, 10, 0), 3.0);
        // Without warmup the first step runs at the full rate.
        assert_eq!(lr_at(Schedule::Linear, 1.0, 0, 0, 4, 0), 1.0);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 3, 0, 4, 0), 0.25);
        // WSD, 20 steps, 2 warmup, 4 decay: constant until step 16, then
        // a half-cosine: step 18 is halfway (0.5), step 20 is 0.
        assert_eq!(lr_at(Schedule::Wsd, 1.0, 1, 2, 20, 4), 0.5);
        assert_eq!(lr_at(Schedule::Wsd, 1.0, 15, 2, 20, 4), 1.0);
        assert_eq!(lr_at(Schedule::Wsd, 1.0, 16, 2, 20, 4), 1.0);
        assert!((lr_at(Schedule::Wsd, 1.0, 18, 2, 20, 4) - 0.5).abs() < 1e-12);
        assert!(lr_at(Schedule::Wsd, 1.0, 20, 2, 20, 4).abs() < 1e-12);
    }
}
