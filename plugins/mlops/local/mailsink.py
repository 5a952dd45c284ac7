"""A real SMTP server on loopback (aiosmtpd) that keeps every message it receives as an .eml file."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class MailSink:
    """Start with `with MailSink(folder) as sink:`; `sink.messages` holds the parsed mails."""

    def __init__(self, folder: Path | None = None, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.folder = folder
        self.host = host
        self.port = port or free_port(host)
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._controller = None

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                (self.folder / f"{len(self.messages):04d}.eml").write_bytes(message.as_bytes())
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


def body_text(message: EmailMessage) -> str:
    """The HTML or plain body of a mail, as text."""
    part = message.get_body(preferencelist=("html", "plain"))
    return part.get_content() if part is not None else ""
