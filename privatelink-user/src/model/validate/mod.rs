//! Every rule a spec must pass before it is planned, checked at once: the spec's own
//! rules (`rules`: names, ranges, references, uniqueness, address plans, whitelists,
//! quotas) and what only the recorded state and the host can tell (`history`:
//! immutable fields, interfaces, the live conntrack size), with `dns` (private DNS
//! names) and `sg` (security groups) as rules of their own. Pure: returns every error
//! with its path, or a `Valid` spec whose references are resolved, which is what
//! `plan` takes.

mod dns;
mod history;
mod rules;
mod sg;

use super::{
    spec::{Account, Broken, Cidr, Partial, Spec, SpecError},
    state::{EndpointState, ServiceState, State},
    yaml::Doc,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

/// What the recorded state contributes to the spec's own rules.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Endpoints that exist already (by name): the whitelist gates creation only; an
    /// existing endpoint whose account loses access is revoked, not refused.
    pub endpoints: BTreeSet<String>,
    /// Ids of existing services, by name (for full service names).
    pub service_ids: BTreeMap<String, String>,
}

impl Known {
    /// What `st` knows: its live endpoints and services.
    pub fn of(st: &State) -> Known {
        Known {
            endpoints: st.endpoints.iter().filter(|(_, e)| e.state != EndpointState::Deleting).map(|(n, _)| n.clone()).collect(),
            service_ids: st
                .services
                .iter()
                .filter(|(_, s)| s.state != ServiceState::Deleting)
                .map(|(n, s)| (n.clone(), s.id.clone()))
                .collect(),
        }
    }
}

/// What the host contributes.
pub struct Env<'a> {
    /// Capacity of the live conntrack table, if the data path is loaded.
    pub ct_capacity: Option<u32>,
    /// Whether an interface exists on the gateway.
    pub interface_exists: &'a dyn Fn(&str) -> bool,
    /// The gateway's own IPv4 addresses on an interface: never an endpoint's.
    pub gateway_addrs: &'a dyn Fn(&str) -> Vec<Ipv4Addr>,
}

impl Env<'_> {
    /// No data path yet, every interface exists (tests, dry runs of examples).
    pub fn offline() -> Env<'static> {
        Env { ct_capacity: None, interface_exists: &|_| true, gateway_addrs: &|_| Vec::new() }
    }
}

/// A spec that passed every rule, with its references resolved.
#[derive(Clone, Debug)]
pub struct Valid<'a> {
    pub spec: &'a Spec,
    /// Positions of later (planning) errors.
    pub doc: Option<&'a Doc>,
    /// `endpoints[i]` connects to `services[service_of[i]]`.
    pub service_of: Vec<usize>,
    /// Per VPC name: the gateway's own addresses there and its DNS address, which no
    /// endpoint may take.
    pub reserved: BTreeMap<String, Vec<Ipv4Addr>>,
}

/// The spec's own rules, with what the state `known`s: every error, in document order.
pub fn validate(spec: &Spec, doc: Option<&Doc>, known: &Known) -> Vec<SpecError> {
    let mut c = Check { doc, errors: Vec::new(), broken: None };
    c.spec_rules(spec, known);
    c.errors
}

/// Every rule: the spec's own, then the recorded state's and the host's. The only way
/// to the resolutions a plan needs.
pub fn check<'a>(spec: &'a Spec, doc: Option<&'a Doc>, old: &State, env: &Env) -> Result<Valid<'a>, Vec<SpecError>> {
    let mut c = Check { doc, errors: Vec::new(), broken: None };
    let (service_of, reserved) = c.all(spec, old, env);
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    // Every endpoint resolved, or an error was reported above.
    Ok(Valid { spec, doc, service_of: service_of.into_iter().flatten().collect(), reserved })
}

/// The rules' errors of the parts of a spec that could be read (`partial`), numbered and
/// placed as in its text. A reference to an item that could not be read is not an error
/// (that item has its own), nor is anything of a gateway section that could not be.
pub fn check_partial(partial: &Partial, doc: &Doc, old: &State, env: &Env) -> Vec<SpecError> {
    let mut c = Check { doc: None, errors: Vec::new(), broken: Some(&partial.broken) };
    c.all(&partial.spec, old, env);
    c.errors
        .into_iter()
        .filter(|e| !(partial.broken.gateway && e.path.starts_with("gateway")))
        .map(|e| {
            let path = partial.broken.renumber(&e.path);
            SpecError { pos: doc.pos(&path), message: partial.broken.renumber(&e.message), path }
        })
        .collect()
}

type Reserved = BTreeMap<String, Vec<Ipv4Addr>>;

