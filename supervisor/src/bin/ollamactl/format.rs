//! How `ollamactl` writes numbers, times and tables: Ollama's own words for sizes and
//! times (so `ps` and `list` read as `ollama ps` and `ollama list` do), and one table type
//! that every listing fills, aligned with colours on a terminal and tab-separated in a pipe.

use std::io::Write as _;

use chrono::{DateTime, Utc};

/// Spaces between two columns, as Ollama's tables have them.
const COLUMN_GAP: &str = "    ";

/// Bytes as Ollama prints them (decimal units): "230 MB", "1.5 GB", "512 B".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1_000_000_000_000, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1_000, "KB"),
    ];
    let Some((scale, unit)) = UNITS.iter().find(|(scale, _)| bytes >= *scale) else {
        return format!("{bytes} B");
    };
    let value = bytes as f64 / *scale as f64;
    if value >= 10.0 || value.fract() == 0.0 {
        format!("{} {unit}", value.trunc())
    } else {
        format!("{value:.1} {unit}")
    }
}

/// A count as Ollama prints parameter counts: "134.52M", "7.2B", "12K".
pub fn human_number(n: u64) -> String {
    let value = n as f64;
    match n {
        1_000_000_000.. if (value / 1e9).fract() == 0.0 => format!("{:.0}B", value / 1e9),
        1_000_000_000.. => format!("{:.1}B", value / 1e9),
        1_000_000.. if (value / 1e6).fract() == 0.0 => format!("{:.0}M", value / 1e6),
        1_000_000.. => format!("{:.2}M", value / 1e6),
        1_000.. => format!("{:.0}K", value / 1e3),
        _ => n.to_string(),
    }
}

/// A span as Ollama words it: "Less than a second", "About a minute", "4 minutes".
pub fn human_duration(span: chrono::TimeDelta) -> String {
    let seconds = span.num_seconds();
    match seconds {
        ..1 => return "Less than a second".into(),
        1 => return "1 second".into(),
        2..60 => return format!("{seconds} seconds"),
        _ => {}
    }
    let minutes = seconds / 60;
    match minutes {
        1 => return "About a minute".into(),
        2..60 => return format!("{minutes} minutes"),
        _ => {}
    }
    let hours = (seconds as f64 / 3600.0).round() as i64;
    if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// An RFC 3339 time relative to `now`, as Ollama words it: "4 minutes from now",
/// "2 days ago", "Forever" (more than 20 years ahead); `missing` when it is empty, and the
/// text itself when it is not a time.
pub fn human_time(at: &str, now: DateTime<Utc>, missing: &str) -> String {
    if at.is_empty() {
        return missing.into();
    }
    let Ok(at) = DateTime::parse_from_rfc3339(at) else {
        return at.into();
    };
    let delta = at.with_timezone(&Utc) - now;
    if delta.num_days() > 20 * 365 {
        "Forever".into()
    } else if delta > chrono::TimeDelta::zero() {
        format!("{} from now", human_duration(delta))
    } else {
        format!("{} ago", human_duration(-delta))
    }
}

/// Nanoseconds as a short duration: "850 ms", "1.24 s", "3m05s".
pub fn short_duration(nanoseconds: u64) -> String {
    let ms = nanoseconds / 1_000_000;
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    }
}

/// The first 12 hex digits of a digest, as Ollama's ID column shows it.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// How a cell stands out on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// As it is.
    Plain,
    /// Good news: ready.
    Green,
    /// In progress: loading, stopping.
    Yellow,
    /// Trouble: failed, crashed.
    Red,
}

impl Style {
    fn ansi(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Green => Some("\x1b[32m"),
            Style::Yellow => Some("\x1b[33m"),
            Style::Red => Some("\x1b[31m"),
        }
    }
}

/// One cell: its text and how it stands out.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    style: Style,
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Self {
        Cell {
            text: text.into(),
            style: Style::Plain,
        }
    }
}

impl Cell {
    /// A cell that stands out with `style` on a terminal.
    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Cell {
            text: text.into(),
            style,
        }
    }
}

/// A listing: the renderers build it from a response, `print` writes it for where
/// stdout goes.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; `cells` has one cell per column.
    pub fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Columns padded to their widest cell, as `ollama ps` prints them; with `colour`, the
    /// header bold and styled cells coloured (after padding, so widths are the text's).
    pub fn aligned(&self, colour: bool) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self.header.iter().map(|&h| Cell::from(h)).collect();
        for (index, row) in std::iter::once(&header).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (column, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if column > 0 {
                    line.push_str(COLUMN_GAP);
                }
                let padded = format!("{:width$}", cell.text);
                let style = if index == 0 {
                    Some("\x1b[1m")
                } else {
                    cell.style.ansi()
                };
                match style.filter(|_| colour) {
                    Some(code) => line.push_str(&format!("{code}{padded}\x1b[0m")),
                    None => line.push_str(&padded),
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The header and rows with a tab between cells, for `cut` and `awk`; an empty cell
    /// is written `-` so that every line has every field.
    pub fn tab_separated(&self) -> String {
        let mut out = self.header.join("\t");
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<&str> = row
                .iter()
                .map(|c| {
                    if c.text.is_empty() {
                        "-"
                    } else {
                        c.text.as_str()
                    }
                })
                .collect();
            out.push_str(&cells.join("\t"));
            out.push('\n');
        }
        out
    }

    /// The table as `terminal` calls for.
    pub fn render(&self, terminal: Terminal) -> String {
        match terminal {
            Terminal::No => self.tab_separated(),
            Terminal::Yes { colour } => self.aligned(colour),
        }
    }
}

/// Where stdout goes, decided once in `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// A pipe or a file: no alignment, no colour.
    No,
    /// A terminal; `colour` unless NO_COLOR is set.
    Yes {
        /// Whether to colour.
        colour: bool,
    },
}

impl Terminal {
    /// What stdout is now.
    pub fn detect() -> Self {
        use std::io::IsTerminal as _;
        if std::io::stdout().is_terminal() {
            use supervisor::config::{Env as _, ProcessEnv};
            let colour = ProcessEnv.var("NO_COLOR").is_none_or(|v| v.is_empty());
            Terminal::Yes { colour }
        } else {
            Terminal::No
        }
    }
}

/// Writes `text` to stdout and flushes it; a closed pipe (`ollamactl watch | head`) comes
/// back as an error that `main` ends quietly on, where `print!` would panic.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// A JSON value, pretty, with a final newline.
pub fn emit_json(value: &serde_json::Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    emit(&format!("{text}\n"))
}
