#!/usr/bin/env bash
# Retrain every lite checkpoint the chapters load, with the project's own command line, and publish each
# into checkpoints/ with its MANIFEST.json entry (tools/add_checkpoint.py reads the run's own config.json,
# metrics.json and log.jsonl). Long on a CPU: run it on a GPU if you have one (the commands are the same).
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short HEAD)
runs=${RUNS:-runs}
note="retrained by checkpoints/train_lite.sh"

videogen-lite train vqvae --config moving_mnist_lite --out "$runs/mnist_vqvae_lite"
# the VQ-VAE chapters (0-5) load these two, trained on 2 CPU cores like the ones the book runs on
videogen-lite train vqvae --config moving_mnist_lite --out "$runs/mnist_vqvae_lite_cpu" --threads 2
videogen-lite train vqvae --config moving_mnist_lite --out "$runs/mnist_vqvae_lite_attention_cpu" --threads 2 \
    vqvae.attention=true
# chapter 5.6's wider VQ-VAE: 128 hidden units, the paper's 512 x 64 codebook, trained on 16x32x32 crops (2 CPU
# cores, about 3 h; the shipped one was trained in two segments, listed under "segments" in MANIFEST.json)
videogen-lite train vqvae --config moving_mnist_lite --out "$runs/mnist_vqvae_w128_crop_cpu" --threads 2 \
    vqvae.n_hiddens=128 vqvae.res_hiddens=64 vqvae.n_codes=512 vqvae.embedding_dim=64 vqvae.train.steps=14000 \
    vqvae.train.lr_decay=cosine "vqvae.train.crop=[16,32,32]"
# chapter 6's live prior learns on the codes of this one: one digit at 32x32, 4x4x4 codes of 128 (2 CPU cores)
videogen-lite train vqvae --config moving_mnist_one_digit --out "$runs/mnist_one_digit_vqvae" --threads 2
videogen-lite train prior --config moving_mnist_lite --vqvae "$runs/mnist_vqvae_lite" --out "$runs/mnist_prior_lite"

videogen-lite data vizdoom --scenario health_gathering_supreme --episodes 300 --length 100 --seed 0 \
    --out data/vizdoom_hgs_lite.h5
videogen-lite train vqvae --config vizdoom_hgs_lite --out "$runs/vizdoom_vqvae_lite"
videogen-lite train prior --config vizdoom_hgs_lite --vqvae "$runs/vizdoom_vqvae_lite" --out "$runs/vizdoom_prior_lite"

for name in mnist_vqvae_lite_cpu mnist_vqvae_lite_attention_cpu mnist_one_digit_vqvae mnist_prior_lite \
    vizdoom_prior_lite; do
  python tools/add_checkpoint.py "$runs/$name" "$name" --commit "$commit" --note "$note"
done
python tools/add_checkpoint.py "$runs/mnist_vqvae_w128_crop_cpu" mnist_vqvae_w128_crop_cpu --half \
    --commit "$commit" --note "$note; stored in float16"
python tools/add_checkpoint.py "$runs/mnist_vqvae_lite" mnist_vqvae_lite --inside mnist_prior_lite \
    --commit "$commit" --note "$note; ships inside mnist_prior_lite"
python tools/add_checkpoint.py "$runs/vizdoom_vqvae_lite" vizdoom_vqvae_lite --inside vizdoom_prior_lite \
    --commit "$commit" --note "$note; ships inside vizdoom_prior_lite"
