//! ONNX nodes with windows and weights, lowered to engine ops:
//! convolutions (grouped, depthwise, dilated, transposed), fully connected
//! layers and pooling.

use crate::nn::fast::build;
use crate::nn::fast::kernels::Act;
use crate::nn::fast::real::Real;
use crate::nn::fast::window::Window;
use crate::nn::fast::Op;

use super::graph::{real, Dyn, Graph, Inputs};
use super::tensor::{Attrs, Fail, Tensor};

/// A window's geometry from the attributes: kernel, stride, padding
/// (explicit or `auto_pad`), dilation, and the output side (`ceil` for
/// pooling's `ceil_mode`).
struct Geometry {
    k: (usize, usize),
    stride: usize,
    /// top, left, bottom, right
    pads: [usize; 4],
    dilation: usize,
}

fn geometry(at: &Attrs, (h, w): (usize, usize), k: (usize, usize)) -> Result<Geometry, Fail> {
    let pair = |name: &str| -> Result<(usize, usize), Fail> {
        match at.ints(name).as_deref() {
            None => Ok((1, 1)),
            Some(&[a, b]) if a > 0 && b > 0 => Ok((a as usize, b as usize)),
            Some(v) => Err(format!("{name} {v:?}: ppgn takes two positive numbers")),
        }
    };
    let (sh, sw) = pair("strides")?;
    let (dh, dw) = pair("dilations")?;
    if sh != sw || dh != dw {
        return Err(format!(
            "strides {sh}x{sw} and dilations {dh}x{dw}: ppgn's windows take one stride and one dilation for both directions"
        ));
    }
    // bounds that keep the arithmetic below far from overflowing
    let big = |v: usize| v > 1 << 20;
    if k.0 == 0 || k.1 == 0 || big(k.0) || big(k.1) || big(dh) || big(sh) {
        return Err(format!(
            "a {}x{} window with stride {sh} and dilation {dh}",
            k.0, k.1
        ));
    }
    let ke = |k: usize| dh * (k - 1) + 1;
    let same = |n: usize, k: usize| {
        let out = n.div_ceil(sh);
        ((out - 1) * sh + ke(k)).saturating_sub(n)
    };
    let pads = match at.string("auto_pad", "NOTSET").as_str() {
        "NOTSET" | "" => match at.ints("pads").as_deref() {
            None => [0; 4],
            Some(&[t, l, b, r]) if [t, l, b, r].iter().all(|&v| (0..1 << 20).contains(&v)) => {
                [t as usize, l as usize, b as usize, r as usize]
            }
            Some(v) => return Err(format!("pads {v:?}: ppgn takes four non-negative numbers")),
        },
        "VALID" => [0; 4],
        mode => {
            let (th, tw) = (same(h, k.0), same(w, k.1));
            let upper = mode == "SAME_UPPER";
            let first = |t: usize| if upper { t / 2 } else { t - t / 2 };
            [first(th), first(tw), th - first(th), tw - first(tw)]
        }
    };
    Ok(Geometry {
        k: (ke(k.0), ke(k.1)),
        stride: sh,
        pads,
        dilation: dh,
    })
}

impl Geometry {
    /// The window over an `h x w x c` input; `ceil` rounds the output up
    /// (dropping a last window that would start in the padding).
    fn window(&self, (h, w, c): (usize, usize, usize), ceil: bool) -> Result<Window, Fail> {
        let [t, l, b, r] = self.pads;
        let side = |n: usize, before: usize, after: usize, k: usize| -> Result<usize, Fail> {
            let span = (n + before + after).checked_sub(k).ok_or_else(|| {
                format!("a {k}-wide window does not fit {n} pixels padded by {before}+{after}")
            })?;
            let mut out = if ceil {
                span.div_ceil(self.stride)
            } else {
                span / self.stride
            } + 1;
            if ceil && (out - 1) * self.stride >= n + before {
                out -= 1;
            }
            Ok(out)
        };
        Ok(Window {
            h,
            w,
            c,
            kh: self.k.0,
            kw: self.k.1,
            stride: self.stride,
            pad_top: t,
            pad_left: l,
            ho: side(h, t, b, self.k.0)?,
            wo: side(w, l, r, self.k.1)?,
        })
    }
}

/// Convolution weights `[m, cin, kh, kw]` (rows `m0..m0 + mc`) dilated
/// by `d`, in the engine's `[(dy, dx, cin), m]` layout.
fn conv_weights<T: Real>(
    wt: &Tensor,
    m0: usize,
    mc: usize,
    d: usize,
    (kh, kw): (usize, usize),
) -> Vec<T> {
    let (cin, sh, sw) = (wt.dims[1], wt.dims[2], wt.dims[3]);
    let mut out = vec![T::zero(); kh * kw * cin * mc];
    for m in 0..mc {
        for ci in 0..cin {
            for y in 0..sh {
                for x in 0..sw {
                    let v = wt.data[(((m0 + m) * cin + ci) * sh + y) * sw + x];
                    out[(((y * d) * kw + x * d) * cin + ci) * mc + m] = real(v);
                }
            }
        }
    }
    out
}

