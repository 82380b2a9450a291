#!/usr/bin/env bash
# Every GPU figure of the README's "Speed on a GPU" section, in one call (about 8 minutes on an
# H100), for a machine lent through the `device` tool (see ../shared/GPU.md): run from the
# repository root; results go to $OUT (default /tmp/gpu) as one log per check.
#
#     bash benchmarks/gpu.sh
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/gpu}
mkdir -p "$OUT"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/card.txt" 2>&1

# 1. inversion at equal iterations: reference, layerscope, the bare captured step (fp32, bf16)
timeout 180 $py benchmarks/inversion.py --device cuda --iterations 100 > "$OUT/inversion.txt" 2>&1
timeout 120 $py benchmarks/inversion.py --device cuda --iterations 100 --precision bf16 \
    > "$OUT/inversion-bf16.txt" 2>&1

# 2. ResNet-50, 4 images × 6 stages, 500 steps at 299 px: the study prints its descent time
timeout 240 $py -m layerscope depth --device cuda --model resnet50 --size 299 --iterations 500 \
    --image chelsea,astronaut,coffee,rocket --layers conv1,maxpool,layer1,layer2,layer3,layer4 \
    --compile auto --out "$OUT/r50" > "$OUT/depth-r50.txt" 2>&1
$py - "$OUT/r50/config.json" >> "$OUT/depth-r50.txt" 2>&1 <<'EOF'
import json, sys
print(json.load(open(sys.argv[1])).get("step"))
EOF

# 3. training: bare bf16 + channels_last loop vs layerscope at bf16 (ResNet-50, batch 128)
timeout 180 $py benchmarks/training.py --device cuda --batches 20 > "$OUT/training.txt" 2>&1

# 4. generation: batched vs the reference's one at a time
timeout 120 $py benchmarks/generation.py --device cuda --size 224 > "$OUT/generation.txt" 2>&1
ls -la "$OUT"
