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
//! A Go or static program that a process under the shim executes is handed to the syscall
//! trap (`dilation-trap`, named by `DILATION_TRAP`) by the exec hooks ([`exec`]), since the
//! shim cannot reach it.
//!
//! All `unsafe` code lives in [`hooks`], [`cpu`] and [`exec`], under the rules written at the
//! top of [`hooks`]. [`model`], [`elf`] and `dilation_abi::pace` are the safe code they use.

mod cpu;
mod elf;
mod exec;
mod hooks;
mod model;
