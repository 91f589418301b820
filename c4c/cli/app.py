"""The typer app, its command groups, and `main`: user errors and usage errors become one clear
message and an exit status, never a traceback."""

import sys

import typer

from c4c.cli import ui
from c4c.errors import C4CError

# `--help` is click's plain layout: option names whole at any width (each on its own line when long, the
# help below), flags without a type. typer's rich panels put up to six columns side by side, which at 80
# columns cut names short ("--activitynet-v…") and give every flag a "<bool>" type.
HELP_MARKUP = None

app = typer.Typer(
    name="c4c",
    help="CLIP4Clip as a toolkit: turn videos into frames, train and evaluate CLIP-based video-text "
         "retrieval and captioning, and search your own videos.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=HELP_MARKUP,
)
caption_app = typer.Typer(name="caption", no_args_is_help=True, add_completion=False, rich_markup_mode=HELP_MARKUP,
                          help="Video captioning: train a caption decoder on CLIP4Clip's video encoder, then "
                               "caption videos (an annotated split or every video of a frame store).")


def _register() -> None:
    from c4c.cli import caption_cmds, data_cmds, export_cmd, plot_cmd, retrieval_cmds, serve_cmd, train_cmds

    data_cmds.register(app)
    train_cmds.register(app)
    retrieval_cmds.register(app)
    caption_cmds.register(caption_app)
    export_cmd.register(app)
    plot_cmd.register(app)
    serve_cmd.register(app)
    app.add_typer(caption_app, name="caption")


_register()


def _usage_error_types() -> tuple[type, ...]:
    """The usage-error base classes in play: typer's bundled click's, and click's own when installed."""
    found = [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    try:
        import click

        found.append(click.exceptions.ClickException)
    except ImportError:  # pragma: no cover - typer without a separate click
        pass
    return tuple(found)


def _abort_types() -> tuple[type, ...]:
    found = [typer.Abort]
    try:
        import click

        found.append(click.exceptions.Abort)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def _say_interrupted(exc: BaseException | None) -> None:
    """The one line after Ctrl-C: what the stop at a safe point kept and how to go on, or (a second Ctrl-C)
    that the command stopped at once."""
    import signal

    from c4c.interrupt import Interrupted, last_stop

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping already: a later Ctrl-C must not break the exit
    if not isinstance(exc, Interrupted):
        exc = last_stop()  # typer hands back only the exit status 130 of a Ctrl-C inside a command
    if isinstance(exc, Interrupted):
        text = exc.render()
    else:
        text = ("stopped at once: work finished before the stop was kept (run the same command again, "
                "with --resume for a training run, to continue)")
    sys.stderr.write(f"interrupted: {text}\n")  # plain text: a file name may hold [brackets]
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    """Entry point of `c4c`."""
    run_app(app, argv, prog_name="c4c")
    if argv is None:  # this process is the command, and it is done: a late Ctrl-C must not break its exit
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_with(exc: C4CError) -> None:
    from rich.markup import escape

    ui.console(stderr=True).print(f"[bold red]error:[/] {escape(exc.render())}", highlight=False,
                                  soft_wrap=True)  # escaped: a file name may hold [brackets]
    sys.exit(getattr(exc, "exit_code", 2))  # 2: the input; 1: the machine (a full disk, a read-only folder)


def run_app(typer_app: typer.Typer, argv: list[str] | None, prog_name: str) -> None:
    """Run a typer app. A user error (bad input, missing file) prints one line and exits 2; a usage
    error prints click's usage message and exits 2; Ctrl-C exits 130 with a line on what was kept."""
    try:
        code = typer_app(args=argv, standalone_mode=False, prog_name=prog_name)
    except C4CError as exc:
        _exit_with(exc)
    except OSError as exc:  # a write the file system refused, found only while working: one line, exit 1
        from c4c.atomic import DiskFull, disk_full_errno, write_failure

        failure = write_failure(exc)
        code = disk_full_errno(exc)
        if failure is None and code is not None:
            failure = DiskFull(getattr(exc, "filename", None) or "output", code)
        if failure is None:
            raise
        _exit_with(failure)
    except KeyboardInterrupt as exc:
        _say_interrupted(exc)
        sys.exit(130)
    except _usage_error_types() as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except _abort_types():
        ui.console(stderr=True).print("aborted")
        sys.exit(130)
    if code == 130:  # typer's answer to a KeyboardInterrupt inside the command
        _say_interrupted(None)
    if isinstance(code, int) and code:
        sys.exit(code)
