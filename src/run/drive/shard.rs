//! How a run's chains are split: into batches of `--batch` chains that run
//! one after another (bounded memory), and the batches into `--shard K/N`
//! contiguous blocks for separate processes or machines. Chain ids are
//! global, every batch draws its chains' own random streams and adapts its
//! own step, so a shard computes exactly what the whole run computes for
//! its chains with the same `--batch`; `ppgn merge` joins the shards.

use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `K`-th (from 1) of `N` shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole run.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };
}

impl FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::setting("shard", s, "K/N with 1 <= K <= N, e.g. 2/8");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The batches of a run and the share of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Chains of the whole run.
    pub chains: usize,
    /// Chains per batch.
    pub batch: usize,
    pub shard: Shard,
}

impl Plan {
    /// Refuses a shard without chains (more shards than batches).
    pub fn new(chains: usize, batch: usize, shard: Shard) -> Result<Self> {
        if batch == 0 {
            return Err(Error::setting("batch", 0, "at least 1 chain"));
        }
        let p = Plan {
            chains,
            batch: batch.min(chains.max(1)),
            shard,
        };
        if shard.count > p.batches_total() {
            return Err(Error::setting(
                "shard",
                shard,
                format!(
                    "at most {} shards: the {chains} chains make {} batches of {} \
                     (a smaller --batch makes more)",
                    p.batches_total(),
                    p.batches_total(),
                    p.batch
                ),
            ));
        }
        Ok(p)
    }

    /// Batches of the whole run.
    pub fn batches_total(&self) -> usize {
        self.chains.div_ceil(self.batch)
    }

    /// This shard's batches: a contiguous block, as even as can be.
    pub fn shard_batches(&self) -> Range<usize> {
        let nb = self.batches_total();
        let Shard { index, count } = self.shard;
        (index - 1) * nb / count..index * nb / count
    }

    /// The global ids of batch `b`'s chains.
    pub fn batch_chains(&self, b: usize) -> Range<usize> {
        b * self.batch..((b + 1) * self.batch).min(self.chains)
    }

    /// The global ids of this shard's chains.
    pub fn shard_chains(&self) -> Range<usize> {
        let r = self.shard_batches();
        if r.is_empty() {
            return 0..0;
        }
        self.batch_chains(r.start).start..self.batch_chains(r.end - 1).end
    }
}
