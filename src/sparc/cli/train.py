"""``sparc train``, ``sparc import-checkpoint`` and ``sparc demo``: making models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from sparc.cli.common import Flat
from sparc.cli.info import describe_model
from sparc.demo import DemoConfig
from sparc.errors import SparcError
from sparc.model import SPARCConfig
from sparc.train import TrainConfig


@dataclass
class Train:
    """Train a SPARC model on a feature store; resumable."""

    store: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="STORE")]
    """Feature store directory (e.g. from 'sparc import-h5')."""

    out: Path
    """Run directory to create (config.json, model.safetensors, metrics.jsonl, checkpoint/)."""

    model: Annotated[SPARCConfig, Flat]
    train: Annotated[TrainConfig, Flat] = field(default_factory=TrainConfig)

    streams: tuple[str, ...] | None = None
    """Streams to train on (default: all streams of the store)."""

    preset: str | None = None
    """original: every setting of the authors' code (pre-bias at zero, dead after 1,000 steps and re-initialised
    there; the methods sparc, local, no-cross), for exact reproduction (docs/method.md §3)."""

    resume: bool = False
    """Continue the run in --out from its last checkpoint (its saved settings are used)."""

    resume_lr: float | None = None
    """With --resume: continue with this learning rate instead of the saved one (e.g. lower, after a divergence)."""

    other_store: bool = False
    """With --resume: continue on STORE even though it is not the store the run was trained on."""

    overwrite: bool = False
    """Replace the run in --out (only a folder sparc wrote as a run; anything else is refused)."""

    dist_timeout: float = 600.0
    """Under torchrun: seconds a rank waits for the others before it stops, naming the failure (README.md, 'Scaling out')."""

    kernels: Literal["auto", "fused", "triton", "pytorch"] | None = None
    """Sparse kernels: fused (numba, CPU float32/64), triton (CUDA), pytorch, or auto (the fast ones where they load).
    Default: SPARC_KERNELS, else auto; with --resume: the run's recorded ones, which keep its rounding
    (docs/method.md §4.2)."""

    bf16_select: Literal["auto", "on", "off"] | None = None
    """Choose each sample's latents through a certified bf16 encoder pass (exactly the float32 choice;
    auto: where the hardware has bf16 matrix units — AVX512-BF16, AMX, CUDA). Default: SPARC_BF16_SELECT,
    else auto; with --resume: as recorded (docs/method.md §4.3)."""

    threads: int | None = None
    """Threads of each compute pool (PyTorch, OpenMP, numba). Default: SPARC_THREADS or OMP_NUM_THREADS, else the
    CPUs this process may use — its CPU affinity (taskset) and its cgroup's CPU quota (README.md, 'Running beside other work')."""

    def run(self) -> None:
        if self.resume_lr is not None and not self.resume:
            raise SparcError("--resume-lr goes with --resume; for a new run use --lr")
        if self.preset is not None and self.resume:
            raise SparcError("--preset goes with a fresh run; a resumed run keeps its recorded settings")
        if self.preset is not None:
            from sparc.train.config import apply_preset

            self.model, self.train = apply_preset(self.preset, self.model, self.train)
        if self.resume_lr is not None:
            TrainConfig(lr=self.resume_lr)  # the same checks as --lr
        if not self.resume:
            from sparc.data.store import FeatureStore

            FeatureStore.open(self.store)  # a wrong path said at once, before PyTorch loads
        from sparc.train.distributed import Distributed, launched_by_torchrun

        # Under torchrun, one rank of a data-parallel run (sparc.train.distributed).
        dist = Distributed.from_env(timeout_s=self.dist_timeout) if launched_by_torchrun() else None
        self._train(dist)
        # Only after a normal end: a rank that fails exits, and its closed connections
        # stop the others.
        if dist is not None:
            dist.close()

    def _train(self, dist) -> None:
        from sparc.data import FeatureStore
        from sparc.errors import Interrupted, TrainingDiverged
        from sparc.train import new_spec, open_run
        from sparc.train.backend import Backend

        main = dist is None or dist.is_main
        backend = Backend(self.kernels or "auto", self.bf16_select or "auto")
        spec = None if self.resume or not main else new_spec(FeatureStore.open(self.store), self.model, self.train,
                                                             self.streams, backend=backend)
        with open_run(self.out, spec, resume=self.resume, overwrite=self.overwrite, store=self.store,
                      lr=self.resume_lr, other_store=self.other_store, backend=backend, dist=dist) as run:
            if run.resumed and main:
                print(f"resuming {self.out} with its saved settings (lr {run.spec.train.lr:g})")
            if main:
                plan = run.trainer.plan()
                print(plan.describe(run.spec.train))
                for warning in plan.warnings:  # advice on the plan, beside it (stderr keeps errors)
                    print(f"warning: {warning}")
            try:
                run.trainer.fit()
            except KeyboardInterrupt:
                raise Interrupted(f"interrupted at step {run.trainer.step_count}; continue with: "
                                  f"sparc train {self.store} --out {self.out} --resume") from None
            except TrainingDiverged as e:
                lower = f"{run.spec.train.lr / 10:g}"
                how = (f"resume from it with a lower learning rate: sparc train {self.store} --out {self.out} "
                       f"--resume --resume-lr {lower}") if e.checkpoint_step is not None else (
                    f"start again with a lower learning rate: sparc train {self.store} --out {self.out} "
                    f"--overwrite --lr {lower}")
                raise TrainingDiverged(f"{e}; {how}", step=e.step, checkpoint_step=e.checkpoint_step) from None
        if main:
            ranks = f" on {dist.world_size} ranks" if dist is not None else ""
            print(f"trained {run.trainer.step_count} steps{ranks}; model saved in {self.out}")


