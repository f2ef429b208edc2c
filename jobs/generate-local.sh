#!/usr/bin/env bash
# A small release on this machine's CPU, made the way a GPU node makes one: plan, then `synthfair generate`
# under `accelerate launch` with 2 processes (each writes whole shards), then finalize and check the sums.
# Defaults: the demo's phantom index (`make demo`) and the shipped phantom-64 model; minutes on 2 cores.
#   jobs/generate-local.sh                       # writes demo/generate/
#   OUT=release-test PROCESSES=1 jobs/generate-local.sh
# accelerate 1.15 starts several CPU processes only through torchrun, i.e. with --multi_gpu; with CUDA hidden
# each process gets a CPU (gloo) group. (`--cpu --num_processes 2` starts one process unless MPI is set up.)
set -euo pipefail
INDEX=${INDEX:-demo/index}                                   # from `make demo` (or `synthfair ingest`)
CHECKPOINT=${CHECKPOINT:-src/synthfair/pretrained/phantom-64}  # a run directory or a model directory
OUT=${OUT:-demo/generate}
PROCESSES=${PROCESSES:-2}
STEPS=${STEPS:-10}
RELEASE=$OUT/release
mkdir -p "$OUT"

# a small plan: 8 test-split subjects, each with its factual image, its reconstruction and counterfactuals
if [ ! -f "$OUT/plan.yaml" ]; then
  cat > "$OUT/plan.yaml" <<'SPEC'
seed: 0
shard_size: 16
select:
  splits: [test]
  limit: 8
interventions:
  - sex: flip
  - age: [25, 85]
  - findings.cardiomegaly: toggle
  - device: [philips, ge]
SPEC
fi
synthfair plan --index "$INDEX" --spec "$OUT/plan.yaml" --out "$OUT/plan.parquet"

# one torch thread per process: the thread count changes the last bits of the model's output on the CPU, so
# keep it fixed to reproduce a release byte for byte
export OMP_NUM_THREADS=1
GENERATE="generate --plan $OUT/plan.parquet --checkpoint $CHECKPOINT --out $RELEASE --steps $STEPS \
  --batch-size 8 --encode-workers 1"
if [ "$PROCESSES" -gt 1 ]; then
  # port 0: torchrun picks a free port
  CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu --num_processes "$PROCESSES" --num_machines 1 \
    --mixed_precision no --dynamo_backend no --main_process_port 0 -m synthfair $GENERATE
else
  synthfair $GENERATE               # accelerate refuses --multi_gpu with a single process
fi

synthfair finalize "$RELEASE"
(cd "$RELEASE" && sha256sum --quiet -c SHA256SUMS && echo "SHA256SUMS: all files verified")
