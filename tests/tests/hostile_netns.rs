//! A hostile tenant against the real daemon, with real sockets between network
//! namespaces: the kernel does not speak for the gateway in a VPC where it should not
//! (ARP), a SYN flood from one consumer VPC into a small conntrack table leaves the
//! other VPC's connections alone, forged segments from a raw socket neither close a
//! live connection nor open anything, ICMP errors are no way around a bandwidth limit,
//! and a rejected endpoint cannot reopen a closed tuple.

use privatelink_tests::{daemon_lab::*, frame, lab::*};
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

/// Send raw IPv4 packets (header included) from the calling thread's namespace.
fn send_raw(packets: &[Vec<u8>]) {
    // SAFETY: a raw socket used for sendto of buffers we own; closed at the end.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        for p in packets {
            let dst = u32::from_be_bytes([p[16], p[17], p[18], p[19]]);
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_addr.s_addr = dst.to_be();
            let n = libc::sendto(fd, p.as_ptr() as *const libc::c_void, p.len(), 0, &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32);
            assert_eq!(n as usize, p.len(), "sendto: {}", std::io::Error::last_os_error());
        }
        libc::close(fd);
    }
}

fn two_vpcs(capacity: u32) -> String {
    let s = spec(
        2,
        &service("web", "100", &["allowed_accounts: [\"*\"]", "auto_accept: true"]),
        &[endpoint("ep-a", "201", 0, "web"), endpoint("ep-b", "202", 1, "web")].concat(),
    );
    s.replace("conntrack_capacity: 65536", &format!("conntrack_capacity: {capacity}"))
}

#[test]
fn the_kernel_answers_arp_only_for_the_interfaces_own_addresses() {
    let lab = DaemonLab::new(2);
    let r = lab.apply(&two_vpcs(65536), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let status = lab.json(&["status"]);
    assert!(!status["warnings"].to_string().contains("arp_ignore"), "{status:#}");
    // A host in VPC 0 asks for the gateway's provider-side address on its own link:
    // nobody answers (arp_ignore=0 would have had the gateway claim it).
    let c = &lab.consumers[0].ns;
    c.ip(&["route", "add", "192.168.2.1/32", "dev", "c0"]);
    let ping = c.try_exec(&["ping", "-c", "2", "-W", "1", "192.168.2.1"]);
    assert!(!ping.status.success(), "the provider-side address answered in a consumer VPC");
    let neigh = String::from_utf8_lossy(&c.ip(&["neigh", "show", "192.168.2.1", "dev", "c0"]).stdout).to_string();
    assert!(!neigh.contains("lladdr"), "resolved in the wrong VPC: {neigh}");
    // The endpoint's address, by contrast, is answered there (by the data path).
    let ping = c.try_exec(&["ping", "-c", "1", "-W", "2", "10.0.0.100"]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));
    let neigh = String::from_utf8_lossy(&c.ip(&["neigh", "show", "10.0.0.100", "dev", "c0"]).stdout).to_string();
    assert!(neigh.contains("lladdr"), "{neigh}");
    // Set back by hand, the setting is reported.
    lab.gw.sysctl("net.ipv4.conf.gw-c0.arp_ignore", "0");
    let status = lab.json(&["status"]);
    assert!(status["warnings"].to_string().contains("arp_ignore=0 (want 1)"), "{status:#}");
}

