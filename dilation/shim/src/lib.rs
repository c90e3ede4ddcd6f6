//! `libdilation.so`: the LD_PRELOAD shim that makes a process see virtual time.
//!
//! With `DILATION_TDF=t` and the epoch in `DILATION_EPOCH_REAL_NS`/`DILATION_EPOCH_VIRT_NS`,
//! every clock the process reads runs `t` times slower and every wait it asks for lasts `t`
//! times longer. Without `DILATION_TDF` the shim is a pass-through. `DILATION_CONTROL`
//! names a control page through which the harness changes the TDF or steps the clock.
//! See `docs/dilation.md` for what is caught and what cannot be.
//!
//! All `unsafe` code lives in [`hooks`], under the rules written at its top. [`model`] is the
//! safe arithmetic it uses.

mod hooks;
mod model;
