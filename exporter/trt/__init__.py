"""exaone4.exporter.trt: everything TensorRT, in one place.

    provider.py   which TensorRT is importable (full or TensorRT for RTX), GPU availability, dtype table
    profiles.py   optimization profiles from the IO contract's dynamic dims
    build.py      `exaone4-export build`: an engine directory from an export
    plugin.py     the attention IPluginV3 (`build --attention plugin`)
    runner.py     an engine behind the Runner interface

Imports run one way: build and runner use provider, profiles and plugin; plugin uses
provider; provider uses nothing here. Nothing outside this package imports tensorrt.
"""
