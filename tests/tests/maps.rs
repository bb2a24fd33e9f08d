//! What the daemon reads back from the maps (drift repair compares it with the recorded
//! state; scrapes read the counters) is what was written: the reads go in batches of
//! many entries per syscall, and the first and last slots of each array count too.

use privatelink::dataplane::reconcile::observe;
use privatelink_common::*;
use privatelink_tests::packet_lab::*;
use std::net::Ipv4Addr;

#[test]
fn the_maps_read_back_in_batches_what_was_written() {
    let mut lab = PacketLab::new(1 << 12);
    let last_ep = MAX_ENDPOINTS - 1;
    let last_svc = MAX_SERVICES - 1;
    let last_backend = MAX_BACKENDS - 1;
    let far = Ipv4Addr::new(192, 168, 2, 77);
    let ep_ip = Ipv4Addr::new(10, 0, 0, 200);
    let snat = Ipv4Addr::new(11, 163, 9, 9);
    let rate = Rate::of_bps(5_000_000);
    {
        let m = &mut lab.dp.maps;
        m.set_backend(last_backend, far, false).unwrap();
        m.set_service(last_svc, ServiceInfo { ifindex: lab.provider_if, vpc_id: PROVIDER_VPC, active: 1, ..Default::default() }).unwrap();
        let table: Vec<u32> = (0..MAGLEV_SIZE).map(|i| if i % 2 == 0 { last_backend } else { 0 }).collect();
        m.set_maglev(last_svc, &table).unwrap();
        m.set_endpoint(last_ep, EndpointInfo { service: last_svc, conn_limit: 7, state: EP_STATE_ACCEPTED, snat_count: 2, ..Default::default() }).unwrap();
        m.set_ep_snat(last_ep * MAX_SNAT_PER_ENDPOINT + 1, Some(snat)).unwrap();
        m.bind_endpoint_ip(CONSUMER_VPC, ep_ip, last_ep).unwrap();
        m.set_rate(last_ep, rate).unwrap();
        m.set_port(last_svc, PROTO_UDP, 9999, 53).unwrap();
    }
    let t = observe(&lab.dp.maps).unwrap();
    // The packet lab's five endpoints (0..=4) and the last slot; nothing else.
    assert_eq!(t.endpoints.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, last_ep]);
    assert_eq!(t.endpoints[&last_ep].conn_limit, 7);
    assert_eq!(t.endpoints[&EP_IDX_ACCEPTED].state, EP_STATE_ACCEPTED);
    assert_eq!(t.services.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, last_svc]);
    assert_eq!(t.backends.get(&0), Some(&(BACKEND, true)));
    assert_eq!(t.backends.get(&1), Some(&(BACKEND_UNRESOLVED, true)));
    assert_eq!(t.backends.get(&last_backend), Some(&(far, false)));
    assert_eq!(t.backends.len(), 3);
    // Maglev: service 0 has one backend (slot 0) in every position; service 1 none;
    // the last service alternates, so an entry read into the wrong place shows.
    assert!(t.maglev[&0].iter().all(|b| *b == 0), "{:?}", &t.maglev[&0][..8]);
    assert!(t.maglev[&1].iter().all(|b| *b == BACKEND_NONE), "{:?}", &t.maglev[&1][..8]);
    let alt = &t.maglev[&last_svc];
    assert_eq!(alt.len(), MAGLEV_SIZE as usize);
    assert!(alt.iter().enumerate().all(|(i, b)| *b == if i % 2 == 0 { last_backend } else { 0 }), "{:?}", &alt[..8]);
    // Each endpoint's SNAT address slots; the last one's second slot only.
    assert_eq!(t.ep_snat.get(&0), Some(&SNAT_IP));
    assert_eq!(t.ep_snat.get(&(last_ep * MAX_SNAT_PER_ENDPOINT + 1)), Some(&snat));
    assert_eq!(t.ep_snat.get(&(last_ep * MAX_SNAT_PER_ENDPOINT)), None);
    assert_eq!(t.ep_ips.get(&(CONSUMER_VPC, EP_ACCEPTED)), Some(&EP_IDX_ACCEPTED));
    assert_eq!(t.ep_ips.get(&(CONSUMER_VPC, ep_ip)), Some(&last_ep));
    assert_eq!(t.ep_ips.get(&(PROVIDER_VPC, GW_PROVIDER)), Some(&EP_GATEWAY_OWN));
    assert_eq!(t.ep_ips.len(), 5 + 2 + 1);
    assert_eq!(t.ports.get(&(0, PROTO_TCP, 80)), Some(&8080));
    assert_eq!(t.ports.get(&(last_svc, PROTO_UDP, 9999)), Some(&53));
    assert_eq!(t.ports.len(), 3 * 2 + 1);
    assert_eq!(t.vpcs.len(), 2);
    assert_eq!(t.vpcs[&lab.consumer_if].vpc_id, CONSUMER_VPC);
    assert_eq!(t.rates.get(&last_ep), Some(&rate));
    assert_eq!(t.rates.len(), 1);
}
