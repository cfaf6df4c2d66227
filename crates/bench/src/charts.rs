//! SVG charts of a run, beside its JSON: W1's entries/s per system with
//! the ceilings marked, W2's latency per system and follower count, W3's
//! memory and CPU per system. Text is SVG `<text>`, drawn by whatever
//! shows the file, so no font is needed here.

use std::path::{Path, PathBuf};

use plotters::{
    coord::{
        Shift,
        ranged1d::{AsRangedCoord, ValueFormatter},
    },
    prelude::*,
};

use crate::{
    error::{BenchError, Result},
    report::{FanOutRow, ManyRunsRow, Report, ThroughputRow},
    systems::SystemKind,
};

/// One panel's size, pixels.
const PANEL: (u32, u32) = (560, 340);

/// The W1 variants charted, one panel each.
const W1_VARIANTS: [&str; 3] = ["own runs", "shared run", "own runs, one line per message"];

/// A system's colour: baa-logd in blue, its durable and client rows in
/// lighter blues, on JetStream in purples, peers in greys, durable peers
/// darker.
fn colour(system: SystemKind) -> RGBColor {
    match system {
        SystemKind::BaaLogd => RGBColor(31, 119, 180),
        SystemKind::BaaLogdClient => RGBColor(107, 174, 214),
        SystemKind::BaaLogdSync => RGBColor(8, 69, 148),
        SystemKind::Nats | SystemKind::Redis => RGBColor(160, 160, 160),
        SystemKind::NatsSync | SystemKind::RedisAlways => RGBColor(90, 90, 90),
        SystemKind::TransportCeiling => RGBColor(214, 39, 40),
        SystemKind::DiskCeiling => RGBColor(44, 160, 44),
        SystemKind::BaaLogdJs1 => RGBColor(188, 189, 220),
        SystemKind::BaaLogdJs3 => RGBColor(128, 125, 186),
        SystemKind::BaaLogdJs3Sync => RGBColor(84, 39, 143),
        SystemKind::NatsJs3Sync => RGBColor(60, 60, 60),
    }
}

