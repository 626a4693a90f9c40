"""The contracts every area shares, in a leaf package that imports nothing else of redline
but `defaults`: the verdict types, the sandbox's Protocol, and the one registry pattern.

Why a leaf: the judge, the scenarios, the trial, the experiment and the analysis all speak
these types, so each can import them without importing each other (docs/ARCHITECTURE.md,
"Package graph"; `lint-imports` checks it).
"""
