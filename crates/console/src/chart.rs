//! Charts as SVG, drawn here so the browser runs no script: the mail-flow lines and the
//! protection panel's bars. Colours and line styles come from the stylesheet (classes
//! `s-received` ..., `b-refused` ...), which the CSP allows; the SVG carries no inline style.
//! Every point and bar has a `<title>`, so hovering shows the number without script. Labels
//! may come from strangers (signature names, sender domains): every one goes through
//! [`label_text`] and [`escape`].

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

/// A label as drawn: control characters (which have no business in SVG text) shown as `?`,
/// and at most `max` characters, `…` marking a cut.
pub fn label_text(s: &str, max: usize) -> String {
    let clean = |c: char| if c.is_control() { '?' } else { c };
    if s.chars().count() <= max {
        s.chars().map(clean).collect()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).map(clean).collect();
        out.push('…');
        out
    }
}

/// One bar: its label (from anywhere: escaped here) and value.
pub struct Bar {
    pub label: String,
    pub value: u64,
}

/// A horizontal bar chart, one row per bar in the given order. `id` names the chart on the
/// page (its `<title>`/`<desc>` ids); `class` picks the bar colour (`b-CLASS` in the
/// stylesheet). The `<desc>` lists every value, so a screen reader hears the numbers; the
/// page shows the same numbers in a table.
pub fn bars_svg(id: &str, title: &str, class: &str, bars: &[Bar]) -> String {
    // Narrower than the flow charts: two of these sit side by side.
    const LABEL_CHARS: usize = 26;
    let (w, row) = (600.0f64, 26.0f64);
    let (left, right, top) = (190.0, 50.0, 6.0);
    let h = top * 2.0 + row * bars.len().max(1) as f64;
    let pw = w - left - right;
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1) as f64;
    let id = escape(id);
    let desc = if bars.is_empty() {
        "Nothing in this window.".to_string()
    } else {
        bars.iter()
            .map(|b| format!("{}: {}", label_text(&b.label, 200), b.value))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart bars" id="{id}" viewBox="0 0 {w} {h}" role="img" aria-labelledby="{id}-t {id}-d" xmlns="http://www.w3.org/2000/svg"><title id="{id}-t">{t}</title><desc id="{id}-d">{d}</desc>"#,
        t = escape(title),
        d = escape(&desc)
    );
    if bars.is_empty() {
        let _ = write!(
            s,
            r#"<text class="axis" x="{left}" y="{y:.1}">Nothing in this window.</text>"#,
            y = top + row * 0.65
        );
    }
    for (i, b) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let bw = if b.value == 0 {
            0.0
        } else {
            (pw * b.value as f64 / max).max(2.0)
        };
        let full = escape(&label_text(&b.label, 200));
        let _ = write!(
            s,
            r#"<g><title>{full}: {v}</title><text class="axis label" x="{lx}" y="{ty:.1}" text-anchor="end">{l}</text><rect class="bar b-{class}" x="{left}" y="{ry:.1}" width="{bw:.1}" height="{bh:.1}"/><text class="axis value" x="{vx:.1}" y="{ty:.1}">{v}</text></g>"#,
            v = b.value,
            lx = left - 8.0,
            ty = y + row * 0.65,
            l = escape(&label_text(&b.label, LABEL_CHARS)),
            class = escape(class),
            ry = y + row * 0.18,
            bh = row * 0.64,
            vx = left + bw + 6.0,
        );
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

    /// Labels come from strangers: a signature name or a sender domain must never become
    /// markup, an attribute or a control character in the page.
    #[test]
    fn bars_escape_hostile_labels() {
        let hostile = [
            "</text><script>alert(1)</script>",
            "\"><a href=\"javascript:alert(2)\">x</a>",
            "evil.example' onload='alert(3)",
            "a&amp;b\u{0}\u{1b}[31m",
        ];
        let bars: Vec<Bar> = hostile
            .iter()
            .enumerate()
            .map(|(i, l)| Bar {
                label: l.to_string(),
                value: i as u64,
            })
            .collect();
        let svg = bars_svg("top-<x>", "Top \"signatures\" <7d>", "virus", &bars);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        for bad in [
            "<script",
            "<a ",
            "=\"javascript",
            "' onload",
            "\u{0}",
            "\u{1b}",
            "top-<x>",
        ] {
            assert!(!svg.contains(bad), "{bad:?} in {svg}");
        }
        assert!(svg.contains("&lt;/text&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("evil.example&#39; onload=&#39;alert(3)"));
        assert!(svg.contains("a&amp;amp;b??[31m"));
        assert!(svg.contains("Top &quot;signatures&quot; &lt;7d&gt;"));
        // Only the elements drawn here, and no inline style or script.
        let tags: std::collections::BTreeSet<&str> = svg
            .split('<')
            .skip(1)
            .map(|t| t.split([' ', '>', '/']).next().unwrap_or(""))
            .collect();
        let allowed = ["", "svg", "title", "desc", "g", "text", "rect"];
        assert!(tags.iter().all(|t| allowed.contains(t)), "{tags:?}");
        assert!(!svg.contains("style="));
        // Accessible: named by its title and described by every value.
        assert!(svg.contains(r#"role="img" aria-labelledby="top-&lt;x&gt;-t top-&lt;x&gt;-d""#));
        assert!(svg.contains("<desc id=\"top-&lt;x&gt;-d\">"));
        // Long labels are cut for the axis but whole (bounded) in the tooltip.
        let long = "d".repeat(300) + ".example";
        let svg = bars_svg(
            "l",
            "t",
            "spam",
            &[Bar {
                label: long.clone(),
                value: 3,
            }],
        );
        assert!(svg.contains(&format!(">{}…</text>", "d".repeat(25))));
        assert!(!svg.contains(&long));
        assert!(bars_svg("e", "t", "spam", &[]).contains("Nothing in this window."));
    }
}
