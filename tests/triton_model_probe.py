"""Run a Triton generation model file outside the server, with a stand-in `triton_python_backend_utils`.

    python triton_model_probe.py MODEL_VERSION_DIR < requests.json > results.json

Each request is {"inputs": {name: value}}; the probe answers with the prompt ids the
model file makes of it (its `prompt` method) and the text its shipped chat code
renders. Run it with the Triton backend's Python (numpy, tokenizers, jinja2, no
exaone4-export installed), so it proves the repository carries its own chat path.
"""

import importlib.util
import json
import sys
import types

import numpy as np


class _Tensor:
    def __init__(self, value):
        self.value = np.array([value.encode() if isinstance(value, str) else value], dtype=object if isinstance(value, str) else None)

    def as_numpy(self):
        return self.value


class _Request:
    def __init__(self, inputs):
        self.inputs = {name: _Tensor(value) for name, value in inputs.items()}


def _stub_backend_utils():
    stub = types.ModuleType("triton_python_backend_utils")
    stub.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    stub.using_decoupled_model_transaction_policy = lambda config: False
    sys.modules["triton_python_backend_utils"] = stub


def main(version_dir):
    _stub_backend_utils()
    spec = importlib.util.spec_from_file_location("model", f"{version_dir}/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": version_dir.rsplit("/", 1)[0], "model_version": version_dir.rsplit("/", 1)[1],
                      "model_config": "{}"})
    results = []
    for request in json.load(sys.stdin):
        inputs = request["inputs"]
        ids, _ = model.prompt(_Request(inputs))
        messages = json.loads(inputs["messages"])
        tools = json.loads(inputs["tools"]) if "tools" in inputs else None
        text = model.chat.render(messages, enable_thinking=bool(inputs.get("enable_thinking")), tools=tools)
        results.append({"ids": ids, "text": text, "exaone4_from": module.ChatTokenizer.__module__,
                        "exaone4_file": sys.modules["exaone4"].__file__})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
