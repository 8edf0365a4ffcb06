"""Save the reference's feeds and outputs in Polygraphy's JSON formats.

    polygraphy run model.onnx --onnxrt --load-inputs inputs.json --load-outputs outputs.json

lets a user continue debugging an export with the tool they know: `inputs.json`
is a list of feed dicts (Polygraphy's data-loader format), `outputs.json` a
`RunResults` with one iteration per feed from the runner "exaone4-reference".
Only unpadded scenarios are recorded: padded positions are unspecified by the IO
contract, and Polygraphy compares every element.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract import HIDDEN_STATES
from ..runners import Runner

RUNNER_NAME = "exaone4-reference"


class RecordingRunner(Runner):
    """Passes calls through to a runner and keeps (feeds, outputs) while `recording` is set."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.name = runner.name
        self.provides_hidden_states = runner.provides_hidden_states
        self.recording = False
        self.records: list[tuple[dict, dict]] = []

    def open(self) -> None:
        self.runner.open()

    def close(self) -> None:
        self.runner.close()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.runner.infer(feeds)
        if self.recording:
            contract = {k: v for k, v in outputs.items() if not k.startswith(HIDDEN_STATES)}
            self.records.append(({k: np.array(v) for k, v in feeds.items()}, contract))
        return outputs


def save_polygraphy(records: list[tuple[dict, dict]], directory: Path) -> list[Path]:
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_json([feeds for feeds, _ in records], str(directory / "inputs.json"))
    iterations = [IterationResult(outputs=outputs, runner_name=RUNNER_NAME) for _, outputs in records]
    RunResults([(RUNNER_NAME, iterations)]).save(str(directory / "outputs.json"))
    return [directory / "inputs.json", directory / "outputs.json"]
