"""Corpus download against a local HTTP server: resume, restarts, checksums, safe atomic extraction."""

import hashlib
import http.server
import io
import logging
import os
import re
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from ebm.bin import download_corpus
from ebm.data.download import DownloadError, download, extract

DATA = bytes(range(256)) * 1200  # 300 KiB
SHA = hashlib.sha256(DATA).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.root; server.mode: 'normal', 'norange' (ignores Range) or 'drop' (dies halfway, once)."""

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        path = os.path.join(srv.root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            data = f.read()
        start = 0
        if rng and srv.mode != "norange":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "drop":
            srv.mode = "normal"
            self.wfile.write(body[: len(body) // 2])
            return  # HTTP/1.0: the connection closes short of Content-Length
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "corpus.bin").write_bytes(DATA)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.root, srv.mode, srv.requests = str(root), "normal", []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/corpus.bin"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_full_download(server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = download(server.url, SHA, str(tmp_path / "dl"), timeout=5)
    assert path == str(tmp_path / "dl" / "corpus.bin")
    assert Path(path).read_bytes() == DATA
    assert os.listdir(tmp_path / "dl") == ["corpus.bin"]
    assert server.requests == [("/corpus.bin", None)]
    assert "100%" in caplog.text


def test_resume_from_part_file(server, tmp_path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "corpus.bin.part").write_bytes(DATA[:100_000])
    path = download(server.url, SHA, str(tmp_path / "dl"), timeout=5)
    assert Path(path).read_bytes() == DATA
    assert server.requests == [("/corpus.bin", "bytes=100000-")]
    assert not (tmp_path / "dl" / "corpus.bin.part").exists()


def test_interrupted_download_resumes_on_rerun(server, tmp_path):
    server.mode = "drop"
    with pytest.raises(DownloadError) as e:
        download(server.url, SHA, str(tmp_path / "dl"), timeout=5)
    msg = str(e.value)
    assert server.url in msg and "Rerun" in msg and "--db_root" in msg
    part = tmp_path / "dl" / "corpus.bin.part"
    assert part.stat().st_size == len(DATA) // 2
    assert not (tmp_path / "dl" / "corpus.bin").exists()

    path = download(server.url, SHA, str(tmp_path / "dl"), timeout=5)
    assert Path(path).read_bytes() == DATA
    assert server.requests[-1] == ("/corpus.bin", f"bytes={len(DATA) // 2}-")


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    server.mode = "norange"
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "corpus.bin.part").write_bytes(b"x" * 5000)  # would corrupt the file if appended to
    path = download(server.url, SHA, str(tmp_path / "dl"), timeout=5)
    assert Path(path).read_bytes() == DATA
    assert server.requests == [("/corpus.bin", "bytes=5000-")]


def test_complete_part_file_is_verified_not_refetched(server, tmp_path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "corpus.bin.part").write_bytes(DATA)  # the server answers 416
    path = download(server.url, SHA, str(tmp_path / "dl"), timeout=5)
    assert Path(path).read_bytes() == DATA


def test_checksum_mismatch(server, tmp_path):
    with pytest.raises(DownloadError, match=r"sha256 mismatch .*rerun"):
        download(server.url, "0" * 64, str(tmp_path / "dl"), timeout=5)
    assert os.listdir(tmp_path / "dl") == []


def test_present_file_is_not_downloaded_again(server, tmp_path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "corpus.bin").write_bytes(DATA)
    assert download(server.url, SHA, str(tmp_path / "dl"), timeout=5) == str(tmp_path / "dl" / "corpus.bin")
    assert server.requests == []

    (tmp_path / "dl" / "corpus.bin").write_bytes(b"other")  # a different file is reported, never overwritten
    with pytest.raises(DownloadError, match="not the expected file"):
        download(server.url, SHA, str(tmp_path / "dl"), timeout=5)
    assert (tmp_path / "dl" / "corpus.bin").read_bytes() == b"other"
    assert server.requests == []


def test_unreachable_and_missing_urls(server, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/LJSpeech-1.1.tar.bz2"
    with pytest.raises(DownloadError) as e:
        download(url, SHA, str(tmp_path / "dl"), timeout=5)
    msg = str(e.value)
    assert url in msg and "Rerun" in msg and "resume" in msg and "--db_root" in msg

    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url.replace("corpus.bin", "nope.bin"), SHA, str(tmp_path / "dl"), timeout=5)


def add(tf, name, data=b"", **kw):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data))


def make_tar(path, members):
    with tarfile.open(path, "w:bz2") as tf:
        for m in members:
            add(tf, *m) if isinstance(m, tuple) else add(tf, m)
    return str(path)


def hidden(d):
    return [n for n in os.listdir(d) if n.startswith(".")]


def test_extract_wrapped_archive(tmp_path):
    archive = make_tar(
        tmp_path / "LJSpeech-1.1.tar.bz2",
        [("LJSpeech-1.1/metadata.csv", b"LJ001-0001|a|a\n"), ("LJSpeech-1.1/wavs/LJ001-0001.wav", b"RIFF")],
    )
    target = tmp_path / "db" / "LJSpeech-1.1"
    assert extract(archive, str(target)) == str(target)
    assert (target / "metadata.csv").read_bytes() == b"LJ001-0001|a|a\n"
    assert (target / "wavs" / "LJ001-0001.wav").read_bytes() == b"RIFF"
    assert hidden(tmp_path / "db") == []
    with pytest.raises(DownloadError, match="already exists"):
        extract(archive, str(target))


def test_extract_flat_archive(tmp_path):
    archive = make_tar(tmp_path / "flat.tar.bz2", [("metadata.csv", b"m"), ("wavs/a.wav", b"w")])
    extract(archive, str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path / "out")) == ["metadata.csv", "wavs"]


@pytest.mark.parametrize(
    "bad",
    [
        ("LJSpeech-1.1/../../evil.txt", b"evil"),
        ("/tmp/ebm_test_evil_abs.txt", b"evil"),
        ("LJSpeech-1.1/link", b"", {"type": tarfile.SYMTYPE, "linkname": "../../evil.txt"}),
    ],
)
def test_extract_refuses_escaping_members_atomically(tmp_path, bad):
    name, data, *kw = bad
    archive = tmp_path / "bad.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tf:
        add(tf, "LJSpeech-1.1/metadata.csv", b"m")
        add(tf, name, data, **(kw[0] if kw else {}))
    db = tmp_path / "a" / "b" / "db"
    with pytest.raises(DownloadError, match="refusing"):
        extract(str(archive), str(db / "LJSpeech-1.1"))
    assert os.listdir(db) == []  # neither the target nor a half-extracted temp dir
    assert not (tmp_path / "a" / "evil.txt").exists() and not (tmp_path / "a" / "b" / "evil.txt").exists()
    assert not os.path.exists("/tmp/ebm_test_evil_abs.txt")


def test_truncated_archive_leaves_nothing(tmp_path):
    archive = make_tar(tmp_path / "c.tar.bz2", [("LJSpeech-1.1/wavs/a.wav", os.urandom(200_000))])
    data = Path(archive).read_bytes()
    Path(archive).write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match="Delete the archive and rerun"):
        extract(archive, str(tmp_path / "db" / "LJSpeech-1.1"))
    assert os.listdir(tmp_path / "db") == []


def test_cli_download_and_extract(server, tmp_path, capsys):
    archive = make_tar(tmp_path / "srv" / "LJSpeech-1.1.tar.bz2", [("LJSpeech-1.1/metadata.csv", b"m")])
    sha = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    url = server.url.replace("corpus.bin", "LJSpeech-1.1.tar.bz2")
    db = tmp_path / "db"
    argv = ["--url", url, "--sha256", sha, "--download_dir", str(db), "--extract_to", str(db / "LJSpeech-1.1")]
    assert download_corpus.main(argv) == 0
    assert (db / "LJSpeech-1.1" / "metadata.csv").read_bytes() == b"m"
    assert (db / "LJSpeech-1.1.tar.bz2").is_file()

    argv[3] = "1" * 64
    argv[5] = str(tmp_path / "db2")
    assert download_corpus.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: sha256 mismatch") and "Traceback" not in err
