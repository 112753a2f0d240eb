//! llm-link's internal model and its wire-format codecs.
//!
//! Pure: serde only, no I/O. Every client format decodes into [`ir`] and every
//! provider format encodes from it, so a new format is one module.

pub mod anthropic;
pub mod ir;
pub mod json;
pub mod ollama;
pub mod openai;
pub mod passthrough;
pub mod responses;
pub mod sse;
pub mod think;
pub mod usage;
pub mod wire;

#[cfg(test)]
pub(crate) mod test_support;

pub use json::DecodeError;
