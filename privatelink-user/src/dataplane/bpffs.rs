//! Where the data path lives between processes: a bpffs directory with the pinned maps
//! (`maps/`) and links (`links/`, see `links`). Mounts the bpffs when missing, tells
//! when it would not outlive the daemon, and removes every pin on `down`.

use super::{
    error::{Error, Result},
    loader,
};
use std::path::{Path, PathBuf};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub(super) fn io(dir: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::PinDir { dir: dir.to_path_buf(), source }
}

fn on_bpffs(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs into a zeroed struct with a NUL-terminated path.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as i64 == BPF_FS_MAGIC
    }
}

fn mount_bpffs(at: &Path) -> Result<()> {
    std::fs::create_dir_all(at).map_err(io(at))?;
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::PinDir { dir: at.to_path_buf(), source: std::io::ErrorKind::InvalidInput.into() })?;
    let (src, fstype) = (c"bpf", c"bpf");
    // SAFETY: valid NUL-terminated strings; no mount data.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io(at)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Make `dir` a directory on a bpffs: mount one at /sys/fs/bpf (for paths below it)
/// or at `dir` itself when there is none.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    if dir.exists() && on_bpffs(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| p.exists()) {
        if on_bpffs(parent) {
            return std::fs::create_dir_all(dir).map_err(io(dir));
        }
        if parent == Path::new("/sys/fs/bpf") {
            mount_bpffs(parent)?;
            return std::fs::create_dir_all(dir).map_err(io(dir));
        }
    }
    mount_bpffs(dir)
}

/// Why pins under `dir` would die with this process, if they would: the bpffs holding
/// them is mounted in this mount namespace only (`ip netns exec` gives a private
/// `/sys`, and a bpffs mounted there goes with the namespace's last process), so the
/// next start would find no maps and reset every flow. `None` when they outlive it, or
/// when PID 1's mounts cannot be read.
pub fn pins_die_with_us(dir: &Path) -> Option<String> {
    // Same namespace as PID 1 (when the kernel lets us see it): the pins stay.
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    if ns("self").is_some() && ns("self") == ns("1") {
        return None;
    }
    let (ours, dev) = bpf_mount_of(&std::fs::read_to_string("/proc/self/mountinfo").ok()?, dir)?;
    let init = std::fs::read_to_string("/proc/1/mountinfo").ok()?;
    // The same filesystem (device) mounted anywhere in PID 1's namespace keeps the pins.
    if bpf_mounts(&init).any(|(_, d)| d == dev) {
        return None;
    }
    Some(format!(
        "the bpffs at {ours} holding the pins ({}) is mounted in this daemon's mount namespace only (as under `ip netns exec`): \
         it goes when the daemon stops, and the next start resets every flow; pass --bpffs on a bpffs mounted in the host's namespace outside /sys",
        dir.display()
    ))
}

/// The bpf filesystems of a mountinfo text: (mount point, `\040` and friends decoded;
/// device, which tells one bpffs instance from another).
fn bpf_mounts(mountinfo: &str) -> impl Iterator<Item = (String, String)> + '_ {
    mountinfo.lines().filter_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let fields: Vec<&str> = left.split_whitespace().collect();
        if right.split_whitespace().next()? != "bpf" {
            return None;
        }
        Some((unescape(fields.get(4)?), fields.get(2)?.to_string()))
    })
}

/// The bpffs `dir` is under (the longest mount point).
fn bpf_mount_of(mountinfo: &str, dir: &Path) -> Option<(String, String)> {
    bpf_mounts(mountinfo).filter(|(m, _)| dir.starts_with(m)).max_by_key(|(m, _)| m.len())
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out + rest
}

/// The pinned links' directory under a daemon's bpffs directory.
pub fn links_dir(bpffs: &Path) -> PathBuf {
    bpffs.join("links")
}

/// The pinned maps' directory under a daemon's bpffs directory.
pub fn maps_dir(bpffs: &Path) -> PathBuf {
    bpffs.join("maps")
}

/// Remove every pin under a daemon's bpffs directory (links first, then maps).
pub fn remove_pins(bpffs: &Path) -> Result<()> {
    let links = links_dir(bpffs);
    if let Ok(rd) = std::fs::read_dir(&links) {
        for e in rd.flatten() {
            std::fs::remove_file(e.path()).map_err(io(&links))?;
        }
        std::fs::remove_dir(&links).ok();
    }
    let maps = maps_dir(bpffs);
    if maps.exists() {
        loader::remove_pins(&maps)?;
        std::fs::remove_dir(&maps).ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_mounts_are_read_from_mountinfo() {
        let info = "36 25 0:31 / /sys/fs/bpf rw,nosuid - bpf bpf rw\n\
                    40 25 0:40 / /run/pl\\040test/bpffs rw - bpf bpf rw\n\
                    22 1 0:21 / /sys rw - sysfs sysfs rw\n";
        let mounts: Vec<(String, String)> = bpf_mounts(info).collect();
        assert_eq!(mounts, [("/sys/fs/bpf".into(), "0:31".into()), ("/run/pl test/bpffs".into(), "0:40".into())]);
        assert_eq!(bpf_mount_of(info, Path::new("/sys/fs/bpf/privatelink")), Some(("/sys/fs/bpf".into(), "0:31".into())));
        assert_eq!(bpf_mount_of(info, Path::new("/run/pl test/bpffs/privatelink")).map(|m| m.0), Some("/run/pl test/bpffs".into()));
        assert_eq!(bpf_mount_of(info, Path::new("/var/lib/x")), None);
    }
}
