#!/bin/bash
# Few-shot episodes (issue 19), run by hand from the repository root, one run at a time:
#   bench/fewshot.sh            5-way 1- and 5-shot, 15 queries per class, 600 episodes, every method
# Frozen EfficientNet-Lite0 features at its 224 px, computed once per set (and cached); the same episodes for every
# method (seed 0). flowers5 has 5 classes, so each of its episodes holds all of them.
set -e
D=../shared/datasets
for set in flowers5 sign_digits pacs/photo; do
  out=bench/out/fewshot-${set//\//-}
  [ -f $out/fewshot.json ] && continue
  mkdir -p bench/out
  /usr/bin/time -f "%e s wall, %M KB peak" .venv/bin/graftcv fewshot $D/$set --out $out > $out.log 2>&1
  cat $out/fewshot.md
done
