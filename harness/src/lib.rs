//! The scenario harness: YAML scenarios over canisters, run on the embedded engine or PocketIC, with
//! one `insta` transcript snapshot per trial.
//!
//! Layers: [`yaml`] (the only module that knows the YAML parser) → [`model`] (the format) →
//! [`codec`] (YAML ⇄ Candid through the `.did`) → [`plan`] (load, lint, expand variants) →
//! [`runner`] (execute a trial on a [`backend::Ic`]) → [`report`] (tables, coverage, JUnit).

pub mod backend;
pub mod builds;
pub mod codec;
pub mod diag;
pub mod model;
pub mod paths;
pub mod plan;
pub mod runner;
pub mod suite;
pub mod yaml;
