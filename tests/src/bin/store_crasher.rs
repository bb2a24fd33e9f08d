//! Helper of the state-store crash test: commits generation after generation of a
//! state whose every record names its generation, printing each generation once its
//! commit returned, until it is killed.

use privatelink::{
    model::{
        spec::{Account, Endpoint},
        state::{EndpointRecord, EndpointState},
    },
    store::{RedbStore, Store},
};
use std::io::Write;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: store_crasher DIR");
    let store = RedbStore::open(std::path::Path::new(&dir)).expect("open the store");
    let mut st = store.load().expect("load");
    loop {
        let g = st.generation + 1;
        st.endpoints.clear();
        for i in 0..300u32 {
            let name = format!("ep-{i}");
            st.endpoints.insert(
                name.clone(),
                EndpointRecord {
                    extra_snat_ips: vec![],
                    id: format!("ep-{i:017x}"),
                    spec: Endpoint { name, owner: Account("1".into()), vpc: "v".into(), service: "s".into(), ip: None, zone_ips: Default::default(), private_dns: true, security_groups: vec![], bandwidth: None },
                    service: "s".into(),
                    state: EndpointState::Accepted,
                    ip: std::net::Ipv4Addr::from(i),
                    snat_ip: std::net::Ipv4Addr::from(i),
                    index: i,
                    reason: Some(format!("generation {g}")),
                    created_at: g,
                },
            );
        }
        store.commit(&mut st).expect("commit");
        assert_eq!(st.generation, g);
        println!("{g}");
        std::io::stdout().flush().unwrap();
    }
}
