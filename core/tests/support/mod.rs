//! Test helpers shared by several integration tests (each test file is its own crate and
//! uses only part of them, hence the `dead_code` allowance).
#![allow(dead_code)]

pub mod alloc;
pub mod model;
pub mod strategy;
