//! The 1000 ImageNet classes (ILSVRC-2012, in the order of the classifiers'
//! outputs), by index or name. The names are the usual short WordNet
//! labels, as torchvision lists them.

use crate::error::{Error, Result};

const NAMES: &str = include_str!("imagenet_classes.txt");

/// The class names, index order.
pub fn class_names() -> Vec<&'static str> {
    NAMES.lines().collect()
}

/// A class by index (`837`) or name (`sunglasses`, `"ski mask"`,
/// case-insensitive; `-` and `_` stand for spaces). An unknown name lists
/// the classes that contain it.
pub fn parse_class(s: &str) -> Result<usize> {
    parse_class_in(s, &class_names(), "ImageNet class")
}

/// A class of `names` (`what` says whose, for the message) by index or
/// name, as [`parse_class`].
pub fn parse_class_in<S: AsRef<str>>(s: &str, names: &[S], what: &'static str) -> Result<usize> {
    let t = s.trim();
    let list = if what == "ImageNet class" {
        "the ImageNet names `ppgn classes --imagenet` lists, such as \"sunglasses\""
    } else {
        "the names of the classifier's classes file, or indices"
    };
    if let Ok(i) = t.parse::<usize>() {
        return if i < names.len() {
            Ok(i)
        } else {
            Err(Error::UnknownClass {
                what,
                given: format!("{i} (out of range)"),
                count: names.len(),
                names: list.into(),
            })
        };
    }
    let norm = |x: &str| x.to_lowercase().replace(['-', '_'], " ");
    let want = norm(t);
    if let Some(i) = names.iter().position(|n| norm(n.as_ref()) == want) {
        return Ok(i);
    }
    let near: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            let n = norm(n.as_ref());
            n.contains(&want) || edit_distance(&n, &want) <= 2
        })
        .take(8)
        .map(|(i, n)| format!("{i} {}", norm(n.as_ref())))
        .collect();
    Err(Error::UnknownClass {
        what,
        given: t.to_string(),
        count: names.len(),
        names: if near.is_empty() {
            list.into()
        } else {
            format!(
                "the names (`ppgn classes --imagenet`); did you mean one of: {}?",
                near.join(", ")
            )
        },
    })
}

/// Levenshtein distance, for suggestions on a misspelt class.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
