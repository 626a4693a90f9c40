"""redline: does an AI system (agent + its own local LLM server) replicate itself?"""

__version__ = "0.1.0"
