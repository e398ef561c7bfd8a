#!/usr/bin/env bash
# The performance table's accelerator rows, in one run (docs/performance.md):
# bench.py --all with real MNIST; the SIREN without the scan that suits CPUs,
# at batch 64 and 256, with and without rematerialisation; conv_mnist and vgon_mnist
# at 100 steps a call (performance.steps_per_call); the eager PyTorch reference on the
# same device. Under 10 minutes on one GPU.
#
#   bash benchmarks/accelerator.sh MNIST_IDX_FOLDER
set -uo pipefail
cd "$(dirname "$0")/.."
data=(--data "--data_dir=$1")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import jax; print("jax", jax.__version__, jax.devices())'
python3 benchmarks/bench.py --all "${data[@]}"
python3 benchmarks/bench.py --config configs/siren_mnist.py --config.performance.scan_chunk=0 --steps 50 "${data[@]}"
for args in "--config.batch_size=64" "--config.batch_size=256" \
            "--config.batch_size=64 --config.performance.remat=True" "--config.batch_size=256 --config.performance.remat=True"; do
  python3 benchmarks/bench.py --config configs/siren_mnist.py --config.performance.scan_chunk=0 --steps 30 $args
done
for config in conv_mnist vgon_mnist; do
  python3 benchmarks/bench.py --config "configs/$config.py" --config.performance.steps_per_call=100 --steps 5000 --warmup 200
done
python3 benchmarks/pytorch_reference.py --model conv --norm batch --steps 100
python3 benchmarks/pytorch_reference.py --model conv --norm layer --steps 100
python3 benchmarks/pytorch_reference.py --model siren --steps 30
