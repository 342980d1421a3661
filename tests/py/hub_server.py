"""A fake Hugging Face hub for tests (stdlib only): http.server on 127.0.0.1, ephemeral ports.

It mimics what llamita (src/hub.c) and huggingface_hub use:
  HEAD/GET /{org}/{name}/resolve/{revision}/{file}
      LFS file:     302 to an absolute {cdn}/blobs/{sha256} URL, with X-Repo-Commit,
                    X-Linked-Etag: "<sha256>", X-Linked-Size, ETag (of the LFS pointer), a small body
      regular file: 200 with ETag: "<git blob sha1>", X-Repo-Commit, Content-Length, the bytes
      errors:       404 + X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound;
                    401 for a private repository without the right "Authorization: Bearer TOKEN"
  GET /blobs/{sha256}   the bytes; "Range: bytes=N-" answered with 206 + Content-Range
  GET /api/models/{org}/{name}[/revision/{rev}]   {"id", "sha", "siblings": [{"rfilename"}]}
The revision may be "main" or the repository's commit hash.

Usage:
    with FakeHub() as hub:                      # or FakeHub(cdn_separate=True): blobs on a 2nd port
        f = hub.add_file("org/name", "model.gguf", data)          # LFS unless lfs=False
        env["HF_ENDPOINT"] = hub.endpoint
        ...
        hub.requests          # list of dicts: method, path, headers (lower-case names), server
        hub.gets("/blobs/")   # the GET requests whose path starts with that

Fault injection, per file (HubFile attributes): announce_size (a wrong X-Linked-Size /
Content-Length), announce_etag (a wrong ETag), cut_after + cuts_left (the blob connection is closed
after cut_after body bytes, that many times), ignore_range (answer 200 with the whole file).
Per hub: force_status (answer every resolve/api request with that status), cdn_redirect (blob URLs
redirect once more before the data, with a body on the redirect), renamed (old repo id -> new: its
resolve URLs answer 307 with a relative Location, as the hub does for renamed repositories).
"""
import hashlib
import http.server
import json
import re
import socket
import threading
import urllib.parse