#[test]
fn a_syn_flood_from_one_vpc_into_a_small_table_leaves_the_other_vpc_alone() {
    let lab = DaemonLab::new(2);
    // 1024 entries: 512 flows; two consumer VPCs get 256 each.
    let r = lab.apply(&two_vpcs(1024), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    // VPC 0 floods: 3000 SYNs from spoofed sources (no host answers the SYN-ACKs).
    let flood: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| {
            let src = Ipv4Addr::new(10, 0, 0, 20 + (i % 200) as u8);
            frame::Packet::tcp((src, 20_000 + (i / 200) as u16), (ENDPOINT, ENDPOINT_TCP_PORT), frame::SYN).ip_bytes()
        })
        .collect();
    let started = Instant::now();
    lab.in_client(0, move || send_raw(&flood));
    let took = started.elapsed();
    // VPC 1 keeps opening connections, one after another.
    let ok = lab.in_client(1, || (0..20).filter(|_| http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))).is_ok()).count());
    assert_eq!(ok, 20, "VPC 1 refused while VPC 0 flooded");
    let stats = lab.json(&["stats"]);
    let ep = |name: &str| stats["endpoints"].as_array().unwrap().iter().find(|e| e["endpoint"] == name).cloned().unwrap();
    let (a, b) = (ep("ep-a"), ep("ep-b"));
    eprintln!("3000 SYNs in {took:?}; a: {a}\nb: {b}");
    assert!(a["drops"]["flow_share"].as_u64().unwrap_or(0) > 0, "the flood met its VPC's share: {a}");
    assert!(a["flows"].as_u64().unwrap() <= 256, "{a}");
    assert!(b["drops"].get("conntrack_full").is_none() && b["drops"].get("flow_share").is_none(), "{b}");
}

#[test]
fn forged_segments_neither_close_a_live_connection_nor_open_anything() {
    let lab = DaemonLab::new(1);
    let s = spec(1, &service("web", "100", &["allowed_accounts: [\"*\"]", "auto_accept: true"]), &endpoint("ep-a", "201", 0, "web"));
    let r = lab.apply(&s, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let result = lab.in_client(0, || {
        // A live echo session; its local port is what the forgeries aim at.
        let mut conn = connect(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))).expect("connect");
        conn.write_all(b"ECHO 1000000\n").unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let port = conn.local_addr().unwrap().port();
        let rst = |seq: u32, ttl: u8| frame::Packet::tcp((CLIENT, port), (ENDPOINT, ENDPOINT_TCP_PORT), frame::RST).seq_ack(seq, 0).ttl(ttl).ip_bytes();
        let mut bad = rst(1, 64);
        bad[20 + 16] ^= 0x55; // the TCP checksum
        // Out of window at every sequence number the probe tries, a bad checksum, TTL
        // 1, and SYN+FIN / SYN+RST on fresh tuples.
        let mut forged: Vec<Vec<u8>> = (0..64u32).map(|i| rst(i.wrapping_mul(0x0400_0000), 64)).collect();
        forged.push(bad);
        forged.extend((0..64u32).map(|i| rst(i.wrapping_mul(0x0400_0000), 1)));
        for (i, flags) in [frame::SYN | frame::FIN, frame::SYN | frame::RST].into_iter().enumerate() {
            forged.push(frame::Packet::tcp((CLIENT, 45_000 + i as u16), (ENDPOINT, ENDPOINT_TCP_PORT), flags).ip_bytes());
        }
        send_raw(&forged);
        // The connection goes on.
        let mut back = [0u8; 5];
        (conn.write_all(b"hello").and_then(|_| conn.read_exact(&mut back)).map(|_| back), conn)
    });
    let (echoed, _conn) = result;
    assert_eq!(echoed.expect("the session after the forgeries"), *b"hello");
    let stats = lab.json(&["stats"]);
    let a = &stats["endpoints"][0];
    assert_eq!(a["active_connections"], 1, "{a}");
    assert!(a["drops"]["invalid_tcp"].as_u64().unwrap_or(0) >= 2, "{a}");
    assert_eq!(a["new_connections"], 1, "nothing opened: {a}");
}

