//! The sampling engine: a frozen feed-forward network compiled to a graph
//! of ops on flat NHWC buffers (each op reads one or more earlier values;
//! layers are named taps), with a forward pass that keeps every activation
//! and a backward pass to the input only. It is the one description of a
//! frozen network: the reference path ([`reference`]) runs the same graph
//! through candle's autograd.
//!
//! Sampling needs `d log p / d position` thousands of times through networks
//! whose weights never change. candle's autograd builds a graph per call,
//! computes weight gradients nobody reads, and allocates (and the kernel
//! zero-fills) fresh buffers for every temporary: on the faces workload that
//! page-zeroing alone was 31% of the step and matrix products only 8%
//! (`perf`, issue 7). Here the weights are laid out once for the products,
//! activations are fused into the op before them (their derivative is read
//! from the saved output), and all buffers live in a [`Workspace`] reused
//! from step to step. Results agree with the candle path (the reference)
//! to float rounding; tests check both against each other and against
//! finite differences in f64.

pub mod build;
pub mod depthwise;
pub mod flops;
pub mod kernels;
pub mod one_channel;
pub mod op;
pub mod patches;
pub mod pointwise;
pub mod pool;
pub mod profile;
pub mod real;
pub mod reference;
pub mod several;
pub mod shapes;
pub mod simd;
pub mod thin;
pub mod window;
pub mod winograd;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
pub use op::Op;
use real::Real;

/// What computes a network's gradients: this engine (the default) or
/// candle's autograd on the same graph ([`reference`], what the engine is
/// tested against). `crate::density::backend` is the one place that turns
/// the choice into computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    #[default]
    Fast,
    Reference,
}

/// Per-image shape `(h, w, c)`; a vector is `(1, 1, len)`.
pub type Shape = (usize, usize, usize);

fn len((h, w, c): Shape) -> usize {
    h * w * c
}

/// A compiled network: a graph of ops on a tape of values. Slot 0 of the
/// tape is the input, slot `i + 1` op `i`'s output; op `i` reads earlier
/// slots only, so the ops run in order.
#[derive(Debug, Clone)]
pub struct Net<T> {
    ops: Vec<Op<T>>,
    /// `inputs[i]`: the slots op `i` reads.
    inputs: Vec<Vec<usize>>,
    /// `shapes[s]`: the shape of slot `s`.
    shapes: Vec<Shape>,
    /// Named slots (`h1`, `h`, `logits`, `block10`, ...).
    taps: BTreeMap<String, usize>,
    /// `plans[i]`: op `i`'s weights transformed for [`winograd`], if it
    /// is a convolution that file takes.
    plans: Vec<Option<Arc<winograd::Plan<T>>>>,
}

/// Buffers kept from call to call: the activations of the last forward
/// pass and the scratch of the backward one.
#[derive(Debug, Default)]
pub struct Workspace<T> {
    /// `acts[s]`: slot `s` of the last forward pass.
    acts: Vec<Vec<T>>,
    cols: Vec<T>,
    /// Gradients owed to slots by the ops already run backward
    /// (`owed[s]` says whether `grads[s]` holds one this pass).
    grads: Vec<Vec<T>>,
    owed: Vec<bool>,
    /// Spare buffers for gradients.
    pool: Vec<Vec<T>>,
    batch: usize,
}

impl<T> Workspace<T> {
    /// Tape slot `s` of the last forward pass (0 the input, `i + 1` op
    /// `i`'s output), `[n, ...]`.
    pub fn activation(&self, s: usize) -> &[T] {
        &self.acts[s]
    }
}

/// Resizes without caring about the stale contents (every user overwrites).
fn sized<T: Real>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() != n {
        v.resize(n, T::zero());
    }
    &mut v[..n]
}

