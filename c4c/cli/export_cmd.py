"""`c4c export`: a trained run as a folder open_clip loads, with c4c's head and a model card."""

from pathlib import Path
from typing import Annotated

import typer

from c4c.cli import options as opt
from c4c.cli import ui
from c4c.options import Checkpointed, Replaces


@opt.from_config(Checkpointed, Replaces)
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder of `c4c finetune`, `c4c pretrain` or `c4c caption train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Export a run: open_clip's config and CLIP weights (safetensors), c4c's head, the run's config
    and a model card (README.md) with the metrics, the command and the weights' sha256.

    open_clip loads the CLIP towers with `open_clip.create_model_and_transforms("local-dir:OUT")`;
    every c4c command that takes `--run` takes OUT too (or `hf-hub:ORG/NAME` once it is uploaded).

    Examples:

        c4c export runs/msrvtt-seqTransf --out exports/clip4clip-msrvtt-seqTransf

        c4c export runs/msrvtt-seqTransf --checkpoint latest --out /tmp/latest --overwrite

        c4c encode --run exports/clip4clip-msrvtt-seqTransf --frames my_frames.h5 --out my_emb.h5
    """
    from c4c import export

    ui.setup_logging(quiet)
    result = export.export_run(run, out, which=settings["checkpoint"], overwrite=settings["overwrite"])
    ui.print_table("c4c export", [("folder", str(result.out)), ("from", str(result.checkpoint)),
                                  ("CLIP tensors", result.clip_tensors), ("c4c tensors", result.extra_tensors),
                                  *[(f"sha256 {name}", digest[:16] + "…") for name, digest in result.sha256.items()],
                                  ("model card", str(result.out / "README.md"))])


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
