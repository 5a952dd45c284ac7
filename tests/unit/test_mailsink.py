"""The SMTP sink (real aiosmtpd on loopback): every mail kept, none ever overwritten."""

from __future__ import annotations

import smtplib
import threading
from email.message import EmailMessage

from mlops.local.mailsink import MailSink


def send(sink: MailSink, subject: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "mlops@localhost", "ml-team@example.com", subject
    message.set_content(f"body of {subject}")
    with smtplib.SMTP(sink.host, sink.port) as client:
        client.send_message(message)


def subjects(folder) -> dict[str, str]:
    import email
    import email.policy

    return {
        p.name: email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
        for p in sorted(folder.glob("*.eml"))
    }


def test_a_restarted_sink_appends_after_the_mails_already_kept(tmp_path):
    folder = tmp_path / "mail"
    with MailSink(folder) as first:
        send(first, "demo 1")
        send(first, "demo 2")
    assert [p.name for p in first.files] == ["0001.eml", "0002.eml"]
    (folder / "0007.eml").write_bytes(b"Subject: kept by hand\n\nhello\n")
    with MailSink(folder) as second:  # e.g. `mlops up` after `mlops demo`
        send(second, "up 1")
    assert subjects(folder) == {
        "0001.eml": "demo 1",
        "0002.eml": "demo 2",
        "0007.eml": "kept by hand",
        "0008.eml": "up 1",
    }
    assert [m["Subject"] for m in second.messages] == ["up 1"] and second.files == [folder / "0008.eml"]
    assert not list(folder.glob(".incoming-*"))  # no temporary file left behind


def test_two_sinks_on_one_folder_never_overwrite_each_other(tmp_path):
    folder = tmp_path / "mail"
    with MailSink(folder) as a, MailSink(folder) as b:
        senders = [
            threading.Thread(target=lambda s=sink, n=name: [send(s, f"{n} {i}") for i in range(10)])
            for sink, name in ((a, "a"), (b, "b"))
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
    kept = subjects(folder)
    assert sorted(kept.values()) == sorted(f"{n} {i}" for n in "ab" for i in range(10))
    assert sorted(kept) == [f"{i:04d}.eml" for i in range(1, 21)]
    assert len(set(a.files) | set(b.files)) == 20
