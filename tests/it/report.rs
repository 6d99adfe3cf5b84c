//! `ppgn report` and `ppgn viz tsne`: equal-budget settings, the t-SNE
//! layout on data with a known structure, and the report end to end.

use ppgn::run::config::preset::preset;
use ppgn::sampler::schedule::Schedule;
use ppgn::viz::tsne::{snap_to_grid, Tsne};
use rand::{Rng, SeedableRng};

use super::{ppgn, tempdir};

#[test]
fn equal_gradient_budgets() {
    let hmc = preset("xu-hmc").unwrap();
    assert_eq!(hmc.grads_per_step(), 10);
    assert_eq!(hmc.with_grad_budget(200).unwrap().steps, 20);
    let map = preset("dgn-am").unwrap().with_grad_budget(800).unwrap();
    assert_eq!(map.steps, 800);
    // DGN-AM's learning-rate decay is stretched over the longer run
    match map.step {
        Schedule::Linear { start, end, steps } => {
            assert_eq!((start, end, steps), (0.5, 0.05, 800));
            assert!((map.step.at(799) - 0.05).abs() < 1e-12);
        }
        other => panic!("dgn-am has a linear schedule, got {other:?}"),
    }
    assert_eq!(
        preset("ppgn").unwrap().with_grad_budget(200).unwrap().steps,
        200
    );
    let err = hmc.with_grad_budget(5).unwrap_err().to_string();
    assert!(err.contains("at least one step of xu-hmc"), "{err}");
}

