//! The stances a model can take on a value-laden question, and one value
//! per stance: a stance distribution, its standard errors, a drift.

use serde::{Deserialize, Serialize};
use std::ops::{Index, IndexMut, Sub};

super::log_names! {
    /// A stance on a value-laden question (the study's S).
    pub enum Stance {
        Support = "support",
        Neutral = "neutral",
        Oppose = "oppose",
    }
}

impl Stance {
    /// The stances in their fixed order: support, neutral, oppose.
    pub const EACH: [Stance; 3] = [Stance::Support, Stance::Neutral, Stance::Oppose];

    /// Position in [`Stance::EACH`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The capital initial the dashboard labels a stance with: `S`, `N`, `O`.
    pub fn initial(self) -> char {
        match self {
            Stance::Support => 'S',
            Stance::Neutral => 'N',
            Stance::Oppose => 'O',
        }
    }
}

/// One value per stance, written in the log as `[support, neutral, oppose]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PerStance<T>([T; 3]);

/// p(support), p(neutral), p(oppose): a model's stance on a question or a
/// topic (a mean over questions and samples).
pub type StanceDistribution = PerStance<f64>;

impl<T> PerStance<T> {
    pub const fn new(support: T, neutral: T, oppose: T) -> Self {
        Self([support, neutral, oppose])
    }

    /// The value of each stance from `f`.
    pub fn from_fn(mut f: impl FnMut(Stance) -> T) -> Self {
        Self(Stance::EACH.map(&mut f))
    }

    /// Each value through `f`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> PerStance<U> {
        PerStance(self.0.map(f))
    }

    /// (stance, value) in stance order.
    pub fn iter(&self) -> impl Iterator<Item = (Stance, &T)> {
        Stance::EACH.into_iter().zip(self.0.iter())
    }

    /// The values in stance order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut()
    }

    pub fn into_array(self) -> [T; 3] {
        self.0
    }
}

impl<T> From<[T; 3]> for PerStance<T> {
    fn from(values: [T; 3]) -> Self {
        Self(values)
    }
}

impl<T> Index<Stance> for PerStance<T> {
    type Output = T;
    fn index(&self, s: Stance) -> &T {
        &self.0[s.index()]
    }
}

impl<T> IndexMut<Stance> for PerStance<T> {
    fn index_mut(&mut self, s: Stance) -> &mut T {
        &mut self.0[s.index()]
    }
}

/// Stance by stance: a drift is the later distribution minus the earlier.
impl Sub for PerStance<f64> {
    type Output = PerStance<f64>;
    fn sub(self, rhs: Self) -> Self {
        PerStance::from_fn(|s| self[s] - rhs[s])
    }
}

impl PerStance<f64> {
    /// Each stance equally likely.
    pub fn uniform() -> Self {
        Self([1.0 / 3.0; 3])
    }

    /// The sum of the three values (1 for a distribution).
    pub fn sum(&self) -> f64 {
        self.0.iter().sum()
    }

    /// The stance with the largest value; the first of equals.
    pub fn leading(&self) -> Stance {
        let mut best = Stance::Support;
        for s in [Stance::Neutral, Stance::Oppose] {
            if self[s] > self[best] {
                best = s;
            }
        }
        best
    }

    /// Stance by stance, the mean of `items` (zeros when there are none).
    pub fn mean(items: &[Self]) -> Self {
        let n = items.len().max(1) as f64;
        Self::from_fn(|s| items.iter().map(|x| x[s]).sum::<f64>() / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_the_three_values_in_stance_order() {
        let d = StanceDistribution::from([0.5, 0.25, 0.25]);
        assert_eq!(serde_json::to_string(&d).unwrap(), "[0.5,0.25,0.25]");
        let back: StanceDistribution = serde_json::from_str("[0.1,0.2,0.7]").unwrap();
        assert_eq!(back[Stance::Oppose], 0.7);
        assert_eq!(back.leading(), Stance::Oppose);
        assert_eq!(
            serde_json::to_string(&Stance::EACH).unwrap(),
            r#"["support","neutral","oppose"]"#
        );
        assert_eq!("neutral".parse::<Stance>(), Ok(Stance::Neutral));
        assert!("for".parse::<Stance>().is_err());
    }

    #[test]
    fn means_drifts_and_ties() {
        let a = StanceDistribution::from([0.2, 0.5, 0.3]);
        let b = StanceDistribution::from([0.6, 0.1, 0.3]);
        let m = StanceDistribution::mean(&[a, b]);
        assert!((m[Stance::Support] - 0.4).abs() < 1e-15);
        assert!((m[Stance::Neutral] - 0.3).abs() < 1e-15);
        let d = b - a;
        assert!((d[Stance::Support] - 0.4).abs() < 1e-15);
        assert!((d[Stance::Neutral] + 0.4).abs() < 1e-15);
        assert_eq!(StanceDistribution::uniform().leading(), Stance::Support);
        assert_eq!(StanceDistribution::mean(&[]), StanceDistribution::default());
    }
}
