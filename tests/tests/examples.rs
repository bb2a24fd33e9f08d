//! Every example under examples/ parses, validates and plans (offline: every
//! interface assumed present), so they never rot.

use privatelink::model::{
    plan, plan_spec, spec,
    state::{EndpointState, State},
    validate::Env,
};

fn examples() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_plans_cleanly() {
    let files = examples();
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let (s, doc) = spec::parse(&text).unwrap_or_else(|e| panic!("{}: {e:#?}", f.display()));
        let p = plan_spec(&s, Some(&doc), &State::default(), &Env::offline()).unwrap_or_else(|e| panic!("{}: {e:#?}", f.display()));
        assert!(!p.changes.is_empty(), "{}", f.display());
        let st = plan::finish(p.state);
        if f.ends_with("bidirectional.yaml") {
            // The operator's part only: the accounts create the rest through the API.
            assert!(st.vpcs.values().all(|v| v.spec.owner.is_some()), "every VPC has its account");
        } else {
            assert!(!st.endpoints.is_empty(), "{}", f.display());
        }
        // And a re-plan is a no-op.
        let again = plan_spec(&s, Some(&doc), &st, &Env::offline()).unwrap();
        assert_eq!(again.changes, vec![], "{}", f.display());
    }
}

#[test]
fn the_quickstart_is_the_seeds_scenario() {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.yaml")).unwrap();
    let (s, _) = spec::parse(&text).unwrap();
    let st = plan::finish(plan_spec(&s, None, &State::default(), &Env::offline()).unwrap().state);
    let ep = &st.endpoints["web-from-vpc1"];
    assert_eq!(ep.state, EndpointState::PendingAcceptance, "cross-account with manual approval");
    assert_eq!(ep.ip.to_string(), "10.0.0.100");
    assert!(ep.snat_ip.to_string().starts_with("11.163."));
}
