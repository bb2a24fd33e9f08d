//! Reading a spec from YAML text: every structural error (syntax, unknown field, wrong
//! type, missing field) at once, each with its path and line:column.

use super::{Gateway, Spec};
use crate::model::yaml::{self, Doc, Pos};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

/// One problem with a spec: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpecError {
    /// `services[0].ports[1].endpoint_port`; empty for the whole document.
    pub path: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.pos {
            write!(f, "{}:{}: ", p.line, p.col)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The top level's keys, each read on its own so one broken part does not hide the
/// errors of the others.
const TOP: [&str; 5] = ["gateway", "vpcs", "services", "endpoints", "security_groups"];

/// The lists whose items refer to each other by name.
pub const LISTS: [&str; 4] = ["vpcs", "services", "endpoints", "security_groups"];

/// What could not be read, for the rules run on the rest: which items (by name) are
/// missing because they had errors of their own, and where each read item was.
#[derive(Clone, Debug, Default)]
pub struct Broken {
    /// The gateway section had errors (the rules saw its defaults).
    pub gateway: bool,
    /// (list, name) of items with errors of their own.
    pub names: BTreeSet<(&'static str, String)>,
    /// Per list: the original index of each item that was read.
    pub index: BTreeMap<&'static str, Vec<usize>>,
}

impl Broken {
    /// Whether `name` in `list` is an item that had errors of its own (a reference to it
    /// is not a second error).
    pub fn has(&self, list: &'static str, name: &str) -> bool {
        self.names.contains(&(list, name.to_string()))
    }

    /// `text` with every `list[i]` of the read items' numbering turned into the
    /// spec's (at the start or after a space, a quote or a bracket: not a field such
    /// as `endpoints[0].security_groups[1]`).
    pub fn renumber(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while !rest.is_empty() {
            let at_boundary = out.chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
            if at_boundary {
                for list in LISTS {
                    let Some(after) = rest.strip_prefix(list).and_then(|r| r.strip_prefix('[')) else { continue };
                    let digits = after.chars().take_while(char::is_ascii_digit).count();
                    let (Ok(i), Some(tail)) = (after[..digits].parse::<usize>(), after[digits..].strip_prefix(']')) else { continue };
                    let orig = self.index.get(list).and_then(|v| v.get(i)).copied().unwrap_or(i);
                    out.push_str(&format!("{list}[{orig}]"));
                    rest = tail;
                    continue 'scan;
                }
            }
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

/// What a spec's text gave: the items that could be read, the structural errors of
/// those that could not, and which those were.
#[derive(Clone, Debug)]
pub struct Partial {
    pub spec: Spec,
    pub errors: Vec<SpecError>,
    pub broken: Broken,
}

fn join(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner.is_empty() || inner == ".") {
        (_, true) => prefix.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
        (false, false) => format!("{prefix}.{inner}"),
    }
}

/// serde's messages name Rust types; say it in the spec's words.
fn clean(msg: &str) -> String {
    msg.replace("i64", "an integer")
        .replace("u64", "an integer")
        .replace("a sequence", "a list")
        .replace("a map", "a mapping")
        .replace("struct ", "")
}

/// `v` read as a `T`. An unknown field is reported and left out, and the rest read
/// again, so the item still counts (and its other fields are checked); any other
/// structural error leaves the item unread.
fn read<T: serde::de::DeserializeOwned>(mut v: Value, prefix: &str, doc: &Doc, errors: &mut Vec<SpecError>) -> Option<T> {
    // Each pass removes one unknown field; an item has only so many.
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(t) => return Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let path = join(prefix, &inner);
                let msg = e.inner().to_string();
                let unknown = msg.starts_with("unknown field `") && remove(&mut v, &inner);
                errors.push(SpecError { pos: doc.pos(&path), path, message: clean(&msg) });
                if !unknown {
                    return None;
                }
            }
        }
    }
    None
}

/// Remove the field at `path` (`a.b[0].c`) from `v`; whether it was there.
fn remove(v: &mut Value, path: &str) -> bool {
    let mut segments: Vec<&str> = path.split(['.', '[']).filter(|s| !s.is_empty()).collect();
    let Some(last) = segments.pop() else { return false };
    let mut at = v;
    for s in segments {
        let next = match s.strip_suffix(']').and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => at.get_mut(i),
            None => at.get_mut(s),
        };
        let Some(next) = next else { return false };
        at = next;
    }
    at.as_object_mut().and_then(|m| m.remove(last)).is_some()
}