@dataclass
class ImportCheckpoint:
    """Convert the original code's msae_checkpoint.pth into a sparc model directory."""

    checkpoint: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="CHECKPOINT")]
    """The .pth file (run_config.json beside it supplies k, topk, auxk when present)."""

    out: Path
    """Model directory to write (config.json + model.safetensors)."""

    topk: Literal["global", "local"] | None = None
    """TopK type, when run_config.json does not say."""

    k: int | None = None
    """Active latents, when run_config.json does not say."""

    auxk: int | None = None
    """AuxK latents, when run_config.json does not say."""

    batch_size: int | None = None
    """Batch size the original was trained with (turns its step counters into samples)."""

    overwrite: bool = False
    """Replace an existing model at --out."""

    def run(self) -> None:
        from sparc.model import SPARC
        from sparc.train.rundir import RUN
        from sparc.workspace import check_replaceable, mark, writing

        out = self.out
        model = SPARC.from_reference(self.checkpoint, topk=self.topk, k=self.k, auxk=self.auxk,
                                     batch_size=self.batch_size)
        with writing(out, "sparc import-checkpoint"):
            if out.exists() and (not out.is_dir() or any(out.iterdir())) and not self.overwrite:
                raise SparcError(f"{out} is not empty; pass --overwrite to replace a model sparc wrote there, "
                                 "or choose another --out")
            check_replaceable(out, RUN, "choose another --out")  # the one ownership rule
            out.mkdir(parents=True, exist_ok=True)
            mark(out, RUN, "sparc import-checkpoint")
            model.save(out)
        print(f"imported {self.checkpoint} → {out}\n{describe_model(model)}")


@dataclass
class Demo:
    """Run the whole method on the embedded OpenMoji data: real features from three
    models, SPARC and the local-TopK baseline trained and compared."""

    demo: Annotated[DemoConfig, Flat] = field(default_factory=DemoConfig)

    def run(self) -> None:
        from sparc.demo import run_demo

        result = run_demo(self.demo)
        print()
        print(result.summary.split("## Settings and data")[0].rstrip())  # the settings stay in summary.md
        timing = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
        print(f"output in {self.demo.out}/ (store/, runs/, report/, summary.md); {timing}")
        print(f"open the report in a browser: {result.report / 'index.html'}")
