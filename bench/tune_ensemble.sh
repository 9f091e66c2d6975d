#!/usr/bin/env bash
# Issue 21 protocol: one stratified 70/15/15 split per set, every row at 128 px on EfficientNet-Lite0 unless named:
# default train, TTA, Lite1 and Lite2, ensembles of Lite0/1/2, snapshots, bagging, tune --budget 20m, preset best.
# Raw files: bench/out/issue21/SET/. Run alone (2 cores): bash bench/tune_ensemble.sh [flowers5 pacs/art_painting]
# ROWS="tune preset-best" runs only those rows (default: all); finished train/tune rows are kept.
set -euo pipefail
G=.venv/bin/graftcv
SETS=("$@"); [ ${#SETS[@]} -gt 0 ] || SETS=(flowers5 pacs/art_painting)
for SET in "${SETS[@]}"; do
  NAME=$(basename "$SET"); S=bench/out/splits21/$NAME; O=bench/out/issue21/$NAME
  mkdir -p "$O"
  [ -f "$S/test.csv" ] || .venv/bin/python bench/splits.py "../shared/datasets/$SET" --out "$S" --val 0.15 --test 0.15
  T=("$S/train.csv" --val "$S/val.csv" --test "$S/test.csv" --size 128)
  want() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }
  step() { local name=$1; shift; local t0=$(date +%s.%N); "$@" > "$O/$name.log" 2>&1;
           echo "$name $(echo "$(date +%s.%N) - $t0" | bc)" | tee -a "$O/seconds.txt"; }
  want default && { [ -f "$O/default/summary.json" ] || step default $G train "${T[@]}" --out "$O/default" --overwrite; }
  want eval-plain && { step eval-plain $G evaluate "$O/default/model" "$S/test.csv" --runtime torch --out "$O/eval-plain"; }
  want eval-flip && { step eval-flip $G evaluate "$O/default/model" "$S/test.csv" --runtime torch --tta flip --out "$O/eval-flip"; }
  want eval-flipcrops && { step eval-flipcrops $G evaluate "$O/default/model" "$S/test.csv" --runtime torch --tta flip-crops --out "$O/eval-flipcrops"; }
  want lite1 && { [ -f "$O/lite1/summary.json" ] || step lite1 $G train "${T[@]}" --model tf_efficientnet_lite1 --out "$O/lite1" --overwrite; }
  want lite2 && { [ -f "$O/lite2/summary.json" ] || step lite2 $G train "${T[@]}" --model tf_efficientnet_lite2 --out "$O/lite2" --overwrite; }
  want ens-learned && { step ens-learned $G ensemble "$O/default" "$O/lite1" "$O/lite2" --out "$O/ens-learned" --overwrite; }
  want ens-equal && { step ens-equal $G ensemble "$O/default" "$O/lite1" "$O/lite2" --weights equal --out "$O/ens-equal" --overwrite; }
  want ens-learned-flip && { step ens-learned-flip $G evaluate "$O/ens-learned/model" "$S/test.csv" --runtime torch --tta flip --out "$O/eval-ens-flip"; }
  want snapshots && { [ -f "$O/snapshots/summary.json" ] || step snapshots $G train "${T[@]}" --snapshots 3 --out "$O/snapshots" --overwrite; }
  want bagging && { [ -f "$O/bagging/summary.json" ] || step bagging $G train "${T[@]}" --bagging 3 --out "$O/bagging" --overwrite; }
  want tune && { [ -f "$O/tune/summary.json" ] || step tune $G tune "${T[@]}" --budget 20m --out "$O/tune"; }
  want preset-best && { [ -f "$O/preset-best/summary.json" ] || step preset-best $G train "${T[@]}" --preset best --budget 20m --out "$O/preset-best" --overwrite; }
  want tune-top3 && [ -f "$O/tune/trials.json" ] && { step tune-top3 $G ensemble $(.venv/bin/python -c "
import json; rows = json.load(open('$O/tune/trials.json'))
done = sorted((r for r in rows if r['state'] == 'complete' and r.get('run_dir')), key=lambda r: -r['value'])
print(' '.join(list(dict.fromkeys(r['run_dir'] for r in done))[:3]))") --out "$O/tune-top3" --overwrite; }
  if want preset-fast && [ "$NAME" = flowers5 ]; then  # ~1,000 training images, a cold feature cache
    awk 'NR % 3 == 1' "$S/train.csv" > "$S/train1000.csv"
    GRAFTCV_CACHE=$(mktemp -d) step preset-fast $G train "$S/train1000.csv" --val "$S/val.csv" --test "$S/test.csv" --preset fast --out "$O/preset-fast" --overwrite
  fi
done
