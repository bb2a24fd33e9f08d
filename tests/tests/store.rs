//! The state store under crashes: a process killed (SIGKILL) at arbitrary points in a
//! stream of commits leaves exactly one whole generation, never a mix, and never
//! loses a commit that had returned.

use privatelink::store::{RedbStore, Store};
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

#[test]
fn a_killed_writer_leaves_one_whole_committed_generation() {
    let dir = std::env::temp_dir().join(format!("pl-store-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for round in 0..5u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store_crasher"))
            .arg(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the writer");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it commit a few generations, then kill it at a moment that varies.
        let mut last = 0u64;
        for _ in 0..3 {
            last = lines.next().expect("writer output").unwrap().parse().unwrap();
        }
        std::thread::sleep(Duration::from_micros(700 * round + 300));
        child.kill().unwrap();
        child.wait().unwrap();
        // Generations it reported after our last read were committed too.
        for l in lines.map_while(Result::ok) {
            last = l.parse().unwrap();
        }
        let st = RedbStore::open(&dir).expect("reopen after the crash").load().expect("load after the crash");
        assert!(st.generation == last || st.generation == last + 1, "round {round}: reported {last}, found {}", st.generation);
        assert_eq!(st.endpoints.len(), 300);
        let want = format!("generation {}", st.generation);
        let mixed: Vec<_> = st.endpoints.values().filter(|e| e.reason.as_deref() != Some(&want)).map(|e| &e.spec.name).collect();
        assert!(mixed.is_empty(), "round {round}: records of another generation than {}: {mixed:?}", st.generation);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
