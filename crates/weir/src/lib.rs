#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
//! weir
pub mod error;
pub mod group;
pub mod pipeline;
pub mod retry;
