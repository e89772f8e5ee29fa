#!/usr/bin/env bash
# The offline demo: synthetic scenes -> data set -> a small Mask R-CNN -> its mAP -> a scored photo.
# Everything lands in demo/ (git-ignored). About two and a half minutes on 2 idle CPU cores once
# installed (docs/BENCHMARKS.md, "The demo").
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p demo
cd demo
run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

run officescore sample sample --images "${DEMO_IMAGES:-60}" --size 192 --seed 0
run officescore ingest sample/annotations.json --out dataset
run officescore stats dataset
# A small model from scratch keeps the demo offline; real use fine-tunes the COCO-pretrained default.
# Fewer region proposals than the defaults: the scenes are simple and the CPU is small.
run officescore train --data dataset --arch maskrcnn_resnet18_fpn --weights none --img-size 192 \
  --epochs "${DEMO_EPOCHS:-10}" --batch-size 4 --lr 0.02 --workers 0 --warmup-iters 20 --name demo \
  --model-opt rpn_pre_nms_top_n_train=300,rpn_post_nms_top_n_train=100 \
  --model-opt rpn_pre_nms_top_n_test=300,rpn_post_nms_top_n_test=100 \
  --model-opt box_batch_size_per_image=64,rpn_batch_size_per_image=64
best=$(ls -td runs/train/demo*/weights/best.pt | head -1)
run officescore eval --model "$best" --data dataset --iou 0.3 --name demo
# Score a photo the model never trained on (the first of the val split).
photo=$(python -c 'import json; print("dataset/" + json.load(open("dataset/val.json"))["images"][0]["file_name"])')
run officescore score "$photo" --model "$best" --conf 0.3 --save-dir scored
printf '\nAnnotated photo: demo/scored/ ; run folders: demo/runs/ ; data set report: demo/dataset/health.png\n'
