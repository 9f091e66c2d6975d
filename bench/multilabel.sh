#!/bin/bash
# Multi-task and multi-label runs (issue 20), run by hand from the repository root, one run at a time, after
#   .venv/bin/python bench/multilabel_data.py tasks && .venv/bin/python bench/multilabel_data.py mosaics
# (a) pacs object + domain as two tasks of one model against two single-task models, same splits and settings;
# (b) linear-probe and the default strategy on 2x2 mosaics, scored on held-out mosaics of unseen photos.
# Table: .venv/bin/python bench/multilabel_table.py
set -e
T=bench/out/pacs-tasks
M=bench/out/pacs-mosaics
OPTIONS=${OPTIONS:-"--size 128 --epochs 3"}
run() {  # OUT ARGS...
  out=$1; shift
  [ -f $out/summary.json ] && return
  /usr/bin/time -f "%e s wall, %M KB peak" .venv/bin/graftcv train "$@" --out $out --overwrite > $out.log 2>&1
  tail -1 $out.log
}
run bench/out/ml-tasks-multi $T/train.csv --val $T/val.csv --test $T/test.csv $OPTIONS
run bench/out/ml-tasks-object $T/object_train.csv --val $T/object_val.csv --test $T/object_test.csv $OPTIONS
run bench/out/ml-tasks-domain $T/domain_train.csv --val $T/domain_val.csv --test $T/domain_test.csv $OPTIONS
run bench/out/ml-mosaic-linear-probe $M/train.csv --test $M/test.csv --strategy linear-probe
run bench/out/ml-mosaic-finetune $M/train.csv --test $M/test.csv --epochs 3
