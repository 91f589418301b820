"""Caption token ids back to text with open_clip's BPE decoder."""

from __future__ import annotations

import functools
import re
from typing import Sequence

from c4c.data.text import EOT, SOT


@functools.lru_cache(maxsize=1)
def _bpe():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")


_SPACE_BEFORE = re.compile(r"\s+([,.!?;:%)\]}]|'(?:s|t|re|ve|m|ll|d)\b)")
_SPACE_AFTER = re.compile(r"([(\[{])\s+")


def detokenize(token_lists: Sequence[Sequence[int]]) -> list[str]:
    """Token ids -> captions with open_clip's BPE decoder; SOT/EOT (and anything after EOT) dropped.

    Spaces are cleaned: runs collapse to one, none before ``, . ! ? ; :`` and English clitics
    (``'s``, ``'t``, ...), none at the ends. (CLIP's tokenizer lower-cases, so captions are lower-case.)
    """
    tokenizer = _bpe()
    out = []
    for tokens in token_lists:
        ids = []
        for t in tokens:
            t = int(t)
            if t == EOT:
                break
            if t != SOT:
                ids.append(t)
        text = " ".join(tokenizer.decode(ids).split())
        text = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text))
        out.append(text)
    return out
