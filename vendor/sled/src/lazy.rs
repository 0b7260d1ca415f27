//! A lazily initialized value.
//!
//! usertrail patch: sled 0.34.7 spun on an atomic flag while another thread
//! ran the initializer. The threadpool's queue spawns seven threads from its
//! initializer, and each of them spun until it returned: on two cores they
//! held both, and the opening thread waited for the scheduler. A `OnceLock`
//! parks the waiting threads instead.

use std::sync::OnceLock;

/// A lazily initialized value
pub struct Lazy<T, F> {
    value: OnceLock<T>,
    init: F,
}

impl<T, F> Lazy<T, F> {
    /// Create a new Lazy
    pub const fn new(init: F) -> Self
    where
        F: Sized,
    {
        Self { value: OnceLock::new(), init }
    }
}

impl<T, F> std::ops::Deref for Lazy<T, F>
where
    F: Fn() -> T,
{
    type Target = T;

    fn deref(&self) -> &T {
        self.value.get_or_init(&self.init)
    }
}
