"""Caption scores with pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr and (when installed) SPICE.

What the numbers are:

* Scores are pycocoevalcap's, on its scale: fractions, so BLEU-4 = 0.42 is the "42.0" of papers and
  CIDEr = 0.538 the "53.8". ``CIDEr`` is pycocoevalcap's ``Cider`` (the CIDEr-D form: clipped counts
  and a length penalty); its idf comes from the references of the scored set, so it depends on which
  videos are scored together, and a set of one video scores 0.
* Every hypothesised video is one hypothesis; all captions of the video are its references.
* Tokenisation (``tokenize``): ``"ptb"`` is pycocoevalcap's Stanford PTB tokenizer (Java), as COCO
  and most captioning papers use: lower-cased, punctuation tokens dropped (note that it keeps
  brackets, as ``-lrb-``/``-rrb-``, a quirk of the original). ``"simple"`` is a pure-Python
  imitation of it (:func:`simple_tokenize`), used automatically when Java is missing. ``"none"``
  only normalises white space, as UniVL's nlg-eval evaluation scores its decoder output.
* METEOR and the PTB tokenizer need Java. Without it, BLEU, ROUGE-L and CIDEr are still reported
  (on simple tokens) and METEOR is listed under ``skipped`` with the reason and how to install Java.
* SPICE needs Stanford CoreNLP jars that pycocoevalcap downloads on first use; c4c never starts that
  download (an offline machine would hang or fail): SPICE runs only when the jars are already there.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from c4c.choices import CAPTION_TOKENIZERS
from c4c.errors import C4CError

log = logging.getLogger(__name__)

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
"""Metric names, in the order they are reported. ``BLEU`` selects all four BLEU orders."""

JAVA_HINT = "install a Java runtime (e.g. `apt install default-jre`) and make sure `java` is on PATH"

SPICE_CORENLP = "stanford-corenlp-3.6.0"  # the jars pycocoevalcap's SPICE needs (it would download them)
_SHOWN_IDS = 5  # ids named in an error message


# --------------------------------------------------------------------------- Java and SPICE

@functools.lru_cache(maxsize=1)
def java_available() -> bool:
    """True if a working ``java`` is on PATH (``java -version`` succeeds); cached for the process."""
    exe = shutil.which("java")
    if exe is None:
        return False
    try:
        done = subprocess.run([exe, "-version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _spice_folder() -> Path | None:
    spec = importlib.util.find_spec("pycocoevalcap.spice")
    return None if spec is None or spec.origin is None else Path(spec.origin).parent


def spice_missing(folder: Path | None = None) -> str | None:
    """Why SPICE cannot run here (missing jars), or None when it can (Java not checked).

    ``folder`` is pycocoevalcap's ``spice`` folder (found from the installed package by default).
    """
    folder = _spice_folder() if folder is None else Path(folder)
    if folder is None:
        return "pycocoevalcap's SPICE module is not installed"
    needed = [folder / "spice-1.0.jar", folder / "lib" / f"{SPICE_CORENLP}.jar",
              folder / "lib" / f"{SPICE_CORENLP}-models.jar"]
    missing = [p.name for p in needed if not p.is_file()]
    if not missing:
        return None
    return (f"SPICE needs {', '.join(missing)} in {folder}, which pycocoevalcap downloads from "
            f"Stanford on first use; c4c does not download. With network access run "
            f"`python -m pycocoevalcap.spice.get_stanford_models` once")


# --------------------------------------------------------------------------- tokenizers

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_CLITIC_RE = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_SYMBOL_RE = re.compile(r"([$%&+])")  # PTB makes these tokens of their own
_SEPARATOR_RE = re.compile(r"[,;:](?!\d)|(?<!\d)[,;:]")  # but "3,000" and "3:30" stay whole
_ABBREVIATION_RE = re.compile(r"(?:[a-z]\.)*[a-z]")  # "i", "p.m", "u.s.a": PTB keeps their final dot
_TITLES = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs"}
_EDGE = set("'\"`-")  # split off word ends one character at a time
_END = set(".?!")  # split off word ends as one run ("?!" stays a token, as in PTB)
_DROPPED = {".", "?", "!", ",", ":", ";", "-", "--", "'", "''", "`", "``", '"'}  # pycocoevalcap's list


def _one_line(text: str) -> str:
    """``text`` with every kind of line break (and runs of white space) turned into one space."""
    return " ".join(text.split())


def _split_chunk(chunk: str) -> list[str]:
    """Split quotes, dashes and end punctuation off both ends of a white-space chunk."""
    if chunk in _CLITICS or chunk in _BRACKETS.values():
        return [chunk]
    start, end = 0, len(chunk)
    head: list[str] = []
    tail: list[str] = []
    while start < end and chunk[start] in _EDGE:
        head.append(chunk[start])
        start += 1
    while end > start:
        if chunk[end - 1] in _EDGE:
            tail.insert(0, chunk[end - 1])
            end -= 1
            continue
        if chunk[end - 1] not in _END:
            break
        run = end - 1
        while run > start and chunk[run - 1] in _END:
            run -= 1
        word = chunk[start:run]
        if chunk[run:end] == "." and (_ABBREVIATION_RE.fullmatch(word) or word in _TITLES):
            break
        tail.insert(0, chunk[run:end])
        end = run
    return head + ([chunk[start:end]] if start < end else []) + tail


def _dropped(token: str) -> bool:
    return token in _DROPPED or set(token) <= {"."} or set(token) <= {"-"}


def simple_tokenize(text: str) -> str:
    """Pure-Python imitation of pycocoevalcap's PTB tokenisation, for machines without Java.

    Lower-cases; splits clitics (``isn't`` -> ``is n't``, ``man's`` -> ``man 's``); writes brackets
    as PTB's ``-lrb-``/``-rrb-``/``-lsb-``... (pycocoevalcap keeps them); makes ``$ % & +`` tokens;
    splits punctuation off words (keeping abbreviations such as ``u.s.a.`` and ``mr.`` whole) and
    drops the punctuation tokens pycocoevalcap drops (``. , ? ! : ; ' " ` - -- ...``). It agrees
    with PTB on ordinary captions; rarer forms (``'tis``, ``rock'n'roll``, ``c;d``) can differ.
    """
    text = _one_line(text).lower().translate(_QUOTES)
    for bracket, token in _BRACKETS.items():
        text = text.replace(bracket, f" {token} ")
    text = _CLITIC_RE.sub(r" \1", text)
    text = _SYMBOL_RE.sub(r" \1 ", text)
    text = _SEPARATOR_RE.sub(lambda m: f" {m.group(0)} ", text)
    tokens = [tok for chunk in text.split() for tok in _split_chunk(chunk)]
    return " ".join(tok for tok in tokens if not _dropped(tok))


def _ptb_tokenize(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """pycocoevalcap's PTBTokenizer on ``{id: [caption, ...]}``, guarded against its silent failures."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # PTB reads one caption per line: any line break inside a caption would shift every later one.
    data = {key: [{"caption": _one_line(c)} for c in caps] for key, caps in captions.items()}
    try:
        out = PTBTokenizer().tokenize(data)
    except OSError as exc:
        raise C4CError(f"the PTB tokenizer could not run: {exc}",
                       hint="pycocoevalcap writes a temporary file next to its jar: make its "
                            "tokenizer folder writable, or use the simple tokenizer") from exc
    short = [key for key, caps in captions.items() if len(out.get(key, ())) != len(caps)]
    has_words = any(any(ch.isalnum() for ch in c) for caps in captions.values() for c in caps)
    if short or (has_words and not any(t for caps in out.values() for t in caps)):
        raise C4CError("the PTB tokenizer (Java) returned no output for some captions",
                       hint="see the Java messages above; or use the simple tokenizer")
    return out


def tokenize_captions(captions: dict[str, list[str]], tokenizer: str) -> dict[str, list[str]]:
    """Tokenise ``{id: [caption, ...]}`` with one of :data:`c4c.choices.CAPTION_TOKENIZERS`: ``ptb``, the Stanford
    PTB tokenizer (needs Java); ``simple``, its pure-Python imitation; ``none``, white space."""
    if tokenizer == "ptb":
        return _ptb_tokenize(captions)
    if tokenizer == "simple":
        return {key: [simple_tokenize(c) for c in caps] for key, caps in captions.items()}
    if tokenizer == "none":
        return {key: [_one_line(c) for c in caps] for key, caps in captions.items()}
    raise C4CError(f"unknown tokenizer {tokenizer!r}", hint=f"use one of {', '.join(CAPTION_TOKENIZERS)}")


# --------------------------------------------------------------------------- inputs

def _named(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOWN_IDS])
    return shown + (", ..." if len(ids) > _SHOWN_IDS else "")


def _select_metrics(metrics: str | Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list(METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    by_name = {name.lower(): name for name in METRICS}
    chosen: set[str] = set()
    for name in metrics:
        key = str(name).lower()
        if key == "bleu":
            chosen.update(m for m in METRICS if m.startswith("BLEU"))
        elif key in by_name:
            chosen.add(by_name[key])
        else:
            raise C4CError(f"unknown caption metric {name!r}", hint=f"use BLEU or {', '.join(METRICS)}")
    if not chosen:
        raise C4CError("no caption metric selected", hint=f"use BLEU or {', '.join(METRICS)}")
    return [m for m in METRICS if m in chosen]


def _check_inputs(hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]],
                  allow_missing: bool) -> tuple[list[str], list[str]]:
    """Scored ids (hypothesis order) and reference ids without a hypothesis; C4CError on bad input."""
    if not isinstance(hypotheses, Mapping) or not isinstance(references, Mapping):
        raise C4CError("hypotheses and references must be mappings from video id")
    bad = [key for key, text in hypotheses.items() if not isinstance(text, str)]
    if bad:
        raise C4CError(f"{len(bad)} generated caption(s) are not strings (videos {_named(bad)})")
    for key, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence) or not refs:
            raise C4CError(f"references of video {key!r} must be a non-empty list of strings")
        if not all(isinstance(r, str) for r in refs):
            raise C4CError(f"references of video {key!r} hold a value that is not a string")
    if not hypotheses:
        raise C4CError("no generated captions to score")
    unknown = [key for key in hypotheses if key not in references]
    if unknown:
        raise C4CError(f"{len(unknown)} captioned video(s) have no references: {_named(unknown)}",
                       hint="check that the dataset, annotations and split match the captions file")
    missing = [key for key in references if key not in hypotheses]
    if missing and not allow_missing:
        raise C4CError(f"{len(missing)} of {len(references)} reference videos have no generated caption "
                       f"({_named(missing)})",
                       hint="caption every video of the split, or allow missing videos to score only "
                            "the captioned ones")
    return list(hypotheses), missing


