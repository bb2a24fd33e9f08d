//! Reading a spec from YAML text: every structural error (syntax, unknown field, wrong
//! type, missing field) at once, each with its path and line:column.

use super::{Gateway, Spec};
use crate::model::yaml::{self, Doc, Pos};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

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

/// Top level with each list kept as raw values, so every item is read on its own and
/// one broken item does not hide the errors of the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    gateway: Option<Value>,
    #[serde(default)]
    vpcs: Option<Vec<Value>>,
    #[serde(default)]
    services: Option<Vec<Value>>,
    #[serde(default)]
    endpoints: Option<Vec<Value>>,
    #[serde(default)]
    security_groups: Option<Vec<Value>>,
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

fn read<T: serde::de::DeserializeOwned>(v: Value, prefix: &str, doc: &Doc, errors: &mut Vec<SpecError>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = join(prefix, &e.path().to_string());
            let msg = e.inner().to_string();
            errors.push(SpecError { pos: doc.pos(&path), path, message: clean(&msg) });
            None
        }
    }
}

/// Read a spec from YAML text: every structural error (syntax, unknown field, wrong
/// type, missing field) at once. The `Doc` is kept for positions of later errors.
pub fn parse(text: &str) -> Result<(Spec, Doc), Vec<SpecError>> {
    let doc = yaml::parse(text).map_err(|errs| {
        errs.into_iter()
            .map(|e| SpecError { path: String::new(), pos: Some(e.pos), message: e.message })
            .collect::<Vec<_>>()
    })?;
    let mut errors = Vec::new();
    let root = match &doc.value {
        Value::Null => Value::Object(Default::default()),
        v => v.clone(),
    };
    let Some(raw) = read::<Raw>(root, "", &doc, &mut errors) else {
        return Err(errors);
    };
    let gateway = match raw.gateway {
        None | Some(Value::Null) => Some(Gateway::default()),
        Some(v) => read::<Gateway>(v, "gateway", &doc, &mut errors),
    };
    fn list<T: serde::de::DeserializeOwned>(
        items: Option<Vec<Value>>,
        name: &str,
        doc: &Doc,
        errors: &mut Vec<SpecError>,
    ) -> Vec<T> {
        items
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| read::<T>(v, &format!("{name}[{i}]"), doc, errors))
            .collect()
    }
    let vpcs = list(raw.vpcs, "vpcs", &doc, &mut errors);
    let services = list(raw.services, "services", &doc, &mut errors);
    let endpoints = list(raw.endpoints, "endpoints", &doc, &mut errors);
    let security_groups = list(raw.security_groups, "security_groups", &doc, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let spec = Spec { gateway: gateway.unwrap_or_default(), vpcs, services, endpoints, security_groups };
    Ok((spec, doc))
}

