//! Faults on a virtual-time timeline: the model, parsing and validation with source
//! positions, and their ordered do/undo steps (the harness turns them into the run engine's
//! operations).
//!
//! # Design
//! Faults come from a topology's `faults:` list or from a `--scenario` file (same syntax,
//! kept apart from the topology so one service can be run under several fault loads). They
//! are validated entirely before a run creates anything, so an invalid scenario leaves
//! nothing behind. See docs/faults.md.
//!
//! # Limitations
//! A `load` fault cannot be undone by `for` (the previous rate belongs to the load
//! generator's own arguments); write a second `load` fault instead.

pub mod model;
mod parse;
pub mod timeline;

pub use model::{Action, Degrade, DirChoice, Fault, FaultDecl};
pub use parse::{load_scenario, load_scenario_str, parse, FaultError, Source};
pub use timeline::{Phase, Step, Timeline};

/// What faults may name: the nodes, groups and links of a resolved topology.
pub trait Targets {
    /// Node names selected by a reference (`db`, a group, `db[0..3]`), or why none.
    fn select(&self, reference: &str) -> Result<Vec<String>, String>;
    /// Every link as (name, end a, end b).
    fn links(&self) -> Box<dyn Iterator<Item = (&str, &str, &str)> + '_>;
    /// The run's virtual duration, when the topology fixes one: faults must come before it.
    fn duration(&self) -> Option<std::time::Duration> {
        None
    }
}
