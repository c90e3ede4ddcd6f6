//! The contract between the dilation library (which starts processes and writes control
//! pages), `libdilation.so` (which reads them inside every node process) and `dilation-trap`:
//! the names of the environment variables, the layout of the control page, and the marks by
//! which both the library and the shim tell a program the shim cannot reach; and what both
//! pacers share: the pacing arithmetic ([`pace`]) and the kernel's perf event ABI ([`perf`]).
//!
//! # Design
//! Constants and pure arithmetic, `no_std`, no dependencies, so that the shim (a `cdylib`
//! that must stay small and allocation-free), the trap and the library share one definition.
#![no_std]

pub mod pace;

/// Environment variables that give a process its time model.
pub mod env {
    /// Declares each name as `&str` and, with the `_C` suffix, as NUL-terminated bytes for
    /// `getenv`.
    macro_rules! names {
        ($($(#[$doc:meta])* $name:ident, $c_name:ident = $value:literal;)*) => {
            $(
                $(#[$doc])*
                pub const $name: &str = $value;
                $(#[$doc])*
                pub const $c_name: &[u8] = concat!($value, "\0").as_bytes();
            )*
        };
    }

    names! {
        /// Time-dilation factor; any positive real (> 1 slows time, < 1 speeds it up).
        TDF, TDF_C = "DILATION_TDF";
        /// CLOCK_REALTIME nanoseconds at the epoch.
        EPOCH_REAL_NS, EPOCH_REAL_NS_C = "DILATION_EPOCH_REAL_NS";
        /// Virtual CLOCK_REALTIME nanoseconds at the epoch.
        EPOCH_VIRT_NS, EPOCH_VIRT_NS_C = "DILATION_EPOCH_VIRT_NS";
        /// Optional path of the control file (TDF changes and clock faults at run time).
        CONTROL, CONTROL_C = "DILATION_CONTROL";
        /// Set to `1` to also dilate file timestamps returned by `stat` and friends.
        DILATE_STAT, DILATE_STAT_C = "DILATION_STAT";
        /// The perceived speed of each thread in host cores: the shim (or the trap's tracer)
        /// paces every thread so that its CPU bursts take as long in virtual time as on a core of that speed
        /// (unset: no pacing).
        CPU_SPEED, CPU_SPEED_C = "DILATION_CPU_SPEED";
        /// The perceived cores the node's threads share (the node's `cpus`): every process
        /// of the node also pays into one node-wide ledger in the control page, so that
        /// threads that compute at once share those cores (unset: threads paced alone).
        CPU_CORES, CPU_CORES_C = "DILATION_CPU_CORES";
        /// The pacing quantum in µs of CPU (default 1000 in the shim, 200 under the trap,
        /// whose clock reads do not pay): the longest stretch of CPU a thread runs unpaced
        /// when it neither reads a clock, nor emits output, nor blocks.
        CPU_QUANTUM_US, CPU_QUANTUM_US_C = "DILATION_CPU_QUANTUM_US";
        /// Path of `dilation-trap`, set by the harness in every dilated node: the shim hands
        /// the `exec` of a Go or static program to it (unset: such a program runs undilated).
        TRAP, TRAP_C = "DILATION_TRAP";
        /// Set by the shim when it hands an `exec` to `dilation-trap`: the program the trap
        /// runs, with the trap's own `argv` (the exec's). The trap removes it from the
        /// program's environment.
        TRAP_PROGRAM, TRAP_PROGRAM_C = "DILATION_TRAP_PROGRAM";
    }
}

/// How a program is recognised: the shim's file name (to find it in `LD_PRELOAD` and in
/// `/proc/PID/maps`) and the marks of a Go program.
pub mod exe {
    /// File name of the shim.
    pub const SHIM_NAME: &str = "libdilation.so";
    /// Section names only the Go toolchain writes (stripping keeps them).
    pub const GO_SECTIONS: [&str; 3] = [".go.buildinfo", ".gopclntab", ".note.go.buildid"];
    /// The magic at the start of a Go program's build information (Go ≥ 1.13), what marks a
    /// Go image without section headers.
    pub const GO_BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";
}

/// The control page: one 4 KiB file mapped `MAP_SHARED`, little-endian 8-byte fields at
/// these byte offsets (the table is in `dilation::control`).
pub mod control {
    /// `DIORAMA1`.
    pub const MAGIC: u64 = u64::from_le_bytes(*b"DIORAMA1");
    /// Layout version.
    pub const VERSION: u64 = 1;
    /// Bytes of the page.
    pub const SIZE: usize = 4096;
    pub const OFF_MAGIC: usize = 0;
    pub const OFF_VERSION: usize = 8;
    /// Seqlock counter, odd while the harness writes.
    pub const OFF_SEQ: usize = 16;
    /// TDF (f64 bits).
    pub const OFF_TDF: usize = 24;
    pub const OFF_EPOCH_REAL: usize = 32;
    pub const OFF_EPOCH_VIRT: usize = 40;
    /// Total clock steps in ns (i64).
    pub const OFF_STEPS: usize = 48;
    /// Errors counted by shims (atomic add).
    pub const OFF_ERRORS: usize = 56;
    /// Processes that mapped the page (atomic add).
    pub const OFF_ATTACHED: usize = 64;
    /// The node's CPU ledger: the real `CLOCK_MONOTONIC` instant (i64 ns) at which the CPU
    /// all its threads used so far would be done on the node's perceived cores (shims and
    /// the trap's tracers, compare-and-swap: `pace::charge_ledger`).
    pub const OFF_CPU_LEDGER: usize = 72;
}

/// The kernel's `perf_event_open` ABI (`linux/perf_event.h`), the fields the pacers use: a
/// software `task-clock` event that sends `SIGTRAP` after each quantum of a thread's CPU.
pub mod perf {
    pub const PERF_TYPE_SOFTWARE: u32 = 1;
    pub const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
    pub const PERF_FLAG_FD_CLOEXEC: i64 = 8;
    pub const FLAG_DISABLED: u64 = 1;
    pub const FLAG_INHERIT: u64 = 1 << 1;
    pub const FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
    pub const FLAG_EXCLUDE_HV: u64 = 1 << 6;
    pub const FLAG_REMOVE_ON_EXEC: u64 = 1 << 36;
    pub const FLAG_SIGTRAP: u64 = 1 << 37;
    /// `si_code` of a signal sent by a perf event with `sigtrap` set.
    pub const TRAP_PERF: i32 = 6;

    /// `struct perf_event_attr` up to `sig_data` (PERF_ATTR_SIZE_VER7, 128 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct PerfEventAttr {
        pub type_: u32,
        pub size: u32,
        pub config: u64,
        pub sample_period: u64,
        pub sample_type: u64,
        pub read_format: u64,
        pub flags: u64,
        pub wakeup_events: u32,
        pub bp_type: u32,
        pub config1: u64,
        pub config2: u64,
        pub branch_sample_type: u64,
        pub sample_regs_user: u64,
        pub sample_stack_user: u32,
        pub clockid: i32,
        pub sample_regs_intr: u64,
        pub aux_watermark: u32,
        pub sample_max_stack: u16,
        pub reserved_2: u16,
        pub aux_sample_size: u32,
        pub reserved_3: u32,
        /// Passed to the signal's `si_perf_data`.
        pub sig_data: u64,
    }

    const _: () = assert!(core::mem::size_of::<PerfEventAttr>() == 128);

    impl PerfEventAttr {
        /// A `task-clock` event overflowing every `period_ns` of CPU, with `flags`.
        pub fn task_clock(period_ns: u64, flags: u64) -> Self {
            PerfEventAttr {
                type_: PERF_TYPE_SOFTWARE,
                size: core::mem::size_of::<PerfEventAttr>() as u32,
                config: PERF_COUNT_SW_TASK_CLOCK,
                sample_period: period_ns,
                flags,
                ..PerfEventAttr::default()
            }
        }
    }
}
