//! The fuzz targets' harness types: the typed arguments a target decodes the fuzzer's
//! bytes into, the state its calls build up and the checks every call gets, so each
//! target in `fuzz_targets/` holds only its entry point and what it does per input.
//!
//! A library of the `pasid-fuzz` package (its own workspace, built with nightly by
//! `cargo fuzz`), not of the project.

pub mod ffi;
