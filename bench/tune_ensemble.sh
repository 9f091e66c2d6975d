#!/usr/bin/env bash
# Issue 21 protocol: one stratified 70/15/15 split per set, every row at 128 px on EfficientNet-Lite0 unless named:
# default train, TTA, Lite1 and Lite2, ensembles of Lite0/1/2, tune --budget 20m. Raw files: bench/out/issue21/SET/.
# Run alone (2 cores): bash bench/tune_ensemble.sh [flowers5 pacs/art_painting]
set -euo pipefail
G=.venv/bin/graftcv
for SET in "${@:-flowers5 pacs/art_painting}"; do
  NAME=$(basename "$SET"); S=bench/out/splits21/$NAME; O=bench/out/issue21/$NAME
  mkdir -p "$O"
  [ -f "$S/test.csv" ] || .venv/bin/python bench/splits.py "../shared/datasets/$SET" --out "$S" --val 0.15 --test 0.15
  T=("$S/train.csv" --val "$S/val.csv" --test "$S/test.csv" --size 128)
  step() { local name=$1; shift; local t0=$(date +%s.%N); "$@" > "$O/$name.log" 2>&1;
           echo "$name $(echo "$(date +%s.%N) - $t0" | bc)" | tee -a "$O/seconds.txt"; }
  [ -f "$O/default/summary.json" ] || step default $G train "${T[@]}" --out "$O/default" --overwrite
  step eval-plain $G evaluate "$O/default/model" "$S/test.csv" --runtime torch --out "$O/eval-plain"
  step eval-flip $G evaluate "$O/default/model" "$S/test.csv" --runtime torch --tta flip --out "$O/eval-flip"
  step eval-flipcrops $G evaluate "$O/default/model" "$S/test.csv" --runtime torch --tta flip-crops --out "$O/eval-flipcrops"
  [ -f "$O/lite1/summary.json" ] || step lite1 $G train "${T[@]}" --model tf_efficientnet_lite1 --out "$O/lite1" --overwrite
  [ -f "$O/lite2/summary.json" ] || step lite2 $G train "${T[@]}" --model tf_efficientnet_lite2 --out "$O/lite2" --overwrite
  step ens-learned $G ensemble "$O/default" "$O/lite1" "$O/lite2" --out "$O/ens-learned" --overwrite
  step ens-equal $G ensemble "$O/default" "$O/lite1" "$O/lite2" --weights equal --out "$O/ens-equal" --overwrite
  step ens-learned-flip $G evaluate "$O/ens-learned/model" "$S/test.csv" --runtime torch --tta flip --out "$O/eval-ens-flip"
  [ -f "$O/tune/summary.json" ] || step tune $G tune "${T[@]}" --budget 20m --out "$O/tune"
done
