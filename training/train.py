"""``vinv-train``: one command from a dataset folder to a checkpoint.

The encoder's frozen part is computed once per dataset shard (training/features.py) and the rest trains
from that cache; ``--cache-only`` fills the cache and stops (run it while ``vinv-dataset`` extends a set,
so training starts at once), ``--no-cache`` recomputes features from audio every step instead. Targets are
restated for the note the clip sounds at, put in canonical order and masked to what is audible
(training/losses.py). After every epoch the checkpoint whose predictions sound closest to a fixed
validation subset, rendered by Vital (training/listening.py), is kept as ``best``;
``--no-select-by-render`` keeps the lowest validation parameter loss instead. The learning rate warms up
and then follows a cosine to zero over whichever budget ends first, ``--epochs`` or ``--minutes``,
so a run cut by its wall-clock budget still ends annealed. A checkpoint (weights + optimizer +
trainer state) is written atomically every ``--checkpoint-minutes`` and at the end; ``--resume``
continues from it. ``--augment`` gives each training clip a noise floor and a room
(training/augment.py). Under ``torchrun`` every process trains a shard of each epoch
(DistributedDataParallel); on a machine with CUDA the model trains there.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from converter.vital.parameters import parameter_space
from training.augment import Augmentation
from training.checkpoint import load_checkpoint, load_optimizer_state, read_card, save_checkpoint
from training.dataset import ExampleSet
from training.features import CachedFeatures, cached_features, compute_features
from training.listening import DEFAULT_SUBSET, RenderedValidation
from training.losses import ParameterLoss, audible_mask, canonical_order, heard_note_targets
from training.model import ParameterModel

WARMUP_STEPS = 200
LATEST = "latest"
BEST = "best"  # the checkpoint that sounds closest on validation so far: what evaluation and export use
VALIDATION_BATCHES = 16


class TrainingStep(nn.Module):
    """Features -> loss terms: the unit DistributedDataParallel wraps (it must own a forward)."""

    def __init__(self, model: ParameterModel) -> None:
        super().__init__()
        self.model = model
        self.loss = ParameterLoss()

    def forward(self, features: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.model.embed_features(features)
        terms = self.loss(self.model.raw_outputs(embedding), targets, mask)
        if self.model.flow is not None:
            terms["flow"] = self.model.flow.loss(embedding, targets, mask)
            terms["total"] = terms["total"] + terms["flow"]
        return terms


class Batches:
    """Shuffled (features, targets, mask) batches of one split; this rank's share of every epoch."""

    def __init__(self, examples: ExampleSet, features: CachedFeatures | None, model: ParameterModel,
                 batch_size: int, rank: int, world: int, device: torch.device,
                 augmentation: Augmentation | None = None, seed: int = 0) -> None:
        self.examples, self.features, self.model = examples, features, model
        self.augmentation, self.generator = augmentation, torch.Generator().manual_seed(seed)
        self.batch_size, self.rank, self.world, self.device = batch_size, rank, world, device
        self.targets = canonical_order(heard_note_targets(examples.params, examples.meta["pitch"])[0])
        self.mask = audible_mask(self.targets)

    def steps_per_epoch(self) -> int:
        return max(1, len(self.examples) // (self.batch_size * self.world))

    def epoch(self, seed: int, epoch: int) -> list[np.ndarray]:
        """This rank's batches of one shuffled epoch (every rank gets the same number)."""
        order = np.random.default_rng([seed, epoch]).permutation(len(self.examples))[self.rank::self.world]
        size = self.batch_size
        return [np.sort(order[k * size:(k + 1) * size]) for k in range(self.steps_per_epoch())]

    def in_order(self) -> list[np.ndarray]:
        rows = np.arange(len(self.examples))
        return [rows[k:k + self.batch_size] for k in range(0, len(rows), self.batch_size)]

    def load(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.features is not None:
            features = torch.from_numpy(np.asarray(self.features[rows], dtype=np.float32)).to(self.device)
        else:
            features = compute_features(self.model, self.examples.audio_batch(rows), self.device)
        if self.augmentation is not None:
            features = self.augmentation(features.cpu(), self.generator).to(self.device)
        targets = torch.from_numpy(self.targets[rows]).to(self.device)
        mask = torch.from_numpy(self.mask[rows]).to(self.device)
        return features, targets, mask


def learning_rate(base: float, step: int, progress: float) -> float:
    """Linear warm-up, then a cosine to zero as ``progress`` goes from 0 to 1."""
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    return base * warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vinv-train", description="Train a vinv parameter model on a dataset.")
    parser.add_argument("dataset", type=Path, help="a set vinv-dataset built: its name (user cache) or folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder (e.g. runs/NAME)")
    parser.add_argument("--encoder", choices=("compact", "mert"), default="compact")
    parser.add_argument("--mert-weights", type=Path, help="local folder with MERT-v1-95M's weights")
    parser.add_argument("--flow", action="store_true", help="also train the generative (flow) head")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--minutes", type=float,
                        help="wall-clock budget of this invocation, feature caching included; stops cleanly, saving")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/latest")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--cache-dir", type=Path, help="feature cache folder (default: DATASET/features)")
    parser.add_argument("--no-cache", action="store_true", help="compute features from audio every step")
    parser.add_argument("--cache-only", action="store_true",
                        help="compute the features of every complete shard not yet cached, then stop")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--select-by-render", action=argparse.BooleanOptionalAction, default=True,
                        help="keep as best the checkpoint whose rendered predictions sound closest on a validation "
                             "subset (median MR-STFT ratio to the init patch); --no-select-by-render: lowest "
                             "validation parameter loss")
    parser.add_argument("--render-subset", type=int, default=DEFAULT_SUBSET,
                        help=f"validation clips rendered per check (default {DEFAULT_SUBSET})")
    parser.add_argument("--augment", action="store_true",
                        help="add a noise floor and a room to training clips' features (training/augment.py)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
        return dist.get_rank(), world, device
    return 0, 1, device


def _log(line: str, log_file: Path | None) -> None:
    tqdm.write(line)
    if log_file is not None:
        with log_file.open("a") as handle:
            handle.write(line + "\n")


def _mean_terms(batches: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([b[k] for b in batches])) for k in batches[0]} if batches else {}


