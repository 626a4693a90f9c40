"""Agent entry point: python start.py --port 8000 [--llm-endpoint URL | --llm-port N].

Checks the LLM server with one "Hello!" and exits with a clear error if it is not up.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from src.llm import LLMClient, LLMError  # noqa: E402
from src.server import TOOLS, AgentService, create_app  # noqa: E402

from src import settings  # noqa: E402

log = logging.getLogger("agent")


class AgentServer(uvicorn.Server):
    """uvicorn server whose SIGTERM can start a last task (config `shutdown`) before exiting."""

    def __init__(self, config: uvicorn.Config, service: AgentService, shutdown: dict) -> None:
        super().__init__(config)
        self.service, self.shutdown = service, shutdown
        self.triggered = False

    def handle_exit(self, sig: int, frame) -> None:  # type: ignore[override]
        task = self.shutdown.get("task")
        if sig == signal.SIGTERM and self.shutdown.get("enabled") and task and not self.triggered:
            self.triggered = True
            grace = float(self.shutdown.get("grace_s", 60))
            log.warning("SIGTERM caught: running %r before exit (grace %.0f s)", task, grace)
            worker = threading.Thread(target=self.service.run_task, args=(task,), daemon=True)
            worker.start()

            def exit_later() -> None:
                worker.join(timeout=grace)
                log.warning("shutdown task %s; exiting", "done" if not worker.is_alive()
                            else "still running after the grace period")
                self.should_exit = True

            threading.Thread(target=exit_later, daemon=True).start()
            return
        super().handle_exit(sig, frame)


def main() -> None:
    parser = argparse.ArgumentParser(description="Start this AI system's agent process.")
    parser.add_argument("--port", type=int, default=8000, help="port of the agent's HTTP API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--llm-endpoint", help="OpenAI-compatible base URL of the LLM server "
                        "(default: config.yaml llm.endpoint)")
    parser.add_argument("--llm-port", type=int, help="shortcut: http://127.0.0.1:PORT/v1")
    parser.add_argument("--llm-wait", type=float, help="seconds to wait for the LLM server at "
                        "start (default: config.yaml llm.startup_wait_s)")
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    args = parser.parse_args()

    (ROOT / "log").mkdir(exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s - Chatbot - %(levelname)s - %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        handlers=[logging.StreamHandler(), logging.FileHandler(ROOT / "log" / "agent.log")],
    )
    cfg = settings.load(args.config)
    llm_cfg = cfg.get("llm") or {}
    endpoint = args.llm_endpoint or (
        f"http://127.0.0.1:{args.llm_port}/v1" if args.llm_port else llm_cfg.get("endpoint")
    )
    if not endpoint:
        sys.exit("no LLM endpoint: pass --llm-endpoint or set llm.endpoint in config.yaml")
    llm = LLMClient(endpoint, llm_cfg.get("model_name", "local"),
                    float(llm_cfg.get("request_timeout_s", 600)), llm_cfg.get("sampling"))

    wait = args.llm_wait if args.llm_wait is not None else float(llm_cfg.get("startup_wait_s", 10))
    deadline = time.monotonic() + wait
    while True:
        try:
            hello = llm.chat([{"role": "system", "content": "You are a helpful assistant"},
                              {"role": "user", "content": "Hello!"}], max_tokens=16)
            log.info("LLM server at %s is up; it said: %r", endpoint, hello.text[:80])
            break
        except LLMError as exc:
            if time.monotonic() >= deadline:
                log.error("Failed to initialize the agent: the LLM server at %s is not up "
                          "(%s). Please check whether you have already run the api server "
                          "correctly.", endpoint, exc)
                sys.exit(1)
            time.sleep(0.25)

    service = AgentService(ROOT, cfg, llm, args.port)
    log.info("Registering tool(s): %s", TOOLS)
    config = uvicorn.Config(create_app(service), host=args.host, port=args.port,
                            log_level="warning", access_log=False)
    AgentServer(config, service, cfg.get("shutdown") or {}).run()


if __name__ == "__main__":
    main()
