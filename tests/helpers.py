"""Helpers shared by the tests (imported as ``helpers``: pytest puts this folder on the path)."""

from __future__ import annotations


def cli_commands(typer_app=None) -> list[tuple[list[str], object]]:
    """Every leaf command of the c4c CLI (or of ``typer_app``) as ``(words, click command)``, sub-commands
    included: ``(["caption", "train"], <Command>)``."""
    import typer.main

    if typer_app is None:
        from c4c.cli.app import app as typer_app

    found: list[tuple[list[str], object]] = []

    def walk(command, words: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, words + [name])
        else:
            found.append((words, command))

    walk(typer.main.get_command(typer_app), [])
    return found
