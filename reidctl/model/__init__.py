"""Conv-Net model layer: backbones, classifier block, descriptors, PCA, checkpoints.

Pure torch (``onnx`` only inside the ONNX loader; OpenVINO IR graphs are read with
``xml.etree`` and numpy). The rest of reidctl calls
:func:`load_model` and :meth:`FeatureExtractor.extract`.
"""

from reidctl.model._util import load_state_dict_strict
from reidctl.model.backbones import (
    GOOGLENET,
    OMZ_0277,
    OMZ_0286,
    OMZ_ENV,
    OSNET_ENV,
    OSNET_X0_25,
    Backbone,
    BackboneSpec,
    build_backbone,
    build_googlenet,
    build_omz,
    build_osnet_x0_25,
    default_omz_dir,
    default_osnet_weights,
)
from reidctl.model.checkpoint import (
    CHECKPOINT_FORMAT,
    ModelRecord,
    load_checkpoint,
    save_checkpoint,
)
from reidctl.model.checkpoint_check import DEFAULT_FINE_WEIGHT
from reidctl.model.convnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ConvNet,
    ConvNetOutput,
    denormalize,
    normalize,
)
from reidctl.model.descriptors import (
    GLOBAL_DIM,
    STRIPES,
    Descriptors,
    describe,
    full_descriptor,
    pool,
)
from reidctl.model.extractor import FeatureExtractor, load_model
from reidctl.model.fingerprint import fingerprint
from reidctl.model.graph_exec import GraphModule, GraphSegment
from reidctl.model.ir_backbone import IrBackbone
from reidctl.model.ir_import import load_ir_module, read_ir_graph
from reidctl.model.ir_ops import IrGraphModule
from reidctl.model.onnx_graph import OnnxGraphModule
from reidctl.model.onnx_import import load_onnx_module, read_onnx_graph
from reidctl.model.pca import PCA

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_FINE_WEIGHT",
    "GLOBAL_DIM",
    "GOOGLENET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OMZ_0277",
    "OMZ_0286",
    "OMZ_ENV",
    "OSNET_ENV",
    "OSNET_X0_25",
    "PCA",
    "STRIPES",
    "Backbone",
    "BackboneSpec",
    "ConvNet",
    "ConvNetOutput",
    "Descriptors",
    "FeatureExtractor",
    "GraphModule",
    "GraphSegment",
    "IrBackbone",
    "IrGraphModule",
    "ModelRecord",
    "OnnxGraphModule",
    "build_backbone",
    "build_googlenet",
    "build_omz",
    "build_osnet_x0_25",
    "default_omz_dir",
    "default_osnet_weights",
    "denormalize",
    "describe",
    "fingerprint",
    "full_descriptor",
    "load_checkpoint",
    "load_ir_module",
    "load_model",
    "load_onnx_module",
    "load_state_dict_strict",
    "normalize",
    "pool",
    "read_ir_graph",
    "read_onnx_graph",
    "save_checkpoint",
]
