"""Caption tokens in the reference layout: SOT, at most ``max_words - 2`` BPE tokens, EOT, zero padding."""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from c4c.errors import C4CError

log = logging.getLogger(__name__)

SOT = 49406  # <|startoftext|>
EOT = 49407  # <|endoftext|>, the largest id: the text encoder reads its position


class CaptionTokenizer:
    """Callable: list of captions -> (ids int64 ``[N, max_words]``, mask bool ``[N, max_words]``).

    Uses open_clip's CLIP BPE tokenizer (ships with the wheel, works offline). ``mask`` is True for SOT,
    the caption tokens and EOT, False for the padding. Picklable: the open_clip tokenizer is created
    lazily in the process that uses it.
    """

    def __init__(self, max_words: int = 32) -> None:
        if int(max_words) < 2:
            raise C4CError(f"max_words must be at least 2 (start and end tokens), got {max_words}")
        self.max_words = int(max_words)
        self._tokenizer = None

    def _get(self):
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=self.max_words)
        return self._tokenizer

    def __call__(self, texts: Sequence[str] | str) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        ids = self._get()(list(texts), context_length=self.max_words).to(torch.int64)  # [N, W]
        # Real tokens run up to and including EOT. Not `ids != 0`: id 0 is also the byte "!" inside a word.
        eot_at = (ids == EOT).to(torch.int64).argmax(dim=1, keepdim=True)  # [N, 1]
        mask = torch.arange(self.max_words).unsqueeze(0) <= eot_at  # [N, W]
        return ids, mask

    def overflow(self, text: str) -> tuple[int, int, str] | None:
        """For a caption longer than ``max_words`` tokens: ``(tokens read, tokens in it, the text read)``
        (start and end tokens not counted); None when all of it is read."""
        tokenizer = self._get()
        tokens = tokenizer.encode(text)
        room = self.max_words - 2
        if len(tokens) <= room:
            return None
        return room, len(tokens), tokenizer.decode(tokens[:room]).strip()

    def __getstate__(self) -> dict:
        return {"max_words": self.max_words}

    def __setstate__(self, state: dict) -> None:
        self.max_words = state["max_words"]
        self._tokenizer = None

    def __repr__(self) -> str:
        return f"CaptionTokenizer(max_words={self.max_words})"
