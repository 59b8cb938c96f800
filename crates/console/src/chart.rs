//! Mail-flow charts as SVG, drawn here so the browser runs no script. Colours and line styles
//! come from the stylesheet (classes `s-received` ...), which the CSP allows; the SVG carries
//! no inline style. Every point has a `<title>`, so hovering shows the number without script.

use std::fmt::Write;

use palisade_store::mail::FlowBucket;

pub const SERIES: [(&str, &str); 5] = [
    ("received", "Received"),
    ("delivered", "Delivered"),
    ("deferred", "Deferred"),
    ("bounced", "Bounced"),
    ("rejected", "Rejected"),
];

fn value(b: &FlowBucket, series: &str) -> u64 {
    match series {
        "received" => b.received,
        "delivered" => b.delivered,
        "deferred" => b.deferred,
        "bounced" => b.bounced,
        _ => b.rejected,
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round axis maximum at or above `max` whose quarter is a round integer (ticks at
/// 1, 2, 5 × 10ⁿ steps).
fn nice_max(max: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for m in [4, 8, 20] {
            if m * base >= max {
                return m * base;
            }
        }
        base *= 10;
    }
}

/// Totals per series over the whole chart, for the legend.
pub fn totals(buckets: &[FlowBucket]) -> Vec<(&'static str, &'static str, u64)> {
    SERIES
        .iter()
        .map(|(k, label)| (*k, *label, buckets.iter().map(|b| value(b, k)).sum()))
        .collect()
}

/// A line chart of the five flows. `label` formats a bucket start for the x axis (empty: no
/// label); every `label_every`-th bucket is considered for one.
pub fn flow_svg(
    title: &str,
    buckets: &[FlowBucket],
    label: impl Fn(i64) -> String,
    label_every: usize,
) -> String {
    let (w, h) = (760.0f64, 240.0f64);
    let (left, right, top, bottom) = (48.0, 28.0, 12.0, 36.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let max = buckets
        .iter()
        .flat_map(|b| SERIES.iter().map(move |(k, _)| value(b, k)))
        .max()
        .unwrap_or(0);
    let ymax = nice_max(max) as f64;
    let n = buckets.len().max(2);
    let x = |i: usize| left + pw * i as f64 / (n - 1) as f64;
    let y = |v: u64| top + ph - ph * v as f64 / ymax;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = escape(title)
    );
    for i in 0..=4 {
        let v = (ymax as u64) * i / 4;
        let yy = y(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{left}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}"/><text class="axis" x="{tx}" y="{ty:.1}" text-anchor="end">{v}</text>"#,
            x2 = left + pw,
            tx = left - 6.0,
            ty = yy + 4.0
        );
    }
    for (i, b) in buckets.iter().enumerate() {
        let text = label(b.start);
        if i % label_every.max(1) == 0 && !text.is_empty() {
            let _ = write!(
                s,
                r#"<line class="tick" x1="{xx:.1}" x2="{xx:.1}" y1="{y1}" y2="{y2}"/><text class="axis" x="{xx:.1}" y="{ty}" text-anchor="middle">{l}</text>"#,
                xx = x(i),
                y1 = top + ph,
                y2 = top + ph + 4.0,
                ty = top + ph + 18.0,
                l = escape(&text)
            );
        }
    }
    for (key, name) in SERIES {
        let points: Vec<String> = buckets
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{:.1},{:.1}", x(i), y(value(b, key))))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="line s-{key}" points="{}"/>"#,
            points.join(" ")
        );
        for (i, b) in buckets.iter().enumerate() {
            let v = value(b, key);
            if v > 0 {
                let _ = write!(
                    s,
                    r#"<circle class="dot s-{key}" cx="{:.1}" cy="{:.1}" r="3"><title>{name} {}: {v}</title></circle>"#,
                    x(i),
                    y(v),
                    escape(&crate::view::fmt_time(b.start))
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_and_markup() {
        assert_eq!(nice_max(0), 4);
        assert_eq!(nice_max(3), 4);
        assert_eq!(nice_max(7), 8);
        assert_eq!(nice_max(17), 20);
        assert_eq!(nice_max(101), 200);
        let b = vec![
            FlowBucket {
                start: 0,
                received: 3,
                delivered: 2,
                deferred: 0,
                bounced: 0,
                rejected: 1,
            },
            FlowBucket {
                start: 3600,
                received: 0,
                delivered: 1,
                deferred: 1,
                bounced: 0,
                rejected: 0,
            },
        ];
        let svg = flow_svg("Mail <24h>", &b, |t| format!("{}h", t / 3600), 1);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Mail &lt;24h&gt;"));
        assert!(!svg.contains("style="));
        assert!(svg.contains(r#"class="line s-received""#));
        assert_eq!(totals(&b)[0].2, 3);
    }
}
