//! PNG figures for the `demo` command, drawn with `plotters`: a heat map of a 2-D density (optionally with
//! points on top), a pair of side-by-side scatter plots sharing one extent (e.g. data and model samples), and
//! training curves (value against step for several named series).
//!
//! Text (titles, tick labels, axis names and legends) needs the DejaVu Sans font installed on the system
//! (looked for at the usual Debian, Arch and Fedora paths). Without it every figure is still drawn, just
//! without any text: the axes are then plain lines.
//!
//! Every function writes its file atomically (a temporary file in the same directory, then a rename) and
//! reports problems as `Err(String)` rather than panicking.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The plotted square region: x from x0 to x1, y from y0 to y1.
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    /// Left edge (smallest x).
    pub x0: f64,
    /// Right edge (largest x).
    pub x1: f64,
    /// Bottom edge (smallest y).
    pub y0: f64,
    /// Top edge (largest y).
    pub y1: f64,
}

/// Where the font for all text is looked for, first existing one wins.
const FONT_PATHS: [&str; 3] =
    ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];

/// The font family every text element is drawn with; the system font is registered under this name.
const FONT: &str = "sans-serif";

/// Most points drawn in one scatter panel (or on top of a heat map); more are subsampled evenly.
const MAX_POINTS: usize = 20_000;

const HEATMAP_SIZE: (u32, u32) = (600, 600);
const SCATTER_SIZE: (u32, u32) = (1000, 500);
const CURVES_SIZE: (u32, u32) = (700, 450);

/// Viridis, sampled at nine evenly spaced stops; `colour` interpolates linearly between them.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 45, 123),
    (59, 82, 139),
    (44, 114, 142),
    (33, 145, 140),
    (40, 174, 128),
    (94, 201, 98),
    (170, 220, 50),
    (253, 231, 37),
];

/// Line colours for successive curves (the first few of matplotlib's "tab10").
const SERIES_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

const LEFT_POINT_COLOUR: RGBColor = RGBColor(31, 119, 180);
const RIGHT_POINT_COLOUR: RGBColor = RGBColor(214, 39, 40);

/// A heat map of a density on a res × res grid over `extent`: `log_density[j * res + i]` is the
/// log-density at x = x0 + (i + 0.5)(x1 − x0)/res, y = y0 + (j + 0.5)(y1 − y0)/res (row j = 0 is the
/// BOTTOM of the picture). Colour from exp(log_density) normalized by its maximum (a perceptual
/// colormap such as viridis or magma, implemented by interpolating a small table of RGB stops);
/// non-finite values drawn as the lowest colour. Optional `points` drawn on top as small white dots.
///
/// The picture is 600 × 600 pixels, written as PNG to `path` whatever its extension.
pub fn heatmap(path: &Path, title: &str, extent: Extent, res: usize, log_density: &[f64], points: &[[f64; 2]]) -> Result<(), String> {
    heatmap_with(path, title, extent, res, log_density, points, font_available())
}

/// Two scatter panels side by side with the same extent: `left` (e.g. the data) and `right`
/// (e.g. samples from the model), with their titles.
///
/// The picture is 1000 × 500 pixels, written as PNG to `path` whatever its extension. Points outside
/// `extent` are left out, and at most 20 000 points per panel are drawn (evenly subsampled).
pub fn scatter_pair(path: &Path, extent: Extent, left: (&str, &[[f64; 2]]), right: (&str, &[[f64; 2]])) -> Result<(), String> {
    scatter_pair_with(path, extent, left, right, font_available())
}

/// Training curves: (step, value) series, e.g. [("training NLL", &train), ("validation NLL", &val)], on
/// shared axes (x: step, y: value); empty series are skipped.
///
/// The picture is 700 × 450 pixels, written as PNG to `path` whatever its extension. Non-finite values
/// are left out (the line is broken there); if no series has a finite value, empty axes are drawn.
pub fn curves(path: &Path, title: &str, series: &[(&str, &[(usize, f64)])]) -> Result<(), String> {
    curves_with(path, title, series, font_available())
}

// ---------------------------------------------------------------------------------------------------------
// Font handling

/// Whether a font is registered for text; loads and registers the system font on first use.
fn font_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(register_system_font)
}

