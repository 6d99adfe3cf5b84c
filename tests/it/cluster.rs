//! Sharding on the schedulers people run: the scripts the Slurm and
//! Kubernetes files in `deploy/` call, run here as local processes with the
//! environment each scheduler sets, merge to the unsharded run; `ppgn
//! merge` refuses shards that do not make one run, by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{ppgn, tempdir};

const FLAGS: &str =
    "--class all --chains 3 --steps 6 --record-every 2 --batch 4 --seed 5 --keep-above 0.5";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `deploy/<script>` with the scheduler's variable `var=value`.
fn script(name: &str, runs: &Path, shards: usize, var: Option<(&str, String)>) -> Output {
    let mut c = Command::new("sh");
    c.arg(root().join("deploy").join(name))
        .current_dir(root())
        .env("PPGN_BIN", env!("CARGO_BIN_EXE_ppgn"))
        .env("PPGN_SHARDS", shards.to_string())
        .env("PPGN_RUNS", runs)
        .env("PPGN_SAMPLE_ARGS", FLAGS)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX");
    if let Some((k, v)) = var {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn chains(dir: &Path) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_slice(&read(dir.join("manifest.json"))).unwrap();
    m["chains"].clone()
}

#[test]
fn shards_run_as_the_schedulers_run_them_merge_to_the_unsharded_run() {
    let d = tempdir("cluster");
    let whole = d.join("whole");
    let mut args: Vec<&str> = vec!["sample"];
    args.extend(FLAGS.split(' '));
    args.extend(["--out", whole.to_str().unwrap(), "-q"]);
    ok(&ppgn(&args));
    // a Slurm array (--array=1-3) and a Kubernetes Indexed Job (indices 0..2)
    let slurm = d.join("slurm");
    let k8s = d.join("k8s");
    for k in 1..=3 {
        ok(&script(
            "run-shard.sh",
            &slurm,
            3,
            Some(("SLURM_ARRAY_TASK_ID", k.to_string())),
        ));
        ok(&script(
            "run-shard.sh",
            &k8s,
            3,
            Some(("JOB_COMPLETION_INDEX", (k - 1).to_string())),
        ));
    }
    // a requeued task whose shard is done does nothing
    ok(&script(
        "run-shard.sh",
        &slurm,
        3,
        Some(("SLURM_ARRAY_TASK_ID", "2".into())),
    ));
    for runs in [&slurm, &k8s] {
        ok(&script("merge.sh", runs, 3, None));
        let merged = runs.join("merged");
        for f in ["samples.npy", "labels.npy", "shown.npy", "kept.npy"] {
            assert!(read(whole.join(f)) == read(merged.join(f)), "{f} differs");
        }
        assert_eq!(chains(&whole), chains(&merged));
        assert!(merged.join("grid.png").exists() && merged.join("chains.gif").exists());
    }
    // the shards split at batch boundaries: 30 chains in 8 batches of 4
    let sizes: Vec<usize> = (1..=3)
        .map(|k| {
            chains(&slurm.join(format!("shard-{k}-of-3")))
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, vec![8, 12, 10]);
    // without a scheduler's variable the script says what is missing
    let o = script("run-shard.sh", &slurm, 3, None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("SLURM_ARRAY_TASK_ID"));
    refusals(&d, &slurm);
}

/// The scheduler files call the scripts tested above.
#[test]
fn the_scheduler_files_run_the_tested_scripts() {
    let text = |p: &str| String::from_utf8(read(root().join(p))).unwrap();
    let array = text("deploy/slurm/sample-array.sbatch");
    assert!(array.contains("run-shard.sh") && array.contains("--requeue"));
    assert!(text("deploy/slurm/merge.sbatch").contains("merge.sh"));
    let submit = text("deploy/slurm/submit.sh");
    assert!(submit.contains("--array=\"1-$n\"") && submit.contains("--dependency=\"afterok:"));
    let job = text("deploy/k8s/sample-indexed-job.yaml");
    for s in [
        "completionMode: Indexed",
        "run-shard.sh",
        "ReadWriteMany",
        "kubectl wait --for=condition=complete",
    ] {
        assert!(job.contains(s), "the Indexed Job lacks {s:?}");
    }
    assert!(text("deploy/k8s/merge-job.yaml").contains("merge.sh"));
}

/// Merging what is not one run is refused by name, leaving nothing.
fn refusals(d: &Path, slurm: &Path) {
    let shard = |k: usize| slurm.join(format!("shard-{k}-of-3"));
    let out = d.join("bad-merge");
    let merge = |runs: &[PathBuf]| -> String {
        let mut a = vec!["merge".to_string()];
        a.extend(runs.iter().map(|p| p.display().to_string()));
        a.extend(["--out".into(), out.display().to_string()]);
        let o = ppgn(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!o.status.success());
        assert!(!out.exists());
        let e = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        e
    };
    let e = merge(&[shard(1), shard(2)]);
    assert!(e.contains("shard 3/3 is missing"), "{e}");
    let e = merge(&[shard(1), shard(2), shard(2), shard(3)]);
    assert!(e.contains("shard 2/3 given twice"), "{e}");
    let other = d.join("other-seed");
    let mut args: Vec<&str> = vec!["sample"];
    let flags = FLAGS.replace("--seed 5", "--seed 6");
    args.extend(flags.split(' '));
    args.extend(["--shard", "3/3", "--out", other.to_str().unwrap(), "-q"]);
    ok(&ppgn(&args));
    let e = merge(&[shard(1), shard(2), other.clone()]);
    assert!(
        e.contains("other-seed") && e.contains("seed differs"),
        "{e}"
    );
    let e = merge(&[shard(1), shard(2), d.to_path_buf()]);
    assert!(e.contains("manifest.json"), "{e}");
}
