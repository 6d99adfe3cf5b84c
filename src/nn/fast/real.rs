//! The number type the engine computes in, and a pointer that threads may
//! share: the two things every kernel file needs.

use num_traits::Float;

/// What the engine computes in: `f32` for sampling, `f64` for gradient checks.
pub trait Real:
    Float + Send + Sync + 'static + std::iter::Sum + std::ops::AddAssign + std::fmt::Debug
{
}
impl Real for f32 {}
impl Real for f64 {}

/// A raw pointer that may cross threads, for kernels whose work items each
/// write a disjoint part of the buffer behind it.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(pub(crate) *mut T);
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// (A method, so closures capture the whole `Send` wrapper.)
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}
