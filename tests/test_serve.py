"""`c4c serve`: the JSON API answers as `Searcher.search` does, thumbnails are the stored frames, videos
come with HTTP range requests, and nothing but the files the index names can be fetched; in a real
(headless) browser a typed caption brings up the right moment first and a click plays it from its start.

The library is two 12-second videos, each three 4-second synthetic clips back to back, indexed with
4-second windows every 2 seconds by the random tiny CLIP. Its vectors are then replaced: each window's
vector is the mean of the text embeddings of the captions of the clips it covers, weighted by how
much of it each covers. A window that is exactly one clip is then that clip's caption (cosine 1 with
it), so which moment is right for a caption is known whatever the random model makes of the pixels;
what is tested is everything between the query and the playing video.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from c4c import synth
from c4c.cli import main
from c4c.demo import _concat_clips
from c4c.search.moments import Moment
from c4c.stages import library
from c4c.stages.search import Searcher

CLIP_SECONDS = 4.0  # 40 frames at 10 fps: synth's duration 3.9 s of motion + one frame
CLIPS_PER_VIDEO = 3


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("serve")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=6, seed=3, duration=3.9, width=64, height=48))
    meta = json.loads((d / "synth" / "synth.json").read_text())
    assert meta["frames"] / meta["config"]["fps"] == CLIP_SECONDS
    clips = [v["video_id"] for v in meta["videos"]]
    caption = {v["video_id"]: v["captions"][0] for v in meta["videos"]}
    (d / "videos").mkdir()
    truth = []  # (video, start, end, clip, caption)
    for k in range(2):
        parts = clips[CLIPS_PER_VIDEO * k:CLIPS_PER_VIDEO * (k + 1)]
        _concat_clips([d / "synth" / "videos" / f"{c}.mp4" for c in parts], d / "videos" / f"long{k:02d}.mp4")
        truth += [(f"long{k:02d}", i * CLIP_SECONDS, (i + 1) * CLIP_SECONDS, c, caption[c]) for i, c in enumerate(parts)]
    out = d / "lib"
    library.update(library.LibraryConfig(videos=d / "videos", out=out, clip="tiny", pretrained="none", window=4.0,
                                         stride=2.0, fps=2.0, size=32, device="cpu", workers=0, batch_size=2))
    _oracle_vectors(out, truth)
    return {"dir": d, "lib": out, "truth": truth, "searcher": Searcher(out, device="cpu")}


def _oracle_vectors(lib_dir: Path, truth: list[tuple]) -> None:
    """Replace each window's vector by the overlap-weighted mean of its clips' caption embeddings."""
    from c4c.search.index import VectorIndex

    index_dir = library.index_dir(lib_dir)
    index = VectorIndex.open(index_dir, device="cpu")
    text = Searcher(lib_dir, device="cpu").encode([t[4] for t in truth])        # [clips, D]
    rows = index.rows
    x = np.zeros((len(rows), index.dim), np.float32)
    for r in range(len(rows)):
        video, s, e = rows.videos[rows.row_video[r]], rows.start[r], rows.end[r]
        for j, (v, cs, ce, _, _) in enumerate(truth):
            if v == video:
                x[r] += max(0.0, min(e, ce) - max(s, cs)) * text[j]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    VectorIndex.from_vectors(x, index.ids, index.settings, meta=index.meta, rows=rows).save(index_dir, overwrite=True)


def _pick(lib) -> tuple:
    """A clip in the middle of a video (start > 0) whose caption no other clip has."""
    captions = [t[4] for t in lib["truth"]]
    for t in lib["truth"]:
        if t[1] > 0 and captions.count(t[4]) == 1:
            return t
    raise AssertionError("every middle clip shares its caption")


@pytest.fixture(scope="module")
def client(lib):
    from fastapi.testclient import TestClient

    from c4c.serve.app import create_app

    with TestClient(create_app(lib["searcher"])) as c:
        yield c


def _video_file(lib, video_id: str) -> Path:
    return lib["dir"] / "videos" / f"{video_id}.mp4"


# --- search ---------------------------------------------------------------------------------------

def test_a_caption_finds_its_clip_in_its_long_video_at_its_time(lib):
    video, start, end, _, caption = _pick(lib)
    (top, *_), = lib["searcher"].search([caption], 3)
    assert (top.video_id, top.start, top.end) == (video, start, end) and top.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("group", ["moment", "video"])
def test_search_api_answers_exactly_as_the_searcher_does(lib, client, group):
    queries = [t[4] for t in lib["truth"][:4]]
    for k in (1, 3, 10):
        r = client.get("/api/search", params={"q": queries, "k": k, "group": group})
        assert r.status_code == 200, r.text
        want = [{"query": q, "warning": None, "results": [_public(m) for m in hits]}
                for q, hits in zip(queries, lib["searcher"].search(queries, k, group=group))]
        assert r.json() == want
    one = client.get("/api/search", params={"q": queries[0], "group": group}).json()  # k defaults to 10
    (hits,) = lib["searcher"].search(queries[:1], 10, group=group)
    assert one == [{"query": queries[0], "warning": None, "results": [_public(m) for m in hits]}] and len(hits) > 1
    assert set(one[0]["results"][0]) == {"rank", "video_id", "start", "end", "score"}


def _public(m: Moment) -> dict:
    """`c4c search --json`'s result less the file's path: what the API gives a client."""
    return {k: v for k, v in m.as_dict().items() if k != "path"}


def test_the_search_api_never_says_where_the_files_lie_on_the_server(lib, client):
    r = client.get("/api/search", params={"q": [t[4] for t in lib["truth"]], "k": 100})
    assert r.status_code == 200 and r.json()[0]["results"]
    assert str(lib["dir"]) not in r.text and ".mp4" not in r.text and '"path"' not in r.text
    spec = client.get("/openapi.json").json()
    assert "path" not in spec["components"]["schemas"]["MomentOut"]["properties"]


@pytest.mark.parametrize("params, field", [
    ({"q": "a dog", "k": 0}, "k"), ({"q": "a dog", "k": 101}, "k"), ({"q": "a dog", "k": "ten"}, "k"),
    ({"q": "a dog", "group": "scene"}, "group"), ({}, "q"), ({"q": "   "}, "q"), ({"q": ""}, "q"),
    ({"q": "x" * 501}, "q"), ({"q": ["a dog"] * 17}, "q"),
])
def test_bad_search_parameters_are_422_naming_the_parameter(client, params, field):
    r = client.get("/api/search", params=params)
    assert r.status_code == 422
    errors = r.json()["detail"]
    assert errors and all(e["loc"][:2] == ["query", field] and e["msg"] for e in errors)


def test_health_says_what_is_served(lib, client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["rows"] == 10 and h["videos"] == 2 and h["playable"] == 2 and h["moments"]
    assert h["model"].startswith("zero-shot tiny") and h["device"] == "cpu" and h["max_k"] == 100
    assert Path(h["index"]) == library.index_dir(lib["lib"])


def test_the_api_is_documented(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/health", "/api/thumbnail/{video_id}", "/api/video/{video_id}"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


# --- thumbnails -----------------------------------------------------------------------------------

def test_a_thumbnail_is_the_png_of_the_stored_frame_in_the_middle_of_the_moment(lib, client):
    from PIL import Image

    video, start, end, _, _ = _pick(lib)
    r = client.get(f"/api/thumbnail/{video}", params={"start": start, "end": end})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    want = lib["searcher"].thumbnail(Moment(1, video, start, end, 0.0))
    np.testing.assert_array_equal(image, want)
    assert want.shape == (32, 32, 3) and want.std() > 0  # a real frame, not a blank
    later = np.asarray(Image.open(io.BytesIO(client.get(f"/api/thumbnail/{video}?start=8&end=12").content)))
    assert not np.array_equal(later, image)  # another moment, another frame
    assert client.get(f"/api/thumbnail/{video}").status_code == 200  # no span: the video's middle frame


@pytest.mark.parametrize("query, status", [("start=-1", 422), ("start=abc", 422), ("end=nan", 422),
                                           ("start=8&end=4", 422)])
def test_bad_thumbnail_spans_are_422(client, query, status):
    assert client.get(f"/api/thumbnail/long00?{query}").status_code == status


# --- videos: range requests -----------------------------------------------------------------------

def test_a_video_is_served_whole_with_ranges_accepted(lib, client):
    data = _video_file(lib, "long01").read_bytes()
    r = client.get("/api/video/long01")
    assert r.status_code == 200 and r.content == data
    assert r.headers["accept-ranges"] == "bytes" and int(r.headers["content-length"]) == len(data)
    assert r.headers["content-type"] == "video/mp4"
    head = client.head("/api/video/long01")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data) and not head.content


def test_range_requests_give_206_with_the_asked_bytes(lib, client):
    data = _video_file(lib, "long01").read_bytes()
    n = len(data)
    cases = {"bytes=0-0": (0, 0), "bytes=10-99": (10, 99), "bytes=-100": (n - 100, n - 1),   # first, middle, suffix
             f"bytes={n - 50}-": (n - 50, n - 1), f"bytes=100-{n + 1000}": (100, n - 1),    # open-ended, past the end
             f"bytes=-{n + 7}": (0, n - 1), f"bytes={n - 1}-{n - 1}": (n - 1, n - 1)}
    for header, (first, last) in cases.items():
        r = client.get("/api/video/long01", headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{n}", header
        assert int(r.headers["content-length"]) == last - first + 1 and r.content == data[first:last + 1], header
        assert r.headers["accept-ranges"] == "bytes"


def test_a_range_past_the_end_is_416_and_a_malformed_one_400(lib, client):
    n = _video_file(lib, "long01").stat().st_size
    for header in (f"bytes={n}-", f"bytes={n + 10}-{n + 20}", "bytes=-0"):
        r = client.get("/api/video/long01", headers={"Range": header})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{n}", header
    for header in ("bytes=abc", "bytes=20-10", "pages=0-10", "bytes"):
        assert client.get("/api/video/long01", headers={"Range": header}).status_code == 400, header


# --- the security rule: only files the index names, by id -----------------------------------------

HOSTILE = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2Fetc%2Fpasswd",
           "/etc/passwd", "..\\..\\etc\\passwd", "long00%2F..%2Flong01", "long00%00", "long00.mp4", "LONG00",
           "long00 ", "nonexistent", "%252e%252e%252fetc%252fpasswd", "../lib/library.json", "~/.bashrc"]


@pytest.mark.parametrize("route", ["video", "thumbnail"])
def test_hostile_ids_and_paths_are_404(lib, client, route):
    named = [str(_video_file(lib, "long00")), str(lib["lib"] / "library.json"),
             str(lib["lib"] / "parts" / "part-000001" / "frames.h5"), "../videos/long00.mp4"]
    for bad in HOSTILE + [p.lstrip("/") for p in named] + [p.replace("/", "%2F") for p in named]:
        r = client.get(f"/api/{route}/{bad}")
        assert r.status_code == 404, (bad, r.status_code)
        assert b"root:" not in r.content and not r.headers["content-type"].startswith(("video/", "image/"))


def test_an_index_without_the_file_of_a_video_refuses_it(lib, client, tmp_path):
    """A video the index names whose file has gone is a 404 too (never a 500 or another file)."""
    from fastapi.testclient import TestClient

    from c4c.serve.app import create_app

    moved = tmp_path / "videos"
    shutil.copytree(lib["dir"] / "videos", moved)
    searcher = Searcher(lib["lib"], device="cpu")
    searcher.index.rows.paths = [str(moved / "long00.mp4"), None]
    (moved / "long00.mp4").unlink()
    with TestClient(create_app(searcher)) as c:
        assert c.get("/api/video/long00").status_code == 404
        assert c.get("/api/video/long01").status_code == 404
        assert c.get("/api/health").json()["playable"] == 0


def _index_with_relative_paths(lib, project: Path) -> Path:
    """A copy of the library's index in ``project``/my_index as an index made from frames extracted with
    `c4c extract videos/ ...` in ``project`` records them: video paths relative (to that folder)."""
    shutil.copytree(lib["dir"] / "videos", project / "videos")
    index = project / "my_index"
    shutil.copytree(library.index_dir(lib["lib"]), index)
    moments = json.loads((index / "moments.json").read_text())
    moments["paths"] = [f"videos/{v}.mp4" for v in moments["videos"]]
    moments["frames"] = [str((library.index_dir(lib["lib"]) / f).resolve()) for f in moments["frames"]]
    (index / "moments.json").write_text(json.dumps(moments))
    return index


def test_an_index_of_relative_paths_plays_its_videos_served_from_another_folder(lib, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from c4c.serve.app import create_app

    index = _index_with_relative_paths(lib, tmp_path / "project")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    searcher = Searcher(index, device="cpu")
    (top, *_), = searcher.search([lib["truth"][0][4]], 3)
    assert Path(top.path) == (tmp_path / "project" / "videos" / f"{top.video_id}.mp4").resolve()  # `c4c search`
    with TestClient(create_app(searcher)) as c:
        assert c.get("/api/health").json()["playable"] == 2
        r = c.get(f"/api/video/{top.video_id}")
        assert r.status_code == 200 and r.content == _video_file(lib, top.video_id).read_bytes()


def test_an_index_built_from_relative_paths_records_them_absolute(lib, tmp_path, monkeypatch):
    from c4c.stages import encode, extract, search

    project = tmp_path / "project"
    shutil.copytree(lib["dir"] / "videos", project / "videos")
    monkeypatch.chdir(project)
    extract.run(extract.ExtractConfig(source=Path("videos"), out=Path("frames.h5"), fps=2.0, size=32, workers=1))
    encode.run(encode.EncodeConfig(frames=Path("frames.h5"), out=Path("emb.h5"), clip="tiny", pretrained="none",
                                   device="cpu", workers=0))
    search.build(search.IndexConfig(emb=Path("emb.h5"), out=Path("my_index")))
    paths = json.loads((project / "my_index" / "moments.json").read_text())["paths"]
    assert paths == [str((project / "videos" / f"long{k:02d}.mp4").resolve()) for k in range(2)]


def test_serve_says_how_many_videos_cannot_be_played_and_why(lib, tmp_path, monkeypatch, capsys):
    from c4c.serve import server

    class NoServer:
        def run(self, sockets) -> None:
            """Serve nothing: the test reads what `c4c serve` printed before it would start."""

    monkeypatch.setattr(server, "make_server", lambda app, quiet=False: NoServer())
    main(["serve", str(lib["lib"]), "--port", "0", "--device", "cpu", "-q"])
    assert "cannot be played" not in capsys.readouterr().err  # every file there: no warning
    index = _index_with_relative_paths(lib, tmp_path / "project")
    shutil.rmtree(tmp_path / "project" / "videos")  # the videos moved away
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    main(["serve", str(index), "--port", "0", "--device", "cpu", "-q"])
    warned = [line for line in capsys.readouterr().err.splitlines() if "cannot be played" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: 2 of 2 videos cannot be played: 2 files missing")
    assert "videos/long00.mp4" in warned[0]  # an example of what was looked for


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the page's script is run with it)")
def test_the_page_writes_every_time_one_way_and_draws_negative_scores():
    """The page's own clock() and scoreBar(), run by node with a minimal document."""
    script = (Path(__file__).parent.parent / "c4c" / "serve" / "static" / "app.js").read_text()
    harness = """
        const document = {addEventListener() {}, createElement(tag) {
            return {tag, style: {}, children: [], className: "", append(...c) { this.children.push(...c); }}; }};
        %s
        const bar = (s) => { const b = scoreBar(s); const f = b.children[0];
                             return [f.className, f.style.left, f.style.width]; };
        console.log(JSON.stringify({times: [0, 3, 4.1, 59.96, 75.5, 3725.25].map(clock),
                                    span: span({start: 3, end: 4.1}),
                                    bars: [0.5, -0.25, 0, -2].map(bar)}));
    """ % script
    done = subprocess.run(["node", "-e", harness], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["times"] == ["0:00.0", "0:03.0", "0:04.1", "1:00.0", "1:15.5", "1:02:05.3"]  # as `c4c search`
    assert got["span"] == "0:03.0 – 0:04.1"
    assert got["bars"] == [["fill", "50%", "25%"], ["fill negative", "37.5%", "12.5%"], ["fill", "50%", "0%"],
                           ["fill negative", "0%", "50%"]]


def test_search_prints_the_time_format_of_the_page():
    from c4c.cli.retrieval_cmds import _clock

    assert [_clock(t) for t in (0, 3, 4.1, 59.96, 75.5, 3725.25)] == \
        ["0:00.0", "0:03.0", "0:04.1", "1:00.0", "1:15.5", "1:02:05.3"]


# --- the page -------------------------------------------------------------------------------------

def test_the_page_and_its_files_come_from_the_app_alone(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert "http://" not in r.text and "https://" not in r.text and "@import" not in r.text
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/static/../app.py").status_code == 404


# --- the command ----------------------------------------------------------------------------------

def test_serve_starts_prints_its_address_and_answers(lib):
    exe = Path(sys.executable).with_name("c4c")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from c4c.cli import main; main()"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd + ["serve", str(lib["lib"]), "--port", "0", "--device", "cpu", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        url, seen, deadline = None, [], time.monotonic() + 120
        while url is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if line.startswith("serving on "):
                url = line.split()[2]
        assert url and url.startswith("http://127.0.0.1:"), "".join(seen)
        health = None
        for _ in range(50):
            try:
                with urllib.request.urlopen(url + "api/health", timeout=5) as r:
                    health = json.load(r)
                break
            except OSError:
                time.sleep(0.2)
        assert health and health["rows"] == 10
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_listening_beyond_this_machine_warns(lib, monkeypatch, capsys):
    from c4c.serve import server

    class NoServer:
        def run(self, sockets) -> None:
            """Serve nothing: the test reads what `c4c serve` printed before it would start."""

    real_bind = server.bind
    monkeypatch.setattr(server, "bind", lambda host, port: real_bind("127.0.0.1", 0))  # never really open up
    monkeypatch.setattr(server, "make_server", lambda app, quiet=False: NoServer())
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False), ("::1", False)):
        main(["serve", str(lib["lib"]), "--host", host, "--port", "0", "--device", "cpu", "-q"])
        err = capsys.readouterr().err
        assert ("warning:" in err and "no login" in err) is warned, (host, err)


