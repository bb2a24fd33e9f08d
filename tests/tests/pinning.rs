//! Maps pinned in a bpffs directory outlive the process that loaded them: a restarted
//! loader finds its flows, endpoints and counters again; removing the pins starts over.

use privatelink::dataplane::{
    loader::{remove_pins, Dataplane, LoadOptions},
    maps::ip_raw,
};
use privatelink_common::*;
use privatelink_tests::netns::{require_root, sh};
use std::{net::Ipv4Addr, path::PathBuf};

/// A private bpffs mount, unmounted and removed on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn new() -> Bpffs {
        require_root();
        let dir = std::env::temp_dir().join(format!("pl-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        sh(&["mount", "-t", "bpf", "bpf", dir.to_str().unwrap()]);
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pinned_maps_survive_a_reload_and_go_with_their_pins() {
    let fs = Bpffs::new();
    let opts = LoadOptions { ct_capacity: 1024, pin_dir: Some(fs.0.join("privatelink")) };
    let key = CtKey { src_ip_be: ip_raw(Ipv4Addr::new(10, 0, 0, 2)), dst_port_be: 80u16.to_be(), proto: PROTO_TCP, ..Default::default() };
    let value = CtValue { kind: CT_KIND_FORWARD, endpoint: 3, last_seen_ns: 42, ..Default::default() };
    let ep = EndpointInfo { service: 1, conn_limit: 7, state: EP_STATE_ACCEPTED, ..Default::default() };
    {
        let mut dp = Dataplane::load(&opts).expect("load with pins");
        dp.maps.ct_insert(key, value).unwrap();
        dp.maps.set_endpoint(3, ep).unwrap();
    }
    for name in ALL_MAPS {
        assert!(fs.0.join("privatelink").join(name).exists(), "{name} is not pinned");
    }
    {
        let dp = Dataplane::load(&opts).expect("reload with pins");
        assert_eq!(dp.maps.ct_get(&key).unwrap(), Some(value), "the flow survived the reload");
        assert_eq!(dp.maps.endpoint(3).unwrap(), ep);
    }
    remove_pins(&fs.0.join("privatelink")).unwrap();
    let dp = Dataplane::load(&opts).expect("load after removing pins");
    assert_eq!(dp.maps.ct_get(&key).unwrap(), None, "fresh maps after the pins were removed");
    drop(dp);
    remove_pins(&fs.0.join("privatelink")).unwrap();
}

#[test]
fn pins_of_another_map_layout_are_refused_never_read() {
    let fs = Bpffs::new();
    let dir = fs.0.join("layout");
    let opts = LoadOptions { ct_capacity: 1024, pin_dir: Some(dir.clone()) };
    drop(Dataplane::load(&opts).expect("first load pins the maps"));
    assert!(dir.join(MAP_LAYOUT).exists(), "the layout is pinned with the maps");
    drop(Dataplane::load(&opts).expect("the same layout is reused"));
    // Pins left by a privatelink of the previous layout (which had no layout map).
    std::fs::remove_file(dir.join(MAP_LAYOUT)).unwrap();
    let err = Dataplane::load(&opts).err().expect("pins of layout 1 must be refused").to_string();
    assert!(err.contains("have layout 1") && err.contains(&format!("needs layout {MAP_LAYOUT_VERSION}")), "{err}");
    assert!(err.contains("`privatelink down`"), "the message names the way out: {err}");
    remove_pins(&dir).unwrap();
    assert!(!dir.join(MAP_LAYOUT).exists(), "down removes the layout with the pins");
    drop(Dataplane::load(&opts).expect("a fresh start after the pins are gone"));
    remove_pins(&dir).unwrap();
}
