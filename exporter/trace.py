"""Trace the reference model to an ONNX graph without materialising any weight.

The model is built under `FakeTensorMode` and goes through two explicit swaps
(custom attention nodes, pre-transposed Linear weights): parameters have shapes and dtypes but
no storage, so tracing a 32B model costs the memory of its graph, not of its
weights. `torch.export` captures it with dynamic batch / sequence / past dims,
`torch.onnx.export` turns the program into an `onnx_ir.Model` whose initializers
keep the parameter names (`model.layers.0.mlp.up_proj.weight`, ...) and hold fake
data; `exporter/weights.py` then binds them to the checkpoint's tensors.

Graph inputs and outputs are renamed to the IO contract (docs/architecture.md#io-contract):
input_ids, attention_mask, position_ids, past_key_values.{i}.key/.value ->
logits, present.{i}.key/.value.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings

import onnx_ir as ir
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ..graphs.attention_function import OPSET
from .attention_op import use_custom_attention
from .config import Exaone4Config
from .contract import ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS, hidden_state_name, past_names, present_names
from .linear_swap import use_pretransposed_linears
from .model import Exaone4ForCausalLM
from .model_heads import build_model

# torch.onnx.export builds its op registry from onnxscript's torchlib, which also lists
# torchvision ops (nms, roi_align, roi_pool, deform_conv2d). torchvision is not a dependency,
# so on every export this logger warns "torchvision is not installed. Skipping torchvision::nms"
# once per op. It is `logging`, not `warnings`, so catch_warnings does not reach it.
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
_TORCHVISION_SKIP = "torchvision is not installed. Skipping "

# A node traced directly in decoder layer i (not in one of its submodules): its scope list ends there.
_LAYER_SCOPE = re.compile(r"'decoder(?:\.\w+)*\.layers\.(\d+)', '[^']*'\]$")

# Symbolic dimension names of the IO contract.
BATCH, SEQUENCE, PAST, TOTAL = "batch", "sequence", "past_sequence", "past_sequence + sequence"


def input_names(num_layers: int) -> list[str]:
    """Graph inputs in contract order: ids, mask, positions, then each layer's past key and value."""
    return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *past_names(num_layers)]


def output_names(num_layers: int) -> list[str]:
    """Graph outputs in contract order: logits, then each layer's present key and value."""
    return [LOGITS, *present_names(num_layers)]


class _FlatDecoder(torch.nn.Module):
    """Flat positional IO in contract order (past key/value interleaved per layer)."""

    def __init__(self, model: Exaone4ForCausalLM) -> None:
        super().__init__()
        self.decoder = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        logits, keys, values = self.decoder(input_ids, attention_mask, position_ids, list(past[0::2]), list(past[1::2]))
        presents = [t for pair in zip(keys, values) for t in pair]
        return (logits, *presents)


class _FlatHead(torch.nn.Module):
    """A head's export IO: input_ids and attention_mask in, its outputs (exporter/heads.py) in order."""

    def __init__(self, model: torch.nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.decoder = model
        self.outputs = outputs

    def forward(self, input_ids, attention_mask):
        results = self.decoder.predict(input_ids, attention_mask)
        return tuple(results[name] for name in self.outputs)


def trace(config: Exaone4Config, dtype: torch.dtype) -> ir.Model:
    """The model as an ONNX model with custom attention nodes and fake initializers.

    A causal LM is traced with its KV cache (the IO contract); any other class
    (config.head) as one forward without a cache: input_ids, attention_mask in,
    its outputs out.
    """
    causal = config.head.is_causal_lm
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = build_model(config).eval()
        _cast_floating(model, dtype)
        use_custom_attention(model)
        use_pretransposed_linears(model)
        flat, args, dynamic = _decoder_program(model, config, dtype) if causal else _head_program(model, config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(flat, args, dynamic_shapes=dynamic, strict=False)
    with warnings.catch_warnings(), _without_torchvision_skips():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, (), dynamo=True, opset_version=OPSET, optimize=False, verbose=False)
    model_ir = onnx_program.model
    if causal:
        _rename_io(model_ir, config.num_layers)
    else:
        _rename_head_io(model_ir, config.head.layout.outputs)
    _name_layer_outputs(model_ir, config.num_layers)
    return model_ir


def _decoder_program(model, config: Exaone4Config, dtype: torch.dtype):
    """(module, example args, dynamic shapes) of the causal LM with its KV cache."""
    flat = _FlatDecoder(model)
    args = _example_inputs(config, dtype)
    batch = torch.export.Dim(BATCH, max=1 << 16)
    seq = torch.export.Dim("sequence", max=config.max_position_embeddings)
    past = torch.export.Dim("past_sequence", max=config.max_position_embeddings)
    total = torch.export.Dim("total_sequence", max=2 * config.max_position_embeddings)
    past_dims = [{0: batch, 2: past}] * (2 * config.num_layers)
    return flat, args, ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq}, tuple(past_dims))


