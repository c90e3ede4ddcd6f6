//! The skeletons libbpf-cargo generates from `src/bpf/*.bpf.c` at build time.
//!
//! Generated code: it carries its own lint attributes and `unsafe` blocks (the FFI edge to
//! libbpf). Only [`crate::sockclock`] and [`crate::cubic`] use it.

pub mod sockclock {
    include!(concat!(env!("OUT_DIR"), "/sockclock.skel.rs"));
}

pub mod dcubic {
    include!(concat!(env!("OUT_DIR"), "/dcubic.skel.rs"));
}
