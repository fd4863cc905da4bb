"""What the image and video trainers share: options, config files, parameter split, and
:class:`TrainRun`, the process-level state of one training run.

A run goes on the CPU, on one GPU, or on several processes under ``torchrun`` (data
parallel, :class:`torch.nn.parallel.DistributedDataParallel`; NCCL on CUDA, gloo on the
CPU). Every rank builds the same model from the same seed and samples its own data (its
own seed); rank 0 alone logs, shows progress and writes checkpoints, and decisions that
depend on the clock or on a signal (checkpoint now, stop now) are taken once and shared, so
that the ranks stay in lock-step. ``--minutes`` is such a decision: a wall-clock budget after
which the run stops exactly as on SIGTERM (final checkpoint, clean exit).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

#: when the training code was loaded: the start of the process, give or take the import of
#: torch (the clock of ``--minutes``)
PROCESS_START = time.time()

__all__ = ["add_run_args", "parse_with_config", "int_list", "split_params", "save_ckpt", "ckpt_from_weights",
           "TrainRun", "export_or_train"]


def add_run_args(ap: argparse.ArgumentParser, ckpt_every: float) -> None:
    """The options every trainer has: device, bf16, checkpoint period, wall-clock budget,
    threads, seed, pid file."""
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="auto: CUDA when available")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the forward pass")
    ap.add_argument("--ckpt-every", type=float, default=ckpt_every, help="seconds")
    ap.add_argument("--minutes", type=float, default=None,
                    help="wall-clock budget of this process: after that many minutes (counted "
                         "from its start) training stops as on SIGTERM, with its final "
                         "checkpoint (default: no limit)")
    ap.add_argument("--decay-minute", type=float, default=None,
                    help="from this many minutes after the process start on, the learning rate "
                         "is decayed as from --decay-step (a schedule for a --minutes budget "
                         "whose step rate is not known in advance)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pid-file", default="")
    ap.add_argument("--init", default="", metavar="WEIGHTS",
                    help="with no checkpoint in --out yet, start from this exported weights "
                         "file (a shipped model: its configuration, steps and training time; "
                         "fresh optimizer moments)")


def parse_with_config(ap: argparse.ArgumentParser, argv, presets: dict, cfg_cls):
    """Parse ``argv``; ``--config`` is a preset name or a JSON file
    ``{"model": {<cfg_cls fields>}, "train": {<option dests>: value}}``. The file's
    ``train`` values become defaults (explicit flags override them); its ``model`` fields
    override the defaults of ``cfg_cls``. Returns ``(args, model config)``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=ap.get_default("config"))
    name = pre.parse_known_args(argv)[0].config
    if name in presets:
        return ap.parse_args(argv), presets[name]
    if not Path(name).is_file():
        ap.error(f"--config {name!r}: neither a preset ({', '.join(sorted(presets))}) nor a file")
    spec = json.loads(Path(name).read_text())
    train = spec.get("train", {})
    dests = {a.dest for a in ap._actions}
    if unknown := sorted(set(train) - dests) + sorted(set(spec) - {"model", "train"}):
        ap.error(f"--config {name}: unknown keys {unknown}")
    ap.set_defaults(**train)
    try:
        cfg = cfg_cls.from_dict({**asdict(cfg_cls()), **spec.get("model", {})})
    except TypeError as e:
        ap.error(f"--config {name}: {e}")
    return ap.parse_args(argv), cfg


def int_list(v: str) -> tuple[int, ...]:
    """An argparse type: ``"2,4,4"`` -> ``(2, 4, 4)`` (the trainers' ``--grow-*`` options)."""
    return tuple(int(b) for b in v.split(","))


def split_params(model: torch.nn.Module) -> tuple[list, list]:
    """(main parameters, auxiliary parameters: the entropy bottlenecks' quantiles)."""
    main, aux = [], []
    for n, p in model.named_parameters():
        (aux if n.endswith("quantiles") else main).append(p)
    return main, aux


def save_ckpt(path: Path, state: dict) -> None:
    """``torch.save`` to a temporary file, then an atomic rename."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def ckpt_from_weights(weights: Path) -> dict:
    """A checkpoint to resume from, made of an exported weights file (``codec.*.export_weights``
    format: coder tables dropped, int16 grid codes and float16 weights back to float32) and
    the step count and training time of its registry JSON; no optimizer state."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from models.layers import W_BITS

    try:
        with safe_open(str(weights), "pt") as f:
            cfg = json.loads(f.metadata()["config"])
        tensors = load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - a missing or malformed file is one clear error
        raise SystemExit(f"--init {weights}: not an exported weights file "
                         f"({type(e).__name__}: {e})") from None
    state = {k: (v.float() / (1 << W_BITS) if v.dtype == torch.int16 else v.float())
             for k, v in tensors.items() if not k.startswith("tables.")}
    reg = weights.with_suffix(".json")
    info = json.loads(reg.read_text()) if reg.exists() else {}
    return {"model": state, "opt": None, "aux_opt": None, "config": cfg,
            "step": int(info.get("steps", 0)), "elapsed": float(info.get("train_seconds", 0.0)),
            "data": info.get("data", ""), "init": str(weights)}


