//! `ppgn restore`'s settings: the operator that damaged the image, as
//! written on the command line (`mask:WxH@X,Y`, `mask:FILE.png`,
//! `blur:SIGMA`, `down:K`, `noise`, chained with `+`: `blur:1+down:2`), and
//! the observation's noise. The operator is parsed once, before anything
//! loads, and made at the generator's image size when the pair is known
//! (`crate::density::observation::Operator`).

use crate::density::observation::Degradation;
use crate::error::{Error, Result};

/// One step of an operator as asked, before the image size is known.
#[derive(Debug, Clone, PartialEq)]
pub enum Asked {
    /// A mask: `WxH@X,Y` (a hidden patch), `random`, or a PNG file whose
    /// white pixels are hidden (`crate::run::config::inpaint::Inpaint::mask_sized`).
    Mask(String),
    Blur(f64),
    Down(usize),
    Noise,
}

const FORMS: &str =
    "mask:WxH@X,Y, mask:FILE.png, blur:SIGMA, down:K or noise, chained with + (blur:1+down:2)";

/// The steps of an operator string, refused in one line naming the forms
/// when a step is not one of them.
pub fn parse(spec: &str) -> Result<Vec<Asked>> {
    let bad = |what: &str| Error::setting("operator", format!("{what:?}"), FORMS);
    if spec.trim().is_empty() {
        return Err(bad(spec));
    }
    spec.split('+')
        .map(|step| {
            let step = step.trim();
            let (kind, arg) = step.split_once(':').unwrap_or((step, ""));
            match (kind, arg) {
                ("noise", "") => Ok(Asked::Noise),
                ("mask", m) if !m.is_empty() => Ok(Asked::Mask(m.to_string())),
                ("blur", s) => match s.parse::<f64>() {
                    Ok(s) if s.is_finite() && s > 0.0 => Ok(Asked::Blur(s)),
                    _ => Err(Error::setting(
                        "operator",
                        format!("{step:?}"),
                        "blur:SIGMA with SIGMA a positive number of pixels",
                    )),
                },
                ("down", k) => match k.parse::<usize>() {
                    Ok(k) if k >= 1 => Ok(Asked::Down(k)),
                    _ => Err(Error::setting(
                        "operator",
                        format!("{step:?}"),
                        "down:K with K a whole number of pixels, 1 or more",
                    )),
                },
                _ => Err(bad(step)),
            }
        })
        .collect()
}

/// `steps` written as `parse` reads them (`blur:1.5+down:2`).
pub fn written(steps: &[Asked]) -> String {
    let one = |s: &Asked| match s {
        Asked::Mask(m) => format!("mask:{m}"),
        Asked::Blur(sigma) => format!("blur:{sigma}"),
        Asked::Down(k) => format!("down:{k}"),
        Asked::Noise => "noise".into(),
    };
    steps.iter().map(one).collect::<Vec<_>>().join("+")
}

/// The degradations of `steps` on an `h x w` image: each mask made at the
/// size of the image it reads (after any `down:K` before it). `seed`
/// places a `random` mask.
pub fn degradations(
    steps: &[Asked],
    (h, w): (usize, usize),
    seed: u64,
) -> Result<Vec<Degradation>> {
    let (mut h, mut w) = (h, w);
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        out.push(match s {
            Asked::Mask(m) => {
                let hidden = super::inpaint::Inpaint::mask_sized(m, seed, (h, w))?;
                let known = hidden.iter().map(|&v| 1.0 - v as f64).collect();
                Degradation::Mask { known }
            }
            Asked::Blur(sigma) => Degradation::Blur { sigma: *sigma },
            Asked::Down(k) => {
                if h % k != 0 || w % k != 0 {
                    return Err(Error::setting(
                        "operator",
                        format!("down:{k} of a {w}x{h} image"),
                        format!("down:K with K a divisor of both sides (of {w} and {h})"),
                    ));
                }
                (h, w) = (h / k, w / k);
                Degradation::Down { k: *k }
            }
            Asked::Noise => Degradation::Noise,
        });
    }
    Ok(out)
}

/// The observation's noise standard deviation `s`, checked: finite and not
/// negative (0 is a noiseless observation; the generator's own error `tau`
/// keeps the likelihood's variance positive).
pub fn noise_std(s: f64) -> Result<f64> {
    if s.is_finite() && s >= 0.0 {
        Ok(s)
    } else {
        Err(Error::setting(
            "noise-std",
            format!("{s}"),
            "a standard deviation of 0 or more, in the image's [0, 1] units",
        ))
    }
}

/// `--tau`, the generator's own error: a number, or a `.npy` of one value
/// per pixel of the generator's images (`[h, w, c]` in any shape of that
/// many values; `ppgn models check --tau-map` writes one). Each value is
/// checked here (finite, 0 or more) and the count against the image with
/// the operator (`crate::density::observation::variances`).
pub fn tau(s: &str) -> Result<Vec<f64>> {
    let values = match s.trim().parse::<f64>() {
        Ok(t) => vec![t],
        Err(_) if s.ends_with(".npy") => crate::data::npy::read_float(std::path::Path::new(s))?.1,
        Err(_) => {
            return Err(Error::setting(
                "tau",
                format!("{s:?}"),
                "a number (the generator's error per pixel) or a .npy file of one per pixel",
            ))
        }
    };
    match values.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
        Some(t) => Err(Error::setting(
            "tau",
            format!("{t}"),
            "the generator's error per pixel: 0 or more, in the image's [0, 1] units",
        )),
        None if values.is_empty() => Err(Error::setting(
            "tau",
            "no values",
            "one value or one per pixel",
        )),
        None => Ok(values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_strings_parse_or_are_refused_in_one_line() {
        assert_eq!(
            parse("blur:1.5+down:2").unwrap(),
            vec![Asked::Blur(1.5), Asked::Down(2)]
        );
        assert_eq!(
            parse("mask:12x12@8,8").unwrap(),
            vec![Asked::Mask("12x12@8,8".into())]
        );
        assert_eq!(parse("noise").unwrap(), vec![Asked::Noise]);
        for s in ["blur:1.5+down:2", "mask:12x12@8,8+noise", "down:4"] {
            assert_eq!(written(&parse(s).unwrap()), s);
        }
        for bad in [
            "", "blur", "blur:-1", "blur:x", "down:0", "down:1.5", "smear:2", "mask:", "noise:1",
            "blur:1+",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("operator") && e.lines().count() == 1,
                "{bad}: {e}"
            );
        }
        // sized: the mask after down:2 is made at 14x14
        let d = degradations(&parse("down:2+mask:4x4@0,0").unwrap(), (28, 28), 0).unwrap();
        match &d[1] {
            Degradation::Mask { known } => {
                assert_eq!(known.len(), 14 * 14);
                assert_eq!(known.iter().filter(|&&k| k == 0.0).count(), 16);
            }
            other => panic!("{other:?}"),
        }
        let e = degradations(&parse("down:3").unwrap(), (28, 28), 0).unwrap_err();
        assert!(e.to_string().contains("divisor"), "{e}");
        let e = degradations(&parse("mask:20x20@10,10").unwrap(), (28, 28), 0).unwrap_err();
        assert!(e.to_string().contains("inside"), "{e}");
        assert!(noise_std(-0.1).is_err() && noise_std(f64::NAN).is_err());
        assert_eq!(noise_std(0.0).unwrap(), 0.0);
    }
}
