//! The Markdown table of a `ppgn bench` sitting (`super`): ours and the
//! peer's times, GFLOP/s and fraction of the machine's peak, and each
//! profiled row's time by op kind.

use super::{Peak, StepProfile, Timing};

/// `row`'s GFLOP/s at `ms` per step, and as a fraction of `peak`, when
/// its step's operations were counted.
pub(super) fn achieved(
    flops_per_step: Option<f64>,
    ms: f64,
    peak: Option<&Peak>,
) -> (String, String) {
    match flops_per_step {
        Some(f) => {
            let g = f / (ms / 1000.0) / 1e9;
            let of = peak.map_or("-".into(), |p| format!("{:.0}%", 100.0 * g / p.gflops));
            (format!("{g:.1}"), of)
        }
        None => ("-".into(), "-".into()),
    }
}

/// The Markdown table of a sitting: ours, and the peer's beside it, each
/// with its GFLOP/s (the operations counted in our step, which the peer's
/// step does too) and its fraction of the machine's `peak`.
pub fn markdown(
    ours: &[Timing],
    peer: Option<&[Timing]>,
    peak: Option<&Peak>,
    (threads, rounds): (usize, usize),
    command: &str,
) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut t = format!(
        "# Sampler-step timings\n\nWritten by `{}`. Machine: {cpu}, {threads} threads (ours and PyTorch's `torch.set_num_threads`){}{}. Each time is the median of {} measurements (with the peer: ours and its alternating); peak memory is the largest. GFLOP/s divides the floating-point operations counted in our step (forward and input gradient; a multiply-add is two; a convolution as its direct sum, also where ours takes Winograd's fewer products) by each side's time. Times vary from run to run; compare ratios from one sitting.\n\n",
        command,
        peer.and_then(|p| p.first())
            .and_then(|r| r.torch.as_ref())
            .map(|v| format!("; the peer ran PyTorch {v}"))
            .unwrap_or_default(),
        peak.map(|p| format!(
            "; the machine's peak, measured by the bench (a loop of {} fused multiply-adds on the same threads), {:.0} GFLOP/s",
            p.vector, p.gflops
        ))
        .unwrap_or_default(),
        rounds
    );
    if peer.is_some() {
        t += "| workload | chains | GFLOP/step | ours ms/step | PyTorch ms/step | ours / PyTorch | ours GFLOP/s | ours of peak | PyTorch GFLOP/s | PyTorch of peak | ours peak MB | PyTorch peak MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    } else {
        t += "| workload | chains | GFLOP/step | ms/step | GFLOP/s | of peak | steps/s per chain | peak MB |\n|---|---|---|---|---|---|---|---|\n";
    }
    for r in ours {
        let per_chain = 1000.0 / r.ms_per_step * r.chains as f64;
        let per_step = r
            .flops_per_step
            .map_or("-".into(), |f| format!("{:.3}", f / 1e9));
        let (g, of) = achieved(r.flops_per_step, r.ms_per_step, peak);
        match peer {
            Some(p) => {
                let q = p
                    .iter()
                    .find(|q| q.workload == r.workload && q.chains == r.chains);
                let (pm, ratio, pp, (pg, pof)) = match q {
                    Some(q) => (
                        format!("{:.1}", q.ms_per_step),
                        format!("{:.2}", r.ms_per_step / q.ms_per_step),
                        format!("{:.0}", q.peak_mb),
                        achieved(r.flops_per_step, q.ms_per_step, peak),
                    ),
                    None => ("-".into(), "-".into(), "-".into(), ("-".into(), "-".into())),
                };
                t += &format!(
                    "| {} | {} | {per_step} | {:.1} | {pm} | {ratio} | {g} | {of} | {pg} | {pof} | {:.0} | {pp} |\n",
                    r.workload, r.chains, r.ms_per_step, r.peak_mb
                );
            }
            None => {
                t += &format!(
                    "| {} | {} | {per_step} | {:.1} | {g} | {of} | {per_chain:.2} | {:.0} |\n",
                    r.workload, r.chains, r.ms_per_step, r.peak_mb
                )
            }
        }
    }
    for r in ours {
        if let Some(p) = &r.profile {
            t += &profile_markdown(r, p, peak);
        }
    }
    t
}

/// One row's profile as a table: each op kind's share of the profiled
/// step, its milliseconds and GFLOP/s, and the time outside the engine.
fn profile_markdown(r: &Timing, p: &StepProfile, peak: Option<&Peak>) -> String {
    let mut t = format!(
        "\n### {} at {} chains: where a step's time goes\n\nA profiled step (every op timed) took {:.1} ms.\n\n| op | pass | calls | ms | share | GFLOP/s | of peak |\n|---|---|---|---|---|---|---|\n",
        r.workload, r.chains, p.ms_per_step
    );
    let mut engine = 0.0;
    for o in &p.ops {
        let ms = o.entry.seconds * 1000.0;
        engine += ms;
        let flops = (o.entry.flops > 0).then_some(o.entry.flops as f64);
        let (g, of) = achieved(flops, ms, peak);
        t += &format!(
            "| {} | {} | {} | {ms:.2} | {:.0}% | {g} | {of} |\n",
            o.kind,
            if o.backward { "backward" } else { "forward" },
            o.entry.calls,
            100.0 * ms / p.ms_per_step
        );
    }
    let rest = (p.ms_per_step - engine).max(0.0);
    t += &format!(
        "| outside the engine | | | {rest:.2} | {:.0}% | | |\n",
        100.0 * rest / p.ms_per_step
    );
    t
}
