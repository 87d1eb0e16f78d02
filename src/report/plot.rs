//! PNG plots with plotters: line charts (linear or log axes) and heatmaps. The
//! font is embedded (DejaVu Sans), so plots render the same in a bare container.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::coord::combinators::{BindKeyPoints, LogCoord, WithKeyPoints};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::files::{replace_with, temp_path};

static FONTS: Once = Once::new();

fn fonts() {
    FONTS.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// The colours series take in order (matplotlib's default cycle, so plots look
/// like the tutorials').
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points }
    }
}

pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
    pub width: u32,
    pub height: u32,
    /// Marks each point, for sparse data such as one point per matrix size.
    pub markers: bool,
    /// Where a log axis puts its labelled ticks, e.g. the matrix sizes measured;
    /// empty: 1, 2 and 5 times the powers of ten in range (finer if the range
    /// is narrow). Linear axes place their own.
    pub x_ticks: Vec<f64>,
    pub y_ticks: Vec<f64>,
    /// Where the legend goes; `None`: the corner the lines cross least.
    pub legend: Option<SeriesLabelPosition>,
    /// Tick labels, e.g. `191.10 GFLOPS` instead of `1.9e11`; plotters' own otherwise.
    pub x_format: Option<fn(f64) -> String>,
    pub y_format: Option<fn(f64) -> String>,
}

