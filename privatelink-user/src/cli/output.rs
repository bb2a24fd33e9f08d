//! All CLI output formatting: aligned tables and key/value blocks for people, JSON or
//! YAML for scripts (the objects `docs/output-schema.json` describes). Verbs hand their
//! data here and print nothing themselves.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
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

/// `v` as JSON or YAML; `None` for a table (the verb draws its own).
pub fn structured<T: Serialize>(fmt: Format, v: &T) -> Option<String> {
    let value = match serde_json::to_value(v) {
        Ok(v) => v,
        Err(e) => return Some(format!("{{\"error\": {:?}}}\n", e.to_string())),
    };
    match fmt {
        Format::Table => None,
        Format::Json => Some(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"),
        Format::Yaml => Some(yaml(&value)),
    }
}

/// A JSON value as a YAML document (block style; strings quoted where YAML would read
/// them as something else).
fn yaml(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    // Writing into a String cannot fail.
    let _ = emitter.dump(&to_yaml(v));
    // The emitter starts with `---`; the document is the whole output.
    out.strip_prefix("---\n").or(out.strip_prefix("---")).unwrap_or(&out).trim_start().to_string() + "\n"
}

fn to_yaml(v: &serde_json::Value) -> yaml_rust2::Yaml {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(to_yaml).collect()),
        Value::Object(o) => Yaml::Hash(o.iter().map(|(k, v)| (Yaml::String(k.clone()), to_yaml(v))).collect()),
    }
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

    #[test]
    fn yaml_reads_back_as_the_same_json() {
        let v = serde_json::json!({
            "name": "web", "ports": [{"protocol": "tcp", "endpoint_port": 80}], "auto_accept": true,
            "owner": "1234", "yes": "yes", "empty": [], "none": null, "ratio": 0.5, "big": u64::MAX,
            "text": "two\nlines", "colon": "a: b",
        });
        let text = structured(Format::Yaml, &v).unwrap();
        assert!(text.starts_with("name: web\n"), "{text}");
        let back = &yaml_rust2::YamlLoader::load_from_str(&text).unwrap()[0];
        assert_eq!(back["owner"].as_str(), Some("1234"), "a numeric string stays a string:\n{text}");
        assert_eq!(back["yes"].as_str(), Some("yes"));
        assert_eq!(back["ports"][0]["endpoint_port"].as_i64(), Some(80));
        assert_eq!(back["auto_accept"].as_bool(), Some(true));
        assert_eq!(back["text"].as_str(), Some("two\nlines"));
        assert_eq!(back["colon"].as_str(), Some("a: b"));
        assert!(back["none"].is_null());
        assert_eq!(structured(Format::Table, &v), None);
    }
}
