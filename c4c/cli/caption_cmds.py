"""`c4c caption train` and `c4c caption generate`: train a caption decoder, then caption videos with it."""

import typer

from c4c.cli import options as opt
from c4c.cli import ui
from c4c.cli.train_cmds import pair_config, train
from c4c.options import check_config
from c4c.stages.caption import CaptionTrainConfig, GenerateConfig


@opt.from_config(CaptionTrainConfig, opt.ReaderFlags)
def caption_train_cmd(ctx: typer.Context, quiet: opt.Quiet = False, **settings) -> None:
    """Train a caption decoder on CLIP4Clip, jointly with the retrieval loss by default.

    Teacher forcing on CLIP BPE tokens; the epoch with the lowest val token loss is kept in RUN/best.
    Writes the run folder of `c4c finetune` (task "caption"). For several GPUs: `torchrun
    --nproc_per_node N -m c4c.cli caption train ...`.

    Examples:

        c4c caption train --dataset msrvtt --ann data/msrvtt/msrvtt_data --frames data/msrvtt/frames.h5 --init runs/msrvtt-seqTransf --out runs/caption-msrvtt

        c4c caption train --dataset jsonl --ann demo-out/synth/annotations.jsonl --frames demo-out/frames.h5 --clip tiny --pretrained none --sim seqTransf --batch-size 16 --lr 1e-3 --coef-lr 1 --out runs/caption-synth

        c4c caption train --dataset msrvtt --ann data/msrvtt/msrvtt_data --frames data/msrvtt/frames.h5 --retrieval-loss-weight 0 --out runs/caption-only
    """
    from c4c.stages import caption

    ui.setup_logging(quiet)
    cfg = pair_config(ctx, CaptionTrainConfig, settings, task="caption")

    def rows(result) -> list:
        rows = [("run", str(result.run_dir)), ("steps", result.steps), ("seconds", f"{result.seconds:.1f}"),
                *ui.selection_rows(result)]
        if result.best_metrics:
            rows += [("val caption loss", f"{result.best_metrics['caption_loss']:.4f}"),
                     ("val perplexity", f"{result.best_metrics['perplexity']:.2f}")]
            if "retrieval_loss" in result.best_metrics:
                rows.append(("val retrieval loss", f"{result.best_metrics['retrieval_loss']:.4f}"))
        return rows + [("results", str(result.run_dir / "results.json"))]

    train(caption.run, cfg, quiet, "c4c caption train", rows)


@opt.from_config(GenerateConfig, opt.MsrvttFlag)
def caption_generate_cmd(quiet: opt.Quiet = False, **settings) -> None:
    """Caption videos with a trained caption run: beam search (or greedy with --beam 1), batched.

    Writes OUT (a JSON object mapping each video_id to its caption) and OUT's .meta.json (run,
    checkpoint, frames, beam, max_len, alpha, seconds). Without --dataset/--ann every video in
    FRAMES.h5 is captioned, e.g. your own videos after `c4c extract my_videos/ --out my_frames.h5`.

    Examples:

        c4c caption generate --run runs/caption-msrvtt --frames data/msrvtt/frames.h5 --dataset msrvtt --ann data/msrvtt/msrvtt_data --split test --out captions.json

        c4c caption generate --run runs/caption-msrvtt --frames my_frames.h5 --out my_captions.json

        c4c caption generate --run runs/caption-synth --frames demo-out/frames.h5 --beam 1 --out greedy.json
    """
    from c4c.stages import caption

    ui.setup_logging(quiet)
    cfg = caption.GenerateConfig(dataset_options=opt.reader_options(settings, task="caption"), **settings)
    check_config(cfg)  # before torch is imported
    with ui.progress(quiet, "videos") as bar:
        state = {"task": None}

        def on_event(event: dict) -> None:
            if event["event"] == "start":
                state["task"] = bar.add_task("caption", total=event["videos"])
            elif event["event"] == "batch" and state["task"] is not None:
                bar.update(state["task"], completed=event["done"])

        result = caption.run(cfg, on_event=on_event)
    if not quiet and result.captions:
        from rich.table import Table

        sample = Table(title=f"first captions (of {result.videos})")
        sample.add_column("video_id")
        sample.add_column("caption")
        for vid, text in list(result.captions.items())[:5]:
            sample.add_row(vid, text)
        ui.console().print(sample)
    ui.print_table("c4c caption generate", [
        ("videos", result.videos), ("beam", cfg.beam), ("max len", cfg.max_len),
        ("alpha", cfg.alpha if cfg.beam > 1 else 0.0),
        ("seconds", f"{result.seconds:.1f}"), ("captions/s", f"{result.captions_per_s:.2f}"),
        ("checkpoint", str(result.checkpoint)), ("captions", str(result.out)), ("meta", str(result.meta))])


def register(caption_app: typer.Typer) -> None:
    caption_app.command("train")(caption_train_cmd)
    caption_app.command("generate")(caption_generate_cmd)
