"""One exception type for everything that can go wrong while flashing or deploying.

Every error names what failed, where (the port or device) and what to do about it, because the
person reading it is a biomedical engineer at a bed, not the author of this code.
"""
from __future__ import annotations

class DeployError(Exception):
    """A failure with a short reason code (for the fleet summary) and a fix for the human."""

    def __init__(self, message: str, *, code: str = "error", port: str | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.port = port
        self.fix = fix

    def __str__(self) -> str:
        text = self.message
        if self.fix:
            text += "\n  fix: " + self.fix
        return text

    @property
    def short(self) -> str:
        """One line for a summary table."""
        return self.message.splitlines()[0]
