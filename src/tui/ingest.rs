//! Reading log lines fast, for replay of long runs.
//!
//! `step` lines are nearly all of a log; parsing them through `Event` (an
//! internally tagged enum with a flattened metric map) buffers every field and
//! allocates every metric name. Here a step line is read straight into a
//! borrowed [`StepView`]; anything else, or any step line the fast path does
//! not take, goes through `Event` as usual, so both paths accept the same lines.

use super::run::StepView;
use crate::events::{Event, SCHEMA_VERSION};
use anyhow::{bail, Result};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// One parsed line.
pub enum Parsed<'a> {
    Step(StepView<'a>),
    Other(Box<Event>),
    /// Blank line.
    Blank,
    /// Not an event; the reason.
    Bad(String),
}

/// Parse one line (without its newline). Fails only on a newer schema.
pub fn parse_line(line: &[u8]) -> Result<Parsed<'_>> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Ok(Parsed::Blank);
    }
    if trimmed.starts_with(br#"{"kind":"step""#) {
        if let Ok(FastStep(s)) = serde_json::from_slice::<FastStep>(trimmed) {
            return Ok(Parsed::Step(s));
        }
    }
    match serde_json::from_slice::<Event>(trimmed) {
        Ok(Event::RunStart(rs)) if rs.schema > SCHEMA_VERSION => bail!(
            "this log has schema version {}, newer than this driftui reads ({}); \
             update driftui to open it",
            rs.schema,
            SCHEMA_VERSION
        ),
        Ok(e) => Ok(Parsed::Other(Box::new(e))),
        Err(e) => Ok(Parsed::Bad(e.to_string())),
    }
}

struct FastStep<'a>(StepView<'a>);

impl<'de> Deserialize<'de> for FastStep<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

/// A number, or `null` read as NaN (how the log writes a non-finite loss).
struct Finite(f64);

impl<'de> Deserialize<'de> for Finite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Finite(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN)))
    }
}

impl<'de> Visitor<'de> for StepVisitor {
    type Value = FastStep<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a step event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut s = StepView::default();
        // Required fields, as bits: t phase step global_step loss lr grad_norm tokens seconds.
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<&'de str>()? {
            let bit = match key {
                "kind" => {
                    let kind: &str = map.next_value()?;
                    if kind != "step" {
                        return Err(de::Error::custom("not a step"));
                    }
                    continue;
                }
                "t" => {
                    s.t = map.next_value()?;
                    0
                }
                "phase" => {
                    s.phase = map.next_value()?;
                    1
                }
                "step" => {
                    s.step = map.next_value()?;
                    2
                }
                "global_step" => {
                    s.global_step = map.next_value()?;
                    3
                }
                "loss" => {
                    s.loss = map.next_value::<Finite>()?.0;
                    4
                }
                "lr" => {
                    s.lr = map.next_value()?;
                    5
                }
                "grad_norm" => {
                    s.grad_norm = map.next_value::<Finite>()?.0;
                    6
                }
                "tokens" => {
                    s.tokens = map.next_value()?;
                    7
                }
                "seconds" => {
                    s.seconds = map.next_value()?;
                    8
                }
                metric => {
                    s.metrics.push((metric, map.next_value()?));
                    continue;
                }
            };
            if seen & (1 << bit) != 0 {
                // A repeated field: let the full parser decide.
                let _ = map.next_value::<IgnoredAny>();
                return Err(de::Error::custom("duplicate field"));
            }
            seen |= 1 << bit;
        }
        if seen != 0x1ff {
            return Err(de::Error::custom("missing field"));
        }
        Ok(FastStep(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StepEvent;
    use std::collections::BTreeMap;

    fn step_line(metrics: &[(&str, f64)], loss: f64) -> String {
        let e = Event::Step(StepEvent {
            t: 5.5,
            phase: 1,
            step: 3,
            global_step: 123,
            loss,
            lr: 1e-5,
            grad_norm: 2.0,
            tokens: 99,
            seconds: 0.25,
            metrics: metrics
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        });
        serde_json::to_string(&e).unwrap()
    }

    #[test]
    fn fast_path_reads_what_the_event_parser_reads() {
        let line = step_line(&[("rewards/margins", 0.5), ("kl", 0.01)], f64::NAN);
        let Parsed::Step(s) = parse_line(line.as_bytes()).unwrap() else {
            panic!("not fast-parsed");
        };
        let Event::Step(e) = serde_json::from_str::<Event>(&line).unwrap() else {
            panic!()
        };
        let mine = StepView::of(&e);
        assert_eq!(s.global_step, mine.global_step);
        assert!(s.loss.is_nan() && mine.loss.is_nan());
        assert_eq!(
            (s.t, s.phase, s.step, s.lr, s.grad_norm, s.tokens, s.seconds),
            (
                mine.t,
                mine.phase,
                mine.step,
                mine.lr,
                mine.grad_norm,
                mine.tokens,
                mine.seconds
            )
        );
        let mut a = s.metrics.clone();
        a.sort_by(|x, y| x.0.cmp(y.0));
        assert_eq!(a, mine.metrics);
    }

    #[test]
    fn lines_the_fast_path_refuses_fall_back_or_are_bad() {
        // A string metric: Event refuses it too.
        let bad = r#"{"kind":"step","t":1,"phase":0,"step":1,"global_step":1,"loss":1,"lr":1,"grad_norm":1,"tokens":1,"seconds":1,"note":"x"}"#;
        assert!(matches!(
            parse_line(bad.as_bytes()).unwrap(),
            Parsed::Bad(_)
        ));
        // Missing a field.
        let short = r#"{"kind":"step","t":1,"phase":0}"#;
        assert!(matches!(
            parse_line(short.as_bytes()).unwrap(),
            Parsed::Bad(_)
        ));
        assert!(matches!(parse_line(b"  ").unwrap(), Parsed::Blank));
        let alert = r#"{"kind":"alert","t":1,"level":"warning","message":"m"}"#;
        assert!(matches!(
            parse_line(alert.as_bytes()).unwrap(),
            Parsed::Other(_)
        ));
        let newer = r#"{"kind":"run_start","schema":99,"t":0,"run":"x","seed":1,"model":{"source":"a","architecture":"b","parameters":1,"trainable":1,"dtype":"f32","device":"cpu"},"phases":[]}"#;
        let err = parse_line(newer.as_bytes()).err().unwrap().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }
}
