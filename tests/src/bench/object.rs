//! The benchmarks' XDP object (`privatelink-bench`, built by `cargo xtask bench`): the
//! reference forwarder R1 and the traffic generator. The product's object does not
//! carry them; this loads them beside it.

use aya::{
    maps::{Array, HashMap, MapData},
    programs::{links::FdLink, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use privatelink_common::*;
use std::path::PathBuf;

pub struct BenchObject {
    ebpf: Ebpf,
}

fn path() -> PathBuf {
    match std::env::var_os("PRIVATELINK_BENCH_OBJECT") {
        Some(p) => p.into(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ebpf/bpfel-unknown-none/release/privatelink-bench"),
    }
}

impl BenchObject {
    /// Load the object and its programs (panics with the way out when it is missing).
    pub fn load() -> BenchObject {
        BenchObject::with_ct_capacity(1024)
    }

    /// The same, its micro-benchmarks' conntrack hash sized `cap`.
    pub fn with_ct_capacity(cap: u32) -> BenchObject {
        let p = path();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_BENCH_CT, cap)
            .load_file(&p)
            .unwrap_or_else(|e| panic!("loading {} ({e}): build it with `cargo xtask bench`", p.display()));
        for name in [PROG_FWD, PROG_TX, PROG_BENCH_PARSE, PROG_BENCH_CT_INSERT, PROG_BENCH_CT_LOOKUP, PROG_BENCH_SLOT_CLAIM, PROG_BENCH_FLOOR, PROG_BENCH_FLOOR_ONE] {
            let prog: &mut Xdp = ebpf.program_mut(name).unwrap_or_else(|| panic!("{name} missing")).try_into().unwrap();
            prog.load().unwrap_or_else(|e| panic!("loading {name}: {e}"));
        }
        BenchObject { ebpf }
    }

    pub fn program(&self, name: &str) -> &Xdp {
        self.ebpf.program(name).unwrap_or_else(|| panic!("{name} missing")).try_into().unwrap()
    }

    /// Attach `name` to `ifindex` in the calling thread's namespace.
    pub fn attach(&mut self, name: &str, ifindex: u32, mode: XdpMode) -> FdLink {
        let prog: &mut Xdp = self.ebpf.program_mut(name).unwrap_or_else(|| panic!("{name} missing")).try_into().unwrap();
        let id = prog.attach_to_if_index(ifindex, mode).unwrap_or_else(|e| panic!("attaching {name}: {e}"));
        FdLink::try_from(prog.take_link(id).unwrap()).unwrap()
    }

    /// The micro-benchmarks' conntrack hash.
    pub fn ct(&mut self) -> HashMap<&mut MapData, CtKey, CtValue> {
        HashMap::try_from(self.ebpf.map_mut(MAP_BENCH_CT).expect("the bench conntrack map")).unwrap()
    }

    /// The generator's frame.
    pub fn set_tx_frame(&mut self, frame: [u8; TX_FRAME_LEN]) {
        let map = self.ebpf.map_mut(MAP_TX_FRAME).expect("the generator's frame map");
        let mut arr: Array<&mut MapData, [u8; TX_FRAME_LEN]> = Array::try_from(map).unwrap();
        arr.set(0, frame, 0).expect("set the generator frame");
    }
}
