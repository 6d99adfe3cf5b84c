//! NUTS's trees (`super`): a chain's trajectory as leaves, the subtree a
//! doubling adds leaf by leaf with its U-turn checks and multinomial draw,
//! and the join of a finished subtree to its tree.

use rand::Rng;
use rand_distr::StandardNormal;

use super::{Criterion, Nuts};
use crate::sampler::hmc::DIVERGENCE_ENERGY;
use crate::sampler::ChainRngs;

/// A point of a trajectory: position, momentum, gradient, log-density.
#[derive(Debug, Clone)]
pub(super) struct Leaf {
    pub(super) x: Vec<f64>,
    pub(super) p: Vec<f64>,
    pub(super) g: Vec<f64>,
    pub(super) logp: f64,
}

/// A finished block of leaves: its momentum sum and its two end momenta in
/// the order they were made.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) rho: Vec<f64>,
    pub(super) first: Vec<f64>,
    pub(super) last: Vec<f64>,
}

/// One chain's subtree as it grows leaf by leaf.
pub(super) struct Subtree {
    /// The leaf the next leapfrog starts from.
    pub(super) frontier: Leaf,
    /// Per level `k >= 1`: the block of `2^k` leaves being filled (its sum
    /// and first momentum), and the last two finished ones.
    pub(super) open: Vec<(Vec<f64>, Vec<f64>)>,
    pub(super) done: Vec<[Option<Block>; 2]>,
    pub(super) leaves: usize,
    pub(super) rho: Vec<f64>,
    pub(super) first: Option<Vec<f64>>,
    /// Where the tree started (for [`Criterion::FromStart`] only).
    pub(super) x0: Vec<f64>,
    /// `log sum exp(H0 - H)` over the leaves, and the draw among them.
    pub(super) log_w: f64,
    pub(super) candidate: Option<Leaf>,
    /// A U-turn or a divergence ended it (its leaves are discarded).
    pub(super) failed: bool,
    pub(super) divergent: bool,
}

/// One chain's tree.
pub(super) struct Tree {
    pub(super) left: Leaf,
    pub(super) right: Leaf,
    pub(super) rho: Vec<f64>,
    pub(super) log_w: f64,
    pub(super) candidate: Leaf,
    pub(super) h0: f64,
    pub(super) going: bool,
    pub(super) depth: usize,
    pub(super) divergent: bool,
    pub(super) sum_metro: f64,
    pub(super) leaves: usize,
}

