"""The multi-stage trainer: accelerate (single process, DDP or FSDP), exact resume, metrics.

:func:`train` runs the recipe's stages in order inside a run folder::

    RUN/
        recipe.yaml          the resolved recipe (what ``--resume RUN`` continues)
        init/                the fresh model the first stage starts from (unless ``model.init``)
        metrics.jsonl        one record per logged step, validation, checkpoint and stage end
        0-proposer/checkpoints/step-*/ , latest      (see :mod:`.checkpoint`)
        0-proposer/final/    the stage's model (``save_pretrained``); the next stage starts from it
        1-tsf/...

A stage that has ``final/`` is done and skipped on resume; the first unfinished stage continues from
its newest checkpoint -- weights, optimizer, scheduler, grad scaler, sampler position and every RNG
stream (per rank) -- so its loss curve continues exactly as if the run had never stopped (bitwise on
CPU with ``train.deterministic``).

Each process (``torchrun --nproc_per_node N`` starts N) builds the same model from the same seed,
draws its own share of every global batch from :class:`~sparrow.data.sampling.MixtureSampler`, and
accelerate keeps the replicas in sync (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sparrow.data.sampling import MixtureSampler, SampleRef, SamplerState
from sparrow.errors import CheckpointError, ConfigError, SparrowError

from .checkpoint import (
    CheckpointManager,
    TrainerState,
    durable_dir,
    load_checkpoint_weights,
    load_rng,
    load_torch,
    preserved_rng,
    read_state,
    save_rng,
    save_torch,
    save_weights,
    write_state,
    write_text_durable,
)
from .metrics_log import MetricsLog
from .optim import make_optimizer, make_scheduler
from .pick_cache import CACHE_DIR, build_pick_cache, load_pick_sources
from .progress import TrainProgress
from .recipe import Recipe, StageSpec, check_resumable, dump_recipe, stored_recipe
from .seeding import derive_seed, seed_everything
from .stages import STAGES, checkpoints_dir, final_dir, load_stage_model, stage_dir, stage_start
from .task import SampleSource, TrainingTask, make_task


class TrainingDiverged(SparrowError):
    """The loss became NaN or infinite."""


@dataclass
class StageResult:
    """What one stage did in this process (``steps_run`` is 0 for a stage finished earlier)."""

    index: int
    stage: int
    steps: int
    steps_run: int
    final: Path
    last_loss: float | None = None


@dataclass
class RunResult:
    """The run folder, the model the last stage left, and per-stage results."""

    run_dir: Path
    final_model: Path
    stages: list[StageResult] = field(default_factory=list)


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the block (restored afterwards)."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def move_to(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples, dataclasses, ``.to``-able) on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):
        return type(obj)(move_to(v, device) for v in obj)
    if hasattr(obj, "to") and callable(obj.to) and not isinstance(obj, nn.Module):
        return obj.to(device)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.replace(
            obj, **{f.name: move_to(getattr(obj, f.name), device) for f in dataclasses.fields(obj) if f.init}
        )
    return obj


def weight_digest(model: nn.Module) -> str:
    """sha256 of every parameter and buffer of ``model`` (its local copy), in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _Items(Dataset):
    """Builds the sample of a ``(SampleRef, state after its batch)`` pair from the mixture's sources."""

    def __init__(self, sources: list[SampleSource]) -> None:
        self.sources = sources

    def __getitem__(self, key: tuple[SampleRef, SamplerState]) -> tuple[SampleRef, SamplerState, Any]:
        ref, after = key
        return ref, after, self.sources[ref.dataset].build(ref.index, ref.seed)


class _Batches:
    """Endless batch sampler: lists of ``(SampleRef, state after this batch)`` from a start state."""

    def __init__(self, sampler: MixtureSampler, start: SamplerState) -> None:
        self.sampler = sampler
        self.start = start

    def __iter__(self) -> Iterator[list[tuple[SampleRef, SamplerState]]]:
        for refs, after in self.sampler.batches(self.start):
            yield [(ref, after) for ref in refs]


