"""The one error type of the sandbox package."""


class SandboxError(RuntimeError):
    """The sandbox could not be started or used."""
