//! Tenant isolation and router behaviour with real sockets between network namespaces:
//! the gateway forwards nothing between VPCs on its own (each test first shows the path
//! would work without the data path's decision, then that it does not with it), and
//! it behaves like a router towards clients: port unreachable, path MTU, TTL, ping.

use privatelink_common::*;
use privatelink_tests::lab::*;
use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

const BACKEND: Ipv4Addr = BACKENDS[0];

/// Datagrams a fresh UDP socket on backend 0 receives while `send` runs in the client.
fn received_at_backend(lab: &Lab, port: u16, send: impl FnOnce() + Send + 'static) -> usize {
    let sock = lab.provider.spawn(move || UdpSocket::bind((BACKEND, port))).join().unwrap().expect("bind at the backend");
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    lab.in_client(0, send);
    let mut buf = [0u8; 64];
    let mut n = 0;
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

fn send_five(port: u16) -> impl FnOnce() + Send + 'static {
    move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..5 {
            s.send_to(b"sneak", (BACKEND, port)).unwrap();
        }
    }
}

#[test]
fn a_consumer_routing_a_provider_subnet_at_the_gateway_reaches_nothing() {
    let mut lab = Lab::new(1, 3000);
    // The consumer host routes the provider's subnet at the endpoint's address, so the
    // gateway's MAC (learned from its ARP answer); the backends route back.
    lab.consumers[0].ns.ip(&["route", "add", "192.168.2.0/24", "via", "10.0.0.100"]);
    lab.provider.ip(&["route", "add", "10.0.0.0/24", "via", "192.168.2.1"]);
    let cif = lab.consumers[0].ifindex;
    let info = lab.dp.maps.vpc(cif).unwrap().expect("the consumer VPC");
    // The client learns the gateway's MAC for the endpoint by using it.
    let body = lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))).expect("the endpoint"));
    assert!(body.contains("peer=11.163."), "{body}");
    // Control: with the interface not a VPC of the data path, the kernel routes it.
    lab.dp.maps.remove_vpc(cif).unwrap();
    assert_eq!(received_at_backend(&lab, 7001, send_five(7001)), 5, "without the data path's decision the kernel forwards");
    lab.dp.maps.set_vpc(cif, info).unwrap();
    // With it: nothing arrives, TCP or UDP, and every frame is counted.
    let before = lab.dp.maps.vpc_stats(info.vpc_id).unwrap().drop_count(DropReason::NotRouted);
    assert_eq!(received_at_backend(&lab, 7002, send_five(7002)), 0, "datagrams reached a backend past the gateway");
    let tcp = lab.in_client(0, || connect(SocketAddr::from((BACKEND, SERVICE_TCP_PORT))).is_ok());
    assert!(!tcp, "a TCP connection reached a backend past the gateway");
    let after = lab.dp.maps.vpc_stats(info.vpc_id).unwrap().drop_count(DropReason::NotRouted);
    assert!(after >= before + 6, "not_routed drops: {before} -> {after}");
    // The endpoint still works.
    let body = lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))).expect("the endpoint"));
    assert!(body.contains("peer=11.163."), "{body}");
}

#[test]
fn provider_cannot_open_a_connection_towards_the_consumer() {
    let mut lab = Lab::new(1, 3000);
    // The gateway has a route into the consumer VPC, and the client one back: without
    // the data path the kernel would carry this connection.
    lab.gw.ip(&["addr", "add", "10.0.0.1/24", "dev", "gw-c0"]);
    lab.consumers[0].ns.ip(&["route", "add", "192.168.2.0/24", "via", "10.0.0.1"]);
    lab.provider.ip(&["route", "add", "10.0.0.0/24", "via", "192.168.2.1"]);
    let listener = lab.consumers[0].ns.spawn(|| TcpListener::bind("10.0.0.2:2222")).join().unwrap().expect("client listener");
    listener.set_nonblocking(true).unwrap();
    let pif = lab.gw.ifindex("gw-prov");
    let cif = lab.consumers[0].ifindex;
    let info = lab.dp.maps.vpc(pif).unwrap().expect("the provider VPC");
    let cinfo = lab.dp.maps.vpc(cif).unwrap().expect("the consumer VPC");
    // Control: with neither interface a VPC of the data path, the kernel carries it.
    lab.dp.maps.remove_vpc(pif).unwrap();
    lab.dp.maps.remove_vpc(cif).unwrap();
    let control = lab.provider.spawn(|| connect(SocketAddr::from((CLIENT, 2222))).is_ok()).join().unwrap();
    assert!(control, "without the data path's decision the kernel routes provider -> consumer");
    std::thread::sleep(Duration::from_millis(50));
    assert!(listener.accept().is_ok(), "the control connection reached the client");
    lab.dp.maps.set_vpc(pif, info).unwrap();
    lab.dp.maps.set_vpc(cif, cinfo).unwrap();
    let attempts = lab.provider.spawn(|| {
        let a = connect(SocketAddr::from((snat_ip(0), 2222))).is_ok();
        let b = connect(SocketAddr::from((CLIENT, 2222))).is_ok();
        (a, b)
    });
    assert_eq!(attempts.join().unwrap(), (false, false), "the provider reached the consumer");
    assert!(listener.accept().is_err(), "the consumer's listener got a connection");
    let s = lab.dp.maps.vpc_stats(info.vpc_id).unwrap();
    assert!(s.drop_count(DropReason::NoFlow) >= 1, "SYN into the SNAT range");
    assert!(s.drop_count(DropReason::NotRouted) >= 1, "SYN routed at the consumer's address");
}

