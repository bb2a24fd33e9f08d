//! Verdicts that are not XDP actions: what a path returns when another program of
//! the data path must take the packet (the entry shim tail-calls it through
//! `PL_PROGS`), each program with a verifier budget of its own.

/// The DNS program: the packet is for a VPC's DNS address.
pub const TO_DNS: u32 = 0xd45;
/// The new-flow program: the packet opens a flow to an endpoint.
pub const TO_NEWFLOW: u32 = 0xd44;
/// No flow has this packet (`flow::known`): it may open one.
pub const NOT_A_FLOW: u32 = 0xd48;
/// The control programs: a TCP segment of a flow that changes its state, from the
/// client (`TO_TCP`) or from the backend (`TO_TCP_REV`).
pub const TO_TCP: u32 = 0xd49;
pub const TO_TCP_REV: u32 = 0xd4a;
/// The data path again, from the start: the packet's flow was just adopted from the
/// standby table (`standby`).
pub const TO_MAIN: u32 = 0xd4b;
