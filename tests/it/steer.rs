//! Changes of the settings during a run (`ppgn::run::config::steer`): made live
//! (as `ppgn serve`'s sliders make them), they are recorded in the
//! manifest and replay to the same bits, through a kill and `ppgn sample
//! --resume --out DIR` alone too.

use std::path::Path;

use ppgn::run::config::preset::preset;
use ppgn::run::config::spec::{Init, Networks, Request, SampleSpec};
use ppgn::run::config::steer::Change;
use ppgn::run::drive::shard::Shard;
use ppgn::run::{drive::driver::Record, Progress};

use super::{ppgn, tempdir};

fn spec(out: &Path, changes: Vec<Change>, steps: usize) -> SampleSpec {
    let mut settings = preset("ppgn").unwrap();
    settings.steps = steps;
    settings.changes = changes;
    SampleSpec {
        autotune: false,
        networks: Networks::Fashion {
            models: None,
            guide: None,
        },
        request: Request::classes("coat,sandal"),
        inpaint: None,
        chains: 2,
        settings,
        init: Init::Random,
        data_dir: None,
        seed: 7,
        keep_above: None,
        record_every: 5,
        out: out.to_path_buf(),
        force: false,
        resume: false,
        batch: None,
        shard: Shard::WHOLE,
        scale: Some(1),
        command: "test".into(),
    }
}

/// Makes `changes` at the record of their step (`at`), and asks to stop
/// (as Ctrl-C would) after step `interrupt`.
struct Steering {
    changes: Vec<Change>,
    interrupt: Option<usize>,
    step: usize,
    seen: Vec<(usize, f64)>,
}

impl Progress for Steering {
    fn record(&mut self, r: &Record) -> Vec<Change> {
        self.step = r.step;
        if r.recorded {
            self.seen.push((r.step, r.settings.at_step(r.step).eps2));
        }
        assert_eq!(r.out.condition_value.last().unwrap().len(), 4);
        self.changes
            .iter()
            .filter(|c| c.at == r.step)
            .cloned()
            .collect()
    }
    fn should_stop(&self) -> bool {
        self.interrupt.is_some_and(|s| self.step >= s)
    }
}

fn steer(changes: &[Change], interrupt: Option<usize>) -> Steering {
    Steering {
        changes: changes.to_vec(),
        interrupt,
        step: 0,
        seen: Vec::new(),
    }
}

fn samples(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("samples.npy")).unwrap()
}

fn manifest_changes(dir: &Path) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    m["sampler"]["changes"].clone()
}

#[test]
fn live_changes_are_recorded_and_replay_to_the_same_bits() {
    let d = tempdir("steer");
    let eps2 = Change {
        at: 10,
        eps2: Some(0.2),
        eps1: Some(1e-3),
        ..Change::default()
    };
    let stop = Change {
        at: 20,
        stop: true,
        ..Change::default()
    };
    // live: eps2 changes at step 10, the chains stop at 20
    let mut live = steer(&[eps2.clone(), stop.clone()], None);
    ppgn::run::sample(&spec(&d.join("live"), vec![], 30), &mut live).unwrap();
    assert_eq!(
        live.seen,
        vec![(5, 1.0), (10, 1.0), (15, 0.2), (20, 0.2)],
        "records after the stop"
    );
    assert_eq!(
        manifest_changes(&d.join("live")),
        serde_json::json!([{"at": 10, "eps1": 1e-3, "eps2": 0.2}, {"at": 20, "stop": true}])
    );
    // the same schedule given up front replays it
    let replay = spec(&d.join("replay"), vec![eps2.clone(), stop.clone()], 30);
    ppgn::run::sample(&replay, &mut ppgn::run::Silent).unwrap();
    assert_eq!(samples(&d.join("live")), samples(&d.join("replay")));
    // without the change of weights the samples differ; a stop at 20 is 20 steps
    let stopped = spec(&d.join("stopped"), vec![stop], 30);
    ppgn::run::sample(&stopped, &mut ppgn::run::Silent).unwrap();
    assert_ne!(samples(&d.join("live")), samples(&d.join("stopped")));
    ppgn::run::sample(&spec(&d.join("20"), vec![], 20), &mut ppgn::run::Silent).unwrap();
    assert_eq!(samples(&d.join("stopped")), samples(&d.join("20")));

    // a live change, then an interruption; `--resume --out DIR` alone
    // finishes it to the bits of the uninterrupted run
    let mut once = steer(std::slice::from_ref(&eps2), Some(15));
    let killed = d.join("killed");
    let e = ppgn::run::sample(&spec(&killed, vec![], 30), &mut once).unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    let whole = d.join("whole");
    ppgn::run::sample(&spec(&whole, vec![eps2], 30), &mut ppgn::run::Silent).unwrap();
    let o = ppgn(&[
        "sample",
        "--resume",
        "--out",
        killed.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(samples(&killed), samples(&whole));
    assert_eq!(manifest_changes(&killed), manifest_changes(&whole));
    assert!(!killed.join("resume-spec.json").exists());
}

#[test]
fn a_config_file_gives_the_changes_as_the_manifest_records_them() {
    let d = tempdir("steer-config");
    let path = d.join("changes.toml");
    std::fs::write(
        &path,
        "steps = 30\n[[changes]]\nat = 10\neps2 = 0.2\n[[changes]]\nat = 20\nstop = true\n",
    )
    .unwrap();
    let cfg = ppgn::run::config::settings::overlay_file(preset("ppgn").unwrap(), &path).unwrap();
    let expected = vec![
        Change {
            at: 10,
            eps2: Some(0.2),
            ..Change::default()
        },
        Change {
            at: 20,
            stop: true,
            ..Change::default()
        },
    ];
    assert_eq!(cfg.changes, expected);
    assert_eq!(cfg.last_step(), 20);
    assert_eq!(cfg.at_step(9).eps2, 1.0);
    assert_eq!(cfg.at_step(10).eps2, 0.2);
    std::fs::write(
        &path,
        "[[changes]]\nat = 20\n[[changes]]\nat = 10\neps1 = 1.0\n",
    )
    .unwrap();
    let cfg = ppgn::run::config::settings::overlay_file(preset("ppgn").unwrap(), &path).unwrap();
    let e = ppgn::run::config::settings::validate(&cfg).unwrap_err();
    assert!(e.to_string().contains("in order"), "{e}");
}

#[test]
fn bad_changes_are_refused_before_any_step() {
    let d = tempdir("steer-bad");
    for (c, what) in [
        (
            Change {
                at: 3,
                eps2: Some(f64::NAN),
                ..Change::default()
            },
            "eps2",
        ),
        (
            Change {
                at: 99,
                step: Some(0.1),
                ..Change::default()
            },
            "changes",
        ),
    ] {
        let e = ppgn::run::sample(&spec(&d.join("x"), vec![c], 30), &mut ppgn::run::Silent)
            .unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
        assert!(!d.join("x").exists());
    }
}