impl Check<'_> {
    /// Every rule; returns what each endpoint resolved to and each VPC's reserved
    /// addresses.
    fn all(&mut self, spec: &Spec, old: &State, env: &Env) -> (Vec<Option<usize>>, Reserved) {
        let c = self;
        let known = Known::of(old);
    let service_of = c.spec_rules(spec, &known);
    let reserved: BTreeMap<String, Vec<Ipv4Addr>> = spec.vpcs.iter().map(|v| (v.name.clone(), (env.gateway_addrs)(&v.interface))).collect();
    c.host(spec, old, env, &reserved);
    // No endpoint is given a VPC's DNS address automatically either.
    let reserved = reserved.into_iter().map(|(name, mut own)| {
        own.extend(spec.vpcs.iter().filter(|v| v.name == name).filter_map(|v| v.dns));
        (name, own)
    }).collect();
    c.immutable_services(spec, old);
    c.immutable_endpoints(spec, old, &service_of);
    c.fleet(spec, old);
    (service_of, reserved)
    }
}

/// The error list being built, with the document that gives positions.
struct Check<'a> {
    doc: Option<&'a Doc>,
    errors: Vec<SpecError>,
    /// Items of the spec that could not be read (when checking the rest of it).
    broken: Option<&'a Broken>,
}

impl Check<'_> {
    /// Whether `name` of `list` could not be read: a reference to it is no error.
    fn missing(&self, list: &'static str, name: &str) -> bool {
        self.broken.is_some_and(|b| b.has(list, name))
    }

    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let pos = self.doc.and_then(|d| d.pos(&path));
        self.errors.push(SpecError { path, pos, message: message.into() });
    }

    /// Gateway, VPCs, services, endpoints, in that order; returns each endpoint's
    /// service (None where it does not resolve, which is an error already).
    fn spec_rules(&mut self, spec: &Spec, known: &Known) -> Vec<Option<usize>> {
        self.gateway(spec);
        self.vpcs(spec);
        self.services(spec);
        self.dns(spec);
        self.security_groups(spec);
        self.endpoints(spec, known)
    }

    /// The owner's id is well formed and within its account's quota of `what`.
    fn owner<'s>(&mut self, p: &str, owner: &'s Account, counts: &mut BTreeMap<&'s Account, usize>, quota: i64, what: &str) {
        if !account_ok(owner) {
            self.err(format!("{p}.owner"), "an account id is 1-64 characters: letters, digits, '-' and '_'");
        }
        let n = counts.entry(owner).or_default();
        *n += 1;
        if *n as i64 == quota + 1 {
            self.err(p, format!("account {owner} exceeds its quota of {quota} {what}"));
        }
    }

    /// A range with room for hosts besides its network and broadcast addresses.
    /// A SNAT range holds at least 4 addresses per slice (2 usable in each).
    fn big_enough(&mut self, path: String, r: &Cidr, slices: i64) {
        if r.prefix > 30 {
            self.err(path, format!("{r} is too small: use a /30 or larger"));
        } else if slices > 1 && r.size() / (slices as u64) < 4 {
            self.err(path, format!("{r} is too small for gateway.snat_slices {slices} (each slice needs 4 addresses): use a /{} or larger", 32 - (slices as u64 * 4).trailing_zeros()));
        }
    }

    fn range(&mut self, path: String, v: i64, lo: i64, hi: i64, what: &str) {
        if v < lo || v > hi {
            self.err(path, format!("{what} must be {lo}-{hi}, not {v}"));
        }
    }
}

fn simple_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Endpoint names: 2-128 characters, starting with a letter (CJK included); letters,
/// digits, '-' and '_' (the consoles' rule).
pub fn endpoint_name_ok(s: &str) -> bool {
    let n = s.chars().count();
    (2..=128).contains(&n)
        && s.chars().next().is_some_and(char::is_alphabetic)
        && s.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

fn account_ok(a: &Account) -> bool {
    simple_name(&a.0, 64)
}

/// Resolve an endpoint's `service:` (a name or a full name) to a service index.
pub fn resolve_service(spec: &Spec, known: &Known, reference: &str) -> Result<usize, String> {
    if let Some(i) = spec.services.iter().position(|s| s.name == reference) {
        return Ok(i);
    }
    let parts: Vec<&str> = reference.split('.').collect();
    if let [region, name, id] = parts[..] {
        let Some(i) = spec.services.iter().position(|s| s.name == name) else {
            return Err(format!("service `{name}` (of full name `{reference}`) is not in the spec"));
        };
        if region != spec.gateway.region {
            return Err(format!("`{reference}` names region `{region}`, this gateway is `{}`", spec.gateway.region));
        }
        return match known.service_ids.get(name) {
            Some(known_id) if known_id == id => Ok(i),
            Some(known_id) => Err(format!("service `{name}` has id {known_id}, not {id}")),
            None => Err(format!("service `{name}` is new and has no id yet: refer to it by its name")),
        };
    }
    Err(format!("service `{reference}` is not in the spec"))
}

#[cfg(test)]
mod tests;
