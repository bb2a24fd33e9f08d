//! The library's error type: structured variants, no strings to match on.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("the eBPF object has no {kind} named {name}")]
    Missing { kind: &'static str, name: &'static str },
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("index {index} is out of range for {map} (capacity {capacity})")]
    OutOfRange { map: &'static str, index: u32, capacity: u32 },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} returned unexpected value {value}")]
    UnexpectedReturn { name: &'static str, value: u32 },
    #[error("pin directory {}: {source}", dir.display())]
    PinDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the maps pinned in {} have layout {found} (another privatelink version); this one needs layout {want}: \
         `privatelink down` removes them (it drops every live flow), then start again",
        dir.display()
    )]
    Layout { dir: std::path::PathBuf, found: String, want: u32 },
    #[error("XDP link: {0}")]
    Link(String),
    #[error("{0}")]
    Invalid(String),
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("route announcements: {0}")]
    Announce(String),
    /// A name the DNS map cannot hold (the planner leaves such names out).
    #[error("`{0}` cannot be a private DNS name")]
    DnsName(String),
}

pub type Result<T> = std::result::Result<T, Error>;