impl LinePlot {
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> LinePlot {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            log_x: false,
            log_y: false,
            series: Vec::new(),
            width: 1000,
            height: 640,
            markers: false,
            x_ticks: Vec::new(),
            y_ticks: Vec::new(),
            legend: None,
            x_format: None,
            y_format: None,
        }
    }

    /// Renders to `path` (PNG), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        Self::save_stacked(path, std::slice::from_ref(self))
    }

    /// Renders several plots stacked top to bottom into one PNG (e.g. a loss
    /// above error rates, over the same steps), atomically. The image is as
    /// wide as the widest plot and as tall as all of them.
    pub fn save_stacked(path: &Path, plots: &[LinePlot]) -> Result<()> {
        fonts();
        if plots.is_empty() {
            return Err(anyhow!("nothing to plot for {}: no plots", path.display()));
        }
        let mut ranges = Vec::with_capacity(plots.len());
        for plot in plots {
            ranges.push(plot.ranges().ok_or_else(|| {
                anyhow!("nothing to plot for {} ({}): no finite data points", path.display(), plot.title)
            })?);
        }
        let width = plots.iter().map(|p| p.width).max().unwrap_or(0);
        let height = plots.iter().map(|p| p.height).sum();
        render_atomic(path, |tmp| {
            let root = BitMapBackend::new(tmp, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let mut rest = root.clone();
            for (plot, (xr, yr)) in plots.iter().zip(ranges) {
                let (area, below) = rest.split_vertically(plot.height);
                let legend = plot.legend.clone().unwrap_or_else(|| plot.emptiest_corner(&xr, &yr));
                match (plot.log_x, plot.log_y) {
                    (false, false) => plot.draw(&area, xr, yr, legend),
                    (true, false) => plot.draw(&area, log_axis(xr, &plot.x_ticks), yr, legend),
                    (false, true) => plot.draw(&area, xr, log_axis(yr, &plot.y_ticks), legend),
                    (true, true) => plot.draw(&area, log_axis(xr, &plot.x_ticks), log_axis(yr, &plot.y_ticks), legend),
                }?;
                rest = below;
            }
            root.present().map_err(plot_err)?;
            Ok(())
        })
    }

    /// The axes' ranges, or `None` when there is no point to draw.
    fn ranges(&self) -> Option<(Range<f64>, Range<f64>)> {
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0) && (!self.log_y || *y > 0.0))
            .collect();
        if pts.is_empty() {
            return None;
        }
        Some((span(pts.iter().map(|p| p.0), self.log_x), span(pts.iter().map(|p| p.1), self.log_y)))
    }

    /// Room for the y tick labels: wide enough for the longest formatted one.
    fn y_label_width(&self) -> u32 {
        let Some(f) = self.y_format else { return 90 };
        let ys = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite());
        let longest = ys.map(|y| f(y).chars().count()).max().unwrap_or(0) as u32;
        (longest * 9 + 30).max(90)
    }

    /// The corner whose legend-sized box the lines cross least (upper left on a
    /// tie), judged on points sampled along each line in axis units.
    fn emptiest_corner(&self, xr: &Range<f64>, yr: &Range<f64>) -> SeriesLabelPosition {
        let unit = |v: f64, r: &Range<f64>, log: bool| {
            if log {
                (v.ln() - r.start.ln()) / (r.end.ln() - r.start.ln())
            } else {
                (v - r.start) / (r.end - r.start)
            }
        };
        let mut samples = Vec::new();
        for s in &self.series {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|(x, y)| xr.contains(x) && yr.contains(y))
                .map(|&(x, y)| (unit(x, xr, self.log_x), unit(y, yr, self.log_y)))
                .collect();
            samples.extend(pts.iter().copied());
            for w in pts.windows(2) {
                samples.extend((1..20).map(|k| {
                    let t = k as f64 / 20.0;
                    (w[0].0 + t * (w[1].0 - w[0].0), w[0].1 + t * (w[1].1 - w[0].1))
                }));
            }
        }
        // The legend's size relative to the plotting area: about 9 px a character
        // plus the swatch, 22 px a line.
        let longest = self.series.iter().map(|s| s.name.chars().count()).max().unwrap_or(0) as f64;
        let w = ((longest * 9.0 + 60.0) / (self.width as f64 - 140.0)).min(1.0);
        let h = ((self.series.len() as f64 * 22.0 + 20.0) / (self.height as f64 - 120.0)).min(1.0);
        let corners = [
            (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
            (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
            (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
            (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
        ];
        let crossings = |x0: f64, y0: f64| {
            samples.iter().filter(|(x, y)| (x0..=x0 + w).contains(x) && (y0..=y0 + h).contains(y)).count()
        };
        corners
            .into_iter()
            .min_by_key(|(_, x0, y0)| crossings(*x0, *y0))
            .map(|c| c.0)
            .unwrap_or(SeriesLabelPosition::UpperLeft)
    }

    fn draw<X, Y>(
        &self,
        root: &DrawingArea<BitMapBackend<'_>, Shift>,
        x: X,
        y: Y,
        legend: SeriesLabelPosition,
    ) -> Result<()>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 26))
            .margin(16)
            // Room for half of the last x label, centred on the axis's end.
            .margin_right(36)
            .x_label_area_size(56)
            .y_label_area_size(self.y_label_width())
            .build_cartesian_2d(x, y)
            .map_err(plot_err)?;
        let x_format = |v: &f64| self.x_format.map_or_else(|| tidy(*v), |f| f(*v));
        let y_format = |v: &f64| self.y_format.map_or_else(|| tidy(*v), |f| f(*v));
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style(("sans-serif", 20))
            .label_style(("sans-serif", 16))
            .light_line_style(RGBColor(235, 235, 235));
        // Linear axes get tidy labels (steps as `100`, not `100.0`); log axes
        // keep plotters' labels of their key points unless a format is given.
        if self.x_format.is_some() || !self.log_x {
            mesh.x_label_formatter(&x_format);
        }
        if self.y_format.is_some() || !self.log_y {
            mesh.y_label_formatter(&y_format);
        }
        mesh.draw().map_err(plot_err)?;
        for (i, s) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| {
                    x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0) && (!self.log_y || *y > 0.0)
                })
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(plot_err)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3)));
            if self.markers {
                chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, colour.filled()))).map_err(plot_err)?;
            }
        }
        if self.series.len() > 1 || self.series.iter().any(|s| !s.name.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 16))
                .position(legend)
                .draw()
                .map_err(plot_err)?;
        }
        Ok(())
    }
}

/// A heatmap of a matrix with its values written in the cells, e.g. a confusion
/// matrix (rows: true class, columns: predicted class).
pub struct Heatmap {
    pub title: String,
    pub row_label: String,
    pub col_label: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    pub values: Vec<Vec<f64>>,
}