def _head_program(model, config: Exaone4Config):
    """(module, example args, dynamic shapes) of a head: one forward, ids and mask of the same length."""
    flat = _FlatHead(model, config.head.layout.outputs)
    batch, seq = 2, 3
    args = (torch.ones(batch, seq, dtype=torch.long), torch.ones(batch, seq, dtype=torch.long))
    batch_dim = torch.export.Dim(BATCH, max=1 << 16)
    seq_dim = torch.export.Dim("sequence", max=config.max_position_embeddings)
    return flat, args, ({0: batch_dim, 1: seq_dim}, {0: batch_dim, 1: seq_dim})


class _DropTorchvisionSkips(logging.Filter):
    """Drops exactly torch.onnx's "torchvision is not installed. Skipping ..." records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_TORCHVISION_SKIP)


@contextlib.contextmanager
def _without_torchvision_skips():
    """While the block runs, the registry logger drops its torchvision notices and nothing else."""
    logger, drop = logging.getLogger(_REGISTRY_LOGGER), _DropTorchvisionSkips()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _name_layer_outputs(model: ir.Model, num_layers: int) -> None:
    """Name each decoder layer's output value `hidden_states.{i}`.

    The last node traced directly in a DecoderLayer's scope is its second
    residual Add; its output is the layer's hidden state. The parity harness
    exposes these values to find the first layer where a backend diverges.
    """
    last: dict[int, ir.Node] = {}
    for node in model.graph:
        scopes = node.metadata_props.get("pkg.torch.onnx.name_scopes", "")
        layer = _LAYER_SCOPE.search(scopes)
        if layer and int(layer.group(1)) < num_layers:
            last[int(layer.group(1))] = node
    for i, node in last.items():
        node.outputs[0].name = hidden_state_name(i)


def _cast_floating(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Module.to() cannot swap fake parameters; replace them one by one, keeping ties."""
    converted: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) not in converted:
                converted[id(param)] = torch.nn.Parameter(param.to(dtype), requires_grad=False)
            setattr(module, name, converted[id(param)])
        for name, buffer in list(module.named_buffers(recurse=False)):
            setattr(module, name, buffer.to(dtype))


def _example_inputs(config: Exaone4Config, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Batch 2, sequence 3, past 5: sizes that torch.export will not specialise."""
    batch, seq, past = 2, 3, 5
    ids = torch.zeros(batch, seq, dtype=torch.long)
    mask = torch.ones(batch, past + seq, dtype=torch.long)
    positions = torch.arange(past, past + seq).expand(batch, seq).contiguous()
    kv_shape = (batch, config.num_kv_heads, past, config.head_dim)
    past_kv = [torch.zeros(kv_shape, dtype=dtype) for _ in range(2 * config.num_layers)]  # distinct: no aliasing
    return (ids, mask, positions, *past_kv)


def _rename_head_io(model: ir.Model, outputs: tuple[str, ...]) -> None:
    """A head's IO: input_ids and attention_mask [batch, sequence]; outputs [batch, (sequence,) ...]."""
    graph = model.graph
    for value, name in zip(graph.inputs, (INPUT_IDS, ATTENTION_MASK)):
        value.name, value.shape = name, ir.Shape([BATCH, SEQUENCE])
    for value, name in zip(graph.outputs, outputs):
        value.name = name
        dims = [BATCH, *(SEQUENCE if not isinstance(d, int) else d for d in list(value.shape)[1:])]
        value.shape = ir.Shape(dims)


def _rename_io(model: ir.Model, num_layers: int) -> None:
    """Contract names for graph inputs/outputs and their symbolic dims."""
    graph = model.graph
    for value, name in zip(graph.inputs, input_names(num_layers)):
        value.name = name
    for value, name in zip(graph.outputs, output_names(num_layers)):
        value.name = name
    dims = {"input_ids": (BATCH, SEQUENCE), "position_ids": (BATCH, SEQUENCE), "attention_mask": (BATCH, TOTAL)}
    for value in graph.inputs:
        if value.name in dims:
            value.shape = ir.Shape(list(dims[value.name]))
        else:
            value.shape = ir.Shape([BATCH, value.shape[1], PAST, value.shape[3]])
    for value in graph.outputs:
        if value.name == "logits":
            value.shape = ir.Shape([BATCH, SEQUENCE, value.shape[2]])
        else:
            value.shape = ir.Shape([BATCH, value.shape[1], TOTAL, value.shape[3]])
