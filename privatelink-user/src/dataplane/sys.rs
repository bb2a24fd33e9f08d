//! The few bpf(2) commands the sweeper issues on its own file descriptors, outside
//! aya's `Ebpf` (which one thread owns): whole batches of a hash map per call
//! (`BPF_MAP_LOOKUP_BATCH`, one syscall per few thousand entries instead of two per
//! entry), single lookups and deletes, and `BPF_PROG_TEST_RUN`.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr`, as large as any command here needs (the kernel checks that the
/// bytes it does not know are zero).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn u32_at(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().unwrap())
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, writable bpf_attr of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, std::mem::size_of::<Attr>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// Where the kernel writes.
fn out<T>(p: &mut T) -> u64 {
    p as *mut T as usize as u64
}

/// One `BPF_MAP_LOOKUP_BATCH` of up to `count` entries (at most what `keys` and
/// `values` hold) after `cursor` (None: from the start); the kernel leaves the next
/// cursor in `next`. Returns the call's result and how many entries it copied.
fn lookup_batch<K, V>(map: BorrowedFd<'_>, cursor: Option<&u64>, next: &mut u64, keys: &mut [K], values: &mut [V], count: usize) -> (io::Result<()>, usize) {
    let count = count.min(keys.len());
    let mut a = Attr::new();
    a.put_u64(0, cursor.map_or(0, |c| ptr(c)));
    a.put_u64(8, out(next));
    a.put_u64(16, keys.as_mut_ptr() as usize as u64);
    a.put_u64(24, values.as_mut_ptr() as usize as u64);
    a.put_u32(32, count as u32);
    a.put_u32(36, map.as_raw_fd() as u32);
    let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut a);
    (r, (a.u32_at(32) as usize).min(count))
}

