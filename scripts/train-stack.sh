#!/usr/bin/env bash
# Trains the whole Fashion-MNIST stack into models/fashion-mnist, in the
# order the networks depend on each other. Each step resumes from its
# checkpoint if killed; rerun this script to continue.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
ppgn=./target/release/ppgn
out=${1:-models/fashion-mnist}
done_() { [ -f "$out/$1.json" ] && [ ! -f "$out/$1.ckpt.json" ]; }
done_ classifier || $ppgn train classifier --out "$out" --models "$out"
done_ evaluator  || $ppgn train evaluator --out "$out" --models "$out"
done_ x-dae      || $ppgn train x-dae --out "$out" --models "$out"
done_ h-dae      || $ppgn train h-dae --out "$out" --models "$out"
# the two code priors on one thread each, as scripts/prior-candidates
# trains them: candle's products at their sizes ran faster so than on two
# with the recipes their rules chose (the shipped cards' commands): the
# whitened flow, the zero-started score model of 180 epochs at training
# levels ln s ~ N(-0.5, 1.2^2), and the
# generator at twice the channels (models/fashion-mnist/README.md)
done_ code-prior || RAYON_NUM_THREADS=1 $ppgn train code-prior --out "$out" --models "$out" --batch-size 256 --whiten
done_ code-score || RAYON_NUM_THREADS=1 $ppgn train code-score --out "$out" --models "$out" --batch-size 256 --epochs 180 --zero-init --noise-mean -0.5
done_ generator  || $ppgn train generator --out "$out" --models "$out" --lr 1e-3 --epochs 8 --size 128 64 32
done_ realness   || $ppgn train realness --out "$out" --models "$out"
$ppgn models check --models "$out" --png docs/reconstructions.png
