"""Pass: turn `exaone4::Attention` into the node TensorRT's parser hands to our IPluginV3.

TensorRT's ONNX parser imports a node it does not know through a registered
plugin creator whose name is the node's op type. This pass renames each custom
attention node to `Exaone4Attention` (exporter/trt/plugin.py registers that
creator) and keeps its inputs, outputs and attributes, which are the plugin's
fields. The plugin computes exactly the custom op's contract (docs/custom-op.md):
RoPE, cache append and windowed, masked attention in one layer.

Only TensorRT with the plugin registered can run the result; it is built by
`exaone4-export build --attention plugin` and not meant for other runtimes.
"""

from __future__ import annotations

import onnx_ir as ir

from .attention_parts import is_custom_attention

PLUGIN_OP = "Exaone4Attention"
PLUGIN_DOMAIN = ""  # the parser looks plugins up by op type; plugin_version / plugin_namespace use their defaults


def lower_trt_plugin(model: ir.Model) -> dict[str, int]:
    """Returns {"plugin_attention": n}."""
    count = 0
    for node in model.graph:
        if is_custom_attention(node):
            node.op_type, node.domain = PLUGIN_OP, PLUGIN_DOMAIN
            count += 1
    return {"plugin_attention": count}
