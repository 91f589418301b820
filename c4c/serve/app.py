"""The FastAPI app of `c4c serve`: the search page, and the JSON API it calls.

Routes::

    GET /                          the search page (static/index.html, its app.js and style.css)
    GET /api/search?q=..&k=..&group=moment|video
                                   per query {"query", "warning", "results": [moment dicts]}, as
                                   `c4c search --json` (warning: the query was cut to what the text tower reads)
                                   less each video's file path (the page plays videos by id)
    GET /api/health                index size, model, device
    GET /api/thumbnail/{video_id}?start=..&end=..
                                   PNG of the stored frame nearest the middle of that span
    GET /api/video/{video_id}      the video file the index names, with HTTP range requests
    GET /docs, /openapi.json       FastAPI's API docs

A video is always named by its id; its file comes from the index's row table (:class:`VideoFiles`),
so no text from the client is ever turned into a path. Unknown ids are 404, bad parameters 422.
"""

from __future__ import annotations

import io
import mimetypes
import threading
from pathlib import Path
from typing import Annotated, Optional

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from c4c import choices
from c4c.errors import C4CError
from c4c.run.source import from_record
from c4c.search.moments import Moment

MAX_K = 100             # results per query at most
MAX_QUERIES = 16        # queries per request at most
MAX_QUERY_CHARS = 500   # characters per query at most (the text tower reads max_words tokens anyway)
STATIC = Path(__file__).parent / "static"
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
              "style.css": "text/css; charset=utf-8"}
# the page loads nothing but its own files (no CDN, no fonts, no inline script)
PAGE_POLICY = ("default-src 'self'; img-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")


def _has_text(q: str) -> str:
    if not q.strip():
        raise ValueError("a query must hold some text, e.g. q=a man is cooking pasta")
    return q


QueryText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS), AfterValidator(_has_text)]


class MomentOut(BaseModel):
    """One result, as `c4c search --json` prints it less the file's path: a client plays a video by its
    id (/api/video/{video_id}); where it lies on the server is none of its business."""

    rank: int = Field(description="1 = best")
    video_id: str
    start: Optional[float] = Field(description="Seconds from the video's start (null: whole video, span unknown).")
    end: Optional[float] = Field(description="Seconds (null: whole video).")
    score: float = Field(description="Cosine similarity of the query and the moment.")


class QueryResults(BaseModel):
    query: str
    warning: Optional[str] = Field(None, description="Set when the query is longer than the text tower reads: "
                                                      "only its first tokens were searched (null: all of it).")
    results: list[MomentOut]


class Health(BaseModel):
    status: str
    index: str = Field(description="The index folder.")
    rows: int = Field(description="Rows in the index (moments, or whole videos).")
    videos: int = Field(description="Distinct videos.")
    playable: int = Field(description="Videos whose file the index names and that exists.")
    moments: bool = Field(description="Whether rows are windows of videos (moments) rather than whole videos.")
    kind: str = Field(description="faiss index kind.")
    model: Optional[str] = Field(description="The model that encoded the videos, as the index records it.")
    fingerprint: Optional[str] = None
    device: str
    max_k: int


class VideoFiles:
    """Which file each video id of the index is: the only files the app ever sends.

    Built once from the index's row table, whose paths the :class:`~c4c.stages.search.Searcher` made
    absolute (relative ones of older indexes are looked for in the working folder and beside the index)."""

    def __init__(self, searcher) -> None:
        rows = searcher.index.rows
        self._files: dict[str, Path] = {}
        for vid, path in zip(rows.videos, rows.paths):
            if path:
                self._files[vid] = Path(path).resolve()
        self.ids = frozenset(rows.videos)

    def file(self, video_id: str) -> Path:
        """The file of ``video_id``; HTTPException 404 when the index does not hold it or it is gone."""
        if video_id not in self.ids:
            raise HTTPException(404, detail="no such video in the index")
        path = self._files.get(video_id)
        if path is None:
            raise HTTPException(404, detail="the index does not name this video's file")
        if not path.is_file():
            raise HTTPException(404, detail="this video's file is missing on the server (moved or removed)")
        return path

    def playable(self) -> int:
        return sum(p.is_file() for p in self._files.values())

    def unplayable(self) -> str | None:
        """One line saying how many videos cannot be played and why (None when all can)."""
        unnamed = len(self.ids) - len(self._files)
        missing = sorted(str(p) for p in self._files.values() if not p.is_file())
        if not unnamed and not missing:
            return None
        why = []
        if missing:
            why.append(f"{len(missing)} file{'s' if len(missing) != 1 else ''} missing (moved or removed since "
                       f"the index was built, e.g. {missing[0]})")
        if unnamed:
            why.append(f"the index names no file for {unnamed} (made from frames without their source files)")
        return (f"{unnamed + len(missing)} of {len(self.ids)} videos cannot be played: {'; '.join(why)}; "
                "search and thumbnails still work")