/// Three tight, far-apart clusters in 10-D stay apart in the embedding:
/// every point's nearest embedded neighbour is from its own cluster.
#[test]
fn tsne_keeps_clusters_apart() {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut x = Vec::new();
    let mut label = Vec::new();
    for c in 0..3 {
        for _ in 0..30 {
            x.push(
                (0..10)
                    .map(|d| if d == c { 10.0 } else { 0.0 } + r.random_range(-0.5..0.5))
                    .collect::<Vec<f64>>(),
            );
            label.push(c);
        }
    }
    let y = Tsne {
        perplexity: 10.0,
        iterations: 500,
        ..Tsne::default()
    }
    .embed(&x);
    assert!(y.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
    let d = |a: &[f64; 2], b: &[f64; 2]| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
    for i in 0..y.len() {
        let j = (0..y.len())
            .filter(|&j| j != i)
            .min_by(|&a, &b| d(&y[i], &y[a]).total_cmp(&d(&y[i], &y[b])))
            .unwrap();
        assert_eq!(
            label[i], label[j],
            "point {i}'s nearest neighbour is from another cluster"
        );
    }
    // and the clusters are far apart compared with their own spread
    let centre = |c: usize| {
        let pts: Vec<&[f64; 2]> = (0..y.len())
            .filter(|&i| label[i] == c)
            .map(|i| &y[i])
            .collect();
        let n = pts.len() as f64;
        [
            pts.iter().map(|p| p[0]).sum::<f64>() / n,
            pts.iter().map(|p| p[1]).sum::<f64>() / n,
        ]
    };
    let spread = (0..y.len())
        .map(|i| d(&y[i], &centre(label[i])).sqrt())
        .fold(0.0, f64::max);
    assert!(d(&centre(0), &centre(1)).sqrt() > 2.0 * spread);
}

#[test]
fn grid_snapping_is_one_to_one_and_keeps_a_grid_in_place() {
    // points already on a 4 x 3 grid land in their own cells
    let pts: Vec<[f64; 2]> = (0..12).map(|i| [(i % 4) as f64, (i / 4) as f64]).collect();
    assert_eq!(snap_to_grid(&pts, 4, 3), (0..12).collect::<Vec<_>>());
    // random points: distinct cells
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let pts: Vec<[f64; 2]> = (0..20).map(|_| [r.random(), r.random()]).collect();
    let mut cells = snap_to_grid(&pts, 5, 5);
    assert!(cells.iter().all(|&c| c < 25));
    cells.sort();
    cells.dedup();
    assert_eq!(cells.len(), 20);
}

/// The whole report at a tiny size: its files, its tables and claims, and
/// the same numbers on a rerun with the same seed.
#[test]
fn report_writes_results_and_reproduces_them() {
    let d = tempdir("report");
    // a generator study of one candidate: the shipped generator
    let study = d.join("study/shipped");
    std::fs::create_dir_all(&study).unwrap();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    for f in ["generator.safetensors", "generator.json"] {
        std::fs::copy(models.join(f), study.join(f)).unwrap();
    }
    let args = |out: &str| {
        vec![
            "report".to_string(),
            "--out".into(),
            d.join(out).to_str().unwrap().into(),
            "--per-class".into(),
            "2".into(),
            "--budgets".into(),
            "16,32".into(),
            "--study-chains".into(),
            "1".into(),
            "--study-steps".into(),
            "4".into(),
            "--tsne-chains".into(),
            "2".into(),
            "--reference-images".into(),
            "1000".into(),
            "--prior-draws".into(),
            "20".into(),
            "--generator-study".into(),
            d.join("study").to_str().unwrap().into(),
            "--quiet".into(),
        ]
    };
    let cache = d.join("cache");
    let run = |out: &str, cached: bool| {
        let mut a = args(out);
        if cached {
            a.extend(["--cache".into(), cache.to_str().unwrap().into()]);
        }
        let o = ppgn(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run("a", false);
    run("b", true);
    // b kept every row; c reads them: a kept row changed by hand shows
    // up, a kept row of another seed and an unreadable one are sampled
    // again
    let kept = |f: &str| cache.join(f);
    let count = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(count, 2 * 2 * 13, "a row and a grid per sampler and budget");
    let mut edit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kept("16-ppgn-joint-prior.json")).unwrap()).unwrap();
    edit["row"]["scores"]["frechet_distance"] = 12345.0.into();
    std::fs::write(kept("16-ppgn-joint-prior.json"), edit.to_string()).unwrap();
    let mut other: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kept("16-mala.json")).unwrap()).unwrap();
    other["key"]["seed"] = 7.into();
    other["row"]["scores"]["frechet_distance"] = 12345.0.into();
    std::fs::write(kept("16-mala.json"), other.to_string()).unwrap();
    std::fs::write(kept("32-ppgn-joint-prior.json"), "{\"key\": ").unwrap();
    run("c", true);
    let md = std::fs::read_to_string(d.join("a/results.md")).unwrap();
    for section in [
        "Samplers at 16 gradient evaluations",
        "Samplers at 32 gradient evaluations",
        "eps1 sweep (Fig. S23)",
        "eps3 sweep (Fig. S15)",
        "Mixing from the same start (Fig. S13)",
        "robustness to noise in h (Fig. S16)",
        "t-SNE grid of one class (Fig. S11)",
        "The papers' claims, checked",
        "| real test images |",
        "| G(E(x)) of the same test images (no sampling) |",
        "The exact samplers against their bar",
        "MALA and HMC give realistic images without clipping (flow prior)",
        "How the presets' values were chosen",
        "## The priors alone",
        "| G(E(x)) of the test images |",
        "| score prior (reverse diffusion, eps2 = 0) |",
        "| flow prior (exact-mala, eps2 = 0, one step) |",
        "The generator (Fig. S8's loss ablation)",
        "| shipped (chosen) (shipped) |",
    ] {
        assert!(md.contains(section), "results.md lacks {section:?}");
    }
    // every image the Markdown links exists; the samplers' grids are
    // enlarged (2 columns of 56-pixel cells and the padding between)
    for link in md.split("](").skip(1) {
        let path = &link[..link.find(')').unwrap()];
        assert!(d.join("a").join(path).exists(), "missing {path}");
    }
    let png = std::fs::read(d.join("a/results/ppgn-joint-prior-16.png")).unwrap();
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 2 * 56 + 3 * 2);
    let json = |out: &str| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.join(out).join("results/results.json")).unwrap(),
        )
        .unwrap();
        v.as_object_mut().unwrap().remove("command");
        v
    };
    let (a, b, mut c) = (json("a"), json("b"), json("c"));
    assert_eq!(a, b, "a rerun with the same seed gives other numbers");
    let fd = |v: &serde_json::Value, t: usize, label: &str| -> f64 {
        let rows = v["budgets"][t]["rows"].as_array().unwrap();
        let r = rows.iter().find(|r| r["label"] == label).unwrap();
        r["scores"]["frechet_distance"].as_f64().unwrap()
    };
    assert_eq!(
        fd(&c, 0, "PPGN (joint prior)"),
        12345.0,
        "the kept row was not read"
    );
    assert_eq!(
        fd(&c, 0, "MALA"),
        fd(&a, 0, "MALA"),
        "a row of another seed was read"
    );
    assert_eq!(
        fd(&c, 1, "PPGN (joint prior)"),
        fd(&a, 1, "PPGN (joint prior)")
    );
    let ppgn_16 = c["budgets"][0]["rows"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["label"] == "PPGN (joint prior)")
        .unwrap();
    ppgn_16["scores"]["frechet_distance"] = fd(&a, 0, "PPGN (joint prior)").into();
    // the claims and the bar read the edited number; everything else is a's
    let mut a_rest = a.clone();
    for v in [&mut a_rest, &mut c] {
        let o = v.as_object_mut().unwrap();
        o.remove("claims");
        o.remove("bar");
    }
    assert_eq!(
        a_rest, c,
        "rows read from the cache differ from sampled ones"
    );
    let claims = a["claims"].as_array().unwrap();
    assert!(claims.len() >= 10, "{} claims", claims.len());
    for c in claims {
        assert!(c["supported"].is_boolean() && !c["measured"].as_str().unwrap().is_empty());
    }
    // the thirteen samplers of eval::protocol, ppgn-x the last; each row
    // runs its preset, the flow presets' start candidates capped to leave
    // a step in the small budgets here, every candidate counted
    let rows = a["budgets"][1]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 13);
    assert_eq!(rows[10]["label"], "Reverse diffusion, score prior");
    assert_eq!(rows[12]["label"], "PPGN-x (pixel DAE prior)");
    check_bar(&a);
    for table in a["budgets"].as_array().unwrap() {
        let budget = table["grad_evals"].as_u64().unwrap();
        for row in table["rows"].as_array().unwrap() {
            if row["config"]["prior"] == "flow" {
                let want = preset(row["config"]["preset"].as_str().unwrap()).unwrap();
                assert_eq!(row["config"]["eps2"], want.eps2);
                let k = row["config"]["start_candidates"].as_u64().unwrap() as usize;
                assert_eq!(
                    k,
                    want.start_candidates
                        .min(budget as usize - want.grads_per_step())
                );
                let evals = row["grad_evals_per_chain"].as_u64().unwrap();
                assert!(
                    evals <= budget + 1 && evals + 10 > budget,
                    "{evals} of {budget}"
                );
            }
        }
    }
    // the priors alone: 20 draws each beside G(E(x)) of 20 test images
    assert_eq!(a["priors"]["draws"], 20);
    assert_eq!(a["priors"]["rows"].as_array().unwrap().len(), 2);
    assert!(!d.join("a/.results.partial").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn report_and_tsne_refuse_bad_input_with_one_line() {
    let d = tempdir("report-bad");
    for (args, needle) in [
        (vec!["report", "--budgets", "0"], "budgets = [0]"),
        (vec!["report", "--per-class", "1"], "per_class at least 2"),
        (vec!["report", "--tsne-class", "hat"], "hat"),
        (
            vec!["report", "--generator-study", d.to_str().unwrap()],
            "no finished generators",
        ),
        (vec!["viz", "tsne", d.to_str().unwrap()], "samples.npy"),
    ] {
        let mut a = args.clone();
        let out = d.join("out");
        if a[0] == "report" {
            a.extend(["--out", out.to_str().unwrap()]);
        }
        let o = ppgn(&a);
        assert!(!o.status.success(), "{a:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{a:?}: {err}");
        assert!(!out.exists(), "{a:?} wrote {}", out.display());
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// `ppgn viz tsne` on a run folder the test writes with `ppgn sample`.
#[test]
fn viz_tsne_lays_out_a_run() {
    let d = tempdir("viz-tsne");
    let run = d.join("run");
    let o = ppgn(&[
        "sample",
        "--class",
        "bag,sneaker",
        "--chains",
        "4",
        "--steps",
        "4",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ppgn(&[
        "viz",
        "tsne",
        run.to_str().unwrap(),
        "--class",
        "bag",
        "--perplexity",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(run.join("tsne.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // 4 bag samples: a 2 x 2 grid of 28-pixel cells with 1-pixel gaps
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(w, 2 * 28 + 3);
    std::fs::remove_dir_all(&d).unwrap();
}

/// The report's generator study always has the shipped generator as a
/// row: added unless a study folder holds the same weights.
#[test]
fn the_generator_study_compares_against_the_shipped_generator() {
    use ppgn::eval::generators::with_shipped;
    let d = tempdir("with-shipped");
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    let copy = d.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["generator.safetensors", "generator.json"] {
        std::fs::copy(models.join(f), copy.join(f)).unwrap();
    }
    let same = with_shipped(vec![copy.clone()], Some(&models)).unwrap();
    assert_eq!(same, std::slice::from_ref(&copy));
    // another generator (its card names other weights): the shipped one joins
    let card = std::fs::read_to_string(copy.join("generator.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&card).unwrap();
    v["weights_sha256"] = "0".repeat(64).into();
    std::fs::write(copy.join("generator.json"), v.to_string()).unwrap();
    let both = with_shipped(vec![copy.clone()], Some(&models)).unwrap();
    assert_eq!(both, [copy, models]);
    std::fs::remove_dir_all(&d).unwrap();
}

/// The exact samplers' bar in results.json: G(E(x)) and both exact rows at
/// each budget, each verdict the one its numbers give.
fn check_bar(a: &serde_json::Value) {
    let bar = a["bar"].as_array().unwrap();
    let budgets = a["budgets"].as_array().unwrap();
    assert_eq!(bar.len(), 1 + 2 * budgets.len());
    assert!(bar[0]["grad_evals"].is_null() && bar[0]["frechet_ok"].is_null());
    let ms_bar = a["real_mean_ms_ssim"].as_f64().unwrap() + 0.05;
    // G(E(x)): the reconstructions' own numbers and verdicts
    let g = &a["reconstructed"];
    let g_acc = g["evaluator_accuracy"].as_f64().unwrap();
    let per_class = g["ms_ssim_per_class"].as_object().unwrap();
    let g_ms =
        per_class.values().map(|v| v.as_f64().unwrap()).sum::<f64>() / per_class.len() as f64;
    assert_eq!(bar[0]["recognised"].as_f64().unwrap(), g_acc);
    assert_eq!(bar[0]["recognised_ok"].as_bool().unwrap(), g_acc >= 0.85);
    assert!((bar[0]["ms_ssim"].as_f64().unwrap() - g_ms).abs() < 1e-12);
    assert_eq!(bar[0]["ms_ssim_ok"].as_bool().unwrap(), g_ms <= ms_bar);
    for b in &bar[1..] {
        let table = budgets
            .iter()
            .find(|t| t["grad_evals"] == b["grad_evals"])
            .unwrap();
        let row = |label: &str| {
            table["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["label"] == label)
                .unwrap()
                .clone()
        };
        let r = row(b["label"].as_str().unwrap());
        let acc = r["scores"]["evaluator_accuracy"].as_f64().unwrap();
        let ms = r["mean_ms_ssim"].as_f64().unwrap();
        let fd = r["scores"]["frechet_distance"].as_f64().unwrap();
        let ppgn = row("PPGN (joint prior)")["scores"]["frechet_distance"]
            .as_f64()
            .unwrap();
        assert_eq!(b["recognised"].as_f64().unwrap(), acc);
        assert_eq!(b["recognised_ok"].as_bool().unwrap(), acc >= 0.85);
        assert_eq!(b["ms_ssim_ok"].as_bool().unwrap(), ms <= ms_bar);
        assert_eq!(b["frechet_ok"].as_bool().unwrap(), fd < ppgn);
    }
}

/// `ppgn presets choose` applies a tuned preset's rule without ever
/// reading the evaluator: in a model folder whose evaluator weights are
/// truncated (which `ppgn sample` refuses to load), it runs every
/// candidate, picks the one its rule picks from the numbers it writes,
/// and says whether the preset holds it.
#[test]
fn choosing_a_presets_values_never_loads_the_evaluator() {
    let d = tempdir("choose");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    let models = d.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for net in ["classifier", "generator", "code-score", "evaluator"] {
        for ext in ["json", "safetensors"] {
            let f = format!("{net}.{ext}");
            std::fs::copy(shipped.join(&f), models.join(&f)).unwrap();
        }
    }
    let w = models.join("evaluator.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..1000]).unwrap();
    let m = models.to_str().unwrap();
    let sample = ppgn(&[
        "sample",
        "--class",
        "0",
        "--chains",
        "1",
        "--steps",
        "1",
        "--models",
        m,
        "-q",
        "--out",
        d.join("run").to_str().unwrap(),
    ]);
    assert!(!sample.status.success(), "the truncated evaluator loads");
    let out = d.join("choice");
    let o = ppgn(&[
        "presets",
        "choose",
        "--preset",
        "ppgn-score",
        "--per-class",
        "2",
        "--budget",
        "8",
        "--models",
        m,
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("choices.json")).unwrap()).unwrap();
    let ch = &c["choices"][0];
    let cands = ch["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 4);
    let acc: Vec<f64> = cands
        .iter()
        .map(|c| c["guide_accuracy"].as_f64().unwrap())
        .collect();
    let fd: Vec<f64> = cands
        .iter()
        .map(|c| c["guide_frechet"].as_f64().unwrap())
        .collect();
    let real = c["validation_guide_accuracy"].as_f64().unwrap();
    let picked = ppgn::run::config::tuning::pick(&acc, &fd, real).unwrap();
    assert_eq!(ch["chosen"].as_u64().unwrap() as usize, picked);
    let eps2 = cands[picked]["values"][0][1].as_f64().unwrap();
    let current = ppgn::run::config::preset::preset("ppgn-score")
        .unwrap()
        .eps2;
    assert_eq!(
        ch["holds"].as_bool().unwrap(),
        eps2 == current,
        "ppgn-score has eps2 = {current}"
    );
    assert!(std::fs::read_to_string(out.join("choices.md"))
        .unwrap()
        .contains("(chosen)"));
    let bad = ppgn(&["presets", "choose", "--preset", "faces", "--models", m]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("ppgn-score") && err.lines().count() == 1,
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
