"""`c4c serve INDEX`: a search page and JSON API over an index, the model loaded once."""

from pathlib import Path
from typing import Annotated

import typer

from c4c import option_rules
from c4c.cli import options as opt
from c4c.cli import ui
from c4c.options import QueryModel


SERVE_RULES = {"port": option_rules.count(0, 65535)}   # 0: a free port


@opt.from_config(QueryModel)
def serve_cmd(
    index: Annotated[Path, typer.Argument(help="Index folder from `c4c index` (or a library folder).")],
    host: Annotated[str, typer.Option(
        help="Address to listen on; anything but 127.0.0.1, ::1 or localhost lets other machines in (no login).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: a free one, printed at start).")] = 8000,
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Serve a search page and a JSON API over an index: type a query, see the moments as thumbnails,
    click one to play its video from the moment's start.

    The page is at http://HOST:PORT/ (it loads nothing from the internet); the API is
    /api/search?q=...&k=...&group=moment|video (the JSON of `c4c search --json`), /api/health,
    /api/thumbnail/VIDEO_ID?start=..&end=.. and /api/video/VIDEO_ID (range requests); its docs are at
    /docs. Only the video files the index names can be fetched, by video id; the API never shows where
    they lie on the server. A warning at start says how many videos cannot be played and why (files
    moved or removed, or not named by the index). Stop with Ctrl-C.

    Examples:

        c4c serve my_library

        c4c serve my_index --port 8080 --device cpu

        c4c serve my_library --host 0.0.0.0 --port 8000
    """
    option_rules.check_all({"port": port}, SERVE_RULES)
    from c4c.serve.app import create_app
    from c4c.serve.server import bind, is_loopback, make_server, url_of
    from c4c.stages.search import Searcher

    ui.setup_logging(quiet)
    sock = bind(host, port)  # before loading the model: a port in use fails at once
    try:
        searcher = Searcher(index, **settings)
        app = create_app(searcher)
        url = url_of(sock)
        unplayable = app.state.videos.unplayable()
        if unplayable:
            ui.warn(unplayable)
        if not is_loopback(host):
            ui.warn(f"listening on {host}: any machine that can reach this one can search the index and "
                    "watch its videos (there is no login); use --host 127.0.0.1 to keep it to this machine")
        rows = searcher.index.rows
        ui.print_table("c4c serve", [("index", str(searcher.index_dir)), ("rows", searcher.count),
                                     ("videos", len(rows.videos)), ("device", searcher.device),
                                     ("page", url), ("API docs", url + "docs")])
        print(f"serving on {url} (Ctrl-C stops)", flush=True)
        make_server(app, quiet=quiet).run(sockets=[sock])
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