def load_captions_json(path: str | Path) -> dict[str, str]:
    """Generated captions from a JSON file: ``{video_id: caption}``, as ``c4c caption`` writes them.

    Raises C4CError naming the file when it is missing, not JSON, not of that shape (including the
    ``captions.meta.json`` sidecar, recognised by its ``"format": "c4c-..."``), empty, or holds a
    caption that is not a string.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise C4CError("captions file not found", path=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise C4CError(f"cannot read captions file: {exc}", path=path) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise C4CError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from exc
    shape_hint = 'expected {"video_id": "caption", ...}'
    if not isinstance(data, dict):
        raise C4CError(f"captions file holds a JSON {type(data).__name__}, not an object", path=path,
                       hint=shape_hint)
    if isinstance(data.get("format"), str) and data["format"].startswith("c4c-"):
        raise C4CError(f"this is a {data['format']} metadata file, not generated captions", path=path,
                       hint="pass captions.json, the {video_id: caption} object written by `c4c caption`")
    if not data:
        raise C4CError("captions file holds no captions", path=path, hint=shape_hint)
    bad = [key for key, caption in data.items() if not isinstance(caption, str)]
    if bad:
        raise C4CError(f"caption of video {bad[0]!r} is a {type(data[bad[0]]).__name__}, not a string"
                       + (f" ({len(bad)} such videos)" if len(bad) > 1 else ""), path=path, hint=shape_hint)
    meta = path.with_name((path.name[:-len(".json")] if path.name.endswith(".json") else path.name) + ".meta.json")
    if meta.is_file():
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise C4CError(f"unreadable captions meta file: {exc}", path=meta) from None
        if not isinstance(info, dict) or info.get("format") != "c4c-captions":
            raise C4CError("not a captions meta file (no format \"c4c-captions\")", path=meta)
        if int(info.get("format_version", 0)) > 1:
            raise C4CError("captions written by a newer c4c", path=meta, hint="upgrade c4c")
    return dict(data)


def references_from_records(records: Iterable[Any]) -> dict[str, list[str]]:
    """``{video_id: [caption, ...]}`` from :class:`~c4c.datasets.records.VideoRecord` objects.

    All captions of a video are its references; records that share a video id (clip windows of one
    video) are merged in order; records without captions are left out.
    """
    references: dict[str, list[str]] = {}
    for record in records:
        if not record.captions:
            log.debug("video %s has no captions; left out of the references", record.video_id)
            continue
        if record.video_id in references:
            log.debug("merging the captions of several records of video %s", record.video_id)
        references.setdefault(record.video_id, []).extend(record.captions)
    return references


# --------------------------------------------------------------------------- scorers

def _close_meteor(meteor: Any) -> None:
    """End METEOR's Java process and reap it (pycocoevalcap only does so when garbage-collected)."""
    proc = meteor.meteor_p
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    # compute_score leaves its lock held when it raises; Meteor.__del__ takes that lock, so give it a
    # free one or garbage collection would block forever.
    meteor.lock = threading.Lock()


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]], timeout_s: float) -> float:
    """pycocoevalcap's METEOR, with its Java process closed afterwards and killed past ``timeout_s``."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        meteor.meteor_p.kill()

    watchdog = threading.Timer(timeout_s, stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        score, _ = meteor.compute_score(gts, res)
    except (OSError, ValueError) as exc:
        if fired.is_set():
            raise TimeoutError(f"METEOR took longer than {timeout_s:g} s and was stopped") from exc
        raise
    finally:
        watchdog.cancel()
        _close_meteor(meteor)
    return float(score)


def _spice(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    from pycocoevalcap.spice.spice import Spice

    score, _ = Spice().compute_score(gts, res)
    return float(score)


def score_captions(hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]], *,
                   tokenize: str = "ptb", metrics: str | Iterable[str] | None = None,
                   allow_missing: bool = False, meteor_timeout_s: float = 600.0) -> dict[str, Any]:
    """Score generated captions ``{video_id: caption}`` against ``{video_id: [reference, ...]}``.

    Returns ``{"BLEU-1": .., "BLEU-2": .., "BLEU-3": .., "BLEU-4": .., "METEOR": .., "ROUGE-L": ..,
    "CIDEr": .., "SPICE": ..}`` (the selected ``metrics`` that could run, pycocoevalcap's fractions)
    plus ``"skipped": {metric: reason}``, ``"tokenizer"`` (the one used), ``"warnings"`` (list of
    str), ``"count"`` (videos scored) and ``"missing"`` (reference videos without a caption).

    A hypothesis id without references is an error; reference videos without a hypothesis are an
    error unless ``allow_missing`` (then only the captioned videos are scored, and CIDEr's idf comes
    from their references only). Empty captions are allowed and score 0. With ``tokenize="ptb"`` and
    no Java, the simple tokenizer is used instead and METEOR is skipped (``warnings`` says so); METEOR
    or SPICE failing at run time are skipped with the error as reason.
    """
    wanted = _select_metrics(metrics)
    if tokenize not in CAPTION_TOKENIZERS:
        raise C4CError(f"unknown tokenizer {tokenize!r}", hint=f"use one of {', '.join(CAPTION_TOKENIZERS)}")
    scored, missing = _check_inputs(hypotheses, references, allow_missing)
    warnings: list[str] = []
    if missing:
        warnings.append(f"{len(missing)} reference video(s) have no generated caption and are not scored")
    java = java_available()
    if tokenize == "ptb" and not java:
        tokenize = "simple"
        warnings.append(f"Java not found: used the simple Python tokenizer instead of PTB (scores may "
                        f"differ slightly) and skipped METEOR; {JAVA_HINT}")
    for text in warnings:
        log.warning(text)

    res = tokenize_captions({key: [hypotheses[key]] for key in scored}, tokenize)
    gts = tokenize_captions({key: list(references[key]) for key in scored}, tokenize)

    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    if any(m.startswith("BLEU") for m in wanted):
        from pycocoevalcap.bleu.bleu import Bleu

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(1, 5):
            values[f"BLEU-{n}"] = float(bleu[n - 1])
    if "METEOR" in wanted:
        if not java:
            skipped["METEOR"] = f"METEOR needs Java, which was not found: {JAVA_HINT}"
        else:
            try:
                values["METEOR"] = _meteor(gts, res, meteor_timeout_s)
            except (OSError, ValueError) as exc:
                skipped["METEOR"] = f"METEOR failed: {exc or type(exc).__name__}"
    if "ROUGE-L" in wanted:
        from pycocoevalcap.rouge.rouge import Rouge

        values["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    if "CIDEr" in wanted:
        from pycocoevalcap.cider.cider import Cider

        values["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if "SPICE" in wanted:
        reason = None if java else f"SPICE needs Java, which was not found: {JAVA_HINT}"
        reason = reason or spice_missing()
        if reason:
            skipped["SPICE"] = reason
        else:
            try:
                values["SPICE"] = _spice(gts, res)
            except (OSError, ValueError, subprocess.CalledProcessError) as exc:
                skipped["SPICE"] = f"SPICE failed: {exc}"
    for metric, reason in skipped.items():
        if metric != "SPICE" or metrics is not None:  # SPICE is optional unless asked for
            log.warning("%s skipped: %s", metric, reason)

    result: dict[str, Any] = {m: values[m] for m in wanted if m in values}
    result.update({"skipped": skipped, "tokenizer": tokenize, "warnings": warnings,
                   "count": len(scored), "missing": len(missing)})
    return result