impl<T: Real> Net<T> {
    /// A chain: op `i` reads slot `i` (the previous op's output), except
    /// [`Op::Add`], which is not allowed here (use [`Net::graph`]).
    pub fn new(input: Shape, ops: Vec<Op<T>>) -> Result<Self> {
        let inputs = (0..ops.len()).map(|i| vec![i]).collect();
        Self::graph(input, ops, inputs)
    }

    /// A graph: op `i` reads the slots `inputs[i]`, each before `i + 1`.
    pub fn graph(input: Shape, ops: Vec<Op<T>>, inputs: Vec<Vec<usize>>) -> Result<Self> {
        if inputs.len() != ops.len() {
            return Err(Error::shape("network inputs", ops.len(), inputs.len()));
        }
        let mut shapes = vec![input];
        for (i, (op, ins)) in ops.iter().zip(&inputs).enumerate() {
            let at = || format!("op {i}");
            if ins.is_empty() || ins.iter().any(|&s| s > i) {
                return Err(Error::Network {
                    at: at(),
                    message: format!("reads slots {ins:?}; it may read slots 0..={i}"),
                });
            }
            let in_shapes: Vec<Shape> = ins.iter().map(|&s| shapes[s]).collect();
            let s = op
                .out_shape(&in_shapes)
                .map_err(|message| Error::Network { at: at(), message })?;
            shapes.push(s);
        }
        let plans = ops.iter().map(op::winograd_plan).collect();
        Ok(Self {
            ops,
            inputs,
            shapes,
            taps: BTreeMap::new(),
            plans,
        })
    }

    /// Names slot `slot` (the last op's output when `None`).
    pub fn with_tap(mut self, name: &str, slot: Option<usize>) -> Result<Self> {
        let slot = slot.unwrap_or(self.ops.len());
        if slot > self.ops.len() {
            return Err(Error::Network {
                at: format!("tap {name}"),
                message: format!("slot {slot} past the output slot {}", self.ops.len()),
            });
        }
        self.taps.insert(name.to_string(), slot);
        Ok(self)
    }

    /// This network without its named slots (a network chained before
    /// another whose tap names might collide).
    pub fn without_taps(mut self) -> Self {
        self.taps.clear();
        self
    }

    /// The slot named `name`.
    pub fn tap(&self, name: &str) -> Result<usize> {
        self.taps.get(name).copied().ok_or_else(|| {
            let names: Vec<&str> = self.taps.keys().map(String::as_str).collect();
            Error::unknown("layer", name, &names)
        })
    }

    /// The named slots.
    pub fn taps(&self) -> &BTreeMap<String, usize> {
        &self.taps
    }

    /// This network up to the tap `name`, which becomes its output; with
    /// `before_activation`, the activation fused into that op is dropped
    /// (a hidden unit read before its ReLU still has a gradient).
    pub fn upto(&self, name: &str, before_activation: bool) -> Result<Self> {
        let slot = self.tap(name)?;
        let mut ops = self.ops[..slot].to_vec();
        if before_activation {
            if let Some(last) = ops.last_mut() {
                last.set_act(kernels::Act::Identity);
            }
        }
        let mut net = Self::graph(self.input(), ops, self.inputs[..slot].to_vec())?;
        net.taps = self
            .taps
            .iter()
            .filter(|(_, &s)| s <= slot)
            .map(|(k, &s)| (k.clone(), s))
            .collect();
        Ok(net)
    }

    /// This network followed by `next` (whose input must be this output);
    /// the taps of both are kept (a name in both is an error).
    pub fn then(self, next: Net<T>) -> Result<Self> {
        if next.input() != self.output() {
            return Err(Error::Network {
                at: "a chain of two networks".into(),
                message: format!(
                    "the first's output {:?} is not the second's input {:?}",
                    self.output(),
                    next.input()
                ),
            });
        }
        let offset = self.ops.len();
        let mut taps = self.taps;
        for (name, s) in next.taps {
            if taps.insert(name.clone(), s + offset).is_some() {
                return Err(Error::Network {
                    at: format!("tap {name}"),
                    message: "named in both chained networks".into(),
                });
            }
        }
        let mut ops = self.ops;
        ops.extend(next.ops);
        let mut inputs = self.inputs;
        inputs.extend(
            next.inputs
                .into_iter()
                .map(|ins| ins.into_iter().map(|s| s + offset).collect()),
        );
        let mut net = Net::graph(self.shapes[0], ops, inputs)?;
        net.taps = taps;
        Ok(net)
    }

