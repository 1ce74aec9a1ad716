"""Every ``gateway`` sub-command and option explains itself in ``--help``.

Walks the real parser built by :func:`gateway.cli.build_parser`, adapters' commands included.
"""
from __future__ import annotations

import argparse

from gateway.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
    """Return one line per missing help text under *parser*."""
    missing: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not (helps.get(name) or "").strip():
                    missing.append(f"{path} {name}: sub-command has no help")
                missing.extend(_walk(sub, f"{path} {name}"))
            continue
        if action.help is argparse.SUPPRESS:
            continue
        if not (action.help or "").strip():
            flag = "/".join(action.option_strings) or action.dest
            missing.append(f"{path}: {flag} has no help")
    return missing


def test_every_command_and_option_has_help() -> None:
    missing = _walk(build_parser(), "gateway")
    assert missing == [], "\n".join(missing)


def test_walk_reports_missing_help() -> None:
    """The walker itself finds a sub-command and an option without help."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="c")
    s = sub.add_parser("x")
    s.add_argument("--y")
    assert _walk(p, "t") == ["t x: sub-command has no help", "t x: --y has no help"]
