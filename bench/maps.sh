#!/bin/bash
# Class-map benchmarks of issue 17, run by hand from the repository root: bench/maps.sh dubai|large|eurosat
# (one at a time: each is a timed run on this machine). Results: bench/RESULTS.md, "Class maps of large scenes".
set -e
mkdir -p bench/out
G=.venv/bin/graftcv
D=../shared/datasets/dubai_aerial
timed() { /usr/bin/time -f "%e s wall, %M KB peak" "$@"; }

dubai() {
  set -x
  [ -d bench/out/dubai_tiles ] || .venv/bin/python bench/dubai_tiles.py --out bench/out/dubai_tiles
  T=bench/out/dubai_tiles
  [ -d bench/out/dubai-linear-probe/model ] || timed $G train $T/train --val $T/val --size 128 --strategy linear-probe --out bench/out/dubai-linear-probe > bench/out/dubai-linear-probe.log 2>&1
  for s in finetune scratch; do
    [ -d bench/out/dubai-$s/model ] || timed $G train $T/train --val $T/val --size 128 --strategy $s --budget 8m --out bench/out/dubai-$s > bench/out/dubai-$s.log 2>&1
  done
  SCENES=$(ls $D/images/tile[56]_*.jpg)
  for s in linear-probe finetune scratch; do
    M=bench/out/dubai-$s/model
    timed $G map $M $SCENES --tile 64 --mask $D/masks --runtime torch --out bench/out/maps-$s-plain > bench/out/maps-$s-plain.log 2>&1
    timed $G map $M $SCENES --tile 64 --stride 32 --mask $D/masks --runtime torch --out bench/out/maps-$s-half > bench/out/maps-$s-half.log 2>&1
    timed $G map $M $SCENES --tile 64 --refine cam --mask $D/masks --runtime torch --out bench/out/maps-$s-cam > bench/out/maps-$s-cam.log 2>&1
  done
  .venv/bin/python bench/map_table.py bench/out/maps-*/map.json
}

large() {
  set -x
  [ -f bench/out/large_scene.tif ] || .venv/bin/python bench/large_scene.py --out bench/out/large_scene.tif
  M=bench/out/dubai-finetune/model
  [ -f $M/model.onnx ] || $G export $M > bench/out/dubai-export.log 2>&1
  for r in torch onnx; do
    rm -rf bench/out/large-$r
    timed $G map $M bench/out/large_scene.tif --tile 64 --runtime $r --out bench/out/large-$r > bench/out/large-$r.log 2>&1
    tail -3 bench/out/large-$r.log
  done
}

eurosat() {
  set -x
  E=bench/out/eurosat_map
  [ -d $E/train ] || .venv/bin/python bench/eurosat_mosaic.py --out $E
  for s in linear-probe; do
    [ -d bench/out/eurosat-$s/model ] || timed $G train $E/train --strategy $s --out bench/out/eurosat-$s > bench/out/eurosat-$s.log 2>&1
    timed $G map bench/out/eurosat-$s/model $E/mosaic.png --tile 64 --mask $E/mosaic_mask.png --out bench/out/emap-$s-plain > bench/out/emap-$s-plain.log 2>&1
    timed $G map bench/out/eurosat-$s/model $E/mosaic.png --tile 64 --stride 32 --mask $E/mosaic_mask.png --out bench/out/emap-$s-half > bench/out/emap-$s-half.log 2>&1
  done
  .venv/bin/python bench/map_table.py bench/out/emap-*/map.json
}

"$@"
