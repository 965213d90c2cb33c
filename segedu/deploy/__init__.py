"""Chapter 8 — deployment: export, fold, quantize, measure, and a network built to be deployed.

* :mod:`~segedu.deploy.export` — ONNX export with a dynamic batch (and H, W where the network
  allows), ONNX Runtime sessions and inference;
* :mod:`~segedu.deploy.fold` — BatchNorm folded into the convolution before it, by hand;
* :mod:`~segedu.deploy.quantize` — INT8 post-training static quantization with ONNX Runtime
  (QDQ, per-channel, calibrated on course data) and a report of what stayed in floating point;
* :mod:`~segedu.deploy.measure` — latency (warm-up, repeats, median and spread, threads
  stated), FLOPs with PyTorch's own counter, parameters, TensorRT availability;
* :mod:`~segedu.deploy.lraspp` — LR-ASPP on MobileNetV3-Large (Howard et al., ICCV 2019,
  Sec. 6.3), torchvision's ``lraspp_mobilenet_v3_large``.

ONNX, ONNX Runtime and onnxscript are optional dependencies (the ``dev`` extra): importing this
package does not need them; the functions that do say what to install.

Layer: chapter 8, above training (7); imports core, backbones, data and earlier chapters only.
"""

from .export import (
    OutputOnly,
    evaluate_onnx,
    export_onnx,
    input_shape,
    onnx_session,
    pspnet_export_size,
    run_onnx,
    size_bound_modules,
)
from .fold import count_batchnorms, fold_batchnorm, fold_conv_bn
from .lraspp import LRASPP, LRASPPHead, lite_aspp, lraspp_mobilenet_v3_large
from .measure import (
    Latency,
    compare_latency,
    conv_cost,
    count_flops,
    machine_info,
    measure_latency,
    network_cost,
    tensorrt_status,
)
from .quantize import (
    Int8Report,
    calibration_images,
    cpu_int8_support,
    int8_report,
    quantize_onnx,
)

__all__ = [
    "OutputOnly",
    "export_onnx",
    "input_shape",
    "onnx_session",
    "run_onnx",
    "evaluate_onnx",
    "pspnet_export_size",
    "size_bound_modules",
    "fold_conv_bn",
    "fold_batchnorm",
    "count_batchnorms",
    "quantize_onnx",
    "calibration_images",
    "int8_report",
    "Int8Report",
    "cpu_int8_support",
    "Latency",
    "measure_latency",
    "compare_latency",
    "machine_info",
    "count_flops",
    "conv_cost",
    "network_cost",
    "tensorrt_status",
    "LRASPP",
    "LRASPPHead",
    "lite_aspp",
    "lraspp_mobilenet_v3_large",
]
