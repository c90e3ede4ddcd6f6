//! `libdilation.so`: the LD_PRELOAD shim that makes a process see virtual time.
//!
//! With `DILATION_TDF=t` and the epoch in `DILATION_EPOCH_REAL_NS`/`DILATION_EPOCH_VIRT_NS`,
//! every clock the process reads runs `t` times slower and every wait it asks for lasts `t`
//! times longer. Without `DILATION_TDF` the shim is a pass-through. `DILATION_CONTROL`
//! names a control page through which the harness changes the TDF or steps the clock.
//! See `docs/dilation.md` for what is caught and what cannot be.
//!
//! With `DILATION_CPU_SPEED`, every thread is also *paced* ([`cpu`]): its CPU bursts take as
//! long, in virtual time, as on the original machine's core.
//!
//! All `unsafe` code lives in [`hooks`] and [`cpu`], under the rules written at the top of
//! [`hooks`]. [`model`] and [`pace`] are the safe arithmetic they use.

mod cpu;
mod hooks;
mod model;
mod pace;
