"""The agent program: an LLM-driven loop with terminals, served over HTTP by start.py."""