/// Read every entry of hash map `map` in batches of `batch` entries, calling `each`
/// with each batch. Entries added or removed meanwhile may be seen or not (as with any
/// iteration of a live hash map); none is seen twice within a bucket.
pub fn for_each_batch<K: Copy + Default, V: Copy + Default>(map: BorrowedFd<'_>, batch: usize, mut each: impl FnMut(&[K], &[V])) -> io::Result<()> {
    let mut keys = vec![K::default(); batch];
    let mut values = vec![V::default(); batch];
    // The hash map's cursor is a bucket number (u32); kept in a u64 for alignment.
    let (mut cursor, mut next) = (0u64, 0u64);
    let mut first = true;
    loop {
        let (r, got) = lookup_batch(map, (!first).then_some(&cursor), &mut next, &mut keys, &mut values, batch);
        match r {
            Ok(()) => each(&keys[..got], &values[..got]),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // The last batch (possibly empty).
                each(&keys[..got], &values[..got]);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        cursor = next;
        first = false;
    }
}

/// What one batch read of an array copies out at most.
const BATCH_BYTES: usize = 1 << 20;

/// The values of array map `map` at the indices `range`, shown to `each` as (index, its
/// `cpus` values: the number of possible CPUs for a per-CPU array, else 1), in index
/// order: a few syscalls (`BPF_MAP_LOOKUP_BATCH`, about a MiB each) instead of one per
/// entry, and never more than a batch held at once.
pub fn for_each_in_array<V: Copy + Default>(map: BorrowedFd<'_>, range: std::ops::Range<u32>, cpus: usize, mut each: impl FnMut(u32, &[V])) -> io::Result<()> {
    // A per-CPU value is padded to 8 bytes per CPU in the kernel's layout.
    assert!(cpus == 1 || std::mem::size_of::<V>().is_multiple_of(8), "per-CPU values must be a multiple of 8 bytes");
    let len = range.end.saturating_sub(range.start) as usize;
    let batch = (BATCH_BYTES / (std::mem::size_of::<V>() * cpus).max(1)).clamp(1, len.max(1));
    let mut keys = vec![0u32; batch];
    let mut values = vec![V::default(); batch * cpus];
    // The array's batch cursor is the last index read (u32; kept in a u64 for
    // alignment): the next batch starts after it.
    let mut at = range.start;
    while at < range.end {
        let (prev, mut next) = (at.wrapping_sub(1) as u64, 0u64);
        let count = batch.min((range.end - at) as usize);
        let (r, got) = lookup_batch(map, (at != 0).then_some(&prev), &mut next, &mut keys, &mut values, count);
        for (i, k) in keys[..got].iter().enumerate() {
            if let Some(v) = values.get(i * cpus..(i + 1) * cpus) {
                each(*k, v);
            }
        }
        match r {
            Ok(()) if got > 0 => at = keys[got - 1] + 1,
            Ok(()) => return Err(io::Error::other("a batch read returned nothing")),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A read-only view of an mmap-able array map (`BPF_F_MMAPABLE`): its values read from
/// memory, no syscall per entry. Values sit 8-byte aligned, one every
/// `round_up(size_of::<V>(), 8)` bytes (the kernel's layout).
pub struct Mapped {
    ptr: *const u8,
    len: usize,
    entries: u32,
}

// SAFETY: a read-only shared mapping; reads are plain copies (as a lookup syscall's).
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    pub fn new(map: BorrowedFd<'_>, entries: u32, value_size: usize) -> io::Result<Mapped> {
        let page = 4096usize;
        let len = (value_size.next_multiple_of(8) * entries as usize).next_multiple_of(page).max(page);
        // SAFETY: a fresh shared read-only mapping of the map's values, unmapped on drop.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, map.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped { ptr: ptr as *const u8, len, entries })
    }

    /// The value at index `i` (past the end: the default).
    pub fn get<V: aya::Pod + Default>(&self, i: u32) -> V {
        assert!(std::mem::align_of::<V>() <= 8);
        let off = i as usize * std::mem::size_of::<V>().next_multiple_of(8);
        if i >= self.entries || off + std::mem::size_of::<V>() > self.len {
            return V::default();
        }
        // SAFETY: in bounds of the mapping, 8-byte aligned (page-aligned base, stride a
        // multiple of 8); V is plain data. Volatile: the data path writes meanwhile.
        unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const V) }
    }

    /// The values at the indices `range` (an index past the end reads as default).
    pub fn read<V: aya::Pod + Default>(&self, range: std::ops::Range<u32>) -> Vec<V> {
        range.map(|i| self.get(i)).collect()
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// A writable view of an mmap-able array of 64-bit counters that the data path changes
/// with atomic adds: this side changes them the same way (a locked add on the same
/// memory), so neither loses the other's update.
pub struct Counters {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a shared mapping touched only through atomics.
unsafe impl Send for Counters {}
unsafe impl Sync for Counters {}

impl Counters {
    /// Map `bytes` of `map`'s values (rounded up to a page) for reading and writing.
    pub fn new(map: BorrowedFd<'_>, bytes: usize) -> io::Result<Counters> {
        let len = bytes.next_multiple_of(4096).max(4096);
        // SAFETY: a fresh shared mapping of the map's values, unmapped on drop.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, map.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Counters { ptr: ptr as *mut u8, len })
    }

    fn at(&self, offset: usize) -> Option<&std::sync::atomic::AtomicU64> {
        if !offset.is_multiple_of(8) || offset + 8 > self.len {
            return None;
        }
        // SAFETY: in bounds, 8-byte aligned (page-aligned base); the kernel's own
        // accesses to these words are atomic too.
        Some(unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ptr.add(offset) as *mut u64) })
    }

    /// The first `words` counters, copied in one go (a counter the data path changes
    /// meanwhile is read before or after its change; an aligned 8-byte word is never
    /// torn on the architectures the data path runs on).
    pub fn copy(&self, words: usize) -> Vec<u64> {
        let n = words.min(self.len / 8);
        let mut out = vec![0u64; n];
        // SAFETY: n words are inside the mapping; the destination is ours.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr as *const u64, out.as_mut_ptr(), n) };
        out.resize(words, 0);
        out
    }

    /// The counter at byte `offset` (past the end: 0).
    pub fn load(&self, offset: usize) -> u64 {
        self.at(offset).map_or(0, |c| c.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Add `delta` (wrapping: a negative delta subtracts) to the counter at `offset`.
    pub fn add(&self, offset: usize, delta: i64) {
        if let Some(c) = self.at(offset) {
            c.fetch_add(delta as u64, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Look `key` up in `map`.
pub fn lookup<K, V: Default>(map: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    let mut v = V::default();
    let mut a = Attr::new();
    a.put_u32(0, map.as_raw_fd() as u32);
    a.put_u64(8, ptr(key));
    a.put_u64(16, out(&mut v));
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut a) {
        Ok(()) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Delete `key` from `map`; whether this call deleted it.
pub fn delete<K>(map: BorrowedFd<'_>, key: &K) -> io::Result<bool> {
    let mut a = Attr::new();
    a.put_u32(0, map.as_raw_fd() as u32);
    a.put_u64(8, ptr(key));
    match bpf(BPF_MAP_DELETE_ELEM, &mut a) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Run program `prog` once on `data`; its return value.
pub fn test_run(prog: BorrowedFd<'_>, data: &[u8]) -> io::Result<u32> {
    let mut a = Attr::new();
    a.put_u32(0, prog.as_raw_fd() as u32);
    a.put_u32(8, data.len() as u32);
    a.put_u64(16, ptr(data.as_ptr()));
    a.put_u32(32, 1); // repeat
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(a.u32_at(4))
}