def git_blob_sha1(data):
    """The git object id of a blob: what the hub uses as ETag for files not stored in LFS."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubFile:
    def __init__(self, data, lfs):
        self.data = data
        self.lfs = lfs
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.git_sha1 = git_blob_sha1(data)
        # fault injection
        self.announce_size = None
        self.announce_etag = None
        self.cut_after = None
        self.cuts_left = 0
        self.ignore_range = False

    @property
    def etag(self):
        return self.sha256 if self.lfs else self.git_sha1


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "FakeHub/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._handle(head=True)

    def do_GET(self):
        self._handle(head=False)

    # -- helpers --
    def _send(self, status, headers=(), body=b"", head=False):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if not any(k.lower() == "content-length" for k, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _error(self, status, code, message, head):
        body = json.dumps({"error": message}).encode()
        hdrs = [("Content-Type", "application/json"), ("X-Error-Message", message)]
        if code:
            hdrs.append(("X-Error-Code", code))
        self._send(status, hdrs, body, head)

    def _handle(self, head):
        hub = self.server.hub
        role = self.server.role
        with hub.lock:
            hub.requests.append({"method": self.command, "path": self.path, "server": role,
                                 "headers": {k.lower(): v for k, v in self.headers.items()}})
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/blobs/") or path.startswith("/data/"):
            return self._blob(path, head)
        if hub.force_status:
            return self._error(hub.force_status, None, "forced status", head)
        if path.startswith("/api/models/"):
            return self._api(urllib.parse.unquote(path[len("/api/models/"):]), head)
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if not m:
            return self._error(404, None, "no route", head)
        repo_id = urllib.parse.unquote(m.group(1))
        if repo_id in hub.renamed:  # a renamed repository: relative redirect to the new name
            new = "/%s/resolve/%s/%s" % (hub.renamed[repo_id], m.group(2), m.group(3))
            return self._send(307, [("Location", new)], b"Moved", head)
        rev = urllib.parse.unquote(m.group(2))
        name = urllib.parse.unquote(m.group(3))
        repo = self._repo(repo_id, rev, head)
        if repo is None:
            return
        f = repo["files"].get(name)
        if f is None:
            return self._error(404, "EntryNotFound", "%s does not exist on revision %s" % (name, rev), head)
        common = [("X-Repo-Commit", repo["commit"])]
        if f.lfs:
            etag = f.announce_etag or f.sha256
            size = f.announce_size if f.announce_size is not None else len(f.data)
            body = b"Found. Redirecting to the CDN"
            loc = "%s/blobs/%s?repo=%s" % (hub.cdn_base, f.sha256, urllib.parse.quote(repo_id, safe=""))
            self._send(302, common + [("Location", loc), ("X-Linked-Etag", '"%s"' % etag),
                                      ("X-Linked-Size", str(size)),
                                      ("ETag", '"%s"' % git_blob_sha1(b"pointer " + f.sha256.encode()))],
                       body, head)
        else:
            etag = f.announce_etag or f.git_sha1
            self._serve_data(f, common + [("ETag", '"%s"' % etag)], head)

    def _repo(self, repo_id, rev, head):
        """The repository, after the auth and revision checks (None: an error was sent)."""
        hub = self.server.hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head)
            return None
        if repo["private"]:
            auth = self.headers.get("Authorization")
            if auth != "Bearer %s" % hub.token:
                msg = "Invalid credentials in Authorization header" if auth else "Access to this repository needs a token"
                self._error(401, "RepoNotFound", msg, head)
                return None
        if rev not in ("main", repo["commit"]):
            self._error(404, "RevisionNotFound", "Invalid rev id: %s" % rev, head)
            return None
        return repo

    def _api(self, rest, head):
        if "/revision/" in rest:
            repo_id, rev = rest.split("/revision/", 1)
        else:
            repo_id, rev = rest, "main"
        repo = self._repo(repo_id, rev, head)
        if repo is None:
            return
        body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": repo["commit"], "private": repo["private"],
                           "siblings": [{"rfilename": n} for n in sorted(repo["files"])]}).encode()
        self._send(200, [("Content-Type", "application/json")], body, head)

    def _blob(self, path, head):
        hub = self.server.hub
        sha = path.rsplit("/", 1)[-1]
        f = hub.blobs.get(sha)
        if f is None:
            return self._error(404, None, "no such blob", head)
        if hub.cdn_redirect and path.startswith("/blobs/"):
            return self._send(307, [("Location", "/data/%s" % sha)], b"Temporary redirect to the data", head)
        self._serve_data(f, [("Content-Type", "application/octet-stream")], head)

    def _serve_data(self, f, headers, head):
        data = f.data
        rng = self.headers.get("Range")
        start = 0
        status = 200
        if rng and not f.ignore_range:
            m = re.match(r"^bytes=(\d+)-$", rng)
            if m:
                start = int(m.group(1))
                if start >= len(data):
                    return self._send(416, headers + [("Content-Range", "bytes */%d" % len(data))], b"", head)
                status = 206
                headers = headers + [("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))]
        body = data[start:]
        size = len(body)
        if head and not f.lfs and f.announce_size is not None:
            size = f.announce_size  # a lying HEAD; the data itself stays honest
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if head:
            return
        cut = None
        with self.server.hub.lock:
            if f.cuts_left > 0 and f.cut_after is not None:
                f.cuts_left -= 1
                cut = f.cut_after
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeHub:
    def __init__(self, cdn_separate=False, token="hf_test_token"):
        self.repos = {}
        self.blobs = {}
        self.requests = []
        self.lock = threading.Lock()
        self.token = token
        self.force_status = None
        self.cdn_redirect = False
        self.renamed = {}  # old repo id -> new repo id (resolve URLs answer 307 with a relative Location)
        self._cdn_separate = cdn_separate
        self._servers = []

    # -- content --
    def add_repo(self, repo_id, commit=None, private=False):
        if repo_id not in self.repos:
            commit = commit or hashlib.sha1(("commit of " + repo_id).encode()).hexdigest()
            self.repos[repo_id] = {"commit": commit, "files": {}, "private": private}
        elif private:
            self.repos[repo_id]["private"] = True
        return self.repos[repo_id]

    def add_file(self, repo_id, name, data, lfs=None, private=False):
        """Adds a file (LFS unless lfs=False or it is small and not .gguf); returns its HubFile."""
        if lfs is None:
            lfs = name.endswith(".gguf") or len(data) > 10 * 1024
        repo = self.add_repo(repo_id, private=private)
        f = HubFile(data, lfs)
        repo["files"][name] = f
        self.blobs[f.sha256] = f
        return f

    def commit(self, repo_id):
        return self.repos[repo_id]["commit"]

    # -- requests seen --
    def clear_requests(self):
        with self.lock:
            self.requests.clear()

    def gets(self, prefix=""):
        with self.lock:
            return [r for r in self.requests if r["method"] == "GET" and r["path"].startswith(prefix)]

    def heads(self):
        with self.lock:
            return [r for r in self.requests if r["method"] == "HEAD"]

    def blob_gets(self):
        with self.lock:
            return [r for r in self.requests if r["method"] == "GET"
                    and (r["path"].startswith("/blobs/") or r["path"].startswith("/data/")
                         or "/resolve/" in r["path"])]

    # -- lifecycle --
    def _serve(self, role):
        srv = _Server(("127.0.0.1", 0), _Handler)
        srv.hub = self
        srv.role = role
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        self._servers.append(srv)
        return "http://127.0.0.1:%d" % srv.server_address[1]

    def start(self):
        self.endpoint = self._serve("hub")
        self.cdn_base = self._serve("cdn") if self._cdn_separate else self.endpoint
        return self

    def stop(self):
        for s in self._servers:
            s.shutdown()
            s.server_close()
        self._servers = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def closed_port_endpoint():
    """An http://127.0.0.1:PORT endpoint where nothing listens (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port
