"""The one exception type that means "the user handed us something we cannot use".

Every check on user input (config.json, safetensors files, export directories,
command-line values) raises `InputError` with a message that names the file or
field and the problem. The CLI turns it into one line on stderr and exit code 2;
library callers can catch it. Anything else that escapes is a bug in this tool.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input: a file or field that cannot be used, named in the message."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem
