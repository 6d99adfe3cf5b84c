//! A generator and a condition network that sample together: the one
//! abstraction every run goes through ([`Pair`]). The shipped Fashion-MNIST
//! stack (`super::fashion`, with its own classifier or any other), a
//! generator and a classifier composed without retraining, built in or
//! brought as ONNX files, and the papers' Caffe pair (`super::pretrained`)
//! are pairs; the driver (`crate::run::jobs::sample`) knows only this trait. What a
//! pair optionally brings (an encoder, a data set of real images, a flow,
//! DAEs) it says by [`Pair::has`]; [`refuse_missing`] is the one rule that
//! turns a request for something a pair lacks into one line naming it.

use candle_core::Tensor;

use crate::density::backend::Backend;
use crate::density::condition::Neuron;
use crate::density::observation::{self, Observation, Operator};
use crate::error::{Error, Result};
use crate::models::generator_error::ErrorByValue;
use crate::nn::fast::{Net, Op};
use crate::run::config::preset::SamplerConfig;
use crate::run::drive::chains::{Pipeline, Streams};

/// What the chains are conditioned on, resolved against a pair (class
/// indices, tensors): the spec's `crate::run::config::spec::Request` made concrete.
#[derive(Debug, Clone)]
pub enum Condition {
    /// One class per chain.
    Classes(Vec<usize>),
    /// A hidden unit of a layer of the condition network.
    Neuron { layer: String, neuron: Neuron },
    /// Inpainting ("Plug & Play Generative Networks" (supplementary), S10):
    /// a class per chain on the clamped image `M * G(h) + (1 - M) * real`
    /// (eq. 25, in every pass, so the class term and a joint prior's encoder
    /// see it), plus `weight` times the context term pulling the known
    /// pixels (`mask = 0`) of `G(h)` toward `real`.
    Inpaint {
        classes: Vec<usize>,
        /// `[1, h, w, c]`: the one real image every chain fills, in the
        /// generator's decoded space
        real: Tensor,
        /// `[1, h, w, c]`, 1 on the pixels to fill
        mask: Tensor,
        weight: f64,
    },
    /// Restoration (`ppgn restore`): no class, the code's posterior under
    /// a damaged observation of the image (`crate::density::observation`).
    Restore(Restoring),
}

/// What a restoration's chains are conditioned on: the observations, the
/// operator that made them from images and the likelihood's variance.
#[derive(Debug, Clone)]
pub struct Restoring {
    /// `[1 or n, oh, ow, oc]`: one observation for every chain or one per
    /// chain, in the generator's decoded space.
    pub observed: Tensor,
    pub operator: Operator,
    /// `s^2 + (A tau)^2`: the observation's noise and the generator's own
    /// error, one variance or one per observed value
    /// (`observation::variances`).
    pub variance: Vec<f64>,
}

impl Restoring {
    /// The observation term on the images of `g` (weight 1; the caller
    /// weighs it by `eps2`).
    pub fn term(&self, g: Backend) -> Result<Observation> {
        Observation::new(
            g,
            self.operator.clone(),
            &self.observed,
            self.variance.clone(),
        )
    }

    /// What progress reports per chain: the root mean square of `A x - y`,
    /// in the image's units.
    pub fn measure(&self) -> Result<crate::run::drive::chains::Measure> {
        let y: Vec<f64> = self
            .observed
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let a = self.operator.clone();
        Ok(Box::new(move |x: &Tensor| {
            let x: Vec<f64> = x
                .to_dtype(candle_core::DType::F64)?
                .flatten_all()?
                .to_vec1()?;
            Ok(observation::residual_rms(&a, &x, &y))
        }))
    }
}

/// Something a pair may or may not bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// An encoder from images to codes (`--init` from images, inpainting's
    /// start from the masked image).
    Encoder,
    /// A data set of real images of the generator's size (`--init test:N`,
    /// inpainting of `test:N`).
    Data,
}

impl Part {
    fn what(self) -> &'static str {
        match self {
            Part::Encoder => "an encoder from images to codes",
            Part::Data => "a data set of real images (test:N, val:N)",
        }
    }
}

/// A generator side and a condition side that fit together, with what
/// the driver needs of them: targets on codes, starts, the images the
/// outputs hold and an evaluator of them.
pub trait Pair: Send + Sync {
    /// `--generator` and `--classifier` as given.
    fn names(&self) -> (String, String);

    /// The condition network's class names, index order.
    fn class_names(&self) -> &[String];

    /// A class by index or name.
    fn parse_class(&self, s: &str) -> Result<usize>;

    /// Whether the pair brings `part`.
    fn has(&self, part: Part) -> bool;

    /// The shape `(h, w, c)` of the images the outputs hold
    /// ([`Pair::display`]'s).
    fn image(&self) -> (usize, usize, usize);

    /// The shape of the decoded images when they are pixels in [0, 1]
    /// (what inpainting clamps and a real image is read as); `None` when
    /// the generator's output is in another space.
    fn pixels(&self) -> Option<(usize, usize, usize)>;