class Trainer:
    """Runs one recipe in one run folder (see the module docstring).

    Args:
        recipe: the resolved recipe.
        run_dir: the run folder (created if needed).
        resume: continue the run already in ``run_dir`` (its stored recipe must match ``recipe`` on
            everything that shapes the loss curve; see :func:`~.recipe.check_resumable`).
        task: the model/data pair; by default the one the recipe names.
    """

    def __init__(
        self, recipe: Recipe, run_dir: str | Path, *, resume: bool = False, task: TrainingTask | None = None
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.resume = resume
        plugin = None
        if recipe.train.distributed == "fsdp":
            from accelerate.utils import FullyShardedDataParallelPlugin

            plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="FULL_STATE_DICT")
        self.accelerator = Accelerator(
            cpu=recipe.train.cpu or not torch.cuda.is_available(),
            mixed_precision=recipe.train.mixed_precision,
            kwargs_handlers=[
                DistributedDataParallelKwargs(find_unused_parameters=recipe.train.find_unused_parameters)
            ],
            fsdp_plugin=plugin,
        )
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.fsdp = self.accelerator.is_fsdp2 or self.accelerator.distributed_type.name == "FSDP"
        if recipe.train.distributed == "fsdp" and not self.fsdp and self.world_size > 1 and self.is_main:
            warnings.warn(
                "train.distributed=fsdp needs GPUs (accelerate); these processes run DDP instead",
                stacklevel=2,
            )
        self.task = task if task is not None else make_task(recipe)
        self.metrics = MetricsLog(
            self.run_dir / "metrics.jsonl", enabled=self.is_main, tensorboard=recipe.logging.tensorboard
        )

    # ------------------------------------------------------------------------------------ run
    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def run(self) -> RunResult:
        """Run (or finish) every stage; returns where the final model is."""
        with deterministic_mode(self.recipe.train.deterministic):
            try:
                self._open_run_dir()
                results = []
                for index, spec in enumerate(self.recipe.stages):
                    done = final_dir(self.run_dir, index, spec.stage)
                    if done.is_dir():
                        results.append(StageResult(index, spec.stage, spec.steps, 0, done))
                        continue
                    results.append(self._run_stage(index, spec))
            finally:
                self.metrics.close()
        return RunResult(self.run_dir, results[-1].final, results)

    def _open_run_dir(self) -> None:
        stored = stored_recipe(self.run_dir)
        if self.resume and stored is None:
            raise ConfigError(
                "there is no run to resume here (no recipe.yaml)",
                path=self.run_dir,
                fix="start it without --resume",
            )
        if not self.resume and stored is not None:
            raise ConfigError(
                "this folder already holds a run",
                path=self.run_dir,
                fix=f"continue it with --resume {self.run_dir}, or choose another --out",
            )
        if stored is not None:
            check_resumable(stored, self.recipe, self.run_dir / "recipe.yaml")
        self.barrier()  # every rank has looked at the folder before rank 0 writes into it
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_durable(self.run_dir / "recipe.yaml", dump_recipe(self.recipe))
        self.barrier()

    def _stage_init(self, index: int) -> Path:
        """The model folder stage ``index`` starts from (creating the run's ``init/`` if needed).

        The first stage starts from ``model.init`` or from ``RUN/init``: a fresh model of the preset,
        built once by rank 0 and saved, so every rank and every resumption starts from the same
        weights (and tokenizer) whatever the RNG or library versions do.
        """
        init = stage_start(self.recipe, self.run_dir, index)
        if index > 0 or self.recipe.model.init:
            return init
        missing = not init.is_dir()
        self.barrier()  # every rank has looked before rank 0 creates it
        if missing:
            if self.is_main:
                seed_everything(self.recipe.seed)  # the fresh weights depend on the recipe's seed only
                fresh = self.task.build_model()
                with durable_dir(init) as tmp:
                    fresh.save_pretrained(tmp)
            self.barrier()
        return init

    def _build_model(self, index: int) -> nn.Module:
        """The model of stage ``index`` (:func:`~.stages.load_stage_model` from its start folder)."""
        return load_stage_model(self.task, self.recipe, self._stage_init(index), index)

    def _pick_sources(
        self, index: int, spec: StageSpec, model: nn.Module, sources: list[SampleSource]
    ) -> list[SampleSource]:
        """The stage's pick cache as sources (:mod:`.pick_cache`), built by rank 0 if it is not there."""
        folder = stage_dir(self.run_dir, index, spec.stage) / CACHE_DIR
        missing = not folder.is_dir()
        self.barrier()  # every rank has looked before rank 0 creates it
        if missing and self.is_main:
            with preserved_rng():
                build_pick_cache(
                    model.to(self.accelerator.device),
                    sources,
                    self.task.collate,
                    folder,
                    device=self.accelerator.device,
                    progress=self.recipe.logging.progress,
                )
        self.barrier()
        return load_pick_sources(folder, sources)

    # ---------------------------------------------------------------------------------- stage
    def _run_stage(self, index: int, spec: StageSpec) -> StageResult:
        recipe, acc = self.recipe, self.accelerator
        stage_seed = derive_seed(recipe.seed, index)
        model = self._build_model(index)
        seed_everything(stage_seed)  # after the build: the streams do not depend on what loading drew
        optim_spec = recipe.stage_optim(index)
        optimizer = make_optimizer(model, optim_spec)
        scheduler = make_scheduler(optimizer, optim_spec, spec.steps)
        ckpts = CheckpointManager(
            checkpoints_dir(self.run_dir, index, spec.stage),
            keep_last=recipe.checkpoint.keep_last,
            rank=self.rank,
            barrier=self.barrier,
        )
        latest = ckpts.latest()
        state = TrainerState(index, spec.stage, 0, SamplerState(), self.world_size)
        if latest is not None:
            state = read_state(latest)
            if state.stage_index != index or state.stage != spec.stage:
                raise CheckpointError(
                    "the checkpoint belongs to another stage",
                    path=latest,
                    fix="do not move checkpoint folders",
                )
            load_checkpoint_weights(model, latest, fix="resume with the recipe the run was started with")
        # drop what a killed run logged after this point (and any torn last line)
        self.metrics.rewind(index, state.step)
        sources = self.task.train_sources(model)
        if spec.cache:
            sources = self._pick_sources(index, spec, model, sources)
        model, optimizer = acc.prepare(model, optimizer)
        if latest is not None:
            self._load_optimizer(model, optimizer, latest)
            scheduler.load_state_dict(json.loads((latest / "scheduler.json").read_text(encoding="utf-8")))
            if acc.scaler is not None and (latest / "scaler.pt").is_file():
                acc.scaler.load_state_dict(load_torch(latest / "scaler.pt"))

        batch_size = recipe.stage_batch_size(index)
        sampler = MixtureSampler(
            [len(s) for s in sources],
            [d.weight for d in recipe.data.train],
            batch_size=batch_size,
            seed=stage_seed,
            epoch_size=recipe.data.epoch_size,
            world_size=self.world_size,
            rank=self.rank,
        )
        try:
            sampler.check(state.sampler)
        except ValueError as exc:
            raise CheckpointError(
                str(exc), path=latest, fix="resume with the batch size and process count of the run"
            ) from exc
        loader = DataLoader(
            _Items(sources),
            batch_sampler=_Batches(sampler, state.sampler),
            collate_fn=self._collate,
            num_workers=recipe.data.num_workers,
            generator=torch.Generator().manual_seed(stage_seed),
        )
        if latest is not None and not load_rng(latest, self.rank):
            seed_everything(derive_seed(stage_seed, state.step, self.rank))
        steps_run, last_loss = self._loop(
            index, spec, model, optimizer, scheduler, ckpts, iter(loader), state, sampler, sources
        )
        final = self._finish_stage(index, spec, model, state)
        acc.free_memory()
        return StageResult(index, spec.stage, spec.steps, steps_run, final, last_loss)

    def _collate(
        self, items: list[tuple[SampleRef, SamplerState, Any]]
    ) -> tuple[list[SampleRef], SamplerState, Any]:
        return [r for r, _, _ in items], items[-1][1], self.task.collate([s for _, _, s in items])

    def _loop(
        self,
        index: int,
        spec: StageSpec,
        model: nn.Module,
        optimizer: Any,
        scheduler: Any,
        ckpts: CheckpointManager,
        batches: Iterator[tuple[list[SampleRef], SamplerState, Any]],
        state: TrainerState,
        sampler: MixtureSampler,
        sources: list[SampleSource],
    ) -> tuple[int, float | None]:
        recipe, acc = self.recipe, self.accelerator
        accum = recipe.train.grad_accum
        optim_spec = recipe.stage_optim(index)
        global_offset = sum(s.steps for s in recipe.stages[:index])
        debug = recipe.debug
        kill_here = debug.kill_at_step is not None and debug.kill_in_stage == index
        label = f"stage {spec.stage} ({STAGES[spec.stage].name})"
        steps_run, last_loss = 0, None
        model.train()
        with TrainProgress(
            label,
            spec.steps,
            start=state.step,
            enabled=self.is_main and recipe.logging.progress,
            every=max(recipe.logging.every, spec.steps // 10),
        ) as bar:
            tick = time.perf_counter()
            while state.step < spec.steps:
                terms: dict[str, float] = {}
                ids: list[str] = []
                for micro in range(accum):
                    refs, after, batch = next(batches)
                    batch = move_to(batch, acc.device)
                    sync = contextlib.nullcontext() if micro == accum - 1 else acc.no_sync(model)
                    with sync:
                        out = model(batch)
                        acc.backward(out.loss / accum)
                    for key, value in {"loss": out.loss, **out.losses}.items():
                        terms[key] = terms.get(key, 0.0) + float(value.detach()) / accum
                    ids.extend(sources[r.dataset].sample_id(r.index) for r in refs)
                    state.sampler = after
                grad_norm = None
                if optim_spec.max_grad_norm is not None:
                    grad_norm = float(acc.clip_grad_norm_(model.parameters(), optim_spec.max_grad_norm))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.samples_seen += accum * sampler.global_batch
                steps_run += 1
                if not math.isfinite(terms["loss"]) and recipe.train.mixed_precision != "fp16":
                    raise TrainingDiverged(
                        f"the loss became {terms['loss']} at step {state.step} of stage {spec.stage}",
                        path=self.run_dir,
                        fix="lower optim.lr or set optim.max_grad_norm, then resume from the last checkpoint",
                    )
                last_loss = terms["loss"]
                if state.step % recipe.logging.every == 0 or state.step == spec.steps:
                    now = time.perf_counter()
                    steps_done = (
                        recipe.logging.every
                        if state.step % recipe.logging.every == 0
                        else state.step % recipe.logging.every
                    )
                    elapsed = max(now - tick, 1e-9)
                    tick = now
                    self._log_step(
                        index,
                        spec,
                        state,
                        terms,
                        ids,
                        scheduler,
                        grad_norm,
                        global_offset,
                        steps_done,
                        elapsed,
                        bar,
                    )
                due = state.step % recipe.checkpoint.every == 0 or state.step == spec.steps
                kill_in_ckpt = kill_here and debug.kill_during_checkpoint and state.step == debug.kill_at_step
                if due or kill_in_ckpt:
                    self._save_checkpoint(ckpts, model, optimizer, scheduler, state, kill_in_ckpt)
                if (
                    recipe.validation.every > 0
                    and state.step % recipe.validation.every == 0
                    and state.step < spec.steps
                ):
                    self._validate(index, spec, model, state, global_offset)
                if kill_here and not debug.kill_during_checkpoint and state.step == debug.kill_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)
        return steps_run, last_loss

    # ------------------------------------------------------------------------------- logging
    def _log_step(
        self,
        index: int,
        spec: StageSpec,
        state: TrainerState,
        terms: dict[str, float],
        ids: list[str],
        scheduler: Any,
        grad_norm: float | None,
        global_offset: int,
        steps_done: int,
        elapsed: float,
        bar: TrainProgress,
    ) -> None:
        gathered = self._gather({"terms": terms, "ids": ids, "grad_norm": grad_norm})
        keys = sorted({k for g in gathered for k in g["terms"]})
        mean = {
            k: sum(g["terms"][k] for g in gathered if k in g["terms"])
            / sum(k in g["terms"] for g in gathered)
            for k in keys
        }
        loss = mean.pop("loss")
        steps_per_s = steps_done / elapsed
        samples_per_s = (
            steps_per_s * self.recipe.train.grad_accum * self.recipe.stage_batch_size(index) * self.world_size
        )
        record: dict[str, Any] = {
            "kind": "train",
            "stage_index": index,
            "stage": spec.stage,
            "step": state.step,
            "global_step": global_offset + state.step,
            "loss": loss,
            "losses": mean,
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": grad_norm,
            "samples_seen": state.samples_seen,
            "samples_per_s": samples_per_s,
            "steps_per_s": steps_per_s,
            "time": time.time(),
        }
        if self.recipe.logging.sample_ids:
            record["sample_ids"] = [g["ids"] for g in gathered]
        self.metrics.write(record)
        bar.update(state.step, {"loss": loss, **mean}, samples_per_s, steps_per_s)

    def _gather(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    # --------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(
        self,
        ckpts: CheckpointManager,
        model: nn.Module,
        optimizer: Any,
        scheduler: Any,
        state: TrainerState,
        kill: bool,
    ) -> None:
        acc = self.accelerator
        weights = acc.get_state_dict(model)  # collective under FSDP
        optim_state = self._optimizer_state(model, optimizer)  # collective under FSDP

        def write_shared(folder: Path) -> None:
            save_weights(folder / "model.safetensors", weights)
            save_torch(folder / "optimizer.pt", optim_state)
            (folder / "scheduler.json").write_text(json.dumps(scheduler.state_dict()), encoding="utf-8")
            if acc.scaler is not None:
                save_torch(folder / "scaler.pt", acc.scaler.state_dict())
            write_state(folder, state)

        def die() -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        path = ckpts.save(
            state.step,
            write_shared=write_shared,
            write_rank=lambda f: save_rng(f, self.rank),
            before_publish=die if kill else None,
        )
        digests = None if self.fsdp else self._gather(weight_digest(acc.unwrap_model(model)))
        record = {
            "kind": "checkpoint",
            "stage_index": state.stage_index,
            "stage": state.stage,
            "step": state.step,
            "path": path.name,
        }
        if digests is not None:
            record["rank_weight_digests"] = digests
            if len(set(digests)) > 1 and self.is_main:
                warnings.warn(
                    f"the ranks' weights differ at step {state.step}: the replicas are out of sync",
                    stacklevel=2,
                )
        self.metrics.write(record)

    def _optimizer_state(self, model: nn.Module, optimizer: Any) -> dict[str, Any]:
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            return get_optimizer_state_dict(
                model, optimizer.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        return optimizer.state_dict()

    def _load_optimizer(self, model: nn.Module, optimizer: Any, folder: Path) -> None:
        saved = load_torch(folder / "optimizer.pt") if (self.is_main or not self.fsdp) else {}
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(
                model,
                optimizer.optimizer,
                saved,
                options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True),
            )
        else:
            optimizer.load_state_dict(saved)

    # ------------------------------------------------------------------------------ stage end
    def _validate(
        self, index: int, spec: StageSpec, model: nn.Module, state: TrainerState, global_offset: int
    ) -> None:
        if self.recipe.validation.every < 0 or not self.recipe.data.val or self.fsdp:
            return
        if self.is_main:
            inner = self.accelerator.unwrap_model(model)
            inner.eval()
            with preserved_rng(), torch.no_grad():
                metrics = self.task.validate(inner, spec.stage)
            inner.train()
            if metrics:
                self.metrics.write(
                    {
                        "kind": "val",
                        "stage_index": index,
                        "stage": spec.stage,
                        "step": state.step,
                        "global_step": global_offset + state.step,
                        **metrics,
                    }
                )
        self.barrier()

    def _finish_stage(self, index: int, spec: StageSpec, model: nn.Module, state: TrainerState) -> Path:
        global_offset = sum(s.steps for s in self.recipe.stages[:index])
        self._validate(index, spec, model, state, global_offset)
        final = final_dir(self.run_dir, index, spec.stage)
        weights = self.accelerator.get_state_dict(model) if self.fsdp else None
        if self.is_main:
            export = self.accelerator.unwrap_model(model)
            if weights is not None:  # FSDP: the local module is sharded; export through a full CPU copy
                export = self._build_model(index)
                export.load_state_dict(weights)
            with durable_dir(final) as tmp:
                export.save_pretrained(tmp)
        digests = None if self.fsdp else self._gather(weight_digest(self.accelerator.unwrap_model(model)))
        record = {
            "kind": "stage_end",
            "stage_index": index,
            "stage": spec.stage,
            "step": state.step,
            "final": str(final.relative_to(self.run_dir)),
        }
        if digests is not None:
            record["rank_weight_digests"] = digests
        self.metrics.write(record)
        self.barrier()
        return final


def train(
    recipe: Recipe, run_dir: str | Path, *, resume: bool = False, task: TrainingTask | None = None
) -> RunResult:
    """Run ``recipe`` in ``run_dir`` (see :class:`Trainer`); in a ``torchrun`` job every process calls it."""
    return Trainer(recipe, run_dir, resume=resume, task=task).run()
