//! The output shapes of the ops with windows (convolutions, transposed
//! and depthwise ones, max pooling) on an input, or why it does not fit:
//! what `Op::out_shape` checks before a network is built.

use super::window::Window;
use super::Shape;

/// A convolution's output shape on input `s`, or why it does not fit.
pub(crate) fn conv_shape(
    w: &Window,
    weights: usize,
    cout: usize,
    s: Shape,
) -> std::result::Result<Shape, String> {
    if (w.h, w.w, w.c) != s {
        return Err(format!(
            "convolution expects {:?}, got {s:?}",
            (w.h, w.w, w.c)
        ));
    }
    if weights != w.taps() * w.c * cout {
        return Err(format!(
            "convolution weight has {weights} values, expected {}x{}x{cout}",
            w.taps(),
            w.c
        ));
    }
    Ok((w.ho, w.wo, cout))
}

/// A depthwise convolution's output shape on input `s`, or why it does
/// not fit (`taps` and `bias` values given).
pub(crate) fn depthwise_shape(
    w: &Window,
    taps: usize,
    bias: usize,
    s: Shape,
) -> std::result::Result<Shape, String> {
    if (w.h, w.w, w.c) == s && taps == w.taps() * w.c && bias == w.c {
        Ok((w.ho, w.wo, w.c))
    } else {
        Err(format!(
            "depthwise convolution expects {:?}, got {s:?}",
            (w.h, w.w, w.c)
        ))
    }
}

/// Max pooling's output shape on input `s`, or why it does not fit
/// (padding never covers a whole window).
pub(crate) fn max_pool_shape(w: &Window, s: Shape) -> std::result::Result<Shape, String> {
    if (w.h, w.w, w.c) == s && w.pad_top < w.kh && w.pad_left < w.kw {
        Ok((w.ho, w.wo, w.c))
    } else {
        Err(format!(
            "max pooling expects {:?}, got {s:?}",
            (w.h, w.w, w.c)
        ))
    }
}

/// A transposed convolution's output shape on input `s`, or why it does not fit.
pub(crate) fn conv_transpose_shape(
    w: &Window,
    weights: usize,
    bias: usize,
    s: Shape,
) -> std::result::Result<Shape, String> {
    let cin = weights / (w.taps() * w.c).max(1);
    if (w.ho, w.wo, cin) != s || weights != cin * w.taps() * w.c {
        return Err(format!(
            "transposed convolution expects {:?}, got {s:?}",
            (w.ho, w.wo, cin)
        ));
    }
    if bias != w.c {
        return Err("transposed convolution bias does not match its channels".into());
    }
    Ok((w.h, w.w, w.c))
}
