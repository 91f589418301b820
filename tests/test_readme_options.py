"""The README's table of shared options is the command line's own: same names, help, defaults, commands.

Regenerate it with `python tests/test_readme_options.py` after changing an option.
"""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"


def _commands():
    import typer.main

    from c4c.cli.app import app

    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        if hasattr(command, "commands"):
            for sub, subcommand in command.commands.items():
                yield f"{name} {sub}", subcommand
        else:
            yield name, command


def _default(param) -> str:
    if param.required:
        return "required"
    value = param.default
    if value is None or value == [] or value == ():
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def option_table() -> str:
    """Markdown rows: every option that two or more commands take, with its help, default and commands."""
    seen: dict[str, dict] = {}
    for name, command in _commands():
        for param in command.params:
            if param.param_type_name != "option" or param.hidden or param.name == "help":
                continue
            flag = next(o for o in param.opts if o.startswith("--"))
            entry = seen.setdefault(flag, {"help": {}, "default": {}, "commands": []})
            entry["help"].setdefault(param.help or "", []).append(name)
            entry["default"].setdefault(_default(param), []).append(name)
            entry["commands"].append(name)
    lines = ["| option | meaning | default | commands |", "|---|---|---|---|"]
    for flag in sorted(seen):
        entry = seen[flag]
        if len(entry["commands"]) < 2:
            continue
        helps = entry["help"]
        meaning = next(iter(helps)) if len(helps) == 1 else " / ".join(
            f"{h} ({', '.join(cmds)})" for h, cmds in helps.items())
        defaults = entry["default"]
        default = next(iter(defaults)) if len(defaults) == 1 else "; ".join(
            f"{d} ({', '.join(cmds)})" for d, cmds in defaults.items())
        others = sorted({n for n, _ in _commands()} - set(entry["commands"]))
        commands = (", ".join(entry["commands"]) if len(entry["commands"]) < 9
                    else "all" + (" but " + ", ".join(others) if others else ""))
        cell = lambda text: text.replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines.append(f"| `{flag}` | {cell(meaning)} | {cell(default)} | {cell(commands)} |")
    return "\n".join(lines)


def test_the_readme_option_table_matches_the_command_line():
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, "README has no option table markers"
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == option_table(), "README's option table is stale: run `python tests/test_readme_options.py`"


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{option_table()}\n{END}{tail}", encoding="utf-8")
    print("README option table written")