/// Writes the charts the report has data for into `dir`; returns their
/// paths.
///
/// # Errors
///
/// When a file cannot be written.
pub(crate) fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|err| BenchError::io(format!("cannot create {}", dir.display()), err))?;
    let mut written = Vec::new();
    if report.w1.iter().any(|row| row.entries > 0) {
        let path = dir.join("w1-throughput.svg");
        draw_w1(&report.w1, &path)?;
        written.push(path);
    }
    if report.w2.iter().any(|row| row.latency.is_some()) {
        let path = dir.join("w2-latency.svg");
        draw_w2(&report.w2, &path)?;
        written.push(path);
    }
    if report.w3.iter().any(|row| row.rss_mib.is_some()) {
        let path = dir.join("w3-many-runs.svg");
        draw_w3(&report.w3, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// A drawing error as the harness's own.
fn failed(path: &Path) -> impl Fn(Box<dyn std::error::Error>) -> BenchError + '_ {
    move |err| BenchError::Failed(format!("cannot draw {}: {err}", path.display()))
}

/// A bar of `value` for `label`, in `colour`.
#[derive(Debug, Clone)]
struct Bar {
    /// Under the bar.
    label: String,
    /// Its height.
    value: f64,
    /// Its fill.
    colour: RGBColor,
}

/// A horizontal line across a panel: a ceiling.
#[derive(Debug, Clone)]
struct Mark {
    /// Beside the line.
    label: String,
    /// Its height.
    value: f64,
    /// Its colour.
    colour: RGBColor,
}

/// A value for an axis: 3.5M, 240k, 12, 0.25.
fn short(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if magnitude >= 10.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Draws one panel into `area`: a horizontal bar per system (names fit
/// beside them), the marks as vertical lines with a legend; a log scale
/// for values that span orders of magnitude.
fn bar_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    unit: &str,
    bars: &[Bar],
    marks: &[Mark],
    log: bool,
) -> Drawn {
    let top = bars
        .iter()
        .map(|bar| bar.value)
        .chain(marks.iter().map(|mark| mark.value))
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.15;
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(200);
    let bottom = if log {
        bars.iter()
            .map(|bar| bar.value)
            .filter(|value| *value > 0.0)
            .fold(f64::INFINITY, f64::min)
            .min(top)
            / 2.0
    } else {
        0.0
    };
    if log {
        draw_bars(
            builder,
            (bottom..top).log_scale(),
            unit,
            bars,
            marks,
            bottom,
        )
    } else {
        draw_bars(builder, bottom..top, unit, bars, marks, bottom)
    }
}

/// Draws `bars` from `bottom`, top down in the order given, and `marks`,
/// on the value axis `x` (linear or logarithmic).
fn draw_bars<X>(
    mut builder: ChartBuilder<'_, '_, SVGBackend<'_>>,
    x: X,
    unit: &str,
    bars: &[Bar],
    marks: &[Mark],
    bottom: f64,
) -> Drawn
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let count = bars.len().max(1);
    let mut labels: Vec<String> = bars.iter().map(|bar| bar.label.clone()).collect();
    labels.reverse();
    let y_label = move |index: &SegmentValue<usize>| match index {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let x_label = |value: &f64| short(*value);
    let mut chart = builder.build_cartesian_2d(x, (0..count).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_label_formatter(&y_label)
        .x_label_formatter(&x_label)
        .label_style(("sans-serif", 11))
        .x_desc(unit)
        .draw()?;
    // The first bar on the top row.
    let row = |i: usize| count - 1 - i;
    chart.draw_series(bars.iter().enumerate().map(|(i, bar)| {
        Rectangle::new(
            [
                (bottom, SegmentValue::Exact(row(i))),
                (bar.value.max(bottom), SegmentValue::Exact(row(i) + 1)),
            ],
            bar.colour.filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, bar)| {
        Text::new(
            short(bar.value),
            (bar.value.max(bottom), SegmentValue::CenterOf(row(i))),
            ("sans-serif", 10),
        )
    }))?;
    for mark in marks {
        let colour = mark.colour;
        chart
            .draw_series(LineSeries::new(
                [
                    (mark.value, SegmentValue::Exact(0)),
                    (mark.value, SegmentValue::Last),
                ],
                colour.stroke_width(2),
            ))?
            .label(format!("{} {}", mark.label, short(mark.value)))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
    }
    if !marks.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 10))
            .draw()?;
    }
    Ok(())
}

/// What drawing may fail with.
type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws one panel per item of `panels`, side by side, into a new SVG at
/// `path`.
fn side_by_side<T>(
    path: &Path,
    panels: &[T],
    mut draw: impl FnMut(&DrawingArea<SVGBackend<'_>, Shift>, &T) -> Drawn,
) -> Result<()> {
    let size = (PANEL.0 * panels.len().max(1) as u32, PANEL.1);
    let root = SVGBackend::new(path, size).into_drawing_area();
    let mut draw_all = || -> Drawn {
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, panel) in areas.iter().zip(panels) {
            draw(area, panel)?;
        }
        root.present()?;
        Ok(())
    };
    draw_all().map_err(failed(path))
}

/// W1: a panel per variant, a bar per system, the ceilings as lines.
fn draw_w1(rows: &[ThroughputRow], path: &Path) -> Result<()> {
    let variants: Vec<&str> = W1_VARIANTS
        .into_iter()
        .filter(|variant| rows.iter().any(|row| row.variant == *variant))
        .collect();
    side_by_side(path, &variants, |area, variant| {
        let ceiling = |row: &ThroughputRow| {
            matches!(
                row.system,
                SystemKind::TransportCeiling | SystemKind::DiskCeiling
            )
        };
        let measured = || {
            rows.iter()
                .filter(|row| row.variant == *variant && row.entries > 0)
        };
        let bars: Vec<Bar> = measured()
            .filter(|row| !ceiling(row))
            .map(|row| Bar {
                label: row.system.label().to_owned(),
                value: row.entries_per_sec,
                colour: colour(row.system),
            })
            .collect();
        let marks: Vec<Mark> = measured()
            .filter(|row| ceiling(row))
            .map(|row| Mark {
                label: row.system.label().to_owned(),
                value: row.entries_per_sec,
                colour: colour(row.system),
            })
            .collect();
        bar_panel(
            area,
            &format!("W1 {variant}"),
            "entries/s",
            &bars,
            &marks,
            false,
        )
    })
}

/// W2: a panel per follower count, p50 and p99 bars per system, on a log
/// scale (the peers' latencies are orders of magnitude apart).
fn draw_w2(rows: &[FanOutRow], path: &Path) -> Result<()> {
    let mut counts: Vec<usize> = rows.iter().map(|row| row.followers).collect();
    counts.sort_unstable();
    counts.dedup();
    side_by_side(path, &counts, |area, followers| {
        let bars: Vec<Bar> = rows
            .iter()
            .filter(|row| row.followers == *followers)
            .filter_map(|row| {
                let latency = row.latency.filter(|l| l.count > 0)?;
                let base = colour(row.system);
                let light = RGBColor(
                    base.0.saturating_add(70),
                    base.1.saturating_add(70),
                    base.2.saturating_add(70),
                );
                Some([
                    Bar {
                        label: format!("{} p50", row.system.label()),
                        value: latency.p50_ms,
                        colour: light,
                    },
                    Bar {
                        label: format!("{} p99", row.system.label()),
                        value: latency.p99_ms,
                        colour: base,
                    },
                ])
            })
            .flatten()
            .collect();
        bar_panel(
            area,
            &format!("W2 {followers} followers: append to follower"),
            "ms (log)",
            &bars,
            &[],
            true,
        )
    })
}

/// One W3 panel: its title, its unit and what it shows of a row.
type ManyRunsPanel = (&'static str, &'static str, fn(&ManyRunsRow) -> Option<f64>);

/// W3: server RSS and CPU per system, at the run count measured.
fn draw_w3(rows: &[ManyRunsRow], path: &Path) -> Result<()> {
    let runs = rows.first().map_or(0, |row| row.runs);
    let panels: [ManyRunsPanel; 2] = [
        ("server RSS", "MiB", |row| row.rss_mib),
        ("server CPU", "% of one core", |row| row.cpu_percent),
    ];
    side_by_side(path, &panels, |area, (title, unit, value)| {
        let bars: Vec<Bar> = rows
            .iter()
            .filter_map(|row| {
                Some(Bar {
                    label: row.system.label().to_owned(),
                    value: value(row)?,
                    colour: colour(row.system),
                })
            })
            .collect();
        bar_panel(
            area,
            &format!("W3 {runs} runs: {title}"),
            unit,
            &bars,
            &[],
            false,
        )
    })
}
