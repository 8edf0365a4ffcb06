"""exaone4.plugins: TensorRT plugins.

`attention.py`: `exaone4::Attention` as an IPluginV3 (`exaone4-export build --attention plugin`),
for TensorRT versions or shapes the native attention layers do not serve (docs/tensorrt.md).
"""
