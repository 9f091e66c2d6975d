#!/bin/bash
# Domain adaptation on PACS (issue 18), run by hand from the repository root, one run at a time:
#   bench/adapt.sh [SEEDS] [METHODS] [TARGETS]   e.g. bench/adapt.sh "0 1 2" "source-only dann mmd coral self-training" "art_painting cartoon"
# Source: pacs/photo (labelled); target: the other domain's images, unlabelled for training, their labels used
# only to score (the usual transductive protocol). Same size and budget for every method.
# Table: .venv/bin/python bench/adapt_table.py bench/out/adapt-*/adaptation.json
set -e
SEEDS=${1:-"0 1 2"}
METHODS=${2:-"source-only dann mmd coral self-training"}
TARGETS=${3:-"art_painting cartoon"}
P=../shared/datasets/pacs
# A fixed number of fine-tuning epochs (not --budget): the same work for every method, and a rerun with the same
# seed gives the same numbers whatever else the machine is doing.
OPTIONS=${OPTIONS:-"--size 128 --epochs 5"}
for target in $TARGETS; do
  for seed in $SEEDS; do
    for method in $METHODS; do
      out=bench/out/adapt-$target-$method-$seed
      [ -f $out/adaptation.json ] && continue
      /usr/bin/time -f "%e s wall, %M KB peak" .venv/bin/graftcv adapt $P/photo --target $P/$target \
        --target-labels $P/$target --method $method --seed $seed $OPTIONS --out $out --overwrite > $out.log 2>&1
      tail -2 $out.log
    done
  done
done
