"""Caption scores: equal to pycocoevalcap's own, hand-checked values, the no-Java path, inputs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from c4c.datasets.records import VideoRecord
from c4c.errors import C4CError
from c4c.metrics import captions
from c4c.metrics.captions import (
    METRICS,
    load_captions_json,
    references_from_records,
    score_captions,
    simple_tokenize,
    spice_missing,
    tokenize_captions,
)

needs_java = pytest.mark.skipif(not captions.java_available(), reason="needs a Java runtime")

# A small fixed set with capitals, punctuation, clitics and brackets.
HYPOTHESES = {
    "video1": "A man is playing a guitar.",
    "video2": "A woman is slicing an onion in the kitchen!",
    "video3": "Two dogs run on the grass, don't they?",
    "video4": "A chef (in white) is cooking.",
    "video5": "People are dancing.",
}
REFERENCES = {
    "video1": ["A man plays the GUITAR.", "Someone is playing a guitar on stage.", "a guy strums his guitar"],
    "video2": ["A woman slices an onion.", "Someone is cutting onions in a kitchen.",
               "A lady chops an ONION!"],
    "video3": ["Two dogs are running on the grass.", "The dogs play in a field.", "dogs run around outside"],
    "video4": ["A cook is preparing food.", "A chef, dressed in white, cooks a meal.", "Someone is cooking."],
    "video5": ["A crowd of people is dancing.", "People dance at a party.", "Dancers move to music."],
}


def coco_scores(hypotheses: dict, references: dict, with_meteor: bool) -> dict:
    """The expected values: pycocoevalcap's PTBTokenizer and scorers called directly."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in references[k]] for k in hypotheses})
    res = tokenizer.tokenize({k: [{"caption": hypotheses[k]}] for k in hypotheses})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU-{n}": bleu[n - 1] for n in range(1, 5)}
    out["ROUGE-L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    if with_meteor:
        meteor = Meteor()
        out["METEOR"] = meteor.compute_score(gts, res)[0]
        del meteor  # its __del__ ends the Java process
    return out


def child_processes() -> list[str]:
    """Command name and state of each live or zombie child of this process (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name_end = text.rindex(")")
        fields = text[name_end + 2:].split()
        if int(fields[1]) == os.getpid():
            found.append(f"{text[text.index('(') + 1:name_end]} (state {fields[0]})")
    return found


@pytest.fixture()
def no_java(monkeypatch):
    """Pretend Java is missing, and fail if anything still tries to start it."""
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    def refuse(*args, **kwargs):
        raise AssertionError("Java was started although it is missing")

    monkeypatch.setattr(captions, "java_available", lambda: False)
    monkeypatch.setattr(PTBTokenizer, "tokenize", refuse)
    monkeypatch.setattr(Meteor, "__init__", refuse)


# --------------------------------------------------------------------------- equal to pycocoevalcap

@needs_java
def test_bleu_rouge_cider_equal_pycocoevalcap_with_ptb_tokens():
    expected = coco_scores(HYPOTHESES, REFERENCES, with_meteor=False)
    result = score_captions(HYPOTHESES, REFERENCES, metrics=["BLEU", "ROUGE-L", "CIDEr"])
    assert result["tokenizer"] == "ptb"
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    assert result["count"] == 5 and result["skipped"] == {} and result["warnings"] == []


@needs_java
@pytest.mark.slow
def test_all_scores_equal_pycocoevalcap_including_meteor():
    expected = coco_scores(HYPOTHESES, REFERENCES, with_meteor=True)
    result = score_captions(HYPOTHESES, REFERENCES)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    reported = [m for m in METRICS if m in result and m != "SPICE"]
    assert reported == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    assert 0.0 < result["METEOR"] < 1.0


@needs_java
@pytest.mark.slow
def test_meteor_closes_its_java_process_and_runs_twice_in_one_process():
    first = score_captions(HYPOTHESES, REFERENCES, metrics=["METEOR"])
    assert child_processes() == []
    second = score_captions(HYPOTHESES, REFERENCES, metrics=["METEOR"])
    assert child_processes() == []
    assert first["METEOR"] == second["METEOR"] and "METEOR" not in first["skipped"]


@needs_java
def test_meteor_past_its_time_limit_is_stopped_and_skipped():
    result = score_captions(HYPOTHESES, REFERENCES, metrics=["METEOR", "BLEU-4"], meteor_timeout_s=0.01)
    assert "METEOR" not in result
    assert "took longer than 0.01 s" in result["skipped"]["METEOR"]
    assert "BLEU-4" in result
    assert child_processes() == []


@needs_java
def test_simple_tokenizer_agrees_with_ptb_on_the_fixed_set():
    texts = list(HYPOTHESES.values()) + [r for refs in REFERENCES.values() for r in refs]
    ptb = tokenize_captions({"all": texts}, "ptb")["all"]
    assert [simple_tokenize(t) for t in texts] == ptb


@needs_java
def test_line_breaks_inside_a_caption_do_not_shift_the_ptb_lines():
    out = tokenize_captions({"a": ["A man\rsings.", "a dog\u2028barks"], "b": ["Cats\nsleep."]}, "ptb")
    assert out == {"a": ["a man sings", "a dog barks"], "b": ["cats sleep"]}


# --------------------------------------------------------------------------- hand-checked values

def test_bleu_1_of_a_perfect_match_is_one():
    result = score_captions({"v": "a dog runs"}, {"v": ["a dog runs", "a cat sits"]},
                            tokenize="simple", metrics=["BLEU-1"])
    assert result["BLEU-1"] == pytest.approx(1.0, abs=1e-8)
    assert set(result) == {"BLEU-1", "skipped", "tokenizer", "warnings", "count", "missing"}


def test_bleu_1_and_2_of_a_one_word_substitution():
    # unigrams: a, man, plays, a match of 5 -> 4/5; bigrams: 3 of 4 match; equal lengths -> no penalty
    result = score_captions({"v": "a man plays a piano"}, {"v": ["a man plays a guitar"]},
                            tokenize="simple", metrics=["BLEU"])
    assert result["BLEU-1"] == pytest.approx(0.8, abs=1e-8)
    assert result["BLEU-2"] == pytest.approx(math.sqrt(0.8 * 0.75), abs=1e-8)


def test_rouge_l_of_a_known_pair():
    # LCS("a man is playing a guitar", "a man plays a guitar") = "a man a guitar": 4 words
    precision, recall, beta = 4 / 6, 4 / 5, 1.2
    expected = (1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)
    result = score_captions({"v": "A man is playing a guitar."}, {"v": ["A man plays a guitar!"]},
                            tokenize="simple", metrics=["ROUGE-L"])
    assert result["ROUGE-L"] == pytest.approx(expected, rel=1e-12)


def test_empty_captions_are_allowed_and_score_zero():
    result = score_captions({"a": "", "b": "  "}, {"a": ["a cat"], "b": ["a dog sits"]},
                            tokenize="simple", metrics=["BLEU", "ROUGE-L", "CIDEr"])
    assert all(result[m] == 0.0 for m in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"))


@pytest.mark.parametrize("text, tokens", [
    ("A man's playing a GUITAR, isn't he?", "a man 's playing a guitar is n't he"),
    ("A chef (in white) cooks... fast!", "a chef -lrb- in white -rrb- cooks fast"),
    ("Mr. Smith earns $5 at 3:30 p.m.", "mr. smith earns $ 5 at 3:30 p.m."),
    ("“Quoted” -- what?!", "quoted what ?!"),
    ("line\nbreak\r\nhere", "line break here"),
])
def test_simple_tokenize_mimics_ptb(text, tokens):
    assert simple_tokenize(text) == tokens


def test_tokenizer_none_only_normalises_white_space():
    assert tokenize_captions({"a": [" A  Dog,\nruns. "]}, "none") == {"a": ["A Dog, runs."]}


# --------------------------------------------------------------------------- without Java / SPICE

def test_without_java_reports_bleu_rouge_cider_and_skips_meteor(no_java):
    result = score_captions(HYPOTHESES, REFERENCES)
    assert result["tokenizer"] == "simple"
    assert "METEOR" not in result and "SPICE" not in result
    assert "Java" in result["skipped"]["METEOR"] and "apt install default-jre" in result["skipped"]["METEOR"]
    assert "Java" in result["skipped"]["SPICE"]
    assert any("simple Python tokenizer" in w for w in result["warnings"])
    simple = score_captions(HYPOTHESES, REFERENCES, tokenize="simple", metrics=["BLEU", "ROUGE-L", "CIDEr"])
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert result[name] == simple[name]


def test_spice_without_its_jars_is_skipped_without_a_download(monkeypatch, tmp_path):
    import pycocoevalcap.spice.get_stanford_models as models

    def no_download(*args, **kwargs):
        raise AssertionError("SPICE tried to download Stanford CoreNLP")

    monkeypatch.setattr(models, "urlretrieve", no_download)
    monkeypatch.setattr(captions, "_spice_folder", lambda: tmp_path)
    monkeypatch.setattr(captions, "java_available", lambda: True)
    result = score_captions(HYPOTHESES, REFERENCES, tokenize="simple", metrics=["SPICE", "BLEU-1"])
    assert "SPICE" not in result and "BLEU-1" in result
    reason = result["skipped"]["SPICE"]
    assert "stanford-corenlp-3.6.0.jar" in reason and "get_stanford_models" in reason


def test_spice_is_found_when_its_jars_are_present(tmp_path):
    assert "spice-1.0.jar" in spice_missing(tmp_path)
    (tmp_path / "lib").mkdir()
    for name in ("spice-1.0.jar", "lib/stanford-corenlp-3.6.0.jar", "lib/stanford-corenlp-3.6.0-models.jar"):
        (tmp_path / name).write_bytes(b"")
    assert spice_missing(tmp_path) is None


def test_java_available_is_false_without_java_on_path(monkeypatch):
    captions.java_available.cache_clear()
    monkeypatch.setenv("PATH", "")
    try:
        assert captions.java_available() is False
    finally:
        captions.java_available.cache_clear()


# --------------------------------------------------------------------------- inputs and errors

def test_captions_for_unknown_videos_are_named():
    with pytest.raises(C4CError, match="2 captioned video\\(s\\) have no references: 'x1', 'x2'"):
        score_captions({"x1": "a", "video1": "b", "x2": "c"}, REFERENCES, tokenize="simple")


def test_reference_videos_without_captions_are_an_error_by_default():
    with pytest.raises(C4CError, match="3 of 5 reference videos have no generated caption"):
        score_captions({"video1": "a man", "video2": "a woman"}, REFERENCES, tokenize="simple")


def test_allow_missing_scores_only_the_captioned_videos():
    some = {"video1": HYPOTHESES["video1"], "video3": HYPOTHESES["video3"]}
    options = {"tokenize": "simple", "metrics": ["BLEU", "CIDEr"]}
    result = score_captions(some, REFERENCES, allow_missing=True, **options)
    alone = score_captions(some, {k: REFERENCES[k] for k in some}, **options)
    assert result["count"] == 2 and result["missing"] == 3
    assert result["BLEU-4"] == alone["BLEU-4"] and result["CIDEr"] == alone["CIDEr"]
    assert any("3 reference video(s)" in w for w in result["warnings"])


@pytest.mark.parametrize("hypotheses, references, message", [
    ({"v": 3}, {"v": ["a"]}, "1 generated caption\\(s\\) are not strings \\(videos 'v'\\)"),
    ({"v": "a"}, {"v": "a cat"}, "references of video 'v' must be a non-empty list"),
    ({"v": "a"}, {"v": []}, "references of video 'v' must be a non-empty list"),
    ({"v": "a"}, {"v": ["a", None]}, "not a string"),
    ({}, {"v": ["a"]}, "no generated captions"),
])
def test_bad_inputs_are_rejected(hypotheses, references, message):
    with pytest.raises(C4CError, match=message):
        score_captions(hypotheses, references, tokenize="simple")


def test_unknown_metric_and_tokenizer_are_rejected():
    with pytest.raises(C4CError, match="unknown caption metric 'BLEU-5'"):
        score_captions(HYPOTHESES, REFERENCES, metrics=["BLEU-5"])
    with pytest.raises(C4CError, match="unknown tokenizer 'nltk'"):
        score_captions(HYPOTHESES, REFERENCES, tokenize="nltk")


def test_metric_names_are_case_insensitive_and_reported_in_order():
    result = score_captions(HYPOTHESES, REFERENCES, tokenize="simple", metrics=["cider", "bleu-2"])
    assert [k for k in result if k in METRICS] == ["BLEU-2", "CIDEr"]


# --------------------------------------------------------------------------- loader and references

def test_load_captions_json_reads_an_object_of_captions(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"v1": "a dog", "v2": ""}))
    assert load_captions_json(path) == {"v1": "a dog", "v2": ""}


@pytest.mark.parametrize("content, message", [
    (None, "captions file not found"),
    ('{"v1": "a",\n  oops}', ":2: not valid JSON"),
    ('["a dog"]', "holds a JSON list, not an object"),
    ("{}", "holds no captions"),
    ('{"v1": "a", "v2": ["b"]}', "caption of video 'v2' is a list, not a string"),
    ('{"format": "c4c-captions", "version": 1, "beam": 5}',
     "this is a c4c-captions metadata file, not generated captions"),
])
def test_load_captions_json_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "captions.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(C4CError, match=message) as info:
        load_captions_json(path)
    assert str(path) in str(info.value)


def test_references_from_records_use_every_caption_and_merge_windows():
    records = [
        VideoRecord("v1", ["a dog runs", "a dog plays"], "test"),
        VideoRecord("v2", ["a cat"], "test"),
        VideoRecord("v1", ["the dog stops"], "test", start=5.0, end=9.0),
        VideoRecord("v3", [], "test"),
    ]
    assert references_from_records(records) == {"v1": ["a dog runs", "a dog plays", "the dog stops"],
                                                "v2": ["a cat"]}