#[test]
fn a_closed_backend_port_gives_the_client_econnrefused() {
    let mut lab = Lab::new(1, 3000);
    // udp 54 -> 5454, where no backend listens.
    lab.dp.maps.set_port(0, PROTO_UDP, 54, 5454).unwrap();
    let err = lab.in_client(0, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect((ENDPOINT, 54)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send(b"anyone?").unwrap();
        let mut b = [0u8; 16];
        s.recv(&mut b).expect_err("an answer from a closed port")
    });
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(lab.dp.maps.endpoint_stats(0).unwrap().rev_packets >= 1, "the ICMP error came back through the flow");
}

fn setsockopt_int(fd: i32, level: i32, opt: i32, v: i32) {
    // SAFETY: a valid socket and a c_int value.
    let rc = unsafe { libc::setsockopt(fd, level, opt, (&v as *const i32).cast(), 4) };
    assert_eq!(rc, 0, "setsockopt {opt}: {}", std::io::Error::last_os_error());
}

fn getsockopt_int(fd: i32, level: i32, opt: i32) -> i32 {
    let mut v = 0i32;
    let mut len = 4u32;
    // SAFETY: a valid socket and a c_int buffer.
    let rc = unsafe { libc::getsockopt(fd, level, opt, (&mut v as *mut i32).cast(), &mut len) };
    assert_eq!(rc, 0, "getsockopt {opt}: {}", std::io::Error::last_os_error());
    v
}

#[test]
fn a_client_learns_the_smaller_provider_side_mtu() {
    let mut lab = Lab::new(1, 3000);
    lab.gw.ip(&["link", "set", "gw-prov", "mtu", "1200"]);
    let pif = lab.gw.ifindex("gw-prov");
    let info = lab.dp.maps.vpc(pif).unwrap().unwrap();
    lab.dp.maps.set_vpc(pif, VpcInfo { mtu: 1200, ..info }).unwrap();
    let (mtu, err) = lab.in_client(0, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect((ENDPOINT, ENDPOINT_UDP_PORT)).unwrap();
        setsockopt_int(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO);
        s.send(&[0u8; 1400]).expect("a 1428-byte DF datagram fits the client's own link");
        std::thread::sleep(Duration::from_millis(300));
        let err = s.send(&[0u8; 1400]).expect_err("the second send knows the path is smaller");
        (getsockopt_int(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU), err)
    });
    assert_eq!(mtu, 1200, "IP_MTU of the connected socket");
    assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE), "{err}");
    assert_eq!(lab.dp.maps.endpoint_stats(0).unwrap().drop_count(DropReason::FragNeeded), 1);
}

#[test]
fn a_datagram_with_ttl_1_gives_a_time_exceeded_in_the_error_queue() {
    let lab = Lab::new(1, 3000);
    let (origin, kind, offender) = lab.in_client(0, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect((ENDPOINT, ENDPOINT_UDP_PORT)).unwrap();
        let fd = s.as_raw_fd();
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1);
        s.set_ttl(1).unwrap();
        s.send(b"traceroute").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(e) = read_error_queue(fd) {
                return e;
            }
            assert!(std::time::Instant::now() < deadline, "nothing in the error queue");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!((origin, kind), (libc::SO_EE_ORIGIN_ICMP, 11), "an ICMP time exceeded");
    assert_eq!(offender, ENDPOINT, "sent by the gateway's side of that hop");
}

/// One message of a socket's error queue: (origin, ICMP type, offender address).
fn read_error_queue(fd: i32) -> Option<(u8, u8, Ipv4Addr)> {
    let mut data = [0u8; 256];
    let mut control = [0u8; 512];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // SAFETY: a zeroed msghdr pointing at buffers that outlive the call; cmsgs are read
    // with the libc macros within `msg_controllen`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        if libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) < 0 {
            return None;
        }
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_RECVERR {
                let ee = libc::CMSG_DATA(c) as *const libc::sock_extended_err;
                let off = libc::SO_EE_OFFENDER(ee) as *const libc::sockaddr_in;
                let addr = Ipv4Addr::from(u32::from_be((*off).sin_addr.s_addr));
                return Some(((*ee).ee_origin, (*ee).ee_type, addr));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    None
}

#[test]
fn ping_to_an_accepted_endpoint_answers_and_to_a_pending_one_does_not() {
    let mut lab = Lab::new(1, 3000);
    let ping = |lab: &Lab| lab.consumers[0].ns.try_exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", &ENDPOINT.to_string()]);
    let out = ping(&lab);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 received"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(lab.dp.maps.endpoint_stats(0).unwrap().icmp_sent, 2);
    lab.set_endpoint_state(0, EP_STATE_PENDING);
    let out = ping(&lab);
    assert!(!out.status.success(), "a pending endpoint answered ping");
    assert_eq!(lab.dp.maps.endpoint_stats(0).unwrap().drop_count(DropReason::Pending), 2);
}
