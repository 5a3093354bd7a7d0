//! How the engine reports progress without printing: it names a step and counts, and the caller
//! (the command layer's progress bars, a test's [`Silent`]) decides whether and how to show it.

/// Draws the progress of long steps.
pub trait Progress {
    /// A step begins (e.g. "Reading the directory"); the step ends when the handle is finished or dropped.
    fn begin(&self, step: &'static str) -> Box<dyn Step + '_>;
}

/// One step's count.
pub trait Step {
    fn set(&self, count: u64);
    fn finish(&self);
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _step: &'static str) -> Box<dyn Step + '_> {
        Box::new(Silent)
    }
}

impl Step for Silent {
    fn set(&self, _count: u64) {}
    fn finish(&self) {}
}