impl Heatmap {
    pub fn save(&self, path: &Path) -> Result<()> {
        fonts();
        let (nr, nc) = (self.rows.len(), self.cols.len());
        if nr == 0 || nc == 0 || self.values.len() != nr || self.values.iter().any(|r| r.len() != nc) {
            return Err(anyhow!("heatmap {}: values must be {nr} x {nc}", path.display()));
        }
        let max = self.values.iter().flatten().copied().fold(0.0f64, f64::max).max(1e-12);
        let side = (120 * nc.max(nr) as u32).clamp(480, 1600);
        let cell = side / nc.max(nr) as u32;
        let rows: Vec<String> = self.rows.iter().map(|n| shorten_label(n)).collect();
        let cols: Vec<String> = self.cols.iter().map(|n| shorten_label(n)).collect();
        // The label areas fit the longest class name; column names that are
        // wider than their cells stand upright instead of running into each
        // other, as seaborn turns them.
        let label_font = ("sans-serif", 18).into_font();
        let widest = |names: &[String]| names.iter().map(|n| text_width(&label_font, n)).max().unwrap_or(0);
        let y_area = (widest(&rows) + 50).max(140);
        let col_width = widest(&cols);
        let upright = col_width + 8 > cell;
        let x_area = if upright { col_width + 50 } else { 60 };
        render_atomic(path, |tmp| {
            let root = BitMapBackend::new(tmp, (side + y_area + 60, side + x_area + 100)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 26))
                .margin(20)
                .x_label_area_size(x_area)
                .y_label_area_size(y_area)
                // A segmented 0..n has n + 1 cells.
                .build_cartesian_2d((0..nc - 1).into_segmented(), (0..nr - 1).into_segmented())
                .map_err(plot_err)?;
            // Class names sit at the centres of their cells (segmented axes);
            // row 0 is drawn at the top, as in seaborn's heatmap.
            let name = |names: &[String], v: &SegmentValue<usize>, flip: bool| match v {
                SegmentValue::CenterOf(i) if *i < names.len() => {
                    names[if flip { names.len() - 1 - i } else { *i }].clone()
                }
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(nc)
                .y_labels(nr)
                .x_desc(&self.col_label)
                .y_desc(&self.row_label)
                .axis_desc_style(("sans-serif", 20))
                .label_style(label_font.clone())
                // Upright names are drawn below: plotters centres a turned
                // label on its tick, which would put half of it in the plot.
                .x_label_formatter(&|v| if upright { String::new() } else { name(&cols, v, false) })
                .y_label_formatter(&|v| name(&rows, v, true))
                .draw()
                .map_err(plot_err)?;
            let at = |c: usize, y: usize| (SegmentValue::Exact(c), SegmentValue::Exact(y));
            for (r, row) in self.values.iter().enumerate() {
                for (c, v) in row.iter().enumerate() {
                    let t = v / max;
                    // White to matplotlib's "Blues" dark end.
                    let colour = RGBColor(
                        (247.0 - t * (247.0 - 8.0)) as u8,
                        (251.0 - t * (251.0 - 48.0)) as u8,
                        (255.0 - t * (255.0 - 107.0)) as u8,
                    );
                    let y = nr - 1 - r;
                    chart
                        .draw_series(std::iter::once(Rectangle::new([at(c, y), at(c + 1, y + 1)], colour.filled())))
                        .map_err(plot_err)?;
                    let ink = if t > 0.5 { WHITE } else { BLACK };
                    let text = if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.3}") };
                    let style = TextStyle::from(("sans-serif", 24).into_font()).color(&ink).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    );
                    let (px, py) = chart.backend_coord(&at(c, y + 1));
                    let (qx, qy) = chart.backend_coord(&at(c + 1, y));
                    root.draw(&Text::new(text, ((px + qx) / 2, (py + qy) / 2), style)).map_err(plot_err)?;
                }
            }
            if upright {
                let style = TextStyle::from(label_font.clone()).transform(FontTransform::Rotate90).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Left,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                );
                for (c, n) in cols.iter().enumerate() {
                    let (left, bottom) = chart.backend_coord(&at(c, 0));
                    let (right, _) = chart.backend_coord(&at(c + 1, 0));
                    root.draw(&Text::new(n.as_str(), ((left + right) / 2, bottom + 8), style.clone()))
                        .map_err(plot_err)?;
                }
            }
            root.present().map_err(plot_err)?;
            Ok(())
        })
    }
}

/// A class name for an axis: at most 32 characters, cut with an ellipsis.
fn shorten_label(name: &str) -> String {
    const MAX: usize = 32;
    if name.chars().count() <= MAX {
        return name.to_string();
    }
    let mut cut: String = name.chars().take(MAX - 1).collect();
    cut.push('\u{2026}');
    cut
}

