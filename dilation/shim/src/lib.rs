//! libdilation.so. See `docs/dilation.md`.
