"""Benchmark FTP and FTPS locations on loopback: upload and download MB/s, listing files/s, and peak memory.

Usage: python bench/ftp_bench.py [--mb 200] [--files 2000] [--tls]
Starts a pyftpdlib server (tests/ftp_server.py) in a process of its own, so that its memory is not counted here,
then through impex.storage: saves one file of --mb MB (FTPStorage's STOR, a chunk at a time, under a hidden name,
renamed), reads it back (spooled to IMPEX_CACHE_DIR, then read), lists a folder of --files files (MLSD) and looks
at each of 200 files (SIZE + MDTM, the scan's second look). Prints one JSON line. Peak RSS is this process's.
"""

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

SERVER = """
import sys, time
from pathlib import Path
from tests.fixtures import _self_signed_certificate
from tests.ftp_server import FTPServerThread
root, tls = Path(sys.argv[1]), sys.argv[2] == "tls"
server = FTPServerThread(root=root, user="bench", password="bench", tls=_self_signed_certificate(root.parent) if tls
                         else None).start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ftp-bench-"))
    root = work / "root"
    (root / "many").mkdir(parents=True)
    for i in range(args.files):
        (root / "many" / f"file {i:05}.csv").write_bytes(b"id\n1\n")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(root), "tls" if args.tls else "plain"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    port = int(server.stdout.readline())
    os.environ.update(
        IMPEX_ROOT=str(work / "impex"),
        IMPEX_CACHE_DIR=str(work / "cache"),
        FTP_HOSTS='{"127.0.0.1": {}}',
        FTP_PASSWORD="bench",
        IMPEX_ALLOWED_HOSTS_OUTBOUND="127.0.0.1",
        FTPS_CA_FILE=str(work / "cert.pem") if args.tls else "",
    )
    import django

    django.setup()
    from impex.storage import list_folder, look_at, open_file, save_file, storage_for

    scheme = "ftps" if args.tls else "ftp"
    storage = storage_for(f"{scheme}://bench@127.0.0.1:{port}/")
    source = work / "big.bin"
    with open(source, "wb") as fh:
        for _ in range(args.mb):
            fh.write(os.urandom(1024 * 1024))
    try:
        started = time.perf_counter()
        save_file(storage, "big file.bin", source)
        upload = time.perf_counter() - started
        started = time.perf_counter()
        with open_file(storage, "big file.bin") as stream:
            while stream.read(1024 * 1024):
                pass
        download = time.perf_counter() - started
        started = time.perf_counter()
        listed = list(list_folder(storage, "many"))
        listing = time.perf_counter() - started
        started = time.perf_counter()
        for f in listed[:200]:
            look_at(storage, f.name)
        looks = time.perf_counter() - started
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "scheme": scheme,
                "mb": args.mb,
                "upload_mb_s": round(args.mb / upload, 1),
                "download_mb_s": round(args.mb / download, 1),
                "listed_files": len(listed),
                "listing_files_s": round(len(listed) / listing),
                "looks_per_s": round(200 / looks),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
