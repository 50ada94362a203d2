"""Shared output helper of the impex commands: every command can end with one JSON line."""

import json


def print_json(command, payload: dict) -> None:
    """Print one JSON object as the last line of output."""
    command.stdout.write(json.dumps(payload, default=str, ensure_ascii=False))
