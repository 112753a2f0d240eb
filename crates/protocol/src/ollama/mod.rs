//! The Ollama wire format (being written).
