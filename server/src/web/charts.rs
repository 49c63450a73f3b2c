//! Server-drawn SVG charts (no script, no library): horizontal stacked bars for figures
//! by province or programme, vertical bars for figures over months. Every chart has its
//! numbers written on it and a table beside it on the page.

use maud::{Markup, html};

use super::i18n::Lang;

/// One bar: its label and its parts (value, CSS class of the colour).
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub parts: Vec<(f64, &'static str)>,
    /// Written at the bar's end (e.g. the total and the women's share).
    pub note: String,
}

const LABEL_W: f64 = 170.0;
const BAR_H: f64 = 22.0;
const GAP: f64 = 8.0;
const WIDTH: f64 = 640.0;

/// Where each part of a bar starts and how wide it is.
fn segments(parts: &[(f64, &'static str)], max: f64, plot: f64) -> Vec<(f64, f64, &'static str)> {
    let mut x = LABEL_W;
    parts
        .iter()
        .map(|(value, class)| {
            let w = (value / max * plot).max(0.0);
            let s = (x, w, *class);
            x += w;
            s
        })
        .collect()
}

/// Horizontal stacked bars, one per row; scaled to the largest total.
pub fn hbars(title: &str, bars: &[Bar]) -> Markup {
    let max = bars
        .iter()
        .map(|b| b.parts.iter().map(|p| p.0).sum::<f64>())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let plot = WIDTH - LABEL_W - 110.0;
    let height = bars.len() as f64 * (BAR_H + GAP) + GAP;
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label=(title) {
            @for (i, bar) in bars.iter().enumerate() {
                @let y = GAP + i as f64 * (BAR_H + GAP);
                text.label x=(LABEL_W - 8.0) y=(y + BAR_H * 0.7) text-anchor="end" { (bar.label) }
                @let segments = segments(&bar.parts, max, plot);
                @for (x, w, class) in &segments {
                    rect class=(class) x=(x) y=(y) width=(w) height=(BAR_H) {}
                }
                @let x = segments.last().map_or(LABEL_W, |(x, w, _)| x + w);
                text.note x=(x + 6.0) y=(y + BAR_H * 0.7) { (bar.note) }
            }
        }
    }
}

/// Vertical bars over time (months), with the value above each bar.
pub fn columns(title: &str, lang: Lang, points: &[(String, f64)]) -> Markup {
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1.0);
    let n = points.len().max(1) as f64;
    let (top, bottom, height) = (18.0, 34.0, 200.0);
    let slot = (WIDTH - 20.0) / n;
    let w = (slot * 0.7).min(48.0);
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label=(title) {
            line.axis x1="10" x2=(WIDTH - 10.0) y1=(height - bottom) y2=(height - bottom) {}
            @for (i, (label, value)) in points.iter().enumerate() {
                @let h = value / max * (height - top - bottom);
                @let x = 10.0 + i as f64 * slot + (slot - w) / 2.0;
                rect.held x=(x) y=(height - bottom - h) width=(w) height=(h) {}
                text.note x=(x + w / 2.0) y=(height - bottom - h - 4.0) text-anchor="middle" { (lang.num(*value)) }
                text.label x=(x + w / 2.0) y=(height - bottom + 16.0) text-anchor="middle" { (label) }
            }
        }
    }
}