/// Width in pixels of `text` in `font` (a generous estimate if the font
/// cannot measure it).
fn text_width(font: &FontDesc, text: &str) -> u32 {
    font.box_size(text).map(|(w, _)| w).unwrap_or(11 * text.chars().count() as u32)
}

/// Draws into a temp file beside `path`, then moves it into place.
fn render_atomic(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    draw(&tmp)
        .and_then(|_| replace_with(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("drawing {}", path.display()))
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// A log axis over `range` with labelled ticks at `given` (those in range), or
/// at [`log_ticks`] if none are given, and light grid lines at 1..9 x 10^k.
/// plotters' own log ticks are powers of ten only, which leaves a plot
/// spanning less than a decade with one label or none.
fn log_axis(range: Range<f64>, given: &[f64]) -> WithKeyPoints<LogCoord<f64>> {
    let inside = |v: &f64| range.contains(v);
    let bold: Vec<f64> = given.iter().copied().filter(inside).collect();
    let bold = if bold.is_empty() { log_ticks(&range) } else { bold };
    let light = decades(&range, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    range.log_scale().with_key_points(bold).with_light_points(light)
}

/// Labelled ticks for a log axis: 1, 2, 5 x 10^k when that gives 3 to 12 of
/// them, powers of ten alone for wider ranges, finer steps for narrower ones.
pub fn log_ticks(range: &Range<f64>) -> Vec<f64> {
    let coarse = decades(range, &[1.0]);
    let mid = decades(range, &[1.0, 2.0, 5.0]);
    if mid.len() > 12 {
        let step = coarse.len().div_ceil(12).max(1);
        return coarse.into_iter().step_by(step).collect();
    }
    if mid.len() >= 3 {
        return mid;
    }
    decades(range, &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
}

/// `m x 10^k` for each multiplier `m`, every `k`, within `range` (positive).
fn decades(range: &Range<f64>, multipliers: &[f64]) -> Vec<f64> {
    if !(range.start > 0.0 && range.end > range.start && range.end.is_finite()) {
        return Vec::new();
    }
    let (k0, k1) = (range.start.log10().floor() as i32, range.end.log10().ceil() as i32);
    let mut out = Vec::new();
    for k in k0..=k1 {
        for m in multipliers {
            let v = m * 10f64.powi(k);
            if range.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// A linear axis's tick label: whole numbers without decimals (`100`, not
/// `100.0`), others with as many as they need (`0.25`, not `0.25000001`).
fn tidy(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "0" || s == "-0" {
        format!("{v:.1e}")
    } else {
        s.to_string()
    }
}

/// The data's range with a margin (multiplicative on log axes).
fn span(values: impl Iterator<Item = f64>, log: bool) -> Range<f64> {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if log {
        if lo == hi {
            return lo / 2.0..hi * 2.0;
        }
        let f = (hi / lo).powf(0.05);
        return lo / f..hi * f;
    }
    if lo == hi {
        lo -= 1.0;
        hi += 1.0;
    }
    let m = (hi - lo) * 0.05;
    lo - m..hi + m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_size(path: &Path) -> (u32, u32) {
        let b = std::fs::read(path).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
        (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
    }

    #[test]
    fn line_plot_is_a_png_of_the_asked_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let mut p = LinePlot::new("t", "x", "y");
        p.log_x = true;
        p.log_y = true;
        p.markers = true;
        p.series.push(Series::new("a", vec![(1024.0, 10.0), (2048.0, 40.0), (4096.0, 90.0)]));
        p.series.push(Series::new("b", vec![(1024.0, 5.0), (2048.0, f64::NAN)]));
        p.save(&path).unwrap();
        assert_eq!(png_size(&path), (1000, 640));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        p.x_ticks = vec![1024.0, 2048.0, 4096.0];
        p.x_format = Some(|x| format!("{x:.0}"));
        p.y_format = Some(|y| format!("{y:.1} things per second"));
        p.save(&path).unwrap();
        assert_eq!(png_size(&path), (1000, 640));
        assert!(p.y_label_width() > 200);
    }

    #[test]
    fn log_ticks_label_every_plot() {
        assert_eq!(log_ticks(&(40.0..450.0)), vec![50.0, 100.0, 200.0]);
        assert_eq!(log_ticks(&(0.9..1100.0)), vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
        assert_eq!(log_ticks(&(45.0..130.0)), vec![50.0, 60.0, 70.0, 80.0, 90.0, 100.0]);
        let wide = log_ticks(&(1.0..1e30));
        assert!((3..=12).contains(&wide.len()) && wide[0] == 1.0, "{wide:?}");
        assert!(log_ticks(&(0.0..1.0)).is_empty());
    }

    #[test]
    fn the_legend_goes_where_the_lines_are_not() {
        let mut p = LinePlot::new("t", "x", "y");
        p.log_x = true;
        p.log_y = true;
        // Rising lines: upper left and lower right are free; upper left wins the tie.
        p.series.push(Series::new("a", vec![(1.0, 1.0), (100.0, 100.0)]));
        let (xr, yr) = (0.8..125.0, 0.8..125.0);
        assert!(matches!(p.emptiest_corner(&xr, &yr), SeriesLabelPosition::UpperLeft));
        // A flat line across the top: a lower corner.
        p.series = vec![Series::new("a", vec![(1.0, 100.0), (100.0, 100.0)])];
        assert!(matches!(
            p.emptiest_corner(&xr, &yr),
            SeriesLabelPosition::LowerLeft | SeriesLabelPosition::LowerRight
        ));
        // One line high, one low and falling to the right: the upper right is free.
        p.series =
            vec![Series::new("a", vec![(1.0, 110.0), (100.0, 60.0)]), Series::new("b", vec![(1.0, 1.0), (100.0, 0.9)])];
        assert!(matches!(p.emptiest_corner(&xr, &yr), SeriesLabelPosition::UpperRight));
    }

    #[test]
    fn stacked_plots_share_one_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.png");
        let mut top = LinePlot::new("loss", "step", "loss");
        top.series.push(Series::new("loss", vec![(0.0, 8.0), (100.0, 3.0)]));
        let mut bottom = LinePlot::new("errors", "step", "%");
        bottom.height = 400;
        bottom.series.push(Series::new("validation", vec![(0.0, 90.0), (100.0, 7.0)]));
        LinePlot::save_stacked(&path, &[top, bottom]).unwrap();
        assert_eq!(png_size(&path), (1000, 1040));
        let empty = LinePlot::new("e", "x", "y");
        assert!(LinePlot::save_stacked(&path, &[empty]).is_err());
        assert_eq!(png_size(&path), (1000, 1040), "a failed save keeps the old file");
    }

    #[test]
    fn linear_tick_labels_are_tidy() {
        assert_eq!(tidy(100.0), "100");
        assert_eq!(tidy(-5.0), "-5");
        assert_eq!(tidy(0.0), "0");
        assert_eq!(tidy(0.25), "0.25");
        assert_eq!(tidy(0.1 + 0.2), "0.3");
        assert_eq!(tidy(2.5e-7), "2.5e-7");
    }

    #[test]
    fn empty_plot_is_an_error_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let mut p = LinePlot::new("t", "x", "y");
        p.series.push(Series::new("a", vec![(1.0, f64::NAN)]));
        assert!(p.save(&path).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn heatmap_renders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cm.png");
        let h = Heatmap {
            title: "Confusion Matrix".into(),
            row_label: "True".into(),
            col_label: "Predicted".into(),
            rows: vec!["ham".into(), "spam".into()],
            cols: vec!["ham".into(), "spam".into()],
            values: vec![vec![50.0, 2.0], vec![3.0, 45.0]],
        };
        h.save(&path).unwrap();
        let (w, hgt) = png_size(&path);
        assert!(w >= 480 && hgt >= 480);
        // One cell per class whatever the count, one class included.
        for n in [1usize, 3] {
            let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let m = Heatmap {
                title: h.title.clone(),
                row_label: h.row_label.clone(),
                col_label: h.col_label.clone(),
                rows: names.clone(),
                cols: names,
                values: vec![vec![1.0; n]; n],
            };
            m.save(&path).unwrap();
        }
        // Twenty long class names: the label areas grow to hold them.
        let names: Vec<String> = (0..20).map(|i| format!("comp.sys.ibm.pc.hardware.{i}")).collect();
        let wide = Heatmap { rows: names.clone(), cols: names, values: vec![vec![1.0; 20]; 20], ..h };
        wide.save(&path).unwrap();
        let (w2, h2) = png_size(&path);
        assert!(w2 > 1600 + 200 && h2 > 1600 + 200, "{w2} x {h2}");
        assert_eq!(shorten_label(&"x".repeat(40)).chars().count(), 32);
    }
}