/// Read a spec from YAML text: every structural error (syntax, unknown field, wrong
/// type, missing field) at once. The `Doc` is kept for positions of later errors.
pub fn parse(text: &str) -> Result<(Spec, Doc), Vec<SpecError>> {
    let (p, doc) = read_all(text)?;
    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    Ok((p.spec, doc))
}

/// Read what can be read: every item that parses, and the structural errors of the
/// rest. Fails only when there is no document to read (a YAML syntax error, or a top
/// level that is not a mapping).
pub fn read_all(text: &str) -> Result<(Partial, Doc), Vec<SpecError>> {
    let doc = yaml::parse(text).map_err(|errs| {
        errs.into_iter()
            .map(|e| SpecError { path: String::new(), pos: Some(e.pos), message: e.message })
            .collect::<Vec<_>>()
    })?;
    let mut errors = Vec::new();
    let root = match &doc.value {
        Value::Null => Default::default(),
        Value::Object(m) => m.clone(),
        _ => return Err(vec![SpecError { path: String::new(), pos: doc.pos(""), message: "a spec is a mapping of gateway, vpcs, services, endpoints and security_groups".into() }]),
    };
    for key in root.keys().filter(|k| !TOP.contains(&k.as_str())) {
        let message = format!("unknown field `{key}`, expected one of {}", TOP.map(|t| format!("`{t}`")).join(", "));
        errors.push(SpecError { pos: doc.pos(key), path: key.clone(), message });
    }
    let mut broken = Broken::default();
    let gateway = match root.get("gateway") {
        None | Some(Value::Null) => Gateway::default(),
        Some(v) => read::<Gateway>(v.clone(), "gateway", &doc, &mut errors).unwrap_or_else(|| {
            broken.gateway = true;
            Gateway::default()
        }),
    };
    fn list<T: serde::de::DeserializeOwned>(root: &serde_json::Map<String, Value>, name: &'static str, doc: &Doc, errors: &mut Vec<SpecError>, broken: &mut Broken) -> Vec<T> {
        let items = match root.get(name) {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                errors.push(SpecError { pos: doc.pos(name), path: name.into(), message: "expected a list".into() });
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, v) in items.iter().enumerate() {
            match read::<T>(v.clone(), &format!("{name}[{i}]"), doc, errors) {
                Some(t) => {
                    out.push(t);
                    broken.index.entry(name).or_default().push(i);
                }
                None => {
                    if let Some(n) = v.get("name").and_then(Value::as_str) {
                        broken.names.insert((name, n.to_string()));
                    }
                }
            }
        }
        out
    }
    let vpcs = list(&root, "vpcs", &doc, &mut errors, &mut broken);
    let services = list(&root, "services", &doc, &mut errors, &mut broken);
    let endpoints = list(&root, "endpoints", &doc, &mut errors, &mut broken);
    let security_groups = list(&root, "security_groups", &doc, &mut errors, &mut broken);
    let spec = Spec { gateway, vpcs, services, endpoints, security_groups };
    Ok((Partial { spec, errors, broken }, doc))
}

/// Errors in the order of the text: whole-document ones first, then by line and column.
pub fn sort(errors: &mut [SpecError]) {
    errors.sort_by_key(|e| e.pos.map(|p| (p.line, p.col)));
}