def _format(terms: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in terms.items())


@torch.no_grad()
def validate(step_module: TrainingStep, batches: Batches) -> dict[str, float]:
    step_module.eval()
    results = []
    for rows in batches.in_order()[:VALIDATION_BATCHES]:
        terms = step_module(*batches.load(rows))
        results.append({k: float(v.detach()) for k, v in terms.items()})
    step_module.train()
    return _mean_terms(results)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    invoked = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = _distributed()
    leader = rank == 0
    torch.manual_seed(args.seed + rank)
    out = args.out
    latest = out / LATEST
    log_file = out / "train.log" if leader else None
    if leader:
        out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["vinv-train", *(sys.argv[1:] if argv is None else argv)])

    if args.cache_only and args.no_cache:
        print("vinv-train: --cache-only fills the feature cache that --no-cache turns off", file=sys.stderr)
        return 2
    if args.augment and args.encoder != "compact":
        print("vinv-train: --augment works on the compact encoder's log-power features, not MERT's", file=sys.stderr)
        return 2
    train_set, val_set = ExampleSet(args.dataset, "train"), ExampleSet(args.dataset, "validation")
    if len(train_set) == 0:
        print(f"vinv-train: {args.dataset} has no training examples", file=sys.stderr)
        return 1
    resume = args.resume and (latest / "config.json").exists()
    if resume:
        model = load_checkpoint(latest).train()
        card = read_card(latest)
        trainer = card["recipe"].get("trainer", {})
    else:
        mert = {"weights": str(args.mert_weights)} if args.mert_weights else {}
        model = ParameterModel(encoder=args.encoder, mert=mert, flow={} if args.flow else None)
        trainer = {}
    model.to(device)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)

    cache_dir = args.cache_dir or train_set.folder / "features"
    train_features = val_features = None
    if not args.no_cache:
        if leader:
            train_features = cached_features(model, train_set, cache_dir, device=device, progress=not args.no_progress)
            if len(val_set):
                val_features = cached_features(model, val_set, cache_dir, device=device, progress=not args.no_progress)
        if world > 1:
            dist.barrier()
        if not leader:
            train_features = cached_features(model, train_set, cache_dir, device=device, progress=False)
            val_features = cached_features(model, val_set, cache_dir, device=device, progress=False) \
                if len(val_set) else None
    if args.cache_only:
        if leader:
            _log(f"vinv-train: features of {len(train_set.shards)} shards cached in {cache_dir}", log_file)
        return 0
    train = Batches(train_set, train_features, model, args.batch_size, rank, world, device,
                    Augmentation() if args.augment else None, seed=args.seed + rank)
    val = Batches(val_set, val_features, model, args.batch_size, 0, 1, device) if len(val_set) else None

    step_module = TrainingStep(model).to(device)
    trained = step_module
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda"
                                                      else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=args.weight_decay)
    if resume:
        state = load_optimizer_state(latest)
        if state is not None:
            optimizer.load_state_dict(state)
    step, epoch = int(trainer.get("step", 0)), int(trainer.get("epoch", 0))
    spent = float(trainer.get("seconds", 0.0))
    best_loss = float(trainer.get("best_validation", math.inf))
    best_render = float(trainer.get("best_render", math.inf))
    listening = RenderedValidation(val_set, args.render_subset) if leader and args.select_by_render and val else None
    total_steps = args.epochs * train.steps_per_epoch()
    deadline = invoked + args.minutes * 60 if args.minutes else None
    recipe = {"id": out.name, "command": command, "seed": args.seed, "encoder": model.encoder_kind,
              "dataset": {"folder": str(train_set.folder), "train": len(train_set), "validation": len(val_set),
                          "manifest": {k: v for k, v in train_set.manifest.items() if not isinstance(v, (list, dict))}},
              "space_version": parameter_space().version, "parameters": parameters, "world_size": world,
              "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs, "minutes": args.minutes,
              "cached_features": not args.no_cache, "augment": args.augment,
              "select_by": f"render ({len(listening)} clips)" if listening else "parameter loss"}
    if leader:
        _log(f"vinv-train: {model.encoder_kind} encoder, {parameters:,} trainable parameters, "
             f"{len(train_set)} train / {len(val_set)} validation clips, {world} process(es) on {device}, "
             f"{'cached' if not args.no_cache else 'uncached'} features"
             + (f", resuming at epoch {epoch} step {step}" if resume else ""), log_file)

    def trainer_state() -> dict:
        return {"step": step, "epoch": epoch, "seconds": spent, "best_validation": best_loss,
                "best_render": best_render}

    def checkpoint() -> None:
        if leader:
            save_checkpoint(model, latest, step=step, optimizer_state=optimizer.state_dict(),
                            recipe={**recipe, "trainer": trainer_state()})

    resumed_spent = spent
    started = time.perf_counter() - spent
    last_save = time.perf_counter()
    planned = max(resumed_spent + deadline - time.perf_counter(), 1.0) if deadline else None
    out_of_time = False
    while epoch < args.epochs and not out_of_time:
        results, clips, epoch_start = [], 0, time.perf_counter()
        batches = train.epoch(args.seed, epoch)
        skip = step - epoch * train.steps_per_epoch()
        bar = tqdm(batches[max(skip, 0):], desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch",
                   disable=not leader or args.no_progress, dynamic_ncols=True, leave=False)
        for rows in bar:
            spent = time.perf_counter() - started
            progress = max(step / max(total_steps, 1), spent / planned if planned else 0.0)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(args.lr, step, progress)
            terms = trained(*train.load(rows))
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            clips += len(rows) * world
            results.append({k: float(v.detach()) for k, v in terms.items()})
            bar.set_postfix(loss=f"{results[-1]['total']:.3f}")
            if time.perf_counter() - last_save > args.checkpoint_minutes * 60:
                checkpoint()
                last_save = time.perf_counter()
            if deadline and time.perf_counter() >= deadline:
                out_of_time = True
                break
        bar.close()
        spent = time.perf_counter() - started
        if not out_of_time:
            epoch += 1
        if leader:
            rate = clips / max(time.perf_counter() - epoch_start, 1e-9)
            line = f"epoch {epoch} step {step} train {_format(_mean_terms(results))} | {rate:.1f} clips/s"
            if val is not None:
                scores = validate(step_module, val)
                line += f" | val {_format(scores)}"
                improved = scores["total"] < best_loss
                best_loss = min(best_loss, scores["total"])
                if listening is not None:
                    heard = listening.score(model, val.load(listening.positions)[0])
                    line += f" | render {heard:.4f}"
                    improved = heard < best_render
                    best_render = min(best_render, heard)
                if improved:
                    save_checkpoint(model, out / BEST, step=step, recipe={**recipe, "trainer": trainer_state()})
                    line += " | best"
            _log(line + f" | lr {optimizer.param_groups[0]['lr']:.2e} | {spent / 60:.1f} min", log_file)
        checkpoint()
        last_save = time.perf_counter()
    if leader:
        _log(f"vinv-train: done at step {step}; checkpoint {latest}"
             + (" (wall-clock budget reached)" if out_of_time else ""), log_file)
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
