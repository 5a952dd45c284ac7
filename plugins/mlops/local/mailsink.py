"""A real SMTP server on loopback (aiosmtpd) that keeps every message it receives as an .eml file.

Files are numbered `0001.eml`, `0002.eml`, ... on from the highest number already in the folder, and
never overwrite one: a restarted sink, or two sinks on one folder (`mlops demo` beside `mlops up`),
append to what is there.
"""

from __future__ import annotations

import email
import email.policy
import os
import tempfile
import threading
from email.message import EmailMessage
from pathlib import Path

from mlops.local.ports import free_port


class MailSink:
    """Start with `with MailSink(folder) as sink:`; `sink.messages` holds the parsed mails."""

    def __init__(self, folder: Path | None = None, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.folder = folder
        self.host = host
        self.port = port or free_port(host)
        self.messages: list[EmailMessage] = []
        self.files: list[Path] = []  # where each kept message went, in order
        self._lock = threading.Lock()
        self._controller = None

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        data = envelope.original_content or envelope.content
        message = email.message_from_bytes(data, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            if self.folder is not None:
                self.files.append(keep(self.folder, data))
        return "250 OK"

    def start(self) -> MailSink:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def keep(folder: Path, data: bytes) -> Path:
    """Write `data` as the next `NNNN.eml` of `folder` and return its path; never replaces a file.

    The file is written under a temporary name, then hard-linked to its number (which fails if the
    number is taken, e.g. by another sink on the same folder: then the next number is tried).
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        number = 1 + max((int(p.stem) for p in folder.glob("*.eml") if p.stem.isdigit()), default=0)
        while True:
            path = folder / f"{number:04d}.eml"
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                number += 1
    finally:
        os.unlink(tmp)


def body_text(message: EmailMessage) -> str:
    """The HTML or plain body of a mail, as text."""
    part = message.get_body(preferencelist=("html", "plain"))
    return part.get_content() if part is not None else ""