#[test]
fn icmp_errors_quoting_a_flow_are_policed_as_its_packets() {
    let lab = DaemonLab::new(1);
    let ep = endpoint("ep-a", "201", 0, "web").replace("ip: 10.0.0.100 }", "ip: 10.0.0.100, bandwidth: 1Mbps }");
    let r = lab.apply(&spec(1, &service("web", "100", &["allowed_accounts: [\"*\"]", "auto_accept: true"]), &ep), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    // The backends' side counts every ICMP error that reaches it from the SNAT range.
    let listening = std::sync::Arc::new(std::sync::Barrier::new(2));
    let ready = listening.clone();
    let counter = lab.provider.spawn(move || {
        // SAFETY: a raw ICMP socket read into a buffer we own; closed at the end.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
            assert!(fd >= 0, "raw ICMP socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 300_000 };
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const libc::c_void, std::mem::size_of::<libc::timeval>() as u32);
            ready.wait();
            let (mut errors, mut bytes, mut buf) = (0u64, 0u64, [0u8; 2048]);
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                let n = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
                if n > 20 && buf[12] == 11 && buf[13] == 163 && buf[20] == 3 {
                    errors += 1;
                    bytes += n as u64;
                }
            }
            libc::close(fd);
            (errors, bytes)
        }
    });
    listening.wait();
    let sent = lab.in_client(0, || {
        // A UDP flow from port 40000; then 2000 port-unreachables of 576 bytes each
        // quoting its answer, as fast as the client can send them (1.15 MB).
        let sock = std::net::UdpSocket::bind("10.0.0.2:40000").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send_to(b"hello", SocketAddr::from((ENDPOINT, ENDPOINT_UDP_PORT))).unwrap();
        let mut buf = [0u8; 512];
        sock.recv_from(&mut buf).expect("the UDP flow's answer");
        let quote = frame::Packet::udp((ENDPOINT, ENDPOINT_UDP_PORT), (CLIENT, 40000)).payload(&[0x42; 520]).ip_bytes();
        let err = frame::Packet::icmp_error(CLIENT, ENDPOINT, 3, 3, 0, &quote).ip_bytes();
        assert_eq!(err.len(), 576);
        let started = Instant::now();
        send_raw(&vec![err; 2000]);
        started.elapsed()
    });
    let (errors, bytes) = counter.join().unwrap();
    // 1 Mbps is 125 kB/s, with a 300 ms burst (37.5 kB): what a second of sending can
    // pass at most, with room for the frames' own headers.
    eprintln!("2000 ICMP errors sent in {sent:?}; {errors} ({bytes} bytes) reached the backends");
    let allowed = 37_500 + 125_000 * (sent.as_millis() as u64 + 100) / 1000;
    assert!(errors > 0, "some errors pass: the limit polices, it does not block");
    assert!(bytes <= allowed + allowed / 4, "{bytes} bytes of ICMP errors passed a 1 Mbps limit in {sent:?}");
    let stats = lab.json(&["stats"]);
    let a = &stats["endpoints"][0];
    assert!(a["drops"]["over_bandwidth"].as_u64().unwrap_or(0) + errors >= 1900, "the rest was dropped as over_bandwidth: {a}");
}

#[test]
fn a_rejected_endpoint_cannot_reopen_a_closed_tuple() {
    let lab = DaemonLab::new(1);
    let s = spec(1, &service("web", "100", &["allowed_accounts: [\"201\"]"]), &endpoint("ep-a", "201", 0, "web"));
    let r = lab.apply(&s, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    lab.ok(&["accept", "ep-a"]);
    // A GET from port 41000 (the backend closes first: the client's side leaves no
    // TIME_WAIT and the port is free again at once), then the same tuple after a reject.
    let from = |port: u16| {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind(&SockAddr::from(SocketAddr::from((CLIENT, port))))?;
        s.connect_timeout(&SockAddr::from(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))), Duration::from_secs(2))?;
        let mut s: std::net::TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: endpoint\r\n\r\n")?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        Ok::<_, std::io::Error>(resp)
    };
    let first = lab.in_client(0, move || from(41000));
    assert!(first.expect("the accepted endpoint's GET").starts_with("HTTP/1.0 200"));
    lab.ok(&["reject", "ep-a"]);
    let again = lab.in_client(0, move || from(41000));
    assert!(again.is_err(), "the rejected endpoint reopened its closed tuple: {again:?}");
    let stats = lab.json(&["stats"]);
    let a = &stats["endpoints"][0];
    assert!(a["drops"]["rejected"].as_u64().unwrap_or(0) >= 1, "{a}");
    assert_eq!(a["new_connections"], 1, "{a}");
}
