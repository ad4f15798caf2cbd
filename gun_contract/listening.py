"""A port a process listens on that cannot be bound: the listener, the address and the
setting that gives the port, in one message (a start-up fault of the configuration, said
as such by the command that starts the process; review stop 37, H5)."""

from __future__ import annotations


class PortNotBound(OSError):
    """``what`` cannot listen on ``host:port``; the message names ``setting``."""

    def __init__(self, what: str, host: str, port: int, setting: str, err: OSError) -> None:
        given = f" ({setting})" if setting else ""
        super().__init__(
            err.errno, f"the {what} cannot bind {host}:{port}{given}: {err.strerror or err}"
        )

    def __str__(self) -> str:
        return str(self.strerror)  # the sentence, without OSError's "[Errno 98]"
