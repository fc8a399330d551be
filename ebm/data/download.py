"""Resumable, checksummed corpus downloads and safe archive extraction (stdlib only).

Corpora are gigabytes fetched over flaky links, so an interrupted run must resume rather than restart, and
nothing may ever look complete (final archive name, extracted directory) unless it really is.
"""

import hashlib
import http.client
import logging
import os
import posixpath
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request

from ebm.cli import EbmError

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "ebm-download/1.0"


class DownloadError(EbmError):
    """A download or extraction that did not complete; the message says what to do next."""


def sha256sum(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _network_error(url, reason, part):
    kept = ""
    if os.path.isfile(part) and os.path.getsize(part) > 0:
        kept = f" The {os.path.getsize(part)} bytes received so far are kept in {part}."
    return DownloadError(
        f"downloading {url} failed: {reason}.{kept} Rerun the same command to resume the download. "
        "If you already have a copy of the corpus, give its location with --db_root instead."
    )


def _fetch(url, part, timeout, progress_pct):
    """Append the rest of ``url`` to ``part`` (or restart it if the server cannot resume)."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # Nothing left past our offset: the part is probably complete; the checksum decides.
            logger.info("server has nothing past byte %d of %s; verifying what we have", have, part)
            return
        raise
    with resp:
        status = resp.status or 200  # file:// URLs have no status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and status == 206:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise DownloadError(
                    f"{url}: asked to resume at byte {have}, the server answered with range "
                    f"{resp.headers.get('Content-Range')!r}. Delete {part} and rerun to download from the start."
                )
            total = int(m.group(2)) if m.group(2) != "*" else (have + length if length is not None else None)
            mode = "ab"
            logger.info("resuming %s at byte %d", part, have)
        else:
            if have:
                logger.info("server ignored the range request; restarting %s from the beginning", part)
            have, total, mode = 0, length, "wb"
        step = max(1, int(progress_pct * total / 100)) if total else 100 * CHUNK
        next_log = (have // step + 1) * step
        done = have
        with open(part, mode) as out:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                done += len(block)
                if done >= next_log:
                    if total:
                        logger.info(
                            "%s: %.0f%% (%d / %d MB)",
                            os.path.basename(part),
                            100 * done / total,
                            done >> 20,
                            total >> 20,
                        )
                    else:
                        logger.info("%s: %d MB", os.path.basename(part), done >> 20)
                    next_log = (done // step + 1) * step
    if total is not None and done < total:
        # http.client reports a dropped connection as a short body, not as an error.
        raise ConnectionError(f"connection closed after {done} of {total} bytes")


def download(url, sha256, download_dir, filename=None, timeout=60.0, progress_pct=5.0):
    """Download ``url`` into ``download_dir`` and return the path of the verified file.

    Data arrives in ``FILE.part``; only a part whose sha256 matches becomes ``FILE``, so a present ``FILE`` is
    trusted after one checksum and never fetched again.
    """
    sha256 = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DownloadError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    filename = filename or posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not filename:
        raise DownloadError(f"cannot tell a file name from {url}; give one explicitly")
    os.makedirs(download_dir, exist_ok=True)
    final = os.path.join(download_dir, filename)
    part = final + ".part"

    if os.path.isfile(final):
        logger.info("%s exists; verifying its sha256", final)
        got = sha256sum(final)
        if got == sha256:
            logger.info("%s is complete (sha256 matches); not downloading it again", final)
            return final
        raise DownloadError(
            f"{final} exists but its sha256 is {got}, expected {sha256}: it is not the expected file. "
            "Delete it and rerun to download it again."
        )

    logger.info("downloading %s to %s", url, final)
    try:
        _fetch(url, part, timeout, progress_pct)
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
        raise _network_error(url, reason, part) from e

    logger.info("verifying sha256 of %s", part)
    got = sha256sum(part)
    if got != sha256:
        os.remove(part)
        raise DownloadError(
            f"sha256 mismatch for {url}: got {got}, expected {sha256}. The corrupt download was deleted; "
            "rerun to download it again (if this repeats, the file on the server has changed)."
        )
    os.replace(part, final)
    logger.info("downloaded %s (sha256 OK)", final)
    return final


def _check_member(member, archive):
    """Refuse members that would land outside the extraction dir (path traversal)."""
    names = [("member", member.name)]
    if member.issym() or member.islnk():
        names.append(("link target", member.linkname))
    for what, name in names:
        p = name.replace("\\", "/")
        if p.startswith("/") or re.match(r"^[A-Za-z]:", p) or ".." in p.split("/"):
            raise DownloadError(
                f"{archive}: refusing to extract {what} {name!r} of {member.name!r}: absolute path or '..' "
                "would write outside the target directory. The archive is corrupt or malicious."
            )
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise DownloadError(f"{archive}: refusing to extract special file {member.name!r}")


def extract(archive, target):
    """Extract a .tar(.gz|.bz2|.xz) archive so that its contents become ``target``; return ``target``.

    Extraction goes to a hidden sibling dir that is renamed at the end, so ``target`` exists only once complete.
    When the archive wraps everything in one top-level folder (LJSpeech-1.1/), that folder becomes ``target``.
    """
    target = os.path.abspath(target)
    if os.path.lexists(target):
        raise DownloadError(f"{target} already exists; remove it to extract {archive} again, or use it as it is")
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(target)}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)  # left over from an interrupted run
    os.makedirs(tmp)
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    logger.info("extracting %s to %s", archive, target)
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                for n, member in enumerate(tf, 1):  # streaming: one pass over a multi-GB bz2
                    _check_member(member, archive)
                    tf.extract(member, tmp, **extra)
                    if n % 5000 == 0:
                        logger.info("extracted %d files", n)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DownloadError(
                f"extracting {archive} failed: {e}. Delete the archive and rerun to download it again."
            ) from e
        entries = os.listdir(tmp)
        src = tmp
        if len(entries) == 1 and os.path.isdir(os.path.join(tmp, entries[0])):
            src = os.path.join(tmp, entries[0])
        os.rename(src, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("extracted %s", target)
    return target
