//! How much of the kernel verifier's budget (1M instructions processed per program)
//! each program of the XDP object takes: every program must load with headroom left,
//! so that the next change to the data path is not the one that cannot load. Prints
//! each program's count; `PL_VERIFY_OBJECT=path` measures another object instead.

use aya::{programs::Xdp, EbpfLoader};

/// The kernel's limit (BPF_COMPLEXITY_LIMIT_INSNS), and the share a program may use.
const LIMIT: u32 = 1_000_000;
const HEADROOM_PERCENT: u32 = 90;

#[test]
fn every_program_loads_within_the_verifier_budget() {
    let bytes = match std::env::var("PL_VERIFY_OBJECT") {
        Ok(p) => std::fs::read(&p).expect("the object to measure"),
        Err(_) => privatelink::dataplane::BPF_OBJECT.to_vec(),
    };
    let mut ebpf = EbpfLoader::new().load(&bytes).expect("parse the XDP object");
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
    let mut over = Vec::new();
    for name in &names {
        let prog: &mut Xdp = match ebpf.program_mut(name).and_then(|p| p.try_into().ok()) {
            Some(p) => p,
            None => continue,
        };
        prog.load().unwrap_or_else(|e| panic!("{name} does not load: {e:#}"));
        let n = prog.info().expect("program info").verified_instruction_count().unwrap_or(0);
        println!("{name}: {n} instructions verified ({}% of the budget)", n as u64 * 100 / LIMIT as u64);
        if n > LIMIT / 100 * HEADROOM_PERCENT {
            over.push(format!("{name} ({n})"));
        }
    }
    assert!(!names.is_empty(), "the object has no programs");
    assert!(over.is_empty(), "over {HEADROOM_PERCENT}% of the verifier's budget: {over:?}");
}
