//! MAP / DGN-AM ("Generating Class-conditional Images with Gradient-based Inference", Alg. 1): gradient
//! ascent `h' = h + lr_t * (g(h) - decay * h)` with an L2 decay, a
//! learning-rate schedule and clipping of `h` to bounds. No noise, no
//! accept/reject: it finds a mode, not samples.

use super::clip::Clip;
use super::schedule::Schedule;
use super::{init, move_unless_divergent, ChainRngs, Info, Kernel, State};
use crate::density::Term;
use crate::error::Result;

pub struct Map {
    pub lr: Schedule,
    pub decay: f64,
    pub clip: Option<Clip>,
}

impl Kernel for Map {
    fn name(&self) -> &'static str {
        "map"
    }
    fn check(&self, _target: &dyn Term) -> Result<()> {
        self.lr.validate("MAP learning rate")
    }
    fn set_step_size(&mut self, eps: f64) {
        self.lr = Schedule::Constant { value: eps };
    }
    fn step(
        &self,
        _rngs: &mut ChainRngs,
        s: &State,
        target: &dyn Term,
        t: usize,
    ) -> Result<(State, Info)> {
        let g = (&s.grad - (&s.position * self.decay)?)?;
        let mut x = (&s.position + (g * self.lr.at(t))?)?;
        if let Some(c) = &self.clip {
            x = c.apply(&x)?;
        }
        move_unless_divergent(&init(&x, target)?, s)
    }
}
