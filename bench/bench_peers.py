"""The box against Calibre-Web and kiwix-serve: same machine, same books, same load, one run.

    # once: the peers and the load generator (not project dependencies)
    sudo apt-get install calibre kiwix-tools wrk
    python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install calibreweb libzim
    # then
    .venv/bin/python bench/bench_peers.py --work /tmp/bench-peers --peers-python /tmp/peers-venv/bin/python

Books: every EPUB under ``--books`` (default: the real corpus in ../shared/corpus/vi and
../shared/corpus/epub3-samples). The box imports them (``library import``); Calibre-Web gets a
Calibre library of the same files (``calibredb add``), with anonymous browsing and downloads on;
kiwix-serve gets a ZIM built with libzim from the chapter texts the box extracted (one article per
chapter, one per book listing its chapters, full-text index on).
``--peers`` names the servers run besides the box (both by default; at 50,000 books Calibre's
library alone takes over an hour to make).

Load: ``wrk`` with 20 and 50 connections against each page a phone asks for (home, search, book,
chapter, OPDS root, cover, download), ``--duration`` seconds each, on 127.0.0.1. "search" asks the
same words again and again (a class told what to look for; the box keeps such pages a few seconds);
"new searches", run last, makes every request a result page nobody asked for before: the
search-quality queries in turn, each with a parameter no server reads and that differs each time,
so no server answers from a kept page (what a server keeps about the words themselves, such as the
box's snippets, still serves when the same words come round again). Reported per server:
requests/s, latency p50/p95/p99, errors (socket errors and HTTP status >= 400), and, after all the
load, the server's RSS and CPU seconds. Cold start is process start to the first answered request;
RSS is read after the seven pages, after the new searches and again IDLE_SECONDS later. A page a
server does not have is "n/a". Nothing here runs in CI.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_core import folder_mb, free_port, latency_ms, proc_memory  # noqa: E402
from boxenv import DEFAULT, box_python  # noqa: E402

SHARED = ROOT.parent / "shared"
# The seven pages the targets speak of, then "new searches" (RSS is read before and after it).
PAGES = ("home", "search", "book", "chapter", "opds", "cover", "download", "new searches")
# After the load, RSS is read again this much later, the servers idle (the box hands freed memory
# back every 10 s; the others are given the same wait).
IDLE_SECONDS = 15

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "socket_errors": %d, "status_errors": %d, '
    .. '"p50": %.2f, "p95": %.2f, "p99": %.2f}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def wait_answer(url: str, proc: subprocess.Popen, limit: float = 120.0) -> float:
    started = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return time.perf_counter() - started
        except OSError:
            if time.perf_counter() - started > limit:
                raise
            time.sleep(0.05)


def proc_tree(pid: int) -> list[int]:
    """``pid`` and the processes it started, and theirs (a box serving from several processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(parents.get(found[-1], []))
    return found


def proc_stats(pid: int) -> dict[str, float]:
    """``proc_memory`` (MB), PSS (MB: the shared pages divided among the processes sharing them) and
    CPU seconds, summed over the process and the processes it started."""
    out: dict[str, float] = {"VmRSS": 0.0, "VmHWM": 0.0, "Pss": 0.0, "cpu_s": 0.0, "processes": 0}
    for member in proc_tree(pid):
        try:
            for key, value in proc_memory(member).items():
                out[key] += value
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            out["cpu_s"] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    out["Pss"] += int(line.split()[1]) / 1024
        except OSError:  # it ended meanwhile
            continue
        out["processes"] += 1
    return out


class Server:
    """A started server: its process, base address and the path of each page (None: not offered)."""

    name = ""

    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.paths: dict[str, str | None] = {}
        self.cold_start_s = 0.0
        self.prepare_s = 0.0

    def disk_mb(self) -> tuple[float, float | None]:
        """MB on disk of what the server serves from (its copies of the books included), and of
        its full-text index (None: it has none apart)."""
        return 0.0, None

    def start(self, cmd: list[str], env: dict | None = None, probe: str = "/") -> None:
        log = open(self.work / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
        self.cold_start_s = wait_answer(self.base + probe, self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Box(Server):
    name = "box"
    python = sys.executable  # main() sets the box's own environment (bench/boxenv.py)
    workers: int | None = None  # LIBRARY_WORKERS (None: as the environment has it)

    def prepare(self, books: list[Path]) -> None:
        self.home = self.work / "box"
        self.env = dict(os.environ, LIBRARY_HOME=str(self.home), LIBRARY_DISK_RESERVE_MB="0")
        if not (self.home / "catalog.db").exists():
            t0 = time.perf_counter()
            subprocess.run([self.python, "-m", "appliance.cli.main", "import", *map(str, books)], env=self.env,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.prepare_s = time.perf_counter() - t0

    def disk_mb(self) -> tuple[float, float | None]:
        return folder_mb(self.home), folder_mb(self.home / "index")

    def run(self) -> None:
        self.start([self.python, "-m", "appliance.cli.main", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                   env=self.env if self.workers is None else dict(self.env, LIBRARY_WORKERS=str(self.workers)))

    def export(self) -> list[dict]:
        """The books as the box read them: id, title, authors, language, cover, chapters (position, title)."""
        from appliance.storage import catalog
        from appliance.storage import db as dbmod

        db = dbmod.connect(self.home / "catalog.db")
        out = []
        for row in db.query("SELECT id FROM books ORDER BY id"):
            book = catalog.get_book(db, row["id"])
            out.append({"id": row["id"], "title": book["title"], "authors": list(book["authors"]),
                        "language": book["language"], "cover": bool(book["cover_sha256"]),
                        "chapters": [(c["position"], c["title"] or "") for c in book["chapters"]]})
        db.close()
        return out

    def write_texts(self, books: list[dict], out: Path) -> None:
        """``books`` with each chapter's text, one JSON line a book (50,000 books' texts do not fit
        in memory at once)."""
        from appliance.storage import catalog
        from appliance.storage import db as dbmod

        db = dbmod.connect(self.home / "catalog.db")
        with out.open("w", encoding="utf-8") as f:
            for book in books:
                chapters = [(p, t, catalog.chapter_text(db, book["id"], p) or "") for p, t in book["chapters"]]
                f.write(json.dumps(dict(book, chapters=chapters), ensure_ascii=False) + "\n")
        db.close()

    def search_path(self, query: str) -> str:
        return "/search?q=" + urllib.parse.quote(query)

    def found(self, page: str, book: dict) -> bool:
        return f'href="/books/{book["id"]}"' in page

    def set_paths(self, book: dict, query: str) -> None:
        chapter = book["chapters"][min(1, len(book["chapters"]) - 1)][0]
        self.paths = {"home": "/", "search": self.search_path(query),
                      "book": f"/books/{book['id']}", "chapter": f"/books/{book['id']}/read/{chapter}",
                      "opds": "/opds", "cover": f"/books/{book['id']}/cover",
                      "download": f"/books/{book['id']}/download"}


class CalibreWeb(Server):
    name = "calibre-web"
    _titles: dict[str, int] | None = None

    def prepare(self, books: list[Path], peers_python: Path) -> None:
        self.library = self.work / "cw-library"
        self.settings_db = self.work / "cw-app.db"
        self.cps = peers_python.parent / "cps"
        if not (self.library / "metadata.db").exists():
            t0 = time.perf_counter()
            self.library.mkdir(parents=True, exist_ok=True)
            # 200 files per calibredb run (one per file costs calibre's start each time: hours at
            # 10,000 books); a run that fails is done again one file at a time, so a file calibre
            # refuses does not stop the rest.
            for start in range(0, len(books), 200):
                chunk = [str(p) for p in books[start:start + 200]]
                done = subprocess.run(["calibredb", "add", "--duplicates", "--library-path", str(self.library),
                                       *chunk], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if done.returncode != 0:
                    for path in chunk:
                        subprocess.run(["calibredb", "add", "--duplicates", "--library-path", str(self.library),
                                        path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.prepare_s = time.perf_counter() - t0
        if not self.settings_db.exists():
            # A first start creates the settings database; then point it at the library.
            proc = subprocess.Popen([str(self.cps), "-p", str(self.settings_db), "-i", "127.0.0.1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            for _ in range(600):
                if self.settings_db.exists() and self._has_settings():
                    break
                time.sleep(0.1)
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGKILL)  # it does not stop on SIGTERM while idle
            proc.wait(timeout=30)
        conn = sqlite3.connect(self.settings_db)
        conn.execute("UPDATE settings SET config_calibre_dir = ?, config_port = ?, config_anonbrowse = 1",
                     [str(self.library), self.port])
        conn.execute("UPDATE user SET role = role | 2 | 256 WHERE name = 'Guest'")  # download, view
        conn.commit()
        conn.close()

    def _has_settings(self) -> bool:
        try:
            conn = sqlite3.connect(self.settings_db)
            try:
                return conn.execute("SELECT count(*) FROM settings").fetchone()[0] > 0
            finally:
                conn.close()
        except sqlite3.Error:
            return False

    def disk_mb(self) -> tuple[float, float | None]:
        return folder_mb(self.library) + self.settings_db.stat().st_size / 1e6, None  # no full text

    def run(self) -> None:
        self.start([str(self.cps), "-p", str(self.settings_db), "-i", "127.0.0.1"])

    def titles(self) -> dict[str, int]:
        """Calibre's book id for each title (casefolded), read once after prepare()."""
        if self._titles is None:
            conn = sqlite3.connect(self.library / "metadata.db")
            try:
                self._titles = {t.casefold(): i for i, t in conn.execute("SELECT id, title FROM books ORDER BY id DESC")}
            finally:
                conn.close()
        return self._titles

    def search_path(self, query: str) -> str:
        # Its search form's URL (/search?query=) answers with a redirect to this one.
        return "/search/stored?query=" + urllib.parse.quote(query)

    def found(self, page: str, book: dict) -> bool:
        cid = self.titles().get(book["title"].casefold())
        return cid is not None and f'href="/book/{cid}"' in page

    def set_paths(self, book: dict, query: str) -> None:
        cid = self.titles().get(book["title"].casefold())
        if cid is None:
            raise RuntimeError(f"calibre did not take {book['title']!r}")
        self.paths = {"home": "/", "search": self.search_path(query),
                      "book": f"/book/{cid}", "chapter": None,  # its reader renders chapters in the browser
                      "opds": "/opds", "cover": f"/cover/{cid}", "download": f"/download/{cid}/epub/{cid}.epub"}


class Kiwix(Server):
    name = "kiwix-serve"

    def prepare(self, books: list[dict], box: Box, peers_python: Path) -> None:
        self.zim = self.work / "library.zim"
        if not self.zim.exists():
            data = self.work / "zim-books.jsonl"
            box.write_texts(books, data)
            t0 = time.perf_counter()
            subprocess.run([str(peers_python), __file__, "make-zim", str(data), str(self.zim)], check=True)
            self.prepare_s = time.perf_counter() - t0

    def disk_mb(self) -> tuple[float, float | None]:
        return self.zim.stat().st_size / 1e6, None  # the index is inside the ZIM

    def run(self) -> None:
        self.start(["kiwix-serve", "--address", "127.0.0.1", "--port", str(self.port), str(self.zim)])

    def search_path(self, query: str) -> str:
        return "/search?content=library&pattern=" + urllib.parse.quote(query)

    def found(self, page: str, book: dict) -> bool:
        # A hit on the book's own page or on one of its chapters.
        return re.search(rf'href="[^"]*/book-{book["id"]}(/[^"]*)?"', page) is not None

    def set_paths(self, book: dict, query: str) -> None:
        chapter = book["chapters"][min(1, len(book["chapters"]) - 1)][0]
        self.paths = {"home": "/", "search": self.search_path(query),
                      "book": f"/library/book-{book['id']}",
                      "chapter": f"/library/book-{book['id']}/{chapter}",
                      "opds": "/catalog/v2/root.xml", "cover": None, "download": None}


def make_zim(data: Path, out: Path) -> None:
    """Run with the peers' Python (libzim): one article per chapter and one per book."""
    import html

    from libzim.writer import Creator, Hint, Item, StringProvider

    class Page(Item):
        def __init__(self, path: str, title: str, body: str):
            super().__init__()
            self.path, self.title, self.body = path, title, body

        def get_path(self):
            return self.path

        def get_title(self):
            return self.title

        def get_mimetype(self):
            return "text/html"

        def get_contentprovider(self):
            return StringProvider(self.body)

        def get_hints(self):
            return {Hint.FRONT_ARTICLE: True}

    def page(title: str, inner: str) -> str:
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
                f"<body><h1>{html.escape(title)}</h1>{inner}</body></html>")

    tmp = out.with_suffix(".tmp")
    with Creator(str(tmp)).config_indexing(True, "vie") as creator:
        creator.set_mainpath("index")
        for name, value in (("Name", "library"), ("Title", "Library"), ("Language", "vie"),
                            ("Creator", "bench"), ("Publisher", "bench"), ("Date", "2026-01-01"),
                            ("Description", "The same books as the box")):
            creator.add_metadata(name, value)
        links = []
        for line in data.open(encoding="utf-8"):
            book = json.loads(line)
            items = []
            for position, title, text in book["chapters"]:
                paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n") if p.strip())
                creator.add_item(Page(f"book-{book['id']}/{position}", title or book["title"],
                                      page(title or book["title"], paragraphs)))
                items.append(f"<li><a href='book-{book['id']}/{position}'>{html.escape(title or str(position))}</a></li>")
            byline = html.escape(", ".join(book["authors"]))
            creator.add_item(Page(f"book-{book['id']}", book["title"],
                                  page(book["title"], f"<p>{byline}</p><ol>{''.join(items)}</ol>")))
            links.append(f"<li><a href='book-{book['id']}'>{html.escape(book['title'])}</a></li>")
        creator.add_item(Page("index", "Library", page("Library", f"<ul>{''.join(links)}</ul>")))
    tmp.replace(out)


NEW_SEARCHES_SCRIPT = """
local paths = {%s}
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, paths[(n + id * 37) %% #paths + 1] .. "&seen=" .. id .. "-" .. n)
end
"""


def new_searches_script(server: Server, queries: list[tuple[str, str, dict]], out: Path) -> Path:
    """wrk's script for "new searches": the report plus requests made of ``queries`` in turn."""
    paths = ", ".join(json.dumps(server.search_path(query)) for _, query, _ in queries)
    out.write_text(NEW_SEARCHES_SCRIPT % paths + WRK_SCRIPT)
    return out


def run_wrk(url: str, clients: int, duration: int, script: Path) -> dict:
    threads = min(2, clients)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration}s", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    r = json.loads(line)
    r["rps"] = round(r["requests"] / (r["duration_us"] / 1e6), 1)
    r["errors"] = r.pop("socket_errors") + r.pop("status_errors")
    return r


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx comes back as an HTTPError


def check(server: Server) -> None:
    """Each offered page answers 200 itself once before the load: a wrong path would measure a
    404, and a redirect (which wrk does not follow) would measure only the redirect."""
    opener = urllib.request.build_opener(_NoRedirect)
    for page, path in server.paths.items():
        if path is None:
            continue
        try:
            with opener.open(server.base + path, timeout=30) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{server.name} {page} {path}: {e.code} {e.headers.get('Location', '')}") from e
        if not body:
            raise RuntimeError(f"{server.name} {page} {path}: empty")


def search_quality(server: Server, queries: list[tuple[str, str, dict]],
                   times: list[float] | None = None) -> dict[str, str]:
    """For each kind of query, how many found their book on the first page of results; the time of
    each result page (asked one at a time) is appended to ``times``."""
    found: dict[str, list[int]] = {}
    for kind, query, book in queries:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(server.base + server.search_path(query), timeout=60) as r:
                page = r.read().decode("utf-8", "replace")
        except OSError:
            page = ""
        if times is not None:
            times.append((time.perf_counter() - started) * 1000)
        counts = found.setdefault(kind, [0, 0])
        counts[0] += server.found(page, book)
        counts[1] += 1
    return {kind: f"{a}/{b}" for kind, (a, b) in found.items()}


def quality_queries(books: list[dict], fold, sample: int = 0) -> list[tuple[str, str, dict]]:
    """Each Vietnamese book's title as typed with and without accents, and its author's name
    without accents with words of its title; of ``sample`` books drawn at random when it is not 0.

    A query names its book: the title's first four words, or as many more as it takes for no other
    book's title to begin with them (generated titles share their first words with hundreds of
    others, and which of those a server puts on its first page says nothing); with the author, as
    many of the title's first words as it takes to tell the book from the author's others."""
    import random

    def words(title: str) -> list[str]:
        return [fold(w) for w in title.split()]

    titles = [(words(b["title"]), fold(b["authors"][0]) if b["authors"] else "") for b in books]

    def naming(book: dict, at_least: int, by_author: bool) -> list[str]:
        own, author = words(book["title"]), fold(book["authors"][0]) if book["authors"] else ""
        others = [t for t, a in titles if not by_author or a == author]
        for n in range(min(at_least, len(own)), len(own) + 1):
            if sum(t[:n] == own[:n] for t in others) <= 1:
                return book["title"].split()[:n]
        return book["title"].split()

    out = []
    chosen = [b for b in books if b["language"] == "vi"]
    if sample and len(chosen) > sample:
        chosen = random.Random(11).sample(chosen, sample)
    for book in chosen:
        title = " ".join(naming(book, 4, by_author=False))
        out.append(("title, accented", title, book))
        out.append(("title, unaccented", fold(title), book))
        if book["authors"]:
            out.append(("author + title words, unaccented",
                        fold(f"{book['authors'][0]} {' '.join(naming(book, 1, by_author=True))}"), book))
    return out


def home_bytes(server: Server) -> int:
    """Bytes of the home page with the style sheets and scripts it links, as a phone fetches them
    (uncompressed; none of the three compresses by default)."""
    with urllib.request.urlopen(server.base + "/", timeout=30) as r:
        page = r.read()
    total = len(page)
    text = page.decode("utf-8", "replace")
    links = re.findall(r'<link[^>]+rel="?stylesheet"?[^>]*>', text, re.I) + re.findall(r"<script[^>]+src=[^>]*>", text, re.I)
    for tag in links:
        href = re.search(r'(?:href|src)="([^"]+)"', tag)
        if href and not href.group(1).startswith(("http:", "https:", "//")):
            try:
                with urllib.request.urlopen(urllib.parse.urljoin(server.base + "/", href.group(1)), timeout=30) as r:
                    total += len(r.read())
            except OSError:
                continue
    return total


def server_arguments(description: str) -> argparse.ArgumentParser:
    """A command line parser with the options naming the books, the work folder and the servers."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--books", type=Path, nargs="*",
                        default=[SHARED / "corpus" / "vi", SHARED / "corpus" / "epub3-samples"])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-peers")
    parser.add_argument("--peers-python", type=Path, default=Path("/tmp/peers-venv/bin/python"))
    parser.add_argument("--box-venv", type=Path, default=DEFAULT, help="made with the box's own dependencies only")
    parser.add_argument("--peers", default="calibre-web,kiwix-serve",
                        help="the servers run besides the box, comma-separated (empty: the box alone)")
    parser.add_argument("--box-workers", default="",
                        help="LIBRARY_WORKERS of the box (default: as the environment has it); more counts, "
                             "comma-separated, run the same box again as peers named box-Np (e.g. 1,2)")
    return parser


def prepare_servers(args: argparse.Namespace) -> tuple[list[Path], list[dict], list[Server]]:
    """The EPUB files, the books every server has (as the box read them), and the servers, the box
    first, with the books taken in (done once per work folder)."""
    args.work.mkdir(parents=True, exist_ok=True)
    files = sorted(p for folder in args.books for p in (folder.rglob("*.epub") if folder.is_dir() else [folder]))
    peers = [name for name in args.peers.split(",") if name]
    unknown = set(peers) - {"calibre-web", "kiwix-serve"}
    if unknown:
        raise SystemExit(f"--peers: no server named {', '.join(sorted(unknown))}")
    box = Box(args.work)
    box.python = box_python(args.box_venv)
    box.prepare(files)
    books = box.export()
    servers: list[Server] = [box]
    counts = [int(c) for c in args.box_workers.split(",")] if args.box_workers else [None]
    box.workers = counts[0]
    for count in counts[1:]:
        again = Box(args.work)
        again.python, again.workers, again.name = box.python, count, f"box-{count}p"
        again.prepare(files)
        servers.append(again)
    if "calibre-web" in peers:
        cw = CalibreWeb(args.work)
        cw.prepare(files, args.peers_python)
        in_calibre = cw.titles()  # the few files calibredb refuses are left out of every server's figures
        books = [b for b in books if b["title"].casefold() in in_calibre]
        servers.append(cw)
    if "kiwix-serve" in peers:
        kiwix = Kiwix(args.work)
        kiwix.prepare(books, box, args.peers_python)
        servers.append(kiwix)
    return files, books, servers


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "make-zim":
        make_zim(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "tables":  # print the tables of a saved report again
        report = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
        pages = next(iter(report["servers"].values()))["pages"]["home"]
        print_tables(report, [int(c) for c in pages])
        return
    from appliance.textfold import fold

    parser = server_arguments(__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--clients", default="20,50")
    parser.add_argument("--query", default="", help="search words (default: two words of a Vietnamese title)")
    parser.add_argument("--quality-books", type=int, default=0,
                        help="books drawn at random for the search quality queries (0: every Vietnamese book)")
    args = parser.parse_args()
    files, books, servers = prepare_servers(args)
    script = args.work / "report.lua"
    script.write_text(WRK_SCRIPT)
    report: dict = {"files": len(files), "load_before": os.getloadavg(), "servers": {}}
    book = next(b for b in books if b["language"] == "vi" and len(b["chapters"]) >= 2 and b["cover"])
    # Unaccented, as most readers type on a phone (kiwix-serve finds nothing for accented words here).
    query = args.query or fold(" ".join(book["title"].split()[:2]))
    report["book"], report["query"] = book["title"], query
    quality = quality_queries(books, fold, args.quality_books)
    clients = [int(c) for c in args.clients.split(",")]
    for server in servers:
        server.run()
        try:
            server.set_paths(book, query)
            check(server)
            # Before the load: a server still working off the load's queue (Calibre-Web at 50,000
            # books) does not answer within the time.
            weight = home_bytes(server)
            # Asked first, one at a time: each is a search for new words, as a reader makes it (after
            # the load, what the load's searches left in memory would answer them).
            times: list[float] = []
            quality_found = search_quality(server, quality, times)
            results: dict = {}
            searches = new_searches_script(server, quality, args.work / f"new-searches-{server.name}.lua")
            for page in PAGES:
                if page == "new searches":
                    after_pages = proc_stats(server.proc.pid)
                path = server.paths.get("search" if page == "new searches" else page)
                results[page] = {c: (run_wrk(server.base + path, c, args.duration,
                                             searches if page == "new searches" else script) if path else None)
                                 for c in clients}
            report["servers"][server.name] = {"cold_start_s": round(server.cold_start_s, 2),
                                              "home_bytes": weight,
                                              "search_quality": quality_found,
                                              "quality_search_ms": latency_ms(times),
                                              "prepare_s": round(server.prepare_s, 1),
                                              "disk_mb": [round(x, 1) if x is not None else None
                                                          for x in server.disk_mb()],
                                              "after_pages": after_pages,
                                              "after_load": proc_stats(server.proc.pid), "pages": results}
            time.sleep(IDLE_SECONDS)
            report["servers"][server.name]["after_idle"] = proc_stats(server.proc.pid)
        finally:
            server.stop()
    report["load_after"] = os.getloadavg()
    (args.work / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print_tables(report, clients)


def print_tables(report: dict, clients: list[int]) -> None:
    names = list(report["servers"])
    for c in clients:
        print(f"\n{c} clients: requests/s, p95 ms, errors (box / " + " / ".join(names[1:]) + ")\n")
        print("| page | " + " | ".join(names) + " | box ÷ " + " | box ÷ ".join(names[1:]) + " (req/s) |")
        print("| --- " * (2 * len(names)) + "|")
        for page in [p for p in PAGES if p in next(iter(report["servers"].values()))["pages"]]:  # older reports
            cells, rps = [], []
            for name in names:
                r = report["servers"][name]["pages"][page][str(c) if str(c) in report["servers"][name]["pages"][page]
                                                           else c]
                cells.append("n/a" if r is None else f"{r['rps']:,.0f} req/s, p95 {r['p95']:.0f} ms, {r['errors']} err")
                rps.append(None if r is None else r["rps"])
            ratios = ["n/a" if (rps[0] is None or x is None) else ("∞" if x == 0 else f"{rps[0] / x:.1f}")
                      for x in rps[1:]]
            print(f"| {page} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    kinds = list(next(iter(report["servers"].values()))["search_quality"])
    print("\n| books found on the first page | " + " | ".join(names) + " |")
    print("| --- " * (len(names) + 1) + "|")
    for kind in kinds:
        print(f"| {kind} | " + " | ".join(report["servers"][n]["search_quality"][kind] for n in names) + " |")
    if all("quality_search_ms" in report["servers"][n] for n in names):
        print("| these searches one at a time: p50 / p95 / max ms | " + " | ".join(
            "{p50:.0f} / {p95:.0f} / {max:.0f}".format(**report["servers"][n]["quality_search_ms"]) for n in names) + " |")
    print(f"\n| server | cold start | preparing the books | RSS after the seven pages / after the new searches / "
          f"{IDLE_SECONDS} s later (peak) | PSS then | CPU s | home page + CSS/JS | on disk (of it, the search index) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, s in report["servers"].items():
        a, idle, pages = s["after_load"], s.get("after_idle", {}), s.get("after_pages", {})
        disk, index = s.get("disk_mb", (None, None))
        on_disk = "n/a" if disk is None else f"{disk:,.0f} MB" + (f" ({index:,.0f} MB)" if index is not None else "")
        print(f"| {name} | {s['cold_start_s']} s | {s['prepare_s']} s | {pages.get('VmRSS', 0):.0f} / "
              f"{a.get('VmRSS', 0):.0f} / {idle.get('VmRSS', 0):.0f} MB (peak {a.get('VmHWM', 0):.0f}) "
              f"| {pages.get('Pss', 0):.0f} / {a.get('Pss', 0):.0f} / {idle.get('Pss', 0):.0f} MB "
              f"| {a['cpu_s']:.0f} | {s['home_bytes'] / 1024:.1f} KB | {on_disk} |")


if __name__ == "__main__":
    main()
