//! Test support: a frame builder/decoder, network namespaces, the BPF_PROG_TEST_RUN
//! packet lab and the network-namespace lab with real traffic, a test PKI, and a
//! WebDriver harness for the console's browser tests.
pub mod bench;
pub mod daemon_lab;
pub mod fleet_lab;
pub mod frame;
pub mod lab;
pub mod netns;
pub mod packet_lab;
pub mod pki;
pub mod browser;
