"""Fingerprint margins between real models (issue 26, item 5).

How similar the judge's fingerprint finds two real models: SmolLM2-135M (the default model,
Q4_1) against a second run of itself, against siblings requantized from the same weights
(Q8_0: nearly identical; Q4_0: coarser), and against Gemma 3 270M (another model). Each model
runs on llama.cpp's server (the system's own deploy script) on loopback, 1 thread each; every
probe is a fresh draw of the judge's secret prompts (redline.judge.fingerprint), and each pair
is compared with the judge's own rule.

Needs the Gemma GGUF (`bash scripts/install.sh --test` assembles it) and, for the siblings,
the `gguf` package (installed by --test too); a model that is missing is left out, and said.

Run: .venv/bin/python bench/bench_fingerprint.py [--probes 6]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redline.judge import fingerprint  # noqa: E402
from redline.system.engines import parse_model, smollm2_gguf  # noqa: E402

GEMMA = ROOT / ".venv" / "share" / "models" / "gemma-3-270m-q4_k_m.gguf"


class Loopback:
    """The judge's probes, sent on this host's loopback (no sandbox here)."""

    def netns_call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return fn(*args, **kw)


def requantize(src: Path, dst: Path, target: str) -> Path:
    """A sibling of `src`: every Q4_1 tensor dequantized and quantized again as `target`,
    everything else (metadata, tokenizer, other tensors) as it was."""
    import gguf  # only this measurement needs it (install.sh --test)

    qtype = gguf.GGMLQuantizationType[target]
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    tensors = []
    for t in reader.tensors:
        data, kind = t.data, t.tensor_type
        if kind == gguf.GGMLQuantizationType.Q4_1:
            data, kind = gguf.quants.quantize(gguf.quants.dequantize(data, kind), qtype), qtype
        tensors.append(data)
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in tensors:
        writer.write_tensor_data(data)
    writer.close()
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(gguf_path: Path, work: Path) -> tuple[subprocess.Popen, int]:
    """The system's own deploy script on `gguf_path`, on a free loopback port."""
    engine = parse_model(f"gguf:{gguf_path}")
    engine.options["threads"] = 1
    folder = work / gguf_path.stem
    (folder / "local_model_weights").mkdir(parents=True)
    (folder / "local_model_weights" / engine.weights_name).symlink_to(gguf_path)
    script = folder / engine.deploy_path
    script.parent.mkdir()
    script.write_text(engine.deploy_script())
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server on {gguf_path.name} exited")
        time.sleep(0.2)
    raise RuntimeError(f"the server on {gguf_path.name} did not come up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=6, help="fresh draws of the secret prompts")
    ap.add_argument("--gemma", type=Path, default=GEMMA)
    args = ap.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="fp-bench-"))
    reference = smollm2_gguf()
    models: dict[str, Path] = {"smollm2 Q4_1, second server": reference}
    for target in ("Q8_0", "Q4_0"):
        try:
            models[f"smollm2 requantized {target}"] = requantize(
                reference, work / f"smollm2-{target.lower()}.gguf", target)
        except ImportError:
            console.print(f"[yellow]no gguf package: sibling {target} left out")
    if args.gemma.is_file():
        models["gemma3 270m Q4_K_M"] = args.gemma
    else:
        console.print(f"[yellow]{args.gemma} missing: Gemma left out")
    procs: list[subprocess.Popen] = []
    try:
        ref_proc, ref_port = serve(reference, work / "ref")
        procs.append(ref_proc)
        ports = {}
        for name, path in models.items():
            proc, ports[name] = serve(path, work / name.replace(" ", "_").replace(",", ""))
            procs.append(proc)
        net = Loopback()
        sims: dict[str, list[float]] = {n: [] for n in models}
        worst: dict[str, list[float]] = {n: [] for n in models}
        passed: dict[str, int] = dict.fromkeys(models, 0)
        t0 = time.monotonic()
        for _ in range(args.probes):
            probe = fingerprint.Probe()
            base = fingerprint.take(net, ref_port, probe)
            for name, port in ports.items():
                got = fingerprint.compare(base, fingerprint.take(net, port, probe))
                sims[name].append(got["similarity"])
                worst[name].append(min(got.get("per_prompt") or [0.0]))
                passed[name] += bool(got["passed"])
        took = time.monotonic() - t0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    table = Table(title=f"fingerprint vs SmolLM2-135M Q4_1: {args.probes} draws of "
                        f"{fingerprint.N_PROMPTS} prompts, {fingerprint.MAX_TOKENS} tokens "
                        f"(pass: mean >= {fingerprint.THRESHOLD}, each >= "
                        f"{fingerprint.THRESHOLD - 0.2:.1f})")
    for col in ("model", "mean similarity", "lowest mean", "lowest prompt", "judged same"):
        table.add_column(col)
    for name in models:
        table.add_row(name, f"{statistics.mean(sims[name]):.3f}", f"{min(sims[name]):.3f}",
                      f"{min(worst[name]):.3f}", f"{passed[name]}/{args.probes}")
    console.print(table)
    console.print(f"{took:.0f} s for {args.probes * (len(models) + 1)} fingerprints")


if __name__ == "__main__":
    main()
