//! The one schema of everything `-o json` and `-o yaml` print: `docs/output-schema.json`,
//! generated from the view types (a test keeps the file equal to this).
//!
//! The root describes an object with one property per command, named as typed
//! (`get services`), holding what that command prints; the types are under `$defs`.

use super::*;
use schemars::{generate::SchemaSettings, JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

/// Each command, and the schema of what it prints.
fn commands(g: &mut SchemaGenerator) -> Vec<(&'static str, Value)> {
    fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
        g.subschema_for::<T>().to_value()
    }
    vec![
        ("apply", of::<ApplyResult>(g)),
        ("get services", of::<Vec<ServiceView>>(g)),
        ("describe service", of::<ServiceView>(g)),
        ("get endpoints", of::<Vec<EndpointView>>(g)),
        ("describe endpoint", of::<EndpointView>(g)),
        ("accept", of::<EndpointView>(g)),
        ("reject", of::<EndpointView>(g)),
        ("delete service", of::<ApplyResult>(g)),
        ("delete endpoint", of::<ApplyResult>(g)),
        ("get vpcs", of::<Vec<VpcView>>(g)),
        ("get nodes", of::<Vec<NodeView>>(g)),
        ("describe node", of::<NodeView>(g)),
        ("delete node", of::<NodeDeleted>(g)),
        ("stats", of::<StatsView>(g)),
        ("conntrack list", of::<Vec<FlowView>>(g)),
        ("whois", of::<WhoisView>(g)),
        ("status", of::<StatusView>(g)),
        ("events", of::<Vec<Event>>(g)),
    ]
}

/// The document, as written to `docs/output-schema.json`.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12().for_serialize().into_generator();
    let commands = commands(&mut g);
    let names: Vec<&str> = commands.iter().map(|(n, _)| *n).collect();
    let properties: Map<String, Value> = commands.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "privatelink CLI output",
        "description": "What `privatelink COMMAND -o json` (or `-o yaml`, the same objects) prints: one property per command, named as typed. `events --follow -o json` prints one Event per line. Addresses are dotted quads, ports and counts numbers, times RFC 3339 in UTC.",
        "type": "object",
        "properties": properties,
        "propertyNames": { "enum": names },
        "$defs": g.take_definitions(true),
    })
}

/// The document as the file holds it (pretty, newline-terminated).
pub fn text() -> String {
    serde_json::to_string_pretty(&document()).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    /// `docs/output-schema.json` is what the types say; `UPDATE_SCHEMA=1 cargo test`
    /// rewrites it after a change.
    #[test]
    fn docs_schema_matches_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/output-schema.json");
        let want = super::text();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(have == want, "{path} is out of date: run `UPDATE_SCHEMA=1 cargo test -p privatelink-user schema`");
    }
}
