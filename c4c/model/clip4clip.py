"""CLIP4Clip: CLIP image and text towers, a 2-D or 3-D linear patch, one similarity head, the
symmetric InfoNCE loss (spec sections 4.2-4.8).

Inputs are what the data pipeline gives: ``video: uint8 [B, T, S, S, 3]`` (zero-padded at the end),
``video_mask: bool [B, T]``, ``text_ids: int64 [B, W]`` (SOT ... EOT, zero padding).
Only real frames go through the image tower (padded ones are skipped, which changes no score).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from c4c.choices import CLIP_MEAN, CLIP_STD, PATCHES
from c4c.errors import C4CError
from c4c.model.attention import use_direct_attention
from c4c.model.heads import HEADS, head_of
from c4c.model.towers import context_length, image_class_features, image_features, is_openai_vit, text_features

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)
_RESIZES_WARNED: set[tuple[int, int, int]] = set()  # (frame height, width, model size) already logged


def make_patch3d(conv1: nn.Conv2d) -> nn.Conv3d:
    """A Conv3d over 3 neighbouring frames whose centre slice is ``conv1`` and outer slices are zero,
    so at initialisation it computes exactly what the 2-D patch does (spec 4.4)."""
    out_ch, in_ch, p, _ = conv1.weight.shape
    conv = nn.Conv3d(in_ch, out_ch, kernel_size=(3, p, p), stride=(1, p, p), padding=(1, 0, 0), bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1].copy_(conv1.weight)
    return conv.to(conv1.weight.device, conv1.weight.dtype)


class CLIP4Clip(nn.Module):
    """The retrieval model. ``forward`` returns the training loss; the encode/score methods serve evaluation."""

    def __init__(self, clip, *, sim: str = "meanP", patch: str = "2d", temporal_layers: int = 4) -> None:
        super().__init__()
        if patch not in PATCHES:
            raise C4CError(f"unknown --patch {patch!r}; choose 2d or 3d")
        self.clip = clip
        self.sim = sim
        self.patch = patch
        self.loss = "softmax"
        head = head_of(sim)
        if patch == "3d" and not is_openai_vit(clip.visual):
            raise C4CError("--patch 3d widens the patch convolution of a ViT image tower (open_clip's "
                           f"VisionTransformer); this CLIP's image tower is a {type(clip.visual).__name__}",
                           hint="use --patch 2d with this backbone")
        if patch == "3d":
            clip.visual.conv2 = make_patch3d(clip.visual.conv1)
        self.head = head.build(clip, temporal_layers)
        use_direct_attention(self)  # same results as open_clip's attention, without its layout copies
        size = clip.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        preprocess = getattr(clip.visual, "preprocess_cfg", None) or {}
        mean = preprocess.get("mean") or getattr(clip.visual, "image_mean", None) or CLIP_MEAN
        std = preprocess.get("std") or getattr(clip.visual, "image_std", None) or CLIP_STD
        self.register_buffer("pixel_scale", (1.0 / (255.0 * torch.tensor(std))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def loose(self) -> bool:
        """The head gives each video an embedding of its own (not a cross encoder)."""
        return not HEADS[self.sim].tight

    # --- towers -------------------------------------------------------------------------------------

    def encode_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        """``[B, W]`` ids -> ``[B, D]`` EOT features (not normalised); W <= CLIP's context length."""
        w, limit = text_ids.shape[1], context_length(self.clip)
        if w > limit:
            raise ValueError(f"{w} tokens exceed CLIP's context length {limit}")
        return text_features(self.clip, text_ids).float()

    def _pixels(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, S, S, 3]`` -> normalised float ``[N, 3, H, W]`` at the model's image size."""
        x = video.permute(0, 3, 1, 2).float()
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            key = (int(x.shape[-2]), int(x.shape[-1]), self.image_size)
            if key not in _RESIZES_WARNED:
                _RESIZES_WARNED.add(key)
                log.warning("frames are %dx%d px but the model takes %d px: every frame is resized (bicubic) on "
                            "each step, which costs time and differs from frames extracted at that size; "
                            "frames stored at --size %d (of `c4c extract`, or of a new `c4c index` library) "
                            "are ready", key[1], key[0], self.image_size, self.image_size)
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", antialias=True,
                              align_corners=False).clamp_(0, 255)
        return x.mul_(self.pixel_scale).sub_(self.pixel_shift)

    def encode_frames(self, video: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """``[B, T, S, S, 3]`` uint8 -> per-frame CLS features ``[B, T, D]`` (zeros at padded frames)."""
        b, t = video.shape[:2]
        mask = video_mask.bool()
        visual = self.clip.visual
        # fp16 with --clip-fp16, as the reference
        dtype = visual.conv1.weight.dtype if is_openai_vit(visual) else next(visual.parameters()).dtype
        if self.patch == "2d":
            feats = image_features(self.clip, self._pixels(video[mask]).to(dtype))
        else:
            # Padded frames are zero after normalisation and take part in their neighbours' temporal
            # convolution, exactly as in the reference.
            pix = self._pixels(video.reshape(b * t, *video.shape[2:])).view(b, t, 3, self.image_size, -1)
            pix = (pix * mask[:, :, None, None, None]).to(dtype)
            x = visual.conv2(pix.permute(0, 2, 1, 3, 4))          # [B, width, T, g, g]
            x = x.permute(0, 2, 1, 3, 4)[mask]                    # [N, width, g, g]
            x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
            cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
            feats = image_class_features(visual, visual.ln_pre(visual.patch_dropout(x)))
        feats = feats.float()
        out = feats.new_zeros(b, t, feats.shape[-1])
        out[mask] = feats
        return out

    def encode_video(self, video: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """What the similarity needs of a video: the head's output ``V'`` (loose) or the frame features (tight)."""
        frames = self.encode_frames(video, video_mask)
        return self.head(frames, video_mask.bool()) if self.loose else frames

    # --- scores and loss ---------------------------------------------------------------------------

    def pooled_video(self, video_feats: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """Loose heads: masked mean of L2-normalised frames, normalised again -> ``[B, D]``."""
        m = video_mask.to(video_feats.dtype).unsqueeze(-1)
        frames = F.normalize(video_feats, dim=-1)
        pooled = (frames * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1)

    def similarity(self, text_feats: torch.Tensor, video_feats: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``[Bt, Bv]``: ``exp(logit_scale)`` x cosine for loose heads, the cross encoder's score for tight."""
        if self.loose:
            t = F.normalize(text_feats, dim=-1)
            v = self.pooled_video(video_feats, video_mask)
            return self.clip.logit_scale.exp() * t @ v.t()
        return self.head(text_feats, video_feats, video_mask.bool())

    def forward(self, text_ids: torch.Tensor, video: torch.Tensor, video_mask: torch.Tensor,
                mode: str = "loss"):
        """``mode="loss"``: the symmetric cross entropy over the (globally gathered, for loose heads) batch.
        ``mode="embed"``: ``(text_feats, video_feats, video_mask)`` for gradient caching."""
        text_feats = self.encode_text(text_ids)
        video_feats = self.encode_video(video, video_mask)
        if mode == "embed":
            return text_feats, video_feats
        return self.loss_from_features(text_feats, video_feats, video_mask)

    def loss_from_features(self, text_feats, video_feats, video_mask) -> torch.Tensor:
        if self.loose:
            text_feats, video_feats, video_mask = gather_features(text_feats, video_feats, video_mask)
        logits = self.similarity(text_feats, video_feats, video_mask)
        if self.loss == "sigmoid":
            return pairwise_sigmoid(logits + self.clip.logit_bias)
        return symmetric_cross_entropy(logits)

    def use_loss(self, loss: str) -> str:
        """Train with ``loss``: ``softmax`` (the paper's symmetric cross entropy), ``sigmoid`` (pairwise, as
        SigLIP: needs a loose head and a CLIP with a logit bias) or ``auto`` (:func:`default_loss`)."""
        resolved = default_loss(self.clip) if loss == "auto" else loss
        if resolved == "sigmoid":
            if getattr(self.clip, "logit_bias", None) is None:
                raise C4CError("--loss sigmoid needs a CLIP with a logit bias (one pretrained with a sigmoid loss, "
                               "as SigLIP); this one has none", hint="use --loss softmax with this backbone")
            if not self.loose:
                raise C4CError(f"--loss sigmoid scores loose heads' cosines; {self.sim} is a cross encoder",
                               hint="use --loss softmax with tightTransf")
        self.loss = resolved
        return resolved

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Keep ``logit_scale <= ln 100`` (the reference clamps after every optimiser step)."""
        self.clip.logit_scale.clamp_(max=MAX_LOGIT_SCALE)


def default_loss(clip) -> str:
    """The loss ``--loss auto`` trains ``clip`` with (see the README's backbone section for the measurement)."""
    return "softmax"


def pairwise_sigmoid(logits: torch.Tensor) -> torch.Tensor:
    """SigLIP's loss: every (text, video) pair a binary decision, positives on the diagonal; the sum of
    ``-log sigmoid(+-logit)`` over all pairs divided by the number of texts."""
    labels = 2.0 * torch.eye(logits.shape[0], logits.shape[1], device=logits.device) - 1.0
    return -F.logsigmoid(labels * logits.float()).sum() / logits.shape[0]


def symmetric_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``(CE(S) + CE(S^T)) / 2`` with the positives on the diagonal (spec 4.7)."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits.float(), target) + F.cross_entropy(logits.float().t(), target))


def gather_features(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """All-gather along dim 0 across processes, with gradient; identity without a process group.

    The autograd-aware gather sums every rank's gradient for the local slice; DDP then averages over
    ranks, so parameter gradients equal those of one process seeing the whole global batch.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    from torch.distributed.nn.functional import all_gather

    out = []
    for x in tensors:
        if x.dtype == torch.bool:
            parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, x.contiguous())
            out.append(torch.cat(parts))
        else:
            out.append(torch.cat(all_gather(x.contiguous())))
    return tuple(out)