    pub fn input(&self) -> Shape {
        self.shapes[0]
    }
    pub fn ops(&self) -> &[Op<T>] {
        &self.ops
    }
    /// The slots op `i` reads.
    pub fn inputs(&self, i: usize) -> &[usize] {
        &self.inputs[i]
    }
    pub fn output(&self) -> Shape {
        self.shapes[self.ops.len()]
    }
    /// Number of ops (the output's slot).
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The shape of slot `s`.
    pub fn shape(&self, s: usize) -> Shape {
        self.shapes[s]
    }

    /// The floating-point operations of one image's forward pass (and as
    /// many for its input gradient): [`flops`] says how they are counted.
    pub fn flops_per_image(&self) -> u64 {
        self.ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let ins: Vec<Shape> = self.inputs[i].iter().map(|&s| self.shapes[s]).collect();
                flops::of_op(op, &ins, self.shapes[i + 1])
            })
            .sum()
    }

    /// Op `i`'s pass on `n` images into the profile.
    fn record(&self, i: usize, n: usize, backward: bool, took: std::time::Duration) {
        let ins: Vec<Shape> = self.inputs[i].iter().map(|&s| self.shapes[s]).collect();
        let ops = n as u64 * flops::of_op(&self.ops[i], &ins, self.shapes[i + 1]);
        profile::record(profile::kind(&self.ops[i]), backward, took, ops);
    }

    /// Runs `n` inputs `x [n, ...]` forward, keeping every slot in `ws`;
    /// returns the output `[n, ...]`.
    pub fn forward<'a>(&self, x: &[T], n: usize, ws: &'a mut Workspace<T>) -> Result<&'a [T]> {
        on_pool(|| self.forward_here(x, n, ws))
    }

    fn forward_here<'a>(&self, x: &[T], n: usize, ws: &'a mut Workspace<T>) -> Result<&'a [T]> {
        if x.len() != n * len(self.input()) {
            let want = n * len(self.input());
            return Err(Error::shape(
                "network input",
                format!("{n} x {:?} = {want} values", self.input()),
                x.len(),
            ));
        }
        ws.batch = n;
        if flops::counting() {
            flops::add(n as u64 * self.flops_per_image());
        }
        ws.acts.resize_with(self.ops.len() + 1, Vec::new);
        sized(&mut ws.acts[0], x.len()).copy_from_slice(x);
        let timed = profile::profiling();
        for (i, op) in self.ops.iter().enumerate() {
            let t0 = timed.then(std::time::Instant::now);
            let (before, after) = ws.acts.split_at_mut(i + 1);
            let y = sized(&mut after[0], n * len(self.shapes[i + 1]));
            let ins = &self.inputs[i];
            if op.reads_several() {
                let xs: Vec<&[T]> = ins.iter().map(|&s| before[s].as_slice()).collect();
                let ss: Vec<Shape> = ins.iter().map(|&s| self.shapes[s]).collect();
                op.forward_several(&ss, &xs, y);
            } else {
                let (plan, x) = (self.plans[i].as_deref(), &before[ins[0]]);
                op.forward(self.shapes[ins[0]], n, x, y, &mut ws.cols, plan);
            }
            if let Some(t0) = t0 {
                self.record(i, n, false, t0.elapsed());
            }
        }
        Ok(&ws.acts[self.ops.len()])
    }

    /// The gradient of `sum(dy * output)` with respect to the input of the
    /// last [`Net::forward`] on `ws`, into `dx`.
    pub fn backward(&self, dy: &[T], ws: &mut Workspace<T>, dx: &mut Vec<T>) -> Result<()> {
        on_pool(|| self.backward_here(dy, ws, dx))
    }

    fn backward_here(&self, dy: &[T], ws: &mut Workspace<T>, dx: &mut Vec<T>) -> Result<()> {
        let n = ws.batch;
        if ws.acts.len() != self.ops.len() + 1 || ws.acts[0].len() != n * len(self.input()) {
            return Err(Error::unsupported(
                "backward on a workspace this network's forward pass did not fill",
                "call forward first, with the same workspace",
            ));
        }
        if dy.len() != n * len(self.output()) {
            let want = n * len(self.output());
            return Err(Error::shape(
                "output gradient",
                format!("{n} x {:?} = {want} values", self.output()),
                dy.len(),
            ));
        }
        if flops::counting() {
            flops::add(n as u64 * self.flops_per_image());
        }
        let slots = self.ops.len() + 1;
        ws.grads.resize_with(slots, Vec::new);
        ws.owed.clear();
        ws.owed.resize(slots, false);
        let mut spare = ws.pool.pop().unwrap_or_default();
        sized(&mut spare, dy.len()).copy_from_slice(dy);
        owe(ws, self.ops.len(), &mut spare);
        let timed = profile::profiling();
        for (i, op) in self.ops.iter().enumerate().rev() {
            if !std::mem::take(&mut ws.owed[i + 1]) {
                continue; // nothing depends on this op's output
            }
            let t0 = timed.then(std::time::Instant::now);
            let mut g = std::mem::take(&mut ws.grads[i + 1]);
            let ins = &self.inputs[i];
            if op.reads_several() {
                let ss: Vec<Shape> = ins.iter().map(|&s| self.shapes[s]).collect();
                for (k, &s) in ins.iter().enumerate() {
                    let xs: Vec<&[T]> = ins.iter().map(|&s| ws.acts[s].as_slice()).collect();
                    let gx = sized(&mut spare, n * len(ss[k]));
                    op.backward_part(&ss, &xs, k, &g, gx);
                    drop(xs);
                    owe(ws, s, &mut spare);
                }
            } else {
                let gx = sized(&mut spare, n * len(self.shapes[ins[0]]));
                let s = self.shapes[ins[0]];
                let (x, y) = (&ws.acts[ins[0]], &ws.acts[i + 1]);
                let plan = self.plans[i].as_deref();
                op.backward(s, n, (x, y), &mut g, gx, &mut ws.cols, plan);
                owe(ws, ins[0], &mut spare);
            }
            ws.pool.push(g);
            if let Some(t0) = t0 {
                self.record(i, n, true, t0.elapsed());
            }
        }
        dx.clear();
        if ws.owed[0] {
            dx.extend_from_slice(&ws.grads[0]);
            ws.owed[0] = false;
            let g0 = std::mem::take(&mut ws.grads[0]);
            ws.pool.push(g0);
        } else {
            dx.resize(n * len(self.input()), T::zero());
        }
        ws.pool.push(spare);
        Ok(())
    }
}

/// Runs `f` on a thread of rayon's pool, so that the ops' parallel loops
/// start from a worker of the pool. Started from any other thread, each
/// loop is handed to the pool while the caller sleeps until it ends: with
/// about a hundred loops a pass, on W2 at one chain a sixth of `perf`'s
/// samples were the scheduler's (waking and putting threads to sleep).
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Adds the gradient in `g` to what slot `s` is owed: the first gradient
/// is moved in (and `g` becomes a spare buffer), later ones are added.
fn owe<T: Real>(ws: &mut Workspace<T>, s: usize, g: &mut Vec<T>) {
    if ws.owed[s] {
        ws.grads[s]
            .iter_mut()
            .zip(g.iter())
            .for_each(|(a, &b)| *a += b);
    } else {
        let spare = ws.pool.pop().unwrap_or_default();
        ws.grads[s] = std::mem::replace(g, spare);
        ws.owed[s] = true;
    }
}