pub(super) fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// `a += b`.
fn add_to(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

pub(super) fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

impl Nuts {
    pub(super) fn inv(&self, d: usize) -> Vec<f64> {
        self.inv_mass.clone().unwrap_or_else(|| vec![1.0; d])
    }

    /// Whether the block with momentum sum `rho` and end momenta `a` (made
    /// first) and `b` has not turned back.
    pub(super) fn open_ended(&self, inv: &[f64], a: &[f64], b: &[f64], rho: &[f64]) -> bool {
        let sharp = |p: &[f64]| -> f64 {
            p.iter()
                .zip(inv)
                .zip(rho)
                .map(|((p, m), r)| p * m * r)
                .sum()
        };
        match self.criterion {
            Criterion::Generalised => sharp(a) > 0.0 && sharp(b) > 0.0,
            // checked leaf by leaf in `grow` instead
            Criterion::FromStart => true,
        }
    }

    pub(super) fn kinetic(inv: &[f64], p: &[f64]) -> f64 {
        0.5 * p.iter().zip(inv).map(|(p, m)| p * p * m).sum::<f64>()
    }

    /// Adds `leaf` to subtree `s` of a tree started at energy `h0`: its
    /// weight, the multinomial draw, and the U-turn checks of every block
    /// it completes. Returns the leaf's acceptance statistic.
    pub(super) fn grow(
        &self,
        s: &mut Subtree,
        leaf: Leaf,
        h0: f64,
        inv: &[f64],
        rng: &mut impl Rng,
    ) -> f64 {
        let h = -leaf.logp + Self::kinetic(inv, &leaf.p);
        let dh = h0 - h;
        if !dh.is_finite() || -dh > DIVERGENCE_ENERGY {
            s.failed = true;
            s.divergent = true;
            return 0.0;
        }
        if self.criterion == Criterion::FromStart {
            let away: f64 = (0..inv.len())
                .map(|c| (leaf.x[c] - s.x0[c]) * inv[c] * leaf.p[c])
                .sum();
            if away < 0.0 {
                s.failed = true;
            }
        }
        let i = s.leaves;
        s.leaves += 1;
        add_to(&mut s.rho, &leaf.p);
        if s.first.is_none() {
            s.first = Some(leaf.p.clone());
        }
        let log_w = log_add(s.log_w, dh);
        if s.candidate.is_none() || rng.random::<f64>() < (dh - log_w).exp() {
            s.candidate = Some(leaf.clone());
        }
        s.log_w = log_w;
        self.close_blocks(s, i, &leaf.p, inv);
        s.frontier = leaf;
        dh.min(0.0).exp()
    }

    /// Leaf `i` with momentum `p` joins the open block of every level; the
    /// blocks it completes are checked for a U-turn (with Stan's two
    /// checks across their halves), which fails the subtree.
    fn close_blocks(&self, s: &mut Subtree, i: usize, p: &[f64], inv: &[f64]) {
        for k in 1..s.open.len() {
            let size = 1usize << k;
            if i.is_multiple_of(size) {
                s.open[k] = (vec![0.0; p.len()], p.to_vec());
            }
            add_to(&mut s.open[k].0, p);
        }
        // level 0 blocks are single leaves
        let single = Block {
            rho: p.to_vec(),
            first: p.to_vec(),
            last: p.to_vec(),
        };
        s.done[0] = [s.done[0][1].take(), Some(single)];
        for k in 1..s.open.len() {
            if !(i + 1).is_multiple_of(1usize << k) {
                continue;
            }
            let (rho, first) = std::mem::take(&mut s.open[k]);
            let ok = self.open_ended(inv, &first, p, &rho);
            // Stan's checks across the two halves: the first half with the
            // second's first leaf, and the first half's last leaf with the
            // second half
            let extra = match &s.done[k - 1] {
                [Some(a), Some(b)] if k >= 2 => {
                    self.open_ended(inv, &a.first, &b.first, &add(&a.rho, &b.first))
                        && self.open_ended(inv, &a.last, &b.last, &add(&a.last, &b.rho))
                }
                _ => true,
            };
            if !(ok && extra) {
                s.failed = true;
            }
            let block = Block {
                rho,
                first,
                last: p.to_vec(),
            };
            s.done[k] = [s.done[k][1].take(), Some(block)];
        }
    }
}

impl Subtree {
    /// An empty subtree of `2^depth` leaves growing from `edge`, in a tree
    /// that started at `x0`.
    pub(super) fn new(edge: &Leaf, depth: usize, x0: &[f64]) -> Self {
        Self {
            frontier: edge.clone(),
            open: vec![(Vec::new(), Vec::new()); depth + 1],
            done: vec![[None, None]; depth + 1],
            leaves: 0,
            rho: vec![0.0; edge.p.len()],
            first: None,
            x0: x0.to_vec(),
            log_w: f64::NEG_INFINITY,
            candidate: None,
            failed: false,
            divergent: false,
        }
    }
}

impl Nuts {
    /// Every chain's one-leaf tree at its state (positions, gradients and
    /// log-densities by row), with momentum drawn from `N(0, M)`.
    pub(super) fn plant(
        &self,
        rngs: &mut ChainRngs,
        (xs, gs, lp): (&[Vec<f64>], &[Vec<f64>], &[f64]),
        inv: &[f64],
    ) -> Vec<Tree> {
        let mut trees = Vec::with_capacity(xs.len());
        for (i, rng) in rngs.0.iter_mut().enumerate().take(xs.len()) {
            let p: Vec<f64> = inv
                .iter()
                .map(|m| rng.sample::<f64, _>(StandardNormal) / m.sqrt())
                .collect();
            let leaf = Leaf {
                x: xs[i].clone(),
                g: gs[i].clone(),
                logp: lp[i],
                p,
            };
            let h0 = -leaf.logp + Self::kinetic(inv, &leaf.p);
            trees.push(Tree {
                rho: leaf.p.clone(),
                left: leaf.clone(),
                right: leaf.clone(),
                candidate: leaf,
                log_w: 0.0,
                h0,
                going: h0.is_finite(),
                depth: 0,
                divergent: !h0.is_finite(),
                sum_metro: 0.0,
                leaves: 0,
            });
        }
        trees
    }

    /// Joins a finished subtree of doubling `j` to its tree: discarded if
    /// it failed (the tree stops), else its draw taken with probability
    /// `min(1, w_new / w_old)` (biased progressive sampling), its edge
    /// made the tree's, and the tree stopped if the whole has turned.
    pub(super) fn join(
        &self,
        tree: &mut Tree,
        forward: bool,
        sub: Subtree,
        j: usize,
        inv: &[f64],
        rng: &mut impl Rng,
    ) {
        tree.depth = j + 1;
        if sub.failed {
            tree.going = false;
            tree.divergent |= sub.divergent;
            return;
        }
        if let Some(c) = &sub.candidate {
            if rng.random::<f64>() < (sub.log_w - tree.log_w).exp() {
                tree.candidate = c.clone();
            }
        }
        let first = sub.first.clone().unwrap_or_default();
        let (near, far) = if forward {
            (&tree.right, &tree.left)
        } else {
            (&tree.left, &tree.right)
        };
        let whole = add(&tree.rho, &sub.rho);
        // the whole, and Stan's two checks across the join
        let turned = !self.open_ended(inv, &far.p, &sub.frontier.p, &whole)
            || !self.open_ended(inv, &far.p, &first, &add(&tree.rho, &first))
            || !self.open_ended(inv, &near.p, &sub.frontier.p, &add(&near.p, &sub.rho));
        tree.log_w = log_add(tree.log_w, sub.log_w);
        tree.rho = whole;
        if forward {
            tree.right = sub.frontier;
        } else {
            tree.left = sub.frontier;
        }
        if turned {
            tree.going = false;
        }
    }
}
