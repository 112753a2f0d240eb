//! The Anthropic Messages wire format (being written).