def test_a_port_in_use_is_one_line_and_exit_2(lib, capsys):
    from c4c.serve.server import bind

    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["serve", str(lib["lib"]), "--port", str(taken.getsockname()[1]), "--device", "cpu"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "cannot listen on 127.0.0.1" in err and "--port" in err and "Traceback" not in err
    finally:
        taken.close()


# --- a real browser -------------------------------------------------------------------------------

@contextmanager
def _running(app):
    """``app`` served by uvicorn in a thread on a free port of 127.0.0.1; stopped on leaving."""
    from c4c.serve.server import bind, make_server, url_of

    sock = bind("127.0.0.1", 0)
    server = make_server(app, quiet=True)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def _browser():
    """Headless Chromium through Debian's chromium-driver, kept off every address but 127.0.0.1."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no headless browser: apt-get install -y chromium chromium-driver (.ci/run does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--mute-audio",
                "--autoplay-policy=no-user-gesture-required", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium never looks for drivers online
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


@pytest.fixture(scope="module")
def page(request):
    from c4c.serve.app import create_app

    browser = _browser()  # skips before the library is built when there is no browser
    lib = request.getfixturevalue("lib")
    browser.set_page_load_timeout(30)
    browser.set_script_timeout(30)
    try:
        with _running(create_app(lib["searcher"])) as url:
            yield browser, url
    finally:
        browser.quit()


def _until(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _search(browser, url: str, text: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(url)
    box = _until("the query box", lambda: browser.find_elements(By.ID, "q"))[0]
    box.clear()
    box.send_keys(text + Keys.ENTER)
    _until("results", lambda: browser.find_elements(By.CSS_SELECTOR, "#results .card")
           and "Searching" not in browser.find_element(By.ID, "status").text)
    return browser.find_elements(By.CSS_SELECTOR, "#results .card")


def _card_image(browser, card) -> np.ndarray:
    """The pixels of a card's thumbnail as the browser decoded them (same origin: readable)."""
    _until("the thumbnail", lambda: browser.execute_script(
        "const i = arguments[0].querySelector('img'); return i.complete && i.naturalWidth > 0;", card))
    data = browser.execute_script("""
        const img = arguments[0].querySelector('img');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        return [c.width, c.height, Array.from(g.getImageData(0, 0, c.width, c.height).data)];""", card)
    w, h, px = data
    return np.asarray(px, dtype=np.uint8).reshape(h, w, 4)[..., :3]


def _video_state(browser) -> dict:
    return browser.execute_script("""
        const v = document.getElementById('video');
        return {ready: v.readyState, seeking: v.seeking, t: v.currentTime, src: v.currentSrc,
                error: v.error && v.error.code};""")


def test_in_a_browser_a_caption_shows_its_moment_first_and_a_click_plays_it_from_the_start(lib, page, tmp_path):
    browser, url = page
    video, start, end, _, caption = _pick(lib)
    cards = _search(browser, url, caption)
    top = cards[0]
    assert (top.get_attribute("data-video-id"), float(top.get_attribute("data-start"))) == (video, start)
    assert f"0:{start:04.1f} – 0:{end:04.1f}" in top.text and video in top.text and "#1" in top.text
    shown = _card_image(browser, top)
    want = lib["searcher"].thumbnail(Moment(1, video, start, end, 0.0))
    assert np.abs(shown.astype(int) - want.astype(int)).max() <= 2  # the right clip's frame
    browser.save_screenshot(str(tmp_path / "results.png"))

    top.click()
    state = _until("the video at the moment", lambda: (lambda s: s if s["error"] or (s["ready"] >= 1 and not s["seeking"]
                                                                                     and s["t"] > 0) else None)(_video_state(browser)))
    assert not state["error"], state
    assert state["src"].endswith(f"/api/video/{video}")
    assert state["t"] == pytest.approx(start, abs=0.5)  # playing on from the start for at most a moment
    browser.save_screenshot(str(tmp_path / "playing.png"))


def test_in_a_browser_the_keyboard_reaches_the_cards_and_plays_one(lib, page, tmp_path):
    from selenium.webdriver.common.keys import Keys

    browser, url = page
    video, start, end, _, caption = _pick(lib)
    cards = _search(browser, url, caption)
    assert len(cards) >= 2
    active = lambda: browser.switch_to.active_element  # noqa: E731
    active().send_keys(Keys.ARROW_DOWN)            # from the query box to the first card
    assert active() == cards[0]
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")              # focus is visible
    active().send_keys(Keys.ARROW_RIGHT)
    assert active() == cards[1]
    browser.save_screenshot(str(tmp_path / "keyboard.png"))
    active().send_keys(Keys.ARROW_LEFT)
    assert active() == cards[0]
    active().send_keys(Keys.TAB)
    assert active() == cards[1]
    active().send_keys(Keys.SHIFT, Keys.TAB)
    assert active() == cards[0]
    second_start = float(cards[1].get_attribute("data-start"))
    cards[1].send_keys(Keys.SPACE)
    state = _until("the second moment playing", lambda: (lambda s: s if s["ready"] >= 1 and not s["seeking"]
                                                         and abs(s["t"] - second_start) < 0.5 else None)(_video_state(browser)))
    assert state["src"].endswith("/api/video/" + cards[1].get_attribute("data-video-id"))
    cards[0].send_keys(Keys.ENTER)
    _until("the first moment playing", lambda: (lambda s: s["src"].endswith(f"/api/video/{video}") and s["ready"] >= 1
                                                and not s["seeking"] and abs(s["t"] - start) < 0.5)(_video_state(browser)))