def public(moment: Moment) -> dict:
    """A result as the API gives it: `c4c search --json`'s fields less the server's file path."""
    return {k: v for k, v in moment.as_dict().items() if k != "path"}


def _model_line(searcher) -> tuple[str | None, str | None]:
    meta = searcher.index.meta or {}
    source = from_record(meta.get("model"), run=meta.get("run"), checkpoint=meta.get("checkpoint"))
    return (source.describe(), source.fingerprint) if source is not None else (None, None)


def create_app(searcher) -> FastAPI:
    """The app over ``searcher`` (a :class:`c4c.stages.search.Searcher`, kept for the app's life)."""
    videos = VideoFiles(searcher)
    model, fingerprint = _model_line(searcher)
    lock = threading.Lock()  # the model, faiss and the frame stores are used by one request at a time
    app = FastAPI(title="c4c search", version="1",
                  description="Text-to-video search over one c4c index (`c4c serve`). Videos are named by "
                              "their id in the index; the server looks their files up itself.")
    app.state.searcher = searcher
    app.state.videos = videos

    @app.exception_handler(C4CError)
    async def user_error(request, exc: C4CError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": exc.render()})

    def page_file(name: str) -> Response:
        body = (STATIC / name).read_bytes()
        return Response(body, media_type=PAGE_FILES[name],
                        headers={"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return page_file("index.html")

    @app.get("/static/app.js", include_in_schema=False)
    def script() -> Response:
        return page_file("app.js")

    @app.get("/static/style.css", include_in_schema=False)
    def style() -> Response:
        return page_file("style.css")

    @app.get("/api/search", response_model=list[QueryResults], summary="Search the index with text")
    def search(
        q: Annotated[list[QueryText], Query(min_length=1, max_length=MAX_QUERIES,
                                            description="Query text; repeat q for several queries.")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Results per query.")] = 10,
        group: Annotated[choices.Group, Query(description="moment: overlapping windows of a video merge into "
                                                          "one result; video: one result per video.")] = "moment",
    ) -> list[dict]:
        with lock:
            results = searcher.search(list(q), k, group=group)
            warnings = searcher.query_warnings(list(q))
        return [{"query": text, "warning": w, "results": [public(m) for m in hits]}
                for text, w, hits in zip(q, warnings, results)]

    @app.get("/api/health", response_model=Health, summary="What is being served")
    def health() -> dict:
        rows = searcher.index.rows
        return {"status": "ok", "index": str(searcher.index_dir), "rows": searcher.count,
                "videos": len(rows.videos), "playable": videos.playable(),
                "moments": bool(searcher.index.manifest.get("moments")), "kind": searcher.index.kind,
                "model": model, "fingerprint": fingerprint, "device": str(searcher.device), "max_k": MAX_K}

    @app.get("/api/thumbnail/{video_id:path}", summary="A frame from the middle of a moment (PNG)",
             responses={200: {"content": {"image/png": {}}}, 404: {"description": "Unknown video, or no frames"}})
    def thumbnail(
        video_id: str,
        start: Annotated[Optional[float], Query(ge=0, allow_inf_nan=False, description="Moment start (seconds).")] = None,
        end: Annotated[Optional[float], Query(ge=0, allow_inf_nan=False, description="Moment end (seconds).")] = None,
    ) -> Response:
        if video_id not in videos.ids:
            raise HTTPException(404, detail="no such video in the index")
        if start is not None and end is not None and end < start:
            raise HTTPException(422, detail="end must not come before start")
        moment = Moment(rank=1, video_id=video_id, start=start, end=end, score=0.0)
        try:
            with lock:
                frame = searcher.thumbnail(moment)
        except C4CError as exc:
            raise HTTPException(404, detail=exc.problem) from None
        return Response(_png(frame), media_type="image/png", headers={"Cache-Control": "max-age=300"})

    @app.get("/api/video/{video_id:path}", summary="The video file (HTTP range requests)",
             response_class=FileResponse,
             responses={206: {"description": "Partial content"}, 404: {"description": "Unknown video"},
                        416: {"description": "Range not satisfiable"}})
    def video(video_id: str) -> FileResponse:
        path = videos.file(video_id)
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        # Starlette's FileResponse answers Range: one range -> 206 with Content-Range, several ->
        # multipart/byteranges, a start past the end -> 416 with "bytes */size", a malformed header -> 400
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    app.add_api_route("/api/video/{video_id:path}", video, methods=["HEAD"], include_in_schema=False)

    return app


def _png(frame) -> bytes:
    """uint8 ``[H, W, 3]`` RGB as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()