    /// The target, decoder and per-chain measurement of `condition`
    /// under the settings `cfg`.
    fn pipeline(&self, cfg: &SamplerConfig, condition: &Condition) -> Result<Pipeline>;

    /// Random starting positions of chains `streams.first..+n` for `cfg`'s
    /// prior (draws of it where it has a density: what start candidates
    /// resample).
    fn random_starts(&self, cfg: &SamplerConfig, streams: Streams, n: usize) -> Result<Tensor>;

    /// Starting positions from decoded images `[n, h, w, c]` (the
    /// encoder's codes); only for pairs that have [`Part::Encoder`].
    fn encode(&self, cfg: &SamplerConfig, images: &Tensor) -> Result<Tensor> {
        let _ = (cfg, images);
        Err(missing(&self.names().0, Part::Encoder, "start from images"))
    }

    /// Real image `i` of the pair's data set, `[1, h, w, c]` in the
    /// decoded space; only for pairs that have [`Part::Data`].
    fn real_image(&self, i: usize) -> Result<(Tensor, usize)> {
        let _ = i;
        Err(missing(&self.names().0, Part::Data, "use test:N"))
    }

    /// Image `i` of the validation split of the pair's data set (images
    /// none of its networks was trained on, for choosing settings), as
    /// [`Pair::real_image`]; only for pairs that have [`Part::Data`].
    fn validation_image(&self, i: usize) -> Result<(Tensor, usize)> {
        let _ = i;
        Err(missing(&self.names().0, Part::Data, "use val:N"))
    }

    /// The class an evaluator gives each decoded image: an independent
    /// network where the pair has one, the condition network's top-1
    /// otherwise ([`Pair::evaluator`] names which).
    fn evaluate(&self, images: &Tensor) -> Result<Option<Vec<u32>>>;

    /// What [`Pair::evaluate`] runs, for the manifest.
    fn evaluator(&self) -> String;

    /// Decoded images to what the outputs hold: `[n, h, w, c]` in [0, 1].
    fn display(&self, images: &Tensor) -> Result<Tensor>;

    /// The networks' files and hashes, for the manifest (`models`).
    fn models(&self) -> serde_json::Value;

    /// The network one gradient evaluation runs (for the memory estimate).
    fn cost_net(&self, cfg: &SamplerConfig) -> Result<Net<f32>>;

    /// The preset a run of this pair uses unless told otherwise.
    fn default_preset(&self) -> &'static str;

    /// The generator's own error `tau`, one number or one per pixel of its
    /// images (flat HWC): the RMSE of its reconstructions of the
    /// validation split as its card records it
    /// (`validation_reconstruction_rmse`, one number); `None` where no card
    /// has it. A restoration's likelihood adds it to the observation's
    /// noise (`crate::density::observation::variances`).
    fn generator_error(&self) -> Option<Vec<f64>> {
        None
    }

    /// The generator's error given the value it draws, measured on the
    /// validation split as its card records it (`error_by_value`); `None`
    /// where no card has it. A restoration adds it to its draws with
    /// `--draw-error by-value`.
    fn generator_error_by_value(&self) -> Option<ErrorByValue> {
        None
    }
}

/// The error of asking `pair` for a `part` it does not have.
pub fn missing(pair: &str, part: Part, instead: &str) -> Error {
    Error::unsupported(
        format!("{pair} does not have {}", part.what()),
        format!("{instead} with a pair that has one (the shipped fashion stack), or drop the flag that needs it"),
    )
}

/// The one rule for what a pair cannot do: each flag that needs a part
/// the pair lacks is refused, naming the part, before anything runs.
pub fn refuse_missing(pair: &dyn Pair, needs: &[(Part, &str)]) -> Result<()> {
    for &(part, flag) in needs {
        if !pair.has(part) {
            return Err(Error::unsupported(
                format!("{flag} needs {}, which {} does not have", part.what(), pair.names().0),
                "drop it, or use a pair that has one (the shipped fashion stack has an encoder and the Fashion-MNIST test set)",
            ));
        }
    }
    Ok(())
}

/// S10's eq. 25 as one engine op on `G`'s output of shape `shape`:
/// `x * M + (1 - M) * real`, a per-value affine map.
pub fn clamp_net(real: &Tensor, mask: &Tensor, shape: (usize, usize, usize)) -> Result<Net<f32>> {
    let (h, w, c) = shape;
    let one_image = |t: &Tensor, what: &str| -> Result<Vec<f32>> {
        let v: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        match v.len() == h * w * c {
            true => Ok(v),
            false => Err(Error::shape(
                what,
                format!("one {h}x{w}x{c} image, the same for every chain"),
                format!("{:?}", t.dims()),
            )),
        }
    };
    let (real, mask) = (
        one_image(real, "inpainting image")?,
        one_image(mask, "inpainting mask")?,
    );
    let shift = real.iter().zip(&mask).map(|(r, m)| (1.0 - m) * r).collect();
    Net::new(shape, vec![Op::Affine { scale: mask, shift }])
}
