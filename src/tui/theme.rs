//! Colours and chart markers, from `themes/*.toml`.
//!
//! The built-in themes are embedded in the binary. A theme file given with
//! `--theme PATH` is layered over the default (dark) theme, so it names only
//! what it changes. Unknown keys and bad colours are errors with the file,
//! line and column: a broken theme never falls back silently.

use crate::events::PerStance;
use crate::location::line_col;
use anyhow::{anyhow, Result};
use ratatui::style::Color;
use ratatui::symbols::Marker;
use serde::{de, Deserialize, Deserializer};
use std::path::Path;
use std::str::FromStr;

/// The built-in themes: name and TOML text.
pub const BUILT_IN: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// A complete theme.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub background: Color,
    pub foreground: Color,
    pub muted: Color,
    pub border: Color,
    pub border_focused: Color,
    pub title: Color,
    pub accent: Color,
    pub ok: Color,
    pub warning: Color,
    pub error: Color,
    pub highlight_bg: Color,
    pub marker: Marker,
    pub axis: Color,
    pub phase_boundary: Color,
    /// Line colours; never empty.
    pub series: Vec<Color>,
    pub raw_when_smoothed: Color,
    /// support, neutral, oppose.
    pub stance: PerStance<Color>,
}

impl Default for Theme {
    fn default() -> Self {
        // The embedded default is checked by a test; it cannot fail to parse.
        Theme::built_in("dark").unwrap_or_else(|_| Theme::fallback())
    }
}

