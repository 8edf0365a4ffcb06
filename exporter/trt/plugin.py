"""EXAONE 4 attention as a TensorRT IPluginV3, for shapes and versions the native layers do not serve.

One plugin node per decoder layer computes the `exaone4::Attention` contract
(docs/custom-op.md): RoPE at position_ids (if the layer rotates), the KV-cache
append, and softmax attention over a causal, padding-masked and (on sliding
layers) windowed set of keys. The node's attributes are the plugin's fields:
num_heads, kv_num_heads, head_dim, window (0: global), rope (0/1), scale.

    inputs   query [B, S, H*D], key / value [B, S, KV*D], past_key / past_value [B, KV, P, D],
             cos_table / sin_table [max_pos, D/2], position_ids int64 [B, S], attention_mask int64 [B, P+S]
    outputs  output [B, S, H*D], present_key / present_value [B, KV, P+S, D]

Build time (any machine, TensorRT for RTX builds ahead of time without a GPU):
the creator is registered with `register(trt)`, the ONNX parser turns each
`Exaone4Attention` node into this plugin, and the engine records the fields.
Run time (a GPU): the same creator must be registered before the engine is
deserialized; `enqueue` wraps TensorRT's device pointers as torch CUDA tensors
and runs `attention_math`, the reference model's own `AttentionCore`, on
TensorRT's stream. That makes the plugin a correctness path (the reference math
inside an engine), not a fast kernel: the native attention path
(graphs/lower_trt.py) is the fast one, docs/tensorrt.md says when each is used.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from ..config import LayerKind, LayerSpec
from ..model import AttentionCore
from .provider import torch_dtype

NAME = "Exaone4Attention"
VERSION = "1"
NAMESPACE = ""
INT_FIELDS = ("num_heads", "kv_num_heads", "head_dim", "window", "rope")
INT64_INPUTS = (7, 8)  # position_ids, attention_mask
NUM_INPUTS, NUM_OUTPUTS = 9, 3


def attention_math(fields: dict, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The custom op on torch tensors (any device): the reference model's AttentionCore, configured by the fields."""
    window = fields["window"] or None
    spec = LayerSpec(LayerKind.SLIDING if window else LayerKind.GLOBAL, window, bool(fields["rope"]))
    shape = SimpleNamespace(num_heads=fields["num_heads"], num_kv_heads=fields["kv_num_heads"], head_dim=fields["head_dim"])
    core = AttentionCore(shape, spec)
    core.scale = fields["scale"]
    return core(*inputs)


def fields_from_collection(collection) -> dict:
    """{field name: value} from a PluginFieldCollection handed to `create_plugin`."""
    fields = {}
    for field in collection:
        value = np.asarray(field.data).ravel()
        fields[field.name] = float(value[0]) if field.name == "scale" else int(value[0])
    missing = [name for name in (*INT_FIELDS, "scale") if name not in fields]
    if missing:
        raise ValueError(f"{NAME} plugin: missing fields {', '.join(missing)}")
    return fields


# TensorRT's plugin registry is process-wide and keeps a raw pointer to each creator, so a creator
# must live as long as the process: one per TensorRT module (tensorrt or tensorrt_rtx), kept here.
_REGISTERED: dict[str, object] = {}


def register(trt):
    """Register the creator with TensorRT's plugin registry once per process; returns it."""
    if trt.__name__ not in _REGISTERED:
        creator = _creator_class(trt)()
        if not trt.get_plugin_registry().register_creator(creator, NAMESPACE):
            raise RuntimeError(f"TensorRT refused to register the {NAME} plugin creator (another one has its name?)")
        _REGISTERED[trt.__name__] = creator
    return _REGISTERED[trt.__name__]


def _creator_class(trt):
    """The plugin and creator classes, built on the TensorRT module in use (tensorrt or tensorrt_rtx)."""

    class AttentionPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        def __init__(self, fields: dict) -> None:
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.fields = dict(fields)
            self.num_outputs = NUM_OUTPUTS
            self.plugin_namespace = NAMESPACE
            self.plugin_name = NAME
            self.plugin_version = VERSION
            self.clones: list = []  # TensorRT holds raw pointers to clones: keep them alive with their parent

        def get_capability_interface(self, kind):
            return self

        def clone(self):
            copy = AttentionPlugin(self.fields)
            self.clones.append(copy)
            return copy

        def get_output_data_types(self, input_types):
            return [input_types[0], input_types[3], input_types[4]]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            output = trt.DimsExprs(inputs[0])  # [B, S, H*D]
            presents = []
            for past in (inputs[3], inputs[4]):  # [B, KV, P, D] -> [B, KV, P + S, D]
                present = trt.DimsExprs(past)
                present[2] = expr_builder.operation(trt.DimensionOperation.SUM, past[2], inputs[0][1])
                presents.append(present)
            return [output, *presents]

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            if pos in INT64_INPUTS:
                return desc.type == trt.DataType.INT64
            if pos == 0:
                return desc.type in (trt.DataType.FLOAT, trt.DataType.HALF)
            return desc.type == in_out[0].desc.type

        def configure_plugin(self, inputs, outputs):
            pass

        def get_fields_to_serialize(self):
            fields = [trt.PluginField(n, np.array([self.fields[n]], np.int32), trt.PluginFieldType.INT32) for n in INT_FIELDS]
            fields.append(trt.PluginField("scale", np.array([self.fields["scale"]], np.float32), trt.PluginFieldType.FLOAT32))
            return trt.PluginFieldCollection(fields)

        def get_valid_tactics(self):
            return []

        def set_tactic(self, tactic):
            pass

        def get_workspace_size(self, inputs, outputs):
            return 0

        def on_shape_change(self, inputs, outputs):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            """Run the reference math on TensorRT's stream, reading and writing its device buffers in place."""
            with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
                tensors = [_device_tensor(ptr, desc) for ptr, desc in zip(inputs, input_desc)]
                results = attention_math(self.fields, *tensors)
                for ptr, desc, result in zip(outputs, output_desc, results):
                    _device_tensor(ptr, desc).copy_(result)

    class AttentionCreator(trt.IPluginCreatorV3One):
        def __init__(self) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.name = NAME
            self.plugin_namespace = NAMESPACE
            self.plugin_version = VERSION
            declared = [trt.PluginField(n, np.array([]), trt.PluginFieldType.INT32) for n in INT_FIELDS]
            declared.append(trt.PluginField("scale", np.array([]), trt.PluginFieldType.FLOAT32))
            self.field_names = trt.PluginFieldCollection(declared)
            self.plugins: list = []  # TensorRT keeps raw pointers to what create_plugin returns

        def create_plugin(self, name, collection, phase):
            plugin = AttentionPlugin(fields_from_collection(collection))
            self.plugins.append(plugin)
            return plugin

    return AttentionCreator


_TYPESTR = {torch.float32: "<f4", torch.float16: "<f2", torch.int64: "<i8"}


def _device_tensor(pointer: int, desc) -> torch.Tensor:
    """A torch CUDA tensor viewing TensorRT's buffer (no copy), via the CUDA array interface."""
    dtype = torch_dtype(desc.type)
    shape = tuple(desc.dims)
    view = SimpleNamespace(__cuda_array_interface__={
        "shape": shape, "typestr": _TYPESTR[dtype], "data": (int(pointer), False), "version": 3, "strides": None,
    })
    return torch.as_tensor(view, device="cuda")
