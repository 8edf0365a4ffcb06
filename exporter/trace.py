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

# torch.onnx.export builds its op registry from onnxscript's torchlib, which also lists
# torchvision ops (nms, roi_align, roi_pool, deform_conv2d). torchvision is not a dependency,
# so on every export this logger warns "torchvision is not installed. Skipping torchvision::nms"
# once per op. It is `logging`, not `warnings`, so catch_warnings does not reach it.
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
_TORCHVISION_SKIP = "torchvision is not installed. Skipping "

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


def trace(config: Exaone4Config, dtype: torch.dtype) -> ir.Model:
    """The decoder as an ONNX model with custom attention nodes and fake initializers."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = Exaone4ForCausalLM(config).eval()
        _cast_floating(model, dtype)
        use_custom_attention(model)
        use_pretransposed_linears(model)
        flat = _FlatDecoder(model)
        args = _example_inputs(config, dtype)
        batch = torch.export.Dim(BATCH, max=1 << 16)
        seq = torch.export.Dim("sequence", max=config.max_position_embeddings)
        past = torch.export.Dim("past_sequence", max=config.max_position_embeddings)
        total = torch.export.Dim("total_sequence", max=2 * config.max_position_embeddings)
        past_dims = [{0: batch, 2: past}] * (2 * config.num_layers)
        dynamic = ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq}, tuple(past_dims))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(flat, args, dynamic_shapes=dynamic, strict=False)
    with warnings.catch_warnings(), _without_torchvision_skips():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, (), dynamo=True, opset_version=OPSET, optimize=False, verbose=False)
    model_ir = onnx_program.model
    _rename_io(model_ir, config.num_layers)
    _name_layer_outputs(model_ir, config.num_layers)
    return model_ir


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
        for i in range(num_layers):
            if scopes.startswith(f"['', 'decoder', 'decoder.model.layers.{i}', ") and scopes.count(",") == 3:
                last[i] = node
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
