//! A throwaway PKI for the tests of the tenant API and the console: a CA and a server
//! certificate for 127.0.0.1 signed by it, made with `openssl`.

use std::{path::PathBuf, process::Command};

static DIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A CA and a server certificate for 127.0.0.1 signed by it (P-256), in a directory
/// removed at the end.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        // One per test: tests of one process run side by side.
        let dir = PathBuf::from(format!("/run/pltest{}-pki{}", std::process::id(), DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let o = Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl");
            assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        run(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=privatelink test CA"]].concat());
        run(&[&["req"][..], &ec, &["-keyout", "api.key", "-out", "api.csr", "-subj", "/CN=127.0.0.1"]].concat());
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        run(&["x509", "-req", "-in", "api.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "api.pem", "-days", "1", "-extfile", "san.ext"]);
        Pki { dir }
    }
    pub fn path(&self, f: &str) -> String {
        self.dir.join(f).to_str().unwrap().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}


impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}
