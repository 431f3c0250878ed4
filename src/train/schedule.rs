//! Learning-rate schedules, as transformers defines them: linear warmup from
//! 0, then constant, linear decay to 0, or half-cosine decay to 0.

use crate::recipe::Schedule;

/// Learning rate for the optimizer step that follows `done` completed steps
/// (transformers' `lr_lambda(current_step)`).
pub fn lr_at(schedule: Schedule, base: f64, done: u64, warmup: u64, total: u64) -> f64 {
    if done < warmup {
        return base * done as f64 / warmup.max(1) as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((done - warmup) as f64 / decay_steps).min(1.0);
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => base * (1.0 - progress).max(0.0),
        Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay_by_hand() {
        // 10 steps, 2 warmup: lambdas 0, 0.5, then cosine over 8 steps.
        assert_eq!(lr_at(Schedule::Cosine, 1.0, 0, 2, 10), 0.0);
        assert_eq!(lr_at(Schedule::Cosine, 1.0, 1, 2, 10), 0.5);
        assert_eq!(lr_at(Schedule::Cosine, 1.0, 2, 2, 10), 1.0);
        // Halfway through decay: cos(π/2) → 0.5.
        assert!((lr_at(Schedule::Cosine, 1.0, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert!((lr_at(Schedule::Linear, 2.0, 6, 2, 10) - 1.0).abs() < 1e-12);
        assert_eq!(lr_at(Schedule::Constant, 3.0, 9, 2, 10), 3.0);
        // Without warmup the first step runs at the full rate.
        assert_eq!(lr_at(Schedule::Linear, 1.0, 0, 0, 4), 1.0);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 3, 0, 4), 0.25);
    }
}
