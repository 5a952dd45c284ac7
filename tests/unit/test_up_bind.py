"""`mlops up` never exposes an all-admins Airflow (the loopback default is checked in tests/system/test_up.py)."""

from __future__ import annotations

from mlops.local.cli import main


def test_up_refuses_another_address_while_every_visitor_is_an_admin(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", raising=False)  # mlops up's default: True
    for host in ("0.0.0.0", "192.0.2.10"):
        assert main(["up", "--host", host]) == 2
        err = capsys.readouterr().err
        assert f"refusing to listen on {host}: every visitor would be an Airflow admin" in err
        assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False" in err
    assert not (tmp_path / "home").exists()  # nothing started, nothing written
