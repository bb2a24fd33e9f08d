//! YAML text -> a `serde_json::Value` plus the line:column of every path in it, so that
//! every error about a spec can point at the place in the file. Owns only parsing;
//! what the document means is `spec`'s business.
//!
//! Scalars resolve per the YAML 1.2 core schema: a plain `null`/`~`/empty is null,
//! `true`/`false` a boolean, a plain number a number; anything quoted is a string.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::{Marker, TScalarStyle},
};

/// A place in the YAML text, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A parsed document: the value, and where each path (`services[0].ports[1].endpoint_port`)
/// starts. For a mapping entry that is its key, for a sequence item the item.
#[derive(Debug, Default)]
pub struct Doc {
    pub value: Value,
    pub positions: HashMap<String, Pos>,
}

impl Doc {
    /// Position of `path`, or of its nearest ancestor that has one.
    pub fn pos(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// A syntax error of the YAML text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

fn pos(m: &Marker) -> Pos {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Pos { line: m.line(), col: m.col() + 1 }
}

enum Frame {
    Seq { path: String, items: Vec<Value> },
    Map { path: String, map: Map<String, Value>, key: Option<String> },
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    anchors: HashMap<usize, Value>,
    /// anchor id of each open collection, in stack order
    open_anchors: Vec<usize>,
    positions: HashMap<String, Pos>,
    errors: Vec<SyntaxError>,
    documents: usize,
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Value::Number(i.into());
    }
    if s.chars().any(|c| c.is_ascii_digit()) && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
        if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.to_string())
}

impl Builder {
    /// The path a new node gets and, for mapping values, records its key position.
    fn next_path(&mut self, mark: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, items }) => {
                let p = format!("{path}[{}]", items.len());
                self.positions.insert(p.clone(), mark);
                Some(p)
            }
            Some(Frame::Map { path, key, .. }) => key.as_ref().map(|k| child_path(path, k)),
        }
    }

    /// Put a finished node where it belongs.
    fn place(&mut self, v: Value, anchor: usize, mark: Pos) {
        if anchor > 0 {
            self.anchors.insert(anchor, v.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq { items, .. }) => items.push(v),
            Some(Frame::Map { path, map, key }) => match key.take() {
                Some(k) => {
                    map.insert(k, v);
                }
                None => {
                    // This node is a key.
                    let k = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            self.errors.push(SyntaxError {
                                pos: mark,
                                message: "mapping keys must be plain strings".into(),
                            });
                            "?".into()
                        }
                    };
                    let full = child_path(path, &k);
                    // yaml-rust2 marks a block mapping inside a sequence one column past
                    // its first key; the first key is where the item visibly starts.
                    if map.is_empty() {
                        if let Some(p) = self.positions.get_mut(path.as_str()) {
                            if p.line == mark.line && mark.col < p.col {
                                *p = mark;
                            }
                        }
                    }
                    if map.contains_key(&k) {
                        self.errors.push(SyntaxError { pos: mark, message: format!("duplicate key `{full}`") });
                    }
                    self.positions.insert(full, mark);
                    *key = Some(k);
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, m: Marker) {
        let mark = pos(&m);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.errors.push(SyntaxError { pos: mark, message: "a spec is one YAML document".into() });
                }
            }
            Event::Scalar(s, style, anchor, _tag) => {
                // A scalar's own path matters only as a sequence item (a mapping value's
                // position is its key's, recorded with the key).
                if matches!(self.stack.last(), Some(Frame::Seq { .. })) {
                    self.next_path(mark);
                }
                let v = if style == TScalarStyle::Plain { resolve_plain(&s) } else { Value::String(s) };
                self.place(v, anchor, mark);
            }
            Event::Alias(id) => {
                if matches!(self.stack.last(), Some(Frame::Seq { .. })) {
                    self.next_path(mark);
                }
                let v = self.anchors.get(&id).cloned().unwrap_or(Value::Null);
                self.place(v, 0, mark);
            }
            Event::SequenceStart(anchor, _) => {
                let path = self.next_path(mark).unwrap_or_default();
                self.open_anchors.push(anchor);
                self.stack.push(Frame::Seq { path, items: Vec::new() });
            }
            Event::MappingStart(anchor, _) => {
                let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                if is_key {
                    self.errors.push(SyntaxError { pos: mark, message: "mapping keys must be plain strings".into() });
                }
                let path = self.next_path(mark).unwrap_or_default();
                self.open_anchors.push(anchor);
                self.stack.push(Frame::Map { path, map: Map::new(), key: None });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let anchor = self.open_anchors.pop().unwrap_or(0);
                let v = match self.stack.pop() {
                    Some(Frame::Seq { items, .. }) => Value::Array(items),
                    Some(Frame::Map { map, .. }) => Value::Object(map),
                    None => return,
                };
                self.place(v, anchor, mark);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Parse YAML text. An empty document is `null`.
pub fn parse(text: &str) -> Result<Doc, Vec<SyntaxError>> {
    let mut b = Builder {
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        open_anchors: Vec::new(),
        positions: HashMap::new(),
        errors: Vec::new(),
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, true) {
        b.errors.push(SyntaxError { pos: pos(e.marker()), message: e.info().to_string() });
    }
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    Ok(Doc { value: b.root.unwrap_or(Value::Null), positions: b.positions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_positions() {
        let text = "a: 1\nb:\n  - x: \"2\"\n    y: [true, ~, 1.5, plain]\n  - {x: 3}\n";
        let d = parse(text).unwrap();
        assert_eq!(
            d.value,
            serde_json::json!({"a": 1, "b": [{"x": "2", "y": [true, null, 1.5, "plain"]}, {"x": 3}]})
        );
        assert_eq!(d.positions["a"], Pos { line: 1, col: 1 });
        assert_eq!(d.positions["b"], Pos { line: 2, col: 1 });
        assert_eq!(d.positions["b[0]"], Pos { line: 3, col: 5 });
        assert_eq!(d.positions["b[0].x"], Pos { line: 3, col: 5 });
        assert_eq!(d.positions["b[0].y"], Pos { line: 4, col: 5 });
        assert_eq!(d.positions["b[1].x"], Pos { line: 5, col: 6 });
        // An unknown deeper path falls back to its nearest known ancestor.
        assert_eq!(d.pos("b[0].y[3].z"), Some(Pos { line: 4, col: 23 }));
        assert_eq!(d.pos("b[0].nothing"), Some(Pos { line: 3, col: 5 }));
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_are_reported_with_positions() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e, vec![SyntaxError { pos: Pos { line: 2, col: 1 }, message: "duplicate key `a`".into() }]);
        let e = parse("a: [1, 2\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].pos.line, 2, "{e:?}");
    }

    #[test]
    fn anchors_are_copied() {
        let d = parse("a: &x {p: 1}\nb: *x\n").unwrap();
        assert_eq!(d.value, serde_json::json!({"a": {"p": 1}, "b": {"p": 1}}));
    }
}