pub fn conv<T: Real>(g: &mut Graph<T>, ins: &Inputs, at: &Attrs) -> Result<Dyn, Fail> {
    // a zero padding before (PyTorch's F.pad for TensorFlow's "same")
    // becomes the window's own
    let explicit = matches!(
        at.string("auto_pad", "NOTSET").as_str(),
        "NOTSET" | "" | "VALID"
    );
    let (x, extra) = match explicit {
        true => g.unpad(ins.dynamic(0)?),
        false => (ins.dynamic(0)?.clone(), [0; 4]),
    };
    let x = &x;
    let wt = ins.constant(1)?;
    let (c, h, w) = x.image()?;
    let [m, cg, kh, kw] = *wt.dims else {
        return Err(format!(
            "a convolution weight of dimensions {:?}: ppgn takes 2-D convolutions",
            wt.dims
        ));
    };
    let groups = at.int("group", 1).max(1) as usize;
    if cg * groups != c || !m.is_multiple_of(groups) {
        return Err(format!(
            "weight {:?} in {groups} groups does not fit {c} input channels",
            wt.dims
        ));
    }
    let bias: Vec<f64> = match ins.optional(2)? {
        Some(b) if b.len() == m => b.data.clone(),
        Some(b) => return Err(format!("a bias of {} values for {m} filters", b.len())),
        None => vec![0.0; m],
    };
    let mut geo = geometry(at, (h, w), (kh, kw))?;
    geo.pads.iter_mut().zip(extra).for_each(|(p, e)| *p += e);
    let window = geo.window((h, w, cg), false)?;
    let dims = vec![m, window.ho, window.wo];
    if groups == c && m == c && cg == 1 {
        let full = geo.window((h, w, c), false)?;
        let taps = conv_weights::<T>(wt, 0, m, geo.dilation, geo.k);
        let op = Op::Depthwise {
            window: full,
            taps,
            bias: bias.into_iter().map(real).collect(),
            act: Act::Identity,
        };
        return g.push(op, vec![x.slot], dims);
    }
    let mg = m / groups;
    let mut outs = Vec::new();
    for gi in 0..groups {
        let part = if groups == 1 {
            x.clone()
        } else {
            let op = Op::Slice {
                at: (0, 0, gi * cg),
                out: (h, w, cg),
            };
            g.push(op, vec![x.slot], vec![cg, h, w])?
        };
        let op = Op::Conv {
            window,
            weight: conv_weights(wt, gi * mg, mg, geo.dilation, geo.k),
            bias: bias[gi * mg..(gi + 1) * mg]
                .iter()
                .map(|&v| real(v))
                .collect(),
            act: Act::Identity,
        };
        outs.push(g.push(op, vec![part.slot], vec![mg, window.ho, window.wo])?);
    }
    if outs.len() == 1 {
        return Ok(outs.remove(0));
    }
    g.push(Op::Concat, outs.iter().map(|o| o.slot).collect(), dims)
}

pub fn conv_transpose<T: Real>(g: &mut Graph<T>, ins: &Inputs, at: &Attrs) -> Result<Dyn, Fail> {
    let x = ins.dynamic(0)?;
    let wt = ins.constant(1)?;
    let (c, h, w) = x.image()?;
    let [cin, m, kh, kw] = *wt.dims else {
        return Err(format!(
            "a transposed convolution weight of dimensions {:?}: ppgn takes 2-D ones",
            wt.dims
        ));
    };
    if cin != c || at.int("group", 1) != 1 || at.has("output_shape") {
        return Err(format!(
            "a transposed convolution of weight {:?} on {c} channels (ppgn takes one group and no output_shape)",
            wt.dims
        ));
    }
    if !matches!(
        at.string("auto_pad", "NOTSET").as_str(),
        "NOTSET" | "" | "VALID"
    ) {
        return Err("a transposed convolution with auto_pad SAME: give explicit pads".into());
    }
    let geo = geometry(at, (h, w), (kh, kw))?;
    if geo.dilation != 1 {
        return Err("a dilated transposed convolution".into());
    }
    let op_pad = match at.ints("output_padding").as_deref() {
        None => (0, 0),
        Some(&[a, b]) if a >= 0 && b >= 0 => (a as usize, b as usize),
        Some(v) => return Err(format!("output_padding {v:?}")),
    };
    let [t, l, b, r] = geo.pads;
    let side = |n: usize, k: usize, before: usize, after: usize, extra: usize| {
        ((n - 1) * geo.stride + k + extra).checked_sub(before + after)
    };
    let (Some(ho), Some(wo)) = (side(h, kh, t, b, op_pad.0), side(w, kw, l, r, op_pad.1)) else {
        return Err(format!("padding {:?} larger than the output", geo.pads));
    };
    // the convolution this op is the adjoint of: output image -> input
    let window = Window {
        h: ho,
        w: wo,
        c: m,
        kh,
        kw,
        stride: geo.stride,
        pad_top: t,
        pad_left: l,
        ho: h,
        wo: w,
    };
    let mut weight = vec![T::zero(); cin * kh * kw * m];
    for ci in 0..cin {
        for co in 0..m {
            for y in 0..kh {
                for xx in 0..kw {
                    let v = wt.data[((ci * m + co) * kh + y) * kw + xx];
                    weight[ci * kh * kw * m + (y * kw + xx) * m + co] = real(v);
                }
            }
        }
    }
    let bias: Vec<T> = match ins.optional(2)? {
        Some(b) => b.data.iter().map(|&v| real(v)).collect(),
        None => vec![T::zero(); m],
    };
    let op = Op::ConvTranspose {
        window,
        weight,
        bias,
        act: Act::Identity,
    };
    g.push(op, vec![x.slot], vec![m, ho, wo])
}

