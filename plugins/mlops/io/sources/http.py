"""An HTTP endpoint serving one CSV or Parquet file per day, and reference tables by URL.

The day URL is a template with {date} (YYYY-MM-DD), {start} and {end} (the next day), e.g.
`https://data.example.com/flights/{date}.csv`. Table URLs may be relative to it.

Retries: HTTP 5xx, connection errors and timeouts are retried `retries` times, sleeping
`backoff_seconds * 2**attempt` in between; 4xx answers are final. (urllib3's Retry is not used:
it never sleeps before the first retry and honours Retry-After, so it cannot follow this rule exactly.)
"""

from __future__ import annotations

import datetime as dt
import io
import time
from urllib.parse import urljoin, urlsplit, urlunsplit

import pandas as pd

from mlops.core.config import Source, mask_secrets
from mlops.io.sources import SourceError


def mask_url(url: str) -> str:
    """The URL with the password of its user info, and secret-like query values (token=...), replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return mask_secrets(url)
    user_host = parts.netloc.rpartition("@")
    user = user_host[0].partition(":")[0]
    return mask_secrets(urlunsplit(parts._replace(netloc=f"{user}:***@{user_host[2]}")))


class HttpSource:
    """GETs the day's file and reference tables with a requests.Session, retrying transient failures."""

    def __init__(self, src: Source, url_template: str | None) -> None:
        if not url_template:
            raise SourceError("http source: no URL template (give source.url)")
        self.src = src
        self.url_template = url_template
        self.description = f"http:{mask_url(url_template)}"
        self.last_read: dict[str, object] = {}  # what the server said of the last day's file

    def read_day(self, day: dt.date) -> pd.DataFrame:
        end = day + dt.timedelta(days=1)
        try:
            url = self.url_template.format(date=day.isoformat(), start=day.isoformat(), end=end.isoformat())
        except (KeyError, IndexError, ValueError) as exc:
            raise SourceError(
                f"{self.description}: bad URL template ({exc!r}); use {{date}}, {{start}} and {{end}}"
            ) from exc
        df, headers, size = self._read(url, f"partition {day.isoformat()}")
        self.last_read = self._stats(url, df, headers, size, f"partition {day.isoformat()}")
        return df

    def _stats(self, url: str, df: pd.DataFrame, headers, size: int, what: str) -> dict[str, object]:
        """The file's size and the server's own figures; a row count header that disagrees fails."""
        stats: dict[str, object] = {"url": mask_url(url), "bytes": size, "rows": len(df)}
        for name in ("Content-Length", "ETag", "Last-Modified"):
            if headers.get(name) is not None:
                stats[name.lower().replace("-", "_")] = headers[name]
        header = self.src.row_count_header
        if header and headers.get(header) is not None:
            claimed = headers[header].strip()
            stats["claimed_rows"] = claimed
            if not claimed.isdigit() or int(claimed) != len(df):
                raise SourceError(
                    f"{mask_url(url)} ({what}): the file has {len(df)} rows but its {header} header says "
                    f"{claimed!r} (source.row_count_header): the file arrived incomplete or altered"
                )
        return stats

    def read_table(self, name: str) -> pd.DataFrame:
        if name not in self.src.tables:
            raise SourceError(
                f"{self.description}: no URL for reference table {name!r}; known tables: {sorted(self.src.tables)}"
            )
        return self._read(urljoin(self.url_template, self.src.tables[name]), f"table {name!r}")[0]

    def _read(self, url: str, what: str) -> tuple[pd.DataFrame, dict[str, str], int]:
        """The parsed file, the response headers and the body's size in bytes."""
        where = f"{mask_url(url)} ({what})"
        body, headers = self._get(url, where)
        if not body:
            raise SourceError(f"{where}: empty body; a {self.src.format} file was expected")
        try:
            if self.src.format == "parquet":
                return pd.read_parquet(io.BytesIO(body)), headers, len(body)
            return pd.read_csv(io.BytesIO(body)), headers, len(body)
        except Exception as exc:  # any parser error: the body is not a readable file of this format
            raise SourceError(f"{where}: cannot parse the body as {self.src.format}: {exc}") from exc

    def _get(self, url: str, where: str) -> tuple[bytes, dict[str, str]]:
        import requests

        attempts = self.src.retries + 1
        timeout = self.src.timeout_seconds
        last = ""
        with requests.Session() as session:
            for attempt in range(attempts):
                try:
                    response = session.get(url, timeout=timeout)
                except requests.Timeout:
                    last = f"timed out after {timeout:g} s (timeout_seconds)"
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                    last = f"connection failed: {exc}"
                except requests.RequestException as exc:  # invalid URL and the like: retrying cannot help
                    raise SourceError(f"{where}: request failed: {exc}") from exc
                else:
                    status = response.status_code
                    if status < 400:
                        return response.content, response.headers
                    if status < 500:
                        raise SourceError(f"{where}: HTTP {status} {response.reason} (client error, not retried)")
                    last = f"HTTP {status} {response.reason}"
                if attempt + 1 < attempts:
                    time.sleep(self.src.backoff_seconds * 2**attempt)
        raise SourceError(f"{where}: failed after {attempts} attempt(s) ({self.src.retries} retries): {last}")
