"""The one fast inference path: every place a model predicts (`score`, `serve`, `eval`, train's
validation) goes through it.

- `capability`: what the hardware does natively (bf16 on CPUs with AVX512-BF16/AMX, fp16 on CUDA)
  and which precision `--precision auto|fp32|bf16|fp16|int8` resolves to.
- `prepare`: inference-time rewrites of a torchvision detector that keep its numbers (BatchNorm
  folded into the convolutions before it, channels_last weights) and, outside exact fp32, fewer RPN
  proposals.
- `winograd`: on CPUs without AVX-512, fp32 3x3 convolutions of the FPN, RPN and conv heads
  through NNPACK's Winograd kernels where they beat oneDNN (large maps; proposals tiled into one).
- `run`: one forward pass with the caller's threshold pushed into the model (the mask head and mask
  pasting run on kept detections only) under the chosen autocast.
"""

from officescore.infer.accel.capability import (
    FAST_PROPOSALS,
    PRECISIONS,
    native_bf16_cpu,
    proposals_for,
    resolve_precision,
)
from officescore.infer.accel.prepare import fold_batchnorm, prepare_model
from officescore.infer.accel.run import forward

__all__ = [
    "FAST_PROPOSALS",
    "PRECISIONS",
    "fold_batchnorm",
    "forward",
    "native_bf16_cpu",
    "prepare_model",
    "proposals_for",
    "resolve_precision",
]
