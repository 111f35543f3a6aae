"""Move a training checkpoint through a size-limited channel (a GPU machine's 64 MiB carry).

`pack` writes the state as a few safetensors parts of at most `--part-mib` each, with the weights
and the EMA in float16 and the optimiser moments in bfloat16 (half the bytes; a relative rounding
of about 5e-4 on the weights, 4e-3 on the moments, far below one optimiser step's change). `unpack`
joins the parts into a sealed training checkpoint again (float32, the original dtypes), refusing
a missing, foreign or altered part, so `m2l train` resumes from it.

    python scripts/state_transfer.py pack RUN/checkpoints/step-000002400.safetensors PARTS_DIR
    python scripts/state_transfer.py unpack PARTS_DIR NEW_RUN/checkpoints   # names it step-N
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from m2l.errors import M2LError
from m2l.formats import STATE_VERSION, atomic_save, read_training_state, seal, step_path

PART = "part-{:02d}-of-{:02d}.safetensors"


def narrow(name: str, t: torch.Tensor) -> torch.Tensor:
    """The dtype a tensor travels in: fp16 weights, bf16 optimiser moments, the rest as it is."""
    if not t.is_floating_point() or t.dim() == 0:
        return t
    return t.to(torch.bfloat16 if name.startswith("optim.") else torch.float16)


def pack(state: Path, out_dir: Path, part_bytes: int) -> list[Path]:
    with warnings.catch_warnings():  # an older state's checksum covers less: still verified
        warnings.simplefilter("ignore")
        tensors, meta = read_training_state(state)
    origin = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()}
    parts: list[dict[str, torch.Tensor]] = [{}]
    size = len(json.dumps(meta)) + len(json.dumps(dtypes))  # part 0's header carries both
    for name in sorted(tensors):
        t = narrow(name, tensors[name]).contiguous()
        nbytes = t.numel() * t.element_size() + len(name) + 96  # + its header entry
        if size + nbytes > part_bytes and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][name] = t
        size += nbytes
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(parts):
        head = {"origin": origin, "part": str(i), "parts": str(len(parts))}
        if i == 0:
            head |= {"state_meta": json.dumps(meta), "dtypes": json.dumps(dtypes)}
        path = out_dir / PART.format(i, len(parts))
        save_file(part, str(path), metadata=head)
        paths.append(path)
    return paths


def unpack(parts_dir: Path, state: Path) -> Path:
    """Join the parts into `state` (a file, or a checkpoints folder to name it in); returns it."""
    from safetensors import safe_open

    files = sorted(parts_dir.glob("part-*-of-*.safetensors"))
    if not files:
        raise M2LError(f"{parts_dir}: holds no part-*-of-*.safetensors")
    heads = []
    for f in files:
        with safe_open(str(f), "pt") as fh:
            heads.append(fh.metadata() or {})
    first = next((h for h in heads if h.get("part") == "0"), None)
    if first is None or "state_meta" not in first:
        raise M2LError(f"{parts_dir}: part 0 (with the state's metadata) is missing")
    count = int(first["parts"])
    mine = {int(h["part"]) for h in heads if h.get("origin") == first["origin"]}
    if mine != set(range(count)) or len(files) != count:
        raise M2LError(f"{parts_dir}: expected parts 0..{count - 1} of one state, found {len(files)} files")
    meta, dtypes = json.loads(first["state_meta"]), json.loads(first["dtypes"])
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors |= load_file(str(f))
    if set(tensors) != set(dtypes):
        have = f"{len(tensors)} tensors, the state had {len(dtypes)}"
        raise M2LError(f"{parts_dir}: the parts do not hold the state's tensors ({have})")
    tensors = {k: v.to(getattr(torch, dtypes[k])) for k, v in tensors.items()}
    meta = {k: v for k, v in meta.items() if k not in ("tensors_sha256", "sha256")}
    meta["version"] = str(STATE_VERSION)  # sealed as today's version, whatever the source's
    if state.is_dir():
        state = step_path(state, int(meta["step"]))
    atomic_save(tensors, seal(tensors, meta), state, force=False)
    return state


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="split a training checkpoint into parts")
    p.add_argument("state", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--part-mib", type=float, default=15.5)
    u = sub.add_parser("unpack", help="join parts into a training checkpoint (never overwrites)")
    u.add_argument("parts_dir", type=Path)
    u.add_argument("state", type=Path, help="the checkpoint to write, or a folder to write it in")
    args = ap.parse_args()
    try:
        if args.verb == "pack":
            for path in pack(args.state, args.out_dir, int(args.part_mib * 2**20)):
                print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
        else:
            args.state.parent.mkdir(parents=True, exist_ok=True)
            print(f"wrote {unpack(args.parts_dir, args.state)}")
    except M2LError as e:
        print(f"state_transfer: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