impl Theme {
    /// A theme by built-in name, or else a theme file layered over the default.
    pub fn load(name_or_path: Option<&str>) -> Result<Theme> {
        match name_or_path {
            None => Theme::built_in("dark"),
            Some(name) if BUILT_IN.iter().any(|(n, _)| *n == name) => Theme::built_in(name),
            Some(path) => {
                let p = Path::new(path);
                if !p.exists() {
                    let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
                    return Err(anyhow!(
                        "theme {path:?} is neither a built-in theme ({}) nor a file",
                        names.join(", ")
                    ));
                }
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow!("cannot read theme {}: {e}", p.display()))?;
                let mut theme = Theme::built_in("dark")?;
                theme.layer(&text, &p.display().to_string())?;
                theme.name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.to_string());
                Ok(theme)
            }
        }
    }

    /// One of the embedded themes, layered over the default.
    pub fn built_in(name: &str) -> Result<Theme> {
        let mut theme = Theme::fallback();
        let (_, dark) = BUILT_IN[0];
        theme.layer(dark, "themes/dark.toml (built in)")?;
        if name != "dark" {
            let (_, text) = BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| anyhow!("no built-in theme {name:?}"))?;
            theme.layer(text, &format!("themes/{name}.toml (built in)"))?;
        }
        theme.name = name.to_string();
        Ok(theme)
    }

    /// Apply what `text` (TOML) sets; `origin` names it in errors.
    pub fn layer(&mut self, text: &str, origin: &str) -> Result<()> {
        let file: ThemeFile = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            anyhow!("{origin}:{line}:{col}: {}", e.message().trim())
        })?;
        if let Some(ui) = file.ui {
            let set = |dst: &mut Color, src: Option<ThemeColor>| {
                if let Some(c) = src {
                    *dst = c.0;
                }
            };
            set(&mut self.background, ui.background);
            set(&mut self.foreground, ui.foreground);
            set(&mut self.muted, ui.muted);
            set(&mut self.border, ui.border);
            set(&mut self.border_focused, ui.border_focused);
            set(&mut self.title, ui.title);
            set(&mut self.accent, ui.accent);
            set(&mut self.ok, ui.ok);
            set(&mut self.warning, ui.warning);
            set(&mut self.error, ui.error);
            set(&mut self.highlight_bg, ui.highlight_bg);
        }
        if let Some(chart) = file.chart {
            if let Some(m) = chart.marker {
                self.marker = m.0;
            }
            if let Some(c) = chart.axis {
                self.axis = c.0;
            }
            if let Some(c) = chart.phase_boundary {
                self.phase_boundary = c.0;
            }
            if let Some(c) = chart.raw_when_smoothed {
                self.raw_when_smoothed = c.0;
            }
            if let Some(series) = chart.series {
                if series.is_empty() {
                    return Err(anyhow!(
                        "{origin}: [chart] series must list at least one colour"
                    ));
                }
                self.series = series.into_iter().map(|c| c.0).collect();
            }
        }
        if let Some(st) = file.stance {
            for (dst, src) in self
                .stance
                .values_mut()
                .zip([st.support, st.neutral, st.oppose])
            {
                if let Some(c) = src {
                    *dst = c.0;
                }
            }
        }
        Ok(())
    }

    /// Colour of the `i`th line of a chart.
    pub fn series_color(&self, i: usize) -> Color {
        self.series[i % self.series.len().max(1)]
    }

    /// Terminal defaults only; the base the built-ins are layered on.
    fn fallback() -> Theme {
        Theme {
            name: "fallback".into(),
            background: Color::Reset,
            foreground: Color::Reset,
            muted: Color::DarkGray,
            border: Color::DarkGray,
            border_focused: Color::Blue,
            title: Color::Blue,
            accent: Color::Magenta,
            ok: Color::Green,
            warning: Color::Yellow,
            error: Color::Red,
            highlight_bg: Color::DarkGray,
            marker: Marker::Braille,
            axis: Color::DarkGray,
            phase_boundary: Color::DarkGray,
            series: vec![Color::Cyan, Color::Magenta, Color::Green, Color::Red],
            raw_when_smoothed: Color::DarkGray,
            stance: PerStance::new(Color::Green, Color::Yellow, Color::Red),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    ui: Option<UiColors>,
    chart: Option<ChartStyle>,
    stance: Option<StanceColors>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UiColors {
    background: Option<ThemeColor>,
    foreground: Option<ThemeColor>,
    muted: Option<ThemeColor>,
    border: Option<ThemeColor>,
    border_focused: Option<ThemeColor>,
    title: Option<ThemeColor>,
    accent: Option<ThemeColor>,
    ok: Option<ThemeColor>,
    warning: Option<ThemeColor>,
    error: Option<ThemeColor>,
    highlight_bg: Option<ThemeColor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChartStyle {
    marker: Option<ThemeMarker>,
    axis: Option<ThemeColor>,
    phase_boundary: Option<ThemeColor>,
    series: Option<Vec<ThemeColor>>,
    raw_when_smoothed: Option<ThemeColor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StanceColors {
    support: Option<ThemeColor>,
    neutral: Option<ThemeColor>,
    oppose: Option<ThemeColor>,
}

#[derive(Debug)]
struct ThemeColor(Color);

impl<'de> Deserialize<'de> for ThemeColor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let valid_hex = !s.starts_with('#') || s.len() == 7;
        match Color::from_str(&s) {
            Ok(c) if valid_hex => Ok(ThemeColor(c)),
            _ => Err(de::Error::custom(format!(
                "{s:?} is not a colour: use a name (red, light-blue, dark-gray, reset, ...), \
                 \"#rrggbb\" or an index 0-255"
            ))),
        }
    }
}

#[derive(Debug)]
struct ThemeMarker(Marker);

impl<'de> Deserialize<'de> for ThemeMarker {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let m = match s.replace('_', "-").as_str() {
            "braille" => Marker::Braille,
            "half-block" => Marker::HalfBlock,
            "dot" => Marker::Dot,
            "block" => Marker::Block,
            "bar" => Marker::Bar,
            _ => {
                return Err(de::Error::custom(format!(
                    "{s:?} is not a chart marker: use braille, half-block, dot, block or bar"
                )))
            }
        };
        Ok(ThemeMarker(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Stance;

    #[test]
    fn built_ins_parse_and_differ() {
        let dark = Theme::built_in("dark").unwrap();
        let light = Theme::built_in("light").unwrap();
        let hc = Theme::built_in("high-contrast").unwrap();
        assert_eq!(dark.foreground, Color::Rgb(0xc0, 0xca, 0xf5));
        assert_ne!(dark.foreground, light.foreground);
        assert_eq!(hc.marker, Marker::HalfBlock);
        assert_eq!(
            hc.stance,
            PerStance::new(Color::LightGreen, Color::LightYellow, Color::LightRed)
        );
        assert_eq!(Theme::default(), dark);
    }

    #[test]
    fn user_file_is_layered_over_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(
            &path,
            "[stance]\nsupport = \"#010203\"\n[chart]\nmarker = \"dot\"\n",
        )
        .unwrap();
        let t = Theme::load(Some(path.to_str().unwrap())).unwrap();
        let dark = Theme::built_in("dark").unwrap();
        assert_eq!(t.stance[Stance::Support], Color::Rgb(1, 2, 3));
        assert_eq!(t.stance[Stance::Neutral], dark.stance[Stance::Neutral]);
        assert_eq!(t.marker, Marker::Dot);
        assert_eq!(t.foreground, dark.foreground);
        assert_eq!(t.name, "mine");
    }

    #[test]
    fn unknown_key_is_an_error_with_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[ui]\nforeground = \"red\"\n  colour = \"blue\"\n").unwrap();
        let err = Theme::load(Some(path.to_str().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml:3:3:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_colour_is_an_error_with_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[stance]\nsupport = \"#12345\"\n").unwrap();
        let err = Theme::load(Some(path.to_str().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml:2:11:"), "{err}");
        assert!(err.contains("not a colour"), "{err}");
        std::fs::write(&path, "[chart]\nmarker = \"sparkles\"\n").unwrap();
        let err = Theme::load(Some(path.to_str().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml:2:10:"), "{err}");
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let err = Theme::load(Some("no-such-theme")).unwrap_err().to_string();
        assert!(err.contains("neither a built-in theme"), "{err}");
    }
}