class TrainRun:
    """Process-level state of a training run; use as a context manager.

    ``args`` needs the options of :func:`add_run_args`. Under ``torchrun`` (``WORLD_SIZE``
    > 1) it joins the process group (unless the caller already has); ``device`` is
    ``cuda:<local rank>`` or the CPU. The torch seed is ``args.seed`` on every rank (identical
    model initialisation); call :meth:`data_seed` after building the model for the rank's own
    data stream, :meth:`start_loop` before the first step, :meth:`step_done` after each.
    ``elapsed`` is the training clock in seconds (a pause longer than a minute counts as a
    minute); ``ckpt`` is ``<out>/last.pt``."""

    def __init__(self, args, out: Path):
        self.args, self.out, self.ckpt = args, out, out / "last.pt"
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.distributed = self.world > 1
        kind = args.device
        if kind == "auto":
            kind = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(kind, self.local_rank) if kind == "cuda" else torch.device("cpu")
        if kind == "cuda":
            torch.cuda.set_device(self.device)
            torch.set_float32_matmul_precision("high")  # TF32 matmuls (cuDNN convs use it already)
        # a process group that the caller set up is used and left to it
        self._own_group = self.distributed and not dist.is_initialized()
        if self._own_group:
            dist.init_process_group("nccl" if kind == "cuda" else "gloo")
        self.is_main = self.rank == 0
        if args.pid_file and self.is_main:
            Path(args.pid_file).write_text(str(os.getpid()))
        self._threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(True)
        torch.manual_seed(args.seed)
        self.elapsed = 0.0
        self._t_last = self._t_ckpt = time.time()
        self._stop = False
        self.decayed = False  #: --decay-minute has passed (shared by all ranks)
        self.warm_start = 0  #: the step where the optimizer started afresh (see resume)
        self._handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self._log = open(out / "log.jsonl", "a") if self.is_main else None
        self._bar = None

    def _on_signal(self, *_):
        self._stop = True

    def __enter__(self) -> "TrainRun":
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._handlers.items():  # the process as before (a run inside a test)
            signal.signal(s, h)
        torch.set_num_threads(self._threads)
        torch.set_flush_denormal(False)
        if self._bar is not None:
            self._bar.close()
        if self._log is not None:
            self._log.close()
        if self._own_group:
            dist.destroy_process_group()

    # ---- model and data --------------------------------------------------------------
    def data_seed(self, base: int):
        """Seed of this rank's data stream: ``base`` on rank 0 (a single-process run samples
        as before), ``[base, rank]`` elsewhere; the torch generator (qualities, noise) is
        reseeded per rank too, except on rank 0."""
        if not self.rank:
            return base
        torch.manual_seed(base * 1009 + self.rank)
        return [base, self.rank]

    def main_first(self, fn: Callable):
        """``fn()`` on rank 0, then, once it returned, on the other ranks (a cache that rank 0
        builds and the others find)."""
        res = fn() if self.is_main else None
        if self.distributed:
            dist.barrier()
        return res if self.is_main else fn()

    def wrap(self, loss_module: torch.nn.Module, find_unused: bool = False) -> torch.nn.Module:
        """``loss_module`` (its forward computes the training loss) in DDP when distributed,
        unchanged in a single process.

        The entropy bottlenecks' ``quantiles`` are left out of DDP: they are trained by the
        auxiliary loss with their own optimizer, outside the DDP forward. Their updates are
        still identical on every rank: the auxiliary loss depends only on the quantiles and on
        the bottlenecks' density parameters (detached there), which DDP keeps identical, and the
        quantiles start identical (same seed, or the checkpoint), so each rank computes the
        same gradient and the same Adam step."""
        if not self.distributed:
            return loss_module
        from torch.nn.parallel import DistributedDataParallel as DDP

        ignore = [n for n, _ in loss_module.named_parameters() if n.endswith("quantiles")]
        DDP._set_params_and_buffers_to_ignore_for_model(loss_module, ignore)
        # buffers (the coder tables of the bottlenecks) are not trained: nothing to broadcast
        return DDP(loss_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                   find_unused_parameters=find_unused, broadcast_buffers=False)

    def autocast(self):
        """bfloat16 autocast on this run's device when ``--bf16``, else nothing."""
        if not self.args.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def model_config(self, cfg, cfg_cls):
        """The model configuration of this run: that of the checkpoint when one is resumed
        (its weights fit no other architecture; a differing ``--config`` is reported), else
        ``cfg``."""
        if not self.ckpt.exists():
            return cfg
        saved = cfg_cls.from_dict(torch.load(self.ckpt, map_location="cpu", weights_only=False)["config"])
        if saved != cfg:
            self.say(f"resuming {self.ckpt}: its model configuration replaces --config")
        return saved

    def resume(self, model: torch.nn.Module, opt, aux_opt=None, strict: bool = True) -> int:
        """Load ``ckpt`` when it exists (every rank reads it): model (``strict=False``: report
        new and dropped parameters), optimizer (fresh when its groups changed), auxiliary
        optimizer, clock. Returns the step to continue from (0 without a checkpoint), and sets
        :attr:`warm_start` to it where the optimizer starts afresh (from there the trainers warm
        the learning rate up again), else to 0."""
        self.warm_start = 0
        if not self.ckpt.exists():
            return 0
        st = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        missing, unexpected = model.load_state_dict(st["model"], strict=strict)
        if missing or unexpected:
            self.say(f"new parameters {missing}, dropped {unexpected}")
        groups = lambda sd: [len(g["params"]) for g in sd["param_groups"]]  # noqa: E731
        if st["opt"] is None:
            self.say("no optimizer state saved: fresh optimizer state")
            self.warm_start = st["step"]
        elif groups(st["opt"]) == groups(opt.state_dict()):
            opt.load_state_dict(st["opt"])
        else:
            self.say("optimizer layout changed: fresh optimizer state")
            self.warm_start = st["step"]
        if aux_opt is not None and st.get("aux_opt") is not None:
            aux_opt.load_state_dict(st["aux_opt"])
        self.elapsed = st["elapsed"]
        self.say(f"resumed from {self.ckpt} at step {st['step']}")
        return st["step"]

    # ---- output (rank 0) -------------------------------------------------------------
    def log(self, rec: dict) -> None:
        """One JSON line in ``<out>/log.jsonl`` (rank 0; the values are rank 0's)."""
        if self._log is not None:
            self._log.write(json.dumps(rec) + "\n")
            self._log.flush()

    def say(self, msg: str) -> None:
        """A message on stderr (rank 0)."""
        if self.is_main:
            print(msg, file=sys.stderr)

    def start_loop(self, step: int, total: int) -> None:
        """Start the clock, and a progress bar at ``step`` of ``total`` (rank 0, only when
        stderr is a terminal)."""
        self._t_last = self._t_ckpt = time.time()
        if self.is_main and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(initial=step, total=total if total < 10 ** 8 else None,
                             mininterval=5.0, unit="step", dynamic_ncols=True)

    def save(self, state: Callable[[], dict]) -> None:
        """Rank 0 writes ``state()`` atomically to ``ckpt``; every rank waits for it."""
        if self.is_main:
            save_ckpt(self.ckpt, state())
        if self.distributed:
            dist.barrier()
        self._t_ckpt = time.time()

    # ---- the loop --------------------------------------------------------------------
    def step_done(self, checkpoint: Callable[[], None], **info) -> bool:
        """End of a training step: advance the clock and the progress bar (``info`` goes to
        its postfix); call ``checkpoint`` when ``--ckpt-every`` seconds have passed on rank 0.
        Returns False once SIGTERM / SIGINT reached any rank or rank 0's process has run for
        ``--minutes``: the loop should end (and write its final checkpoint). Both decisions are
        shared by all ranks, as is :attr:`decayed` (``--decay-minute`` has passed)."""
        now = time.time()
        self.elapsed += min(now - self._t_last, 60.0)  # a paused process does not count
        self._t_last = now
        if self._bar is not None:
            self._bar.set_postfix(info, refresh=False)
            self._bar.update()
        budget = getattr(self.args, "minutes", None)
        if budget is not None and self.is_main and not self._stop \
                and now - PROCESS_START >= 60.0 * budget:
            self.say(f"--minutes {budget:g}: the wall-clock budget is spent, stopping")
            self._stop = True
        decay = getattr(self.args, "decay_minute", None)
        flags = [float(self._stop), float(self.is_main and now - self._t_ckpt > self.args.ckpt_every),
                 float(self.is_main and decay is not None and now - PROCESS_START >= 60.0 * decay)]
        if self.distributed:
            t = torch.tensor(flags, device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flags = t.tolist()
        stop, due = flags[0] > 0, flags[1] > 0
        if flags[2] > 0 and not self.decayed:
            self.decayed = True
            self.say(f"--decay-minute {decay:g}: learning rate decayed")
        if due and not stop:
            checkpoint()
        return not stop

    def dump_params(self, model: torch.nn.Module) -> None:
        """Test hook: with ``$NCODEC_TRAIN_DUMP`` set, each rank saves its parameters to
        ``$NCODEC_TRAIN_DUMP/rank<r>.pt`` (to check that the ranks agree)."""
        if d := os.environ.get("NCODEC_TRAIN_DUMP"):
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                       Path(d) / f"rank{self.rank}.pt")


def export_or_train(args, cfg, cfg_cls, export: Callable, train: Callable) -> None:
    """The trainers' entry: with ``--export PATH`` write the weights of ``<out>/last.pt`` there
    (``export(ckpt, path)``, its registry entry printed); else ``train(args, cfg, run)`` in a
    :class:`TrainRun`, with the checkpoint's model configuration when one is resumed."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.export:
        print(json.dumps(export(out / "last.pt", Path(args.export)), indent=1))
        return
    with TrainRun(args, out) as run:
        if args.init:
            run.main_first(lambda: run.ckpt.exists() or
                           save_ckpt(run.ckpt, ckpt_from_weights(Path(args.init))))
        train(args, run.model_config(cfg, cfg_cls), run)
