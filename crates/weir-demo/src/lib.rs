//! The parts of the `weir` command that read outside input, as a library so
//! that fuzz targets and property tests can drive them directly: the order
//! line parser and the bounded line reader. The command itself is
//! `src/main.rs`.
#![forbid(unsafe_code)]

pub mod input;
pub mod orders;
