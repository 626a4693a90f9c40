"""The agent program of an AI system under test. Self-contained: it never imports redline."""
