//! All CLI output formatting: aligned tables and key/value blocks for people, JSON for
//! scripts. Verbs hand their data here and print nothing themselves.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            s.push_str(c);
            if i + 1 < n {
                s.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n") + "\n"
}

/// One column of a table: its header and how a row shows in it.
pub type Column<'a, T> = (&'a str, &'a dyn Fn(&T) -> String);

/// A table of `rows`, one cell per column.
pub fn table_of<T>(rows: &[T], columns: &[Column<T>]) -> String {
    table(&headers(columns), &cells(rows, columns))
}

pub fn headers<'a, T>(columns: &[Column<'a, T>]) -> Vec<&'a str> {
    columns.iter().map(|(h, _)| *h).collect()
}

/// The cells of `rows` (to add rows of another kind before printing them).
pub fn cells<T>(rows: &[T], columns: &[Column<T>]) -> Vec<Vec<String>> {
    rows.iter().map(|r| columns.iter().map(|(_, cell)| cell(r)).collect()).collect()
}

/// `key: value` lines, keys aligned.
/// `key: value` lines, values aligned; a value's further lines are indented under it.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let indent = format!("\n{}", " ".repeat(w + 2));
    pairs.iter().map(|(k, v)| format!("{k}:{} {}\n", " ".repeat(w - k.len()), v.replace('\n', &indent))).collect()
}

pub fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

/// Bytes in B/KiB/MiB/GiB.
pub fn bytes(n: u64) -> String {
    const U: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_fields_too() {
        let t = table(&["NAME", "STATE"], &[vec!["a".into(), "accepted".into()], vec!["longer".into(), "x".into()]]);
        assert_eq!(t, "NAME    STATE\na       accepted\nlonger  x\n");
        assert_eq!(fields(&[("id", "1".into()), ("state", "ok".into())]), "id:    1\nstate: ok\n");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