fn register_system_font() -> bool {
    if font_disabled_for_tests() {
        return false;
    }
    for candidate in FONT_PATHS {
        if let Ok(bytes) = fs::read(candidate) {
            // plotters keeps the font for the life of the process, so its bytes must be 'static. This
            // runs at most once per process (guarded by the OnceLock above).
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Tests can run the whole process as if no font were installed by setting this environment variable.
#[cfg(test)]
const NO_FONT_ENV: &str = "FLOWC_PLOT_TEST_NO_FONT";

#[cfg(test)]
fn font_disabled_for_tests() -> bool {
    std::env::var_os(NO_FONT_ENV).is_some()
}

#[cfg(not(test))]
fn font_disabled_for_tests() -> bool {
    false
}

// ---------------------------------------------------------------------------------------------------------
// The figures (with an explicit text switch, so tests can exercise the no-font drawing path)

fn heatmap_with(
    path: &Path,
    title: &str,
    extent: Extent,
    res: usize,
    log_density: &[f64],
    points: &[[f64; 2]],
    text: bool,
) -> Result<(), String> {
    check_extent("heatmap", &extent)?;
    if res == 0 {
        return Err("heatmap: grid resolution res must be at least 1".to_string());
    }
    let cells = res.checked_mul(res).ok_or_else(|| format!("heatmap: grid resolution {res} is too large"))?;
    if log_density.len() != cells {
        return Err(format!("heatmap: log_density has {} values, but a {res} × {res} grid needs {cells}", log_density.len()));
    }
    let shade: Vec<RGBColor> = normalized_density(log_density)
        .into_iter()
        .map(|t| {
            let (r, g, b) = colour(t);
            RGBColor(r, g, b)
        })
        .collect();
    let dots = visible_points(points, &extent);

    write_png(path, HEATMAP_SIZE, |root| {
        let plot_area = titled(root, title, text)?;
        let mut chart = square_chart(&plot_area, &extent, text)?;

        // Paint every pixel of the plotting area with the colour of the grid cell under its centre.
        let cells_area = chart.plotting_area().strip_coord_spec();
        let (w, h) = cells_area.dim_in_pixel();
        for py in 0..h {
            // Pixel row 0 is the top of the picture, grid row 0 the bottom.
            let j = cell_index(f64::from(h - 1 - py), h, res);
            for px in 0..w {
                let i = cell_index(f64::from(px), w, res);
                cells_area.draw_pixel((px as i32, py as i32), &shade[j * res + i]).map_err(|e| e.to_string())?;
            }
        }

        draw_axes(&mut chart, &extent, text, false, None, false)?;
        draw_points(&mut chart, &dots, WHITE.mix(0.8).filled(), 2.0)
    })
}

fn scatter_pair_with(path: &Path, extent: Extent, left: (&str, &[[f64; 2]]), right: (&str, &[[f64; 2]]), text: bool) -> Result<(), String> {
    check_extent("scatter_pair", &extent)?;
    let left_points = visible_points(left.1, &extent);
    let right_points = visible_points(right.1, &extent);

    write_png(path, SCATTER_SIZE, |root| {
        let (left_area, right_area) = root.split_horizontally(SCATTER_SIZE.0 / 2);
        let panels = [(&left_area, left.0, &left_points, LEFT_POINT_COLOUR), (&right_area, right.0, &right_points, RIGHT_POINT_COLOUR)];
        for (area, title, pts, col) in panels {
            let plot_area = titled(area, title, text)?;
            let mut chart = square_chart(&plot_area, &extent, text)?;
            draw_axes(&mut chart, &extent, text, true, None, false)?;
            draw_points(&mut chart, pts, col.mix(point_alpha(pts.len())).filled(), 2.0)?;
        }
        Ok(())
    })
}

fn curves_with(path: &Path, title: &str, series: &[(&str, &[(usize, f64)])], text: bool) -> Result<(), String> {
    // Shared ranges over every finite point of every series.
    let finite = || series.iter().flat_map(|(_, s)| s.iter()).filter(|(_, v)| v.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(step, value) in finite() {
        x0 = x0.min(step as f64);
        x1 = x1.max(step as f64);
        y0 = y0.min(value);
        y1 = y1.max(value);
    }
    if x0 > x1 {
        // No finite point at all: empty axes.
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1.0 {
        // A single step: centre it.
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    let pad = if y1 > y0 { 0.05 * (y1 - y0) } else { 0.5 * y0.abs().max(1.0) };
    let extent = Extent { x0, x1, y0: y0 - pad, y1: y1 + pad };
    check_extent("curves: the values' range", &extent)?;

    write_png(path, CURVES_SIZE, |root| {
        let plot_area = titled(root, title, text)?;
        let (xl, yl) = if text { (50, 75) } else { (0, 0) };
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(12)
            .margin_right(30)
            .x_label_area_size(xl)
            .y_label_area_size(yl)
            .build_cartesian_2d(extent.x0..extent.x1, extent.y0..extent.y1)
            .map_err(|e| e.to_string())?;
        draw_axes(&mut chart, &extent, text, true, Some(("step", "value")), true)?;

        let mut labelled = false;
        for (k, (name, points)) in series.iter().filter(|(_, s)| !s.is_empty()).enumerate() {
            let col = SERIES_COLOURS[k % SERIES_COLOURS.len()];
            let style = col.stroke_width(2);
            let mut runs = finite_runs(points).into_iter();
            // The first run carries the legend entry (an all-non-finite series gets an empty one).
            let first = runs.next().unwrap_or_default();
            let single = first.len() == 1;
            let legend = chart.draw_series(LineSeries::new(first.clone(), style)).map_err(|e| e.to_string())?;
            if text {
                legend.label(*name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
                labelled = true;
            }
            if single {
                chart.draw_series(first.into_iter().map(|p| Circle::new(p, 3, col.filled()))).map_err(|e| e.to_string())?;
            }
            for run in runs {
                if run.len() == 1 {
                    chart.draw_series(run.iter().map(|&p| Circle::new(p, 3, col.filled()))).map_err(|e| e.to_string())?;
                }
                chart.draw_series(LineSeries::new(run, style)).map_err(|e| e.to_string())?;
            }
        }
        if labelled {
            chart
                .configure_series_labels()
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------------------
// Pure helpers

/// The colour for a normalized density `t` in [0, 1] (clamped; NaN gives the lowest colour), from the
/// viridis colormap: dark purple at 0, yellow at 1, brighter all the way.
fn colour(t: f64) -> (u8, u8, u8) {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let scaled = t * (VIRIDIS.len() - 1) as f64;
    let k = (scaled.floor() as usize).min(VIRIDIS.len() - 2);
    let f = scaled - k as f64;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) + f * (f64::from(q) - f64::from(p))).round().clamp(0.0, 255.0) as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// exp(log_density) divided by its largest finite value, so the peak is 1; non-finite entries give 0.
fn normalized_density(log_density: &[f64]) -> Vec<f64> {
    let max = log_density.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    log_density.iter().map(|&v| if v.is_finite() && max.is_finite() { (v - max).exp() } else { 0.0 }).collect()
}

/// Which of `res` equal cells the centre of pixel `p` (of `n` pixels) falls in.
fn cell_index(p: f64, n: u32, res: usize) -> usize {
    let i = ((p + 0.5) / f64::from(n) * res as f64).floor();
    (i.max(0.0) as usize).min(res - 1)
}

/// The points inside `extent` (finite ones only), evenly subsampled to at most `MAX_POINTS`.
fn visible_points(points: &[[f64; 2]], extent: &Extent) -> Vec<(f64, f64)> {
    let inside: Vec<(f64, f64)> = points
        .iter()
        .filter(|[x, y]| (extent.x0..=extent.x1).contains(x) && (extent.y0..=extent.y1).contains(y))
        .map(|&[x, y]| (x, y))
        .collect();
    if inside.len() <= MAX_POINTS {
        return inside;
    }
    (0..MAX_POINTS).map(|k| inside[k * inside.len() / MAX_POINTS]).collect()
}

/// Opacity of scatter points: lighter the more there are, so dense regions stay readable.
fn point_alpha(n: usize) -> f64 {
    (1000.0 / n.max(1) as f64).clamp(0.1, 0.5)
}

/// A tick label for a step axis: whole numbers only (other ticks are left unlabelled).
fn step_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

/// Splits a series into maximal runs of finite values, as chart coordinates.
fn finite_runs(points: &[(usize, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![];
    let mut current = vec![];
    for &(step, value) in points {
        if value.is_finite() {
            current.push((step as f64, value));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// An error (naming the figure `what`) unless the extent is finite and not empty.
fn check_extent(what: &str, extent: &Extent) -> Result<(), String> {
    let Extent { x0, x1, y0, y1 } = *extent;
    if ![x0, x1, y0, y1].iter().all(|v| v.is_finite()) {
        return Err(format!("{what}: extent {extent:?} has a non-finite bound"));
    }
    if x1 <= x0 || y1 <= y0 {
        return Err(format!("{what}: extent {extent:?} is empty: it needs x0 < x1 and y0 < y1"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Drawing helpers

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;

/// Renders a `size` picture with `draw` into a temporary PNG next to `path`, then renames it to `path`.
fn write_png<F>(path: &Path, size: (u32, u32), draw: F) -> Result<(), String>
where
    F: FnOnce(&Area) -> Result<(), String>,
{
    let file_name = path.file_name().ok_or_else(|| format!("cannot write {}: the path has no file name", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!("cannot write {}: directory {} does not exist", path.display(), dir.display()));
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp.png", // the image encoder picks the format from this extension
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));

    let rendered = panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())
        // On an error the backend, when dropped, still writes what it has to `tmp`; removed below.
    }))
    .unwrap_or_else(|payload| {
        let msg = payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned());
        Err(format!("plotting library panicked: {}", msg.unwrap_or_else(|| "unknown cause".to_string())))
    });

    let result = rendered.and_then(|()| fs::rename(&tmp, path).map_err(|e| format!("renaming {} to it failed: {e}", tmp.display())));
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// With text, draws `title` centred in a strip along the top of `area` and returns the rest of it;
/// without text (or with an empty title), returns `area` unchanged.
fn titled<'b>(area: &Area<'b>, title: &str, text: bool) -> Result<Area<'b>, String> {
    if !text || title.is_empty() {
        return Ok(area.clone());
    }
    const TITLE_HEIGHT: u32 = 36;
    let (top, rest) = area.split_vertically(TITLE_HEIGHT);
    let (w, _) = top.dim_in_pixel();
    let style = TextStyle::from((FONT, 20).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    top.draw_text(title, &style, ((w / 2) as i32, (TITLE_HEIGHT / 2) as i32)).map_err(|e| e.to_string())?;
    Ok(rest)
}

/// A chart over `extent` whose plotting area is a square, centred in `area` (leaving room for tick labels
/// on the left and bottom when there is text).
fn square_chart<'a, 'b>(area: &'a Area<'b>, extent: &Extent, text: bool) -> Result<Chart<'a, 'b>, String> {
    const MARGIN: u32 = 10;
    let (xl, yl) = if text { (36, 52) } else { (0, 0) };
    let (w, h) = area.dim_in_pixel();
    let avail_w = w.saturating_sub(2 * MARGIN + yl);
    let avail_h = h.saturating_sub(2 * MARGIN + xl);
    let side = avail_w.min(avail_h);
    let (extra_w, extra_h) = (avail_w - side, avail_h - side);
    ChartBuilder::on(area)
        .margin_left(MARGIN + extra_w / 2)
        .margin_right(MARGIN + extra_w - extra_w / 2)
        .margin_top(MARGIN + extra_h / 2)
        .margin_bottom(MARGIN + extra_h - extra_h / 2)
        .x_label_area_size(xl)
        .y_label_area_size(yl)
        .build_cartesian_2d(extent.x0..extent.x1, extent.y0..extent.y1)
        .map_err(|e| e.to_string())
}

/// Axes for `chart`: with text, plotters' mesh with tick labels (and faint grid lines if `grid`, axis names
/// from `desc`, whole-number x labels if `integer_x`); without text, just the left and bottom axis lines.
fn draw_axes(
    chart: &mut Chart,
    extent: &Extent,
    text: bool,
    grid: bool,
    desc: Option<(&str, &str)>,
    integer_x: bool,
) -> Result<(), String> {
    if !text {
        let axes = vec![(extent.x0, extent.y1), (extent.x0, extent.y0), (extent.x1, extent.y0)];
        return chart.draw_series(std::iter::once(PathElement::new(axes, BLACK))).map(|_| ()).map_err(|e| e.to_string());
    }
    let mut mesh = chart.configure_mesh();
    mesh.label_style((FONT, 13)).axis_desc_style((FONT, 15)).x_labels(7).y_labels(7);
    if grid {
        mesh.bold_line_style(BLACK.mix(0.1)).light_line_style(TRANSPARENT);
    } else {
        mesh.disable_mesh();
    }
    if integer_x {
        mesh.x_label_formatter(&step_label);
    }
    if let Some((x, y)) = desc {
        mesh.x_desc(x).y_desc(y);
    }
    mesh.draw().map_err(|e| e.to_string())
}

/// Draws `points` (already filtered to the extent) as filled circles of `radius` pixels.
fn draw_points(chart: &mut Chart, points: &[(f64, f64)], style: ShapeStyle, radius: f64) -> Result<(), String> {
    chart.draw_series(points.iter().map(|&p| Circle::new(p, radius, style))).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, unique to this test.
    fn temp_dir(name: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!("plot-rs-test-{}-{}-{name}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Checks the PNG signature and returns the width and height from the IHDR chunk.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert!(bytes.len() > 24, "{} is too short for a PNG", path.display());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} lacks the PNG signature", path.display());
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |r: std::ops::Range<usize>| u32::from_be_bytes(bytes[r].try_into().unwrap());
        (be(16..20), be(20..24))
    }

    /// No file other than the final ones (no leftover temporaries) in `dir`.
    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    const EXTENT: Extent = Extent { x0: -4.0, x1: 4.0, y0: -4.0, y1: 4.0 };

    /// Log-density of a standard Gaussian bump shifted to (0.5, 0.5), on a res × res grid over EXTENT.
    fn gaussian_grid(res: usize) -> Vec<f64> {
        let mut grid = Vec::with_capacity(res * res);
        for j in 0..res {
            for i in 0..res {
                let x = EXTENT.x0 + (i as f64 + 0.5) * (EXTENT.x1 - EXTENT.x0) / res as f64;
                let y = EXTENT.y0 + (j as f64 + 0.5) * (EXTENT.y1 - EXTENT.y0) / res as f64;
                grid.push(-0.5 * ((x - 0.5).powi(2) + (y - 0.5).powi(2)) - (2.0 * std::f64::consts::PI).ln());
            }
        }
        grid
    }

    /// Deterministic pseudo-random points on a noisy ring of radius 2.5.
    fn ring(n: usize, seed: u64) -> Vec<[f64; 2]> {
        let mut state = seed;
        let mut uniform = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64) / ((1u64 << 53) as f64)
        };
        (0..n)
            .map(|_| {
                let a = uniform() * std::f64::consts::TAU;
                let r = 2.5 + 0.3 * (uniform() - 0.5);
                [r * a.cos(), r * a.sin()]
            })
            .collect()
    }

    type Series = Vec<(usize, f64)>;

    fn nll_curves() -> (Series, Series) {
        let train: Series =
            (0..=2000).step_by(10).map(|s| (s, 1.4 + 2.0 * (-(s as f64) / 300.0).exp() + 0.03 * ((s as f64) * 0.7).sin())).collect();
        let val: Series = (0..=2000).step_by(100).map(|s| (s, 1.5 + 2.0 * (-(s as f64) / 300.0).exp())).collect();
        (train, val)
    }

    /// Draws all three figures into `dir` (with or without text), checking each PNG and that no temporary
    /// file is left behind.
    fn draw_all(dir: &Path, text: bool) -> [PathBuf; 3] {
        let res = 80;
        let grid = gaussian_grid(res);
        let data = ring(3000, 1);
        let mut samples = ring(30_000, 2);
        samples.push([100.0, 0.0]); // outside the extent: skipped
        samples.push([f64::NAN, 0.0]);
        let (train, val) = nll_curves();
        let empty: Vec<(usize, f64)> = vec![];

        let heat = dir.join("heatmap.png");
        let scatter = dir.join("scatter.png");
        let curve = dir.join("curves.png");
        heatmap_with(&heat, "model density", EXTENT, res, &grid, &data[..500], text).unwrap();
        scatter_pair_with(&scatter, EXTENT, ("data", &data), ("model samples", &samples), text).unwrap();
        let series: [(&str, &[(usize, f64)]); 3] = [("training NLL", &train), ("nothing yet", &empty), ("validation NLL", &val)];
        curves_with(&curve, "negative log-likelihood", &series, text).unwrap();

        assert_eq!(png_size(&heat), (600, 600));
        assert_eq!(png_size(&scatter), (1000, 500));
        assert_eq!(png_size(&curve), (700, 450));
        assert_eq!(files_in(dir), ["curves.png", "heatmap.png", "scatter.png"]);
        [heat, scatter, curve]
    }

    #[test]
    fn figures_with_font_are_valid_pngs() {
        assert!(font_disabled_for_tests() || font_available(), "DejaVu Sans is expected on the test machine");
        let dir = temp_dir("font");
        let paths = draw_all(&dir, font_available());
        // Keep copies for looking at, when asked to.
        if let Some(keep) = std::env::var_os("PLOT_RS_KEEP") {
            for p in &paths {
                fs::copy(p, Path::new(&keep).join(p.file_name().unwrap())).unwrap();
            }
        }
    }

    #[test]
    fn figures_without_text_are_valid_pngs() {
        let paths = draw_all(&temp_dir("notext"), false);
        if let Some(keep) = std::env::var_os("PLOT_RS_KEEP") {
            for p in &paths {
                fs::copy(p, Path::new(&keep).join(format!("notext-{}", p.file_name().unwrap().to_string_lossy()))).unwrap();
            }
        }
    }

    /// Runs the public API in a child process where no font is ever registered, so any text drawing would
    /// fail there (the in-process test above cannot show this: fonts are registered process-wide).
    #[test]
    fn figures_without_any_font_in_process() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["public_api_child_unique_7f3a", "--test-threads=1", "--nocapture"])
            .env(NO_FONT_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
    }

    /// The public entry points, end to end; run by `figures_without_any_font_in_process` with the font
    /// disabled, and on its own with it.
    #[test]
    fn public_api_child_unique_7f3a() {
        let no_font = font_disabled_for_tests();
        assert_eq!(font_available(), !no_font);
        let dir = temp_dir(if no_font { "child-nofont" } else { "child-font" });
        let res = 40;
        heatmap(&dir.join("heatmap.png"), "density", EXTENT, res, &gaussian_grid(res), &[]).unwrap();
        scatter_pair(&dir.join("scatter.png"), EXTENT, ("a", &ring(100, 3)), ("b", &[])).unwrap();
        let (train, val) = nll_curves();
        curves(&dir.join("curves.png"), "NLL", &[("train", &train), ("val", &val)]).unwrap();
        assert_eq!(png_size(&dir.join("heatmap.png")), (600, 600));
        assert_eq!(png_size(&dir.join("scatter.png")), (1000, 500));
        assert_eq!(png_size(&dir.join("curves.png")), (700, 450));
    }

    /// Sum of the channels of `colour(t)`.
    fn brightness(t: f64) -> u32 {
        let (r, g, b) = colour(t);
        u32::from(r) + u32::from(g) + u32::from(b)
    }

    #[test]
    fn colour_gets_brighter_with_density() {
        let steps = 20;
        for k in 0..steps {
            let (a, b) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
            assert!(brightness(a) < brightness(b), "colour({a}) = {:?} is not darker than colour({b}) = {:?}", colour(a), colour(b));
        }
        for k in 0..1000 {
            let (a, b) = (k as f64 / 1000.0, (k + 1) as f64 / 1000.0);
            assert!(brightness(a) <= brightness(b) + 2, "brightness dips between {a} and {b}");
        }
        assert_eq!(colour(0.0), VIRIDIS[0]);
        assert_eq!(colour(1.0), VIRIDIS[8]);
        assert_eq!(colour(f64::NAN), VIRIDIS[0]);
        assert_eq!(colour(-1.0), VIRIDIS[0]);
        assert_eq!(colour(7.0), VIRIDIS[8]);
    }

    #[test]
    fn gaussian_bump_is_brightest_in_the_middle() {
        let res = 40;
        let t = normalized_density(&gaussian_grid(res));
        let centre = t[(res / 2) * res + res / 2];
        let corner = t[0];
        assert!(brightness(centre) > brightness(corner), "centre {centre}, corner {corner}");
        assert!(t.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(t.iter().any(|&v| v > 0.95));
        // Non-finite values map to the lowest colour.
        assert_eq!(normalized_density(&[0.0, f64::NAN, f64::NEG_INFINITY, f64::INFINITY]), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(normalized_density(&[f64::NAN, f64::NAN]), [0.0, 0.0]);
    }

    #[test]
    fn grid_row_zero_is_the_bottom() {
        // Pixel rows are flipped before lookup: the bottom pixel row (h - 1 - py = 0) lands in cell 0.
        assert_eq!(cell_index(0.0, 500, 7), 0);
        assert_eq!(cell_index(499.0, 500, 7), 6);
        assert_eq!(cell_index(250.0, 500, 2), 1);
    }

    #[test]
    fn points_are_clipped_and_subsampled() {
        let pts = vec![[0.0, 0.0], [5.0, 0.0], [0.0, -4.5], [f64::NAN, 1.0], [4.0, 4.0]];
        assert_eq!(visible_points(&pts, &EXTENT), [(0.0, 0.0), (4.0, 4.0)]);
        let many: Vec<[f64; 2]> = (0..50_001).map(|k| [k as f64 / 50_001.0, 0.0]).collect();
        let drawn = visible_points(&many, &EXTENT);
        assert_eq!(drawn.len(), MAX_POINTS);
        assert!(drawn.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(drawn.last().unwrap().0 > 0.99);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let dir = temp_dir("bad");
        let p = dir.join("x.png");
        let grid = gaussian_grid(10);

        let e = heatmap(&p, "t", EXTENT, 10, &grid[..99], &[]).unwrap_err();
        assert!(e.contains("99") && e.contains("100"), "{e}");
        let e = heatmap(&p, "t", EXTENT, 0, &[], &[]).unwrap_err();
        assert!(e.contains("res"), "{e}");
        let flat = Extent { x1: EXTENT.x0, ..EXTENT };
        assert!(heatmap(&p, "t", flat, 10, &grid, &[]).unwrap_err().contains("extent"));
        let reversed = Extent { x0: 1.0, x1: -1.0, ..EXTENT };
        assert!(scatter_pair(&p, reversed, ("a", &[]), ("b", &[])).unwrap_err().contains("extent"));
        let upside_down = Extent { y0: 1.0, y1: 1.0, ..EXTENT };
        assert!(heatmap(&p, "t", upside_down, 10, &grid, &[]).is_err());
        let nan = Extent { x0: f64::NAN, ..EXTENT };
        assert!(scatter_pair(&p, nan, ("a", &[]), ("b", &[])).is_err());

        let missing = dir.join("no-such-dir").join("fig.png");
        for e in [
            heatmap(&missing, "t", EXTENT, 10, &grid, &[]).unwrap_err(),
            scatter_pair(&missing, EXTENT, ("a", &[]), ("b", &[])).unwrap_err(),
            curves(&missing, "t", &[("a", &[(0, 1.0)])]).unwrap_err(),
        ] {
            assert!(e.contains(&missing.display().to_string()), "{e}");
        }
        // A directory where the file should go: drawing works, the final rename fails.
        let taken = dir.join("taken");
        fs::create_dir(&taken).unwrap();
        let e = curves(&taken, "t", &[]).unwrap_err();
        assert!(e.contains(&taken.display().to_string()), "{e}");
        assert_eq!(files_in(&dir), ["taken"], "a temporary file was left behind");
    }

    #[test]
    fn odd_curves_still_draw() {
        let dir = temp_dir("odd");
        let nan_series = [(0, f64::NAN), (1, f64::INFINITY)];
        let one = [(5, 2.0)];
        let broken = [(0, 3.0), (1, 2.0), (2, f64::NAN), (3, 1.5), (4, 1.4), (5, f64::NAN), (6, 1.3)];
        for (k, series) in [
            vec![],
            vec![("empty", &[][..])],
            vec![("nan", &nan_series[..])],
            vec![("one point", &one[..])],
            vec![("broken", &broken[..]), ("one", &one[..])],
        ]
        .iter()
        .enumerate()
        {
            let p = dir.join(format!("c{k}.png"));
            curves(&p, "odd", series).unwrap();
            assert_eq!(png_size(&p), (700, 450));
        }
        // A target without a .png extension still gets a PNG.
        let p = dir.join("figure.dat");
        heatmap(&p, "", EXTENT, 1, &[0.0], &[[0.0, 0.0]]).unwrap();
        assert_eq!(png_size(&p), (600, 600));
    }
}
