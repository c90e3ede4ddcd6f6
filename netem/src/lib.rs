//! Link models and emulation backends. See `docs/network.md`.
