//! Terminal tables in the shape of the tutorials' `rich` tables (heavy header
//! rule, light body), plain text so they survive Slurm log files.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

pub struct Table {
    title: Option<String>,
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first column is left-aligned and the rest right-aligned (numbers).
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        let headers: Vec<String> = headers.into_iter().map(Into::into).collect();
        let align = (0..headers.len()).map(|i| if i == 0 { Align::Left } else { Align::Right }).collect();
        Table { title: None, headers, align, rows: Vec::new() }
    }

    pub fn title(mut self, title: impl Into<String>) -> Table {
        self.title = Some(title.into());
        self
    }

    pub fn align(mut self, column: usize, align: Align) -> Table {
        if let Some(a) = self.align.get_mut(column) {
            *a = align;
        }
        self
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(width(c));
            }
        }
        w
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize, align: Align) -> String {
    let fill = " ".repeat(w.saturating_sub(width(s)));
    match align {
        Align::Left => format!("{s}{fill}"),
        Align::Right => format!("{fill}{s}"),
    }
}

fn rule(widths: &[usize], left: &str, mid: &str, right: &str, line: &str) -> String {
    let parts: Vec<String> = widths.iter().map(|w| line.repeat(w + 2)).collect();
    format!("{left}{}{right}", parts.join(mid))
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.widths();
        let total = w.iter().map(|x| x + 3).sum::<usize>() + 1;
        if let Some(t) = &self.title {
            let left = total.saturating_sub(width(t)) / 2;
            writeln!(f, "{}{t}", " ".repeat(left))?;
        }
        writeln!(f, "{}", rule(&w, "┏", "┳", "┓", "━"))?;
        let head: Vec<String> = self.headers.iter().enumerate().map(|(i, h)| pad(h, w[i], Align::Left)).collect();
        writeln!(f, "┃ {} ┃", head.join(" ┃ "))?;
        writeln!(f, "{}", rule(&w, "┡", "╇", "┩", "━"))?;
        for row in &self.rows {
            let cells: Vec<String> = row.iter().enumerate().map(|(i, c)| pad(c, w[i], self.align[i])).collect();
            writeln!(f, "│ {} │", cells.join(" │ "))?;
        }
        write!(f, "{}", rule(&w, "└", "┴", "┘", "─"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(["Size", "Time (s)"]).title("Bench");
        t.row(["2048", "0.5"]);
        t.row(["16384", "12.25"]);
        let s = t.to_string();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 7);
        let w = width(lines[1]);
        assert!(lines[1..].iter().all(|l| width(l) == w), "{s}");
        assert!(lines[4].contains("│ 2048  │"));
        assert!(lines[4].ends_with("   0.5 │"));
    }
}
