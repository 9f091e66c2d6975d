#!/bin/bash
# Scaling benchmarks of issue 16, run by hand from the repository root: bench/scale.sh ddp|predict|shards
# (one at a time: each is a timed run on this machine). Results: bench/RESULTS.md, "Several processes, shards, predict at scale".
mkdir -p bench/out
ddp() {
  set -x
  D=../shared/datasets/ants_bees
  for n in 1 2; do
    rm -rf /tmp/fresh-ddp$n bench/out/ants-ddp$n
    /usr/bin/time -v env GRAFTCV_CACHE=/tmp/fresh-ddp$n .venv/bin/graftcv train $D --out bench/out/ants-ddp$n --devices $n --accelerator cpu > bench/out/ants-ddp$n.log 2>&1
  done
}
predict() {
  set -x
  F=../shared/datasets/flowers5
  M=bench/out/flowers64/model
  [ -d $M ] || .venv/bin/graftcv train $F --strategy linear-probe --size 64 --out bench/out/flowers64 > bench/out/flowers64.log 2>&1
  [ -f $M/model.onnx ] || .venv/bin/graftcv export $M >> bench/out/flowers64.log 2>&1
  find $(realpath $F) -type f -name '*.jpg' | sort > /tmp/flowers.txt
  python3 -c "
import itertools
paths = open('/tmp/flowers.txt').read().split()
for n in (100000, 20000):
    open(f'/tmp/p{n // 1000}k.txt', 'w').write('\n'.join(itertools.islice(itertools.cycle(paths), n)) + '\n')
"
  rm -rf bench/out/p20k.parquet* bench/out/p100k.parquet*
  /usr/bin/time -v .venv/bin/graftcv predict $M /tmp/p20k.txt --out bench/out/p20k.parquet --workers 2 > bench/out/p20k.log 2>&1
  # killed part-way, then resumed
  setsid .venv/bin/graftcv predict $M /tmp/p100k.txt --out bench/out/p100k.parquet --workers 2 > bench/out/p100k-killed.log 2>&1 &
  PID=$!
  sleep 90; kill -9 -- -$PID; wait
  ls bench/out/p100k.parquet.parts | tee bench/out/p100k-parts-after-kill.txt
  /usr/bin/time -v .venv/bin/graftcv predict $M /tmp/p100k.txt --out bench/out/p100k.parquet --workers 2 > bench/out/p100k-resumed.log 2>&1
  # an uninterrupted 100k run for the rate and the peak memory
  rm -rf bench/out/p100k-full.parquet*
  /usr/bin/time -v .venv/bin/graftcv predict $M /tmp/p100k.txt --out bench/out/p100k-full.parquet --workers 2 > bench/out/p100k-full.log 2>&1
}
shards() {
  F=../shared/datasets/flowers5
  rm -rf /tmp/fresh-f /tmp/fresh-s bench/out/flowers-folder bench/out/flowers-shards bench/out/shards-flowers5
  /usr/bin/time -v env GRAFTCV_CACHE=/tmp/fresh-f .venv/bin/graftcv train $F --out bench/out/flowers-folder > bench/out/flowers-folder.log 2>&1
  /usr/bin/time -v .venv/bin/graftcv shard $F --out bench/out/shards-flowers5 --shard-size 64MB > bench/out/shard-write.log 2>&1
  /usr/bin/time -v env GRAFTCV_CACHE=/tmp/fresh-s .venv/bin/graftcv train bench/out/shards-flowers5 --out bench/out/flowers-shards > bench/out/flowers-shards.log 2>&1
  /usr/bin/time -v .venv/bin/graftcv evaluate bench/out/flowers-folder/model bench/out/shards-flowers5 > bench/out/eval-shards.log 2>&1
}
"${1:?ddp, predict or shards}"
