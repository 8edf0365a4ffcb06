"""exaone4.plugins: TensorRT plugins for exaone4::Attention.

Empty for now: the native TensorRT attention and rotary layers serve every EXAONE 4 layer kind
(docs/tensorrt.md), and a Python IPluginV3 aborted the build process on TensorRT for RTX without
a GPU (ARCHITECTURE.md). An IPluginV3 goes here when a TensorRT version or shape needs it.
"""