/// `Gemm` (`alpha A B' + beta C`, `A` the data) or `MatMul` by a
/// constant: a 1x1 convolution on a `(1, 1, k)` vector.
pub fn fully_connected<T: Real>(
    g: &mut Graph<T>,
    ins: &Inputs,
    at: &Attrs,
    matmul: bool,
) -> Result<Dyn, Fail> {
    let x = ins.dynamic(0)?;
    let b = ins.constant(1)?;
    let [k] = *x.dims else {
        return Err(format!(
            "a matrix product of data [batch, {:?}]: ppgn takes [batch, features]",
            x.dims
        ));
    };
    if !matmul && at.int("transA", 0) != 0 {
        return Err("Gemm with transA (the data transposed)".into());
    }
    let trans = !matmul && at.int("transB", 0) != 0;
    let (alpha, beta) = if matmul {
        (1.0, 0.0)
    } else {
        (at.float("alpha", 1.0), at.float("beta", 1.0))
    };
    let m = match (b.dims.as_slice(), trans) {
        (&[r, m], false) if r == k => m,
        (&[m, r], true) if r == k => m,
        _ => return Err(format!("weights {:?} do not multiply {k} features", b.dims)),
    };
    let mut weight = vec![T::zero(); k * m];
    for i in 0..k {
        for j in 0..m {
            let v = if trans {
                b.data[j * k + i]
            } else {
                b.data[i * m + j]
            };
            weight[i * m + j] = real(alpha * v);
        }
    }
    let bias: Vec<T> = match ins.optional(2)? {
        Some(c) if !matmul => c
            .broadcast_to(&[m])?
            .into_iter()
            .map(|v| real(beta * v))
            .collect(),
        _ => vec![T::zero(); m],
    };
    let window = Window::symmetric(1, 1, k, 1, 1, 0);
    g.push(
        Op::Conv {
            window,
            weight,
            bias,
            act: Act::Identity,
        },
        vec![x.slot],
        vec![m],
    )
}

pub fn pool<T: Real>(g: &mut Graph<T>, x: &Dyn, at: &Attrs, max: bool) -> Result<Dyn, Fail> {
    let (c, h, w) = x.image()?;
    let k = match at.ints("kernel_shape").as_deref() {
        Some(&[a, b]) if a > 0 && b > 0 => (a as usize, b as usize),
        v => return Err(format!("kernel_shape {v:?}: ppgn pools over 2-D windows")),
    };
    let geo = geometry(at, (h, w), k)?;
    if geo.dilation != 1 {
        return Err("dilated pooling".into());
    }
    let ceil = at.int("ceil_mode", 0) != 0;
    let window = geo.window((h, w, c), ceil)?;
    let dims = vec![c, window.ho, window.wo];
    if max {
        return g.push(Op::MaxPool { window }, vec![x.slot], dims);
    }
    let include_pad = at.int("count_include_pad", 0) != 0;
    let floor = geo.window((h, w, c), false)?;
    if ceil && (floor.ho, floor.wo) != (window.ho, window.wo) && include_pad {
        return Err(
            "average pooling with ceil_mode and count_include_pad that changes the output size"
                .into(),
        );
    }
    if include_pad || geo.pads == [0; 4] && (floor.ho, floor.wo) == (window.ho, window.wo) {
        return g.push(build::average_pool(window), vec![x.slot], dims);
    }
    // the sum over the window, divided by the pixels inside the image
    let sum = Op::Depthwise {
        window,
        taps: vec![T::one(); window.taps() * c],
        bias: vec![T::zero(); c],
        act: Act::Identity,
    };
    let s = g.push(sum, vec![x.slot], dims.clone())?;
    let inside = |o: usize, k: usize, pad: usize, n: usize| {
        (0..k)
            .filter(|&d| {
                (o * window.stride + d)
                    .checked_sub(pad)
                    .is_some_and(|v| v < n)
            })
            .count()
    };
    let mut scale = Vec::with_capacity(c * window.ho * window.wo);
    for _ in 0..c {
        for oy in 0..window.ho {
            for ox in 0..window.wo {
                let n = inside(oy, window.kh, window.pad_top, h)
                    * inside(ox, window.kw, window.pad_left, w);
                scale.push(1.0 / n.max(1) as f64);
            }
        }
    }
    let zeros = vec![0.0; scale.len()];
    g.affine(&s, scale, zeros)
}
