"""Hugging Face hub downloads (src/hub.c, `llamita pull`, lm_resolve_model_arg, scripts/chat).

Every test runs against tests/py/hub_server.py (a fake hub on 127.0.0.1) with HF_ENDPOINT pointing
at it and HOME / HF_HOME in a temporary folder: nothing reaches the internet or the real cache.

Checks: a fresh download (bytes, exact cache layout, relative symlink, refs/main); a second call
downloads nothing (one HEAD) and works with the hub unreachable or HF_HUB_OFFLINE=1 (no request);
resume after a cut connection, within one call and across calls (the Range header is checked);
wrong size / wrong sha256 rejected with the cache as it was; 404, 401 (no token, wrong token, token
from HF_TOKEN or the token file), 5xx, unreachable hub; the token never goes to another origin;
globs with 0 / 1 / several matches (online and offline); a file placed in the cache in
huggingface_hub's layout by the test is found; HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME / HOME
precedence; unsafe names from the user or the server refused; the progress bar appears on a TTY
only; concurrent downloads; the SHA-256 against hashlib; `make chat`'s script without a network.
"""
import hashlib
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from hub_server import FakeHub, closed_port_endpoint  # noqa: E402

BUILD = os.path.join(REPO, os.environ.get("LLAMITA_BUILD", "build"))
CLI = os.path.join(BUILD, "llamita")
TOOL = os.path.join(BUILD, "tests", "tools", "hub_tool")
HAVE_CLI = os.access(CLI, os.X_OK)
HAVE_TOOL = os.access(TOOL, os.X_OK)
NO_CLI = "build %s first (make)" % CLI
NO_TOOL = "build %s first (make tests)" % TOOL
TIMEOUT = 120
MB = 1 << 20
NOTES = []  # measured figures, printed after all tests (inline prints would break the runner's counts)


def tearDownModule():
    for n in NOTES:
        print("test_hub: " + n)

ORG = "TestOrg/Tiny-GGUF"
FOLDER = "models--TestOrg--Tiny-GGUF"


def payload(n, seed):
    return random.Random(seed).randbytes(n)


def tree(root):
    """{relative path: ('file', size) | ('link', target)} of everything under root (dirs omitted)."""
    out = {}
    if not os.path.isdir(root):
        return out
    for dp, dns, fns in os.walk(root):
        for n in fns + [d for d in dns if os.path.islink(os.path.join(dp, d))]:
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            else:
                out[rel] = ("file", os.path.getsize(p))
    return out


class HubCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="llamita-hub-")
        self.home = os.path.join(self.tmp, "home")
        self.hf_home = os.path.join(self.tmp, "hf")
        os.makedirs(self.home)
        self.cache = os.path.join(self.hf_home, "hub")
        self.hub = FakeHub().start()

    def tearDown(self):
        self.hub.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, **kw):
        e = {k: v for k, v in os.environ.items()
             if not (k.startswith("HF_") or k.startswith("HUGGING") or k.lower().endswith("_proxy")
                     or k in ("XDG_CACHE_HOME",))}
        e["HOME"] = self.home
        e["HF_HOME"] = self.hf_home
        e["HF_ENDPOINT"] = self.hub.endpoint
        e["NO_PROXY"] = "*"
        for k, v in kw.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        return e

    def run_cmd(self, argv, env=None, **kw):
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or self.env(),
                           timeout=TIMEOUT, **kw)
        self.assertGreaterEqual(r.returncode, 0, "killed by signal: %r" % r.stderr[-500:])
        return r

    def pull(self, *args, env=None):
        return self.run_cmd([CLI, "pull"] + list(args), env=env)

    def pull_ok(self, *args, env=None):
        r = self.pull(*args, env=env)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        path = r.stdout.decode().strip()
        self.assertTrue(os.path.isfile(path), path)
        return path

    def pull_err(self, *args, env=None, code=1):
        r = self.pull(*args, env=env)
        self.assertEqual(r.returncode, code, "stdout %r stderr %r" % (r.stdout, r.stderr))
        self.assertEqual(r.stdout, b"")
        err = r.stderr.decode(errors="replace")
        # notes (a resumed download, ...) may come first; the error is the last line, and one line
        self.assertTrue(err.endswith("\n") and err.splitlines()[-1].startswith("error: "), err)
        return err.splitlines()[-1]

    def repo_dir(self, cache=None):
        return os.path.join(cache or self.cache, FOLDER)

    def snapshot(self, name, repo=ORG, cache=None):
        return os.path.join(self.repo_dir(cache), "snapshots", self.hub.commit(repo), name)


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TestDownload(HubCase):
    def test_fresh_download_layout(self):
        data = payload(3 * MB + 123, 1)
        f = self.hub.add_file(ORG, "tiny.Q8_0.gguf", data)
        path = self.pull_ok(ORG, "tiny.Q8_0.gguf")
        commit = self.hub.commit(ORG)
        self.assertEqual(path, self.snapshot("tiny.Q8_0.gguf"))
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)
        rd = self.repo_dir()
        self.assertEqual(tree(rd), {
            "blobs/" + f.sha256: ("file", len(data)),
            "refs/main": ("file", 40),
            "snapshots/%s/tiny.Q8_0.gguf" % commit: ("link", "../../blobs/" + f.sha256),
        })
        with open(os.path.join(rd, "refs", "main")) as fh:
            self.assertEqual(fh.read(), commit)  # no newline, as huggingface_hub writes it
        self.assertTrue(os.path.isfile(os.path.join(self.cache, ".locks", FOLDER, f.sha256 + ".lock")))
        # protocol: HEAD of the resolve URL, then GET of the blob (no Range, no token)
        heads, gets = self.hub.heads(), self.hub.blob_gets()
        self.assertEqual([h["path"] for h in heads], ["/%s/resolve/main/tiny.Q8_0.gguf" % ORG])
        self.assertEqual(len(gets), 1)
        self.assertTrue(gets[0]["path"].startswith("/blobs/" + f.sha256))
        self.assertNotIn("range", gets[0]["headers"])
        self.assertNotIn("authorization", heads[0]["headers"])
        NOTES.append("fresh download: %d bytes, %d HEAD, %d GET" % (len(data), len(heads), len(gets)))

    def test_subfolder_and_quoting(self):
        data = payload(40000, 2)
        f = self.hub.add_file(ORG, "sub dir/x+y.gguf", data)
        path = self.pull_ok(ORG, "sub dir/x+y.gguf")
        self.assertEqual(path, self.snapshot("sub dir/x+y.gguf"))
        self.assertEqual(os.readlink(path), "../../../blobs/" + f.sha256)
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)
        self.assertEqual(self.hub.heads()[0]["path"], "/%s/resolve/main/sub%%20dir/x%%2By.gguf" % ORG)

    def test_regular_file_not_lfs(self):
        data = b'{"architectures": ["LlamaForCausalLM"]}\n'
        f = self.hub.add_file(ORG, "config.json", data, lfs=False)
        path = self.pull_ok(ORG, "config.json")
        self.assertEqual(os.readlink(path), "../../blobs/" + f.git_sha1)
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)
        # no redirect: the data comes from the resolve URL itself
        self.assertEqual([g["path"] for g in self.hub.blob_gets()], ["/%s/resolve/main/config.json" % ORG])

    def test_redirect_chain_body_not_saved(self):
        self.hub.cdn_redirect = True
        data = payload(300000, 3)
        self.hub.add_file(ORG, "m.gguf", data)
        path = self.pull_ok(ORG, "m.gguf")
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)
        self.assertEqual(len(self.hub.gets("/data/")), 1)

    def test_renamed_repository(self):
        data = payload(20000, 15)
        self.hub.add_file("TestOrg/New-Name", "m.gguf", data)
        self.hub.renamed[ORG] = "TestOrg/New-Name"
        path = self.pull_ok(ORG, "m.gguf")
        # cached under the name asked for, as huggingface_hub does
        self.assertEqual(path, os.path.join(self.repo_dir(), "snapshots", self.hub.commit("TestOrg/New-Name"), "m.gguf"))
        self.assertEqual([h["path"] for h in self.hub.heads()],
                         ["/%s/resolve/main/m.gguf" % ORG, "/TestOrg/New-Name/resolve/main/m.gguf"])
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)

    def test_second_call_uses_cache(self):
        data = payload(MB, 4)
        self.hub.add_file(ORG, "m.gguf", data)
        p1 = self.pull_ok(ORG, "m.gguf")
        before = tree(self.repo_dir())
        self.hub.clear_requests()
        p2 = self.pull_ok(ORG, "m.gguf")
        self.assertEqual(p1, p2)
        self.assertEqual(len(self.hub.heads()), 1)  # checks for a new commit, like huggingface_hub
        self.assertEqual(self.hub.blob_gets(), [])
        self.assertEqual(tree(self.repo_dir()), before)
        # hub unreachable: the cached copy, with a note on stderr
        r = self.pull(ORG, "m.gguf", env=self.env(HF_ENDPOINT=closed_port_endpoint()))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().strip(), p1)
        self.assertIn(b"using the cached", r.stderr)
        # offline: no request at all
        self.hub.clear_requests()
        self.assertEqual(self.pull_ok(ORG, "m.gguf", env=self.env(HF_HUB_OFFLINE="1")), p1)
        self.assertEqual(self.hub.requests, [])
        # a pinned commit already cached: no request either
        self.assertEqual(self.pull_ok(ORG, "m.gguf", "--revision", self.hub.commit(ORG)), p1)
        self.assertEqual(self.hub.requests, [])
        # quiet on a non-terminal: nothing on stderr
        self.assertEqual(self.pull(ORG, "m.gguf").stderr, b"")

    def test_resume_within_one_call(self):
        data = payload(3 * MB, 5)
        f = self.hub.add_file(ORG, "m.gguf", data)
        f.cut_after, f.cuts_left = MB, 1
        path = self.pull_ok(ORG, "m.gguf")
        with open(path, "rb") as fh:
            self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), f.sha256)
        gets = self.hub.blob_gets()
        self.assertEqual(len(gets), 2)
        self.assertNotIn("range", gets[0]["headers"])
        self.assertEqual(gets[1]["headers"].get("range"), "bytes=%d-" % MB)
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "blobs", f.sha256 + ".incomplete")))

    def test_resume_across_calls(self):
        data = payload(3 * MB, 6)
        f = self.hub.add_file(ORG, "m.gguf", data)
        cut = 256 * 1024
        f.cut_after, f.cuts_left = cut, 1000
        err = self.pull_err(ORG, "m.gguf")
        self.assertIn("interrupted", err)
        self.assertIn("run the same command again to resume", err)
        inc = os.path.join(self.repo_dir(), "blobs", f.sha256 + ".incomplete")
        have = os.path.getsize(inc)
        self.assertTrue(0 < have < len(data) and have % cut == 0, have)
        ranges = [g["headers"].get("range") for g in self.hub.blob_gets()]
        self.assertEqual(ranges, [None] + ["bytes=%d-" % (cut * i) for i in range(1, len(ranges))])
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "snapshots")))  # nothing visible
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "refs")))
        # the next call resumes from what is there
        f.cuts_left = 0
        self.hub.clear_requests()
        path = self.pull_ok(ORG, "m.gguf")
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)
        gets = self.hub.blob_gets()
        self.assertEqual(len(gets), 1)
        self.assertEqual(gets[0]["headers"].get("range"), "bytes=%d-" % have)
        self.assertFalse(os.path.exists(inc))
        NOTES.append("resume across calls: %d of %d bytes kept, Range %s" % (have, len(data), gets[0]["headers"]["range"]))

    def test_server_ignores_range(self):
        data = payload(2 * MB, 7)
        f = self.hub.add_file(ORG, "m.gguf", data)
        f.cut_after, f.cuts_left, f.ignore_range = MB // 2, 1, True
        path = self.pull_ok(ORG, "m.gguf")
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)

    def test_partial_file_longer_than_announced_restarts(self):
        data = payload(100000, 8)
        f = self.hub.add_file(ORG, "m.gguf", data)
        blobs = os.path.join(self.repo_dir(), "blobs")
        os.makedirs(blobs)
        with open(os.path.join(blobs, f.sha256 + ".incomplete"), "wb") as fh:
            fh.write(b"x" * (len(data) + 10))
        path = self.pull_ok(ORG, "m.gguf")
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)
        self.assertNotIn("range", self.hub.blob_gets()[0]["headers"])

    def test_bad_partial_file_rejected_by_hash(self):
        """A corrupt .incomplete (wrong bytes, right length prefix) fails the sha256 and is deleted."""
        data = payload(200000, 9)
        f = self.hub.add_file(ORG, "m.gguf", data)
        blobs = os.path.join(self.repo_dir(), "blobs")
        os.makedirs(blobs)
        inc = os.path.join(blobs, f.sha256 + ".incomplete")
        with open(inc, "wb") as fh:
            fh.write(b"\0" * 1000)
        err = self.pull_err(ORG, "m.gguf")
        self.assertIn("sha256 mismatch", err)
        self.assertFalse(os.path.exists(inc))
        self.assertEqual(self.hub.blob_gets()[0]["headers"].get("range"), "bytes=1000-")
        self.pull_ok(ORG, "m.gguf")  # and the next call starts clean


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TestIntegrity(HubCase):
    def setUp(self):
        super().setUp()
        self.good = payload(500000, 10)
        self.hub.add_file(ORG, "good.gguf", self.good)
        self.good_path = self.pull_ok(ORG, "good.gguf")
        self.before = tree(self.repo_dir())

    def assertCacheIntact(self):
        self.assertEqual(tree(self.repo_dir()), self.before)
        with open(self.good_path, "rb") as fh:
            self.assertEqual(fh.read(), self.good)

    def test_wrong_size_larger(self):
        f = self.hub.add_file(ORG, "bad.gguf", payload(300000, 11))
        f.announce_size = len(f.data) + 7
        err = self.pull_err(ORG, "bad.gguf")
        self.assertIn("size mismatch", err)
        self.assertIn(str(len(f.data) + 7), err)
        self.assertCacheIntact()

    def test_wrong_size_smaller(self):
        f = self.hub.add_file(ORG, "bad.gguf", payload(300000, 12))
        f.announce_size = len(f.data) - 7
        err = self.pull_err(ORG, "bad.gguf")
        self.assertIn("size mismatch", err)
        self.assertCacheIntact()

    def test_wrong_hash(self):
        f = self.hub.add_file(ORG, "bad.gguf", payload(300000, 13))
        f.announce_etag = hashlib.sha256(b"something else").hexdigest()
        err = self.pull_err(ORG, "bad.gguf")
        self.assertIn("sha256 mismatch", err)
        self.assertIn(f.announce_etag, err)
        self.assertIn(f.sha256, err)
        self.assertCacheIntact()
        NOTES.append("wrong hash rejected: %s" % err.strip()[:100])

    def test_unsafe_etag_from_server(self):
        f = self.hub.add_file(ORG, "bad.gguf", payload(1000, 14))
        f.announce_etag = "../../../../evil"
        err = self.pull_err(ORG, "bad.gguf")
        self.assertIn("unusable", err)
        self.assertCacheIntact()
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "evil")))


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TestErrors(HubCase):
    def test_404(self):
        self.hub.add_file(ORG, "m.gguf", payload(1000, 20))
        err = self.pull_err("TestOrg/Missing", "m.gguf")
        self.assertIn("repository or file not found: TestOrg/Missing/m.gguf", err)
        err = self.pull_err(ORG, "other.gguf")
        self.assertIn("repository or file not found: %s/other.gguf" % ORG, err)
        err = self.pull_err(ORG, "m.gguf", "--revision", "v9")
        self.assertIn("repository or file not found: %s/m.gguf (revision v9)" % ORG, err)
        self.assertFalse(os.path.exists(os.path.join(self.cache, "models--TestOrg--Missing", "snapshots")))

    def test_401_and_tokens(self):
        self.hub.add_file(ORG, "m.gguf", payload(50000, 21), private=True)
        err = self.pull_err(ORG, "m.gguf")
        self.assertIn("needs a token: set HF_TOKEN", err)
        self.assertIn("401", err)
        err = self.pull_err(ORG, "m.gguf", env=self.env(HF_TOKEN="wrong"))
        self.assertIn("token rejected", err)
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "snapshots")))
        self.hub.clear_requests()
        self.pull_ok(ORG, "m.gguf", env=self.env(HF_TOKEN=self.hub.token))
        self.assertEqual(self.hub.heads()[0]["headers"].get("authorization"), "Bearer " + self.hub.token)
        # same origin (the fake hub serves its own blobs): the token goes with the GET too
        self.assertEqual(self.hub.blob_gets()[0]["headers"].get("authorization"), "Bearer " + self.hub.token)

    def test_token_file(self):
        self.hub.add_file(ORG, "m.gguf", payload(5000, 22), private=True)
        os.makedirs(self.hf_home, exist_ok=True)
        with open(os.path.join(self.hf_home, "token"), "w") as fh:
            fh.write(self.hub.token + "\n")
        self.pull_ok(ORG, "m.gguf")

    def test_token_not_sent_to_other_origin(self):
        self.hub.stop()
        self.hub = FakeHub(cdn_separate=True).start()
        self.hub.add_file(ORG, "m.gguf", payload(200000, 23), private=True)
        self.pull_ok(ORG, "m.gguf", env=self.env(HF_TOKEN=self.hub.token))
        hub_reqs = [r for r in self.hub.requests if r["server"] == "hub"]
        cdn_reqs = [r for r in self.hub.requests if r["server"] == "cdn"]
        self.assertTrue(hub_reqs and cdn_reqs)
        for r in hub_reqs:
            self.assertEqual(r["headers"].get("authorization"), "Bearer " + self.hub.token)
        for r in cdn_reqs:
            self.assertNotIn("authorization", r["headers"])

    def test_5xx(self):
        self.hub.add_file(ORG, "m.gguf", payload(5000, 24))
        self.hub.force_status = 503
        err = self.pull_err(ORG, "m.gguf")
        self.assertIn("HTTP 503", err)
        # with a cached copy, huggingface_hub (and llamita) use it
        self.hub.force_status = None
        p = self.pull_ok(ORG, "m.gguf")
        self.hub.force_status = 503
        r = self.pull(ORG, "m.gguf")
        self.assertEqual((r.returncode, r.stdout.decode().strip()), (0, p))

    def test_unreachable(self):
        ep = closed_port_endpoint()
        err = self.pull_err(ORG, "m.gguf", env=self.env(HF_ENDPOINT=ep))
        self.assertIn("cannot reach %s/%s/resolve/main/m.gguf: " % (ep, ORG), err)
        self.assertIn("pass -m FILE to use a local file", err)
        r = self.pull(ORG, "m.gguf", env=self.env(HF_ENDPOINT=ep))
        self.assertEqual(r.stderr.count(b"\n"), 1)

    def test_offline_missing(self):
        err = self.pull_err(ORG, "m.gguf", env=self.env(HF_HUB_OFFLINE="1"))
        self.assertIn("HF_HUB_OFFLINE", err)
        self.assertIn(self.repo_dir(), err)
        self.assertEqual(self.hub.requests, [])

    def test_bad_arguments(self):
        for repo in ("../etc", "a/b/c", "a--b/c", "x-/y", "o/.x", ""):
            err = self.pull_err(repo, "m.gguf")
            self.assertIn("invalid repository id", err)
        for name in ("../../x.gguf", "/etc/passwd", "a//b", "./a"):
            err = self.pull_err(ORG, name)
            self.assertIn("invalid file name", err)
        self.assertEqual(self.hub.requests, [])
        self.assertEqual(self.pull("--bogus").returncode, 2)
        self.assertEqual(self.pull().returncode, 2)
        self.assertEqual(self.pull("a/b", "c", "d").returncode, 2)
        self.assertFalse(os.path.exists(self.cache))


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TestGlobAndCache(HubCase):
    def setUp(self):
        super().setUp()
        for i, n in enumerate(["tiny.Q4_0.gguf", "tiny.Q8_0.gguf", "tiny-v2.Q8_0.gguf"]):
            self.hub.add_file(ORG, n, payload(20000 + i, 30 + i))
        self.hub.add_file(ORG, "README.md", b"# readme\n", lfs=False)

    def test_glob_one_match(self):
        path = self.pull_ok(ORG, "*Q4_0.gguf")
        self.assertEqual(path, self.snapshot("tiny.Q4_0.gguf"))
        self.assertEqual(len(self.hub.gets("/api/models/%s" % ORG)), 1)

    def test_glob_several_matches(self):
        err = self.pull_err(ORG, "*Q8_0.gguf")
        self.assertIn("2 files of %s match '*Q8_0.gguf': tiny-v2.Q8_0.gguf, tiny.Q8_0.gguf" % ORG, err)
        self.assertEqual(self.hub.heads(), [])

    def test_glob_no_match(self):
        err = self.pull_err(ORG, "*Q5_K_M.gguf")
        self.assertIn("no file of %s matches '*Q5_K_M.gguf'" % ORG, err)
        self.assertIn("tiny-v2.Q8_0.gguf, tiny.Q4_0.gguf, tiny.Q8_0.gguf", err)
        self.assertNotIn("README", err)

    def test_default_file_is_the_only_gguf(self):
        self.hub.add_file("TestOrg/One", "only.gguf", payload(1000, 39))
        path = self.pull_ok("TestOrg/One")
        self.assertTrue(path.endswith("/only.gguf"))
        self.assertIn("3 files of %s match '*.gguf'" % ORG, self.pull_err(ORG))

    def test_glob_offline_and_unreachable(self):
        self.pull_ok(ORG, "*Q4_0.gguf")
        self.pull_ok(ORG, "tiny.Q8_0.gguf")
        self.hub.clear_requests()
        off = self.env(HF_HUB_OFFLINE="1")
        self.assertEqual(self.pull_ok(ORG, "*Q4*", env=off), self.snapshot("tiny.Q4_0.gguf"))
        # only the cached files count offline: *Q8_0* matches just one of them
        self.assertEqual(self.pull_ok(ORG, "*Q8_0.gguf", env=off), self.snapshot("tiny.Q8_0.gguf"))
        self.assertIn("2 files of %s (cached) match" % ORG, self.pull_err(ORG, "*.gguf", env=off))
        self.assertEqual(self.hub.requests, [])
        down = self.env(HF_ENDPOINT=closed_port_endpoint())
        self.assertEqual(self.pull_ok(ORG, "*Q4_0.gguf", env=down), self.snapshot("tiny.Q4_0.gguf"))

    def test_cache_made_by_huggingface_hub_layout(self):
        """A file placed in the cache the way huggingface_hub lays it out is found, offline and online."""
        data = payload(70000, 40)
        sha = hashlib.sha256(data).hexdigest()
        commit = "0123456789abcdef0123456789abcdef01234567"
        rd = os.path.join(self.cache, "models--Other--Made-GGUF")
        os.makedirs(os.path.join(rd, "blobs"))
        os.makedirs(os.path.join(rd, "snapshots", commit))
        os.makedirs(os.path.join(rd, "refs"))
        with open(os.path.join(rd, "blobs", sha), "wb") as fh:
            fh.write(data)
        os.symlink("../../blobs/" + sha, os.path.join(rd, "snapshots", commit, "made.Q8_0.gguf"))
        with open(os.path.join(rd, "refs", "main"), "w") as fh:
            fh.write(commit)
        want = os.path.join(rd, "snapshots", commit, "made.Q8_0.gguf")
        off = self.env(HF_HUB_OFFLINE="1")
        self.assertEqual(self.pull_ok("Other/Made-GGUF", "made.Q8_0.gguf", env=off), want)
        self.assertEqual(self.pull_ok("Other/Made-GGUF", "*.gguf", env=off), want)
        self.assertEqual(self.hub.requests, [])
        # online: the hub says the same commit, so nothing is downloaded
        self.hub.add_repo("Other/Made-GGUF", commit=commit)
        self.hub.add_file("Other/Made-GGUF", "made.Q8_0.gguf", data)
        self.assertEqual(self.pull_ok("Other/Made-GGUF", "made.Q8_0.gguf"), want)
        self.assertEqual(self.hub.blob_gets(), [])

    def test_new_commit_reuses_blob(self):
        p1 = self.pull_ok(ORG, "tiny.Q4_0.gguf")
        old = self.hub.commit(ORG)
        self.hub.repos[ORG]["commit"] = "f" * 40
        self.hub.clear_requests()
        p2 = self.pull_ok(ORG, "tiny.Q4_0.gguf")
        self.assertNotEqual(p1, p2)
        self.assertIn("f" * 40, p2)
        self.assertEqual(self.hub.blob_gets(), [])  # same ETag: the blob is shared
        with open(os.path.join(self.repo_dir(), "refs", "main")) as fh:
            self.assertEqual(fh.read(), "f" * 40)
        self.assertTrue(os.path.islink(os.path.join(self.repo_dir(), "snapshots", old, "tiny.Q4_0.gguf")))

    def test_cache_locations(self):
        if not HAVE_TOOL:
            self.skipTest(NO_TOOL)

        def cache_dir(**kw):
            r = self.run_cmd([TOOL, "cache-dir"], env=self.env(**kw))
            self.assertEqual(r.returncode, 0, r.stderr)
            return r.stdout.decode().strip()

        self.assertEqual(cache_dir(), os.path.join(self.hf_home, "hub"))
        self.assertEqual(cache_dir(HF_HUB_CACHE="/x/y"), "/x/y")
        self.assertEqual(cache_dir(HF_HOME=None, XDG_CACHE_HOME="/xdg"), "/xdg/huggingface/hub")
        self.assertEqual(cache_dir(HF_HOME=None), os.path.join(self.home, ".cache", "huggingface", "hub"))
        self.assertEqual(cache_dir(HF_HOME="~/hfh"), os.path.join(self.home, "hfh", "hub"))
        # a real download honours HF_HUB_CACHE
        other = os.path.join(self.tmp, "other-cache")
        p = self.pull_ok(ORG, "tiny.Q4_0.gguf", env=self.env(HF_HUB_CACHE=other))
        self.assertTrue(p.startswith(other + "/" + FOLDER + "/snapshots/"), p)
        self.assertFalse(os.path.exists(self.cache))
        # and one without HF_HOME lands under HOME
        p = self.pull_ok(ORG, "tiny.Q4_0.gguf", env=self.env(HF_HOME=None))
        self.assertTrue(p.startswith(os.path.join(self.home, ".cache", "huggingface", "hub", FOLDER)), p)

    def test_concurrent_pulls(self):
        self.hub.add_file(ORG, "big.gguf", payload(4 * MB, 41))
        procs = [subprocess.Popen([CLI, "pull", ORG, "big.gguf"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=self.env()) for _ in range(3)]
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
        for p, (o, e) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, e)
        self.assertEqual(len({o for o, _ in outs}), 1)
        self.assertEqual(len(self.hub.gets("/blobs/")), 1)  # the lock lets one download, the others wait


@unittest.skipUnless(HAVE_TOOL, NO_TOOL)
class TestResolveModelArg(HubCase):
    def resolve(self, m, repo, file, env=None):
        return self.run_cmd([TOOL, "resolve", m, repo, file], env=env)

    def test_forms(self):
        data = payload(30000, 50)
        self.hub.add_file(ORG, "m.Q8_0.gguf", data)
        want = self.snapshot("m.Q8_0.gguf")
        r = self.resolve("some/local/file.gguf", "-", "-")
        self.assertEqual((r.returncode, r.stdout), (0, b"some/local/file.gguf\n"))
        self.assertEqual(self.hub.requests, [])
        for args in (("hf://%s/m.Q8_0.gguf" % ORG, "-", "-"), ("hf://%s/*Q8_0.gguf" % ORG, "-", "-"),
                     ("hf://%s" % ORG, "-", "-"), ("-", ORG, "m.Q8_0.gguf"), ("-", ORG, "-"),
                     ("hf://%s@%s/m.Q8_0.gguf" % (ORG, self.hub.commit(ORG)), "-", "-")):
            r = self.resolve(*args)
            self.assertEqual(r.returncode, 0, (args, r.stderr))
            self.assertEqual(r.stdout.decode().strip(), want, args)
        if HAVE_CLI:  # `llamita pull` takes the same hf:// form
            self.assertEqual(self.pull_ok("hf://%s/*Q8_0.gguf" % ORG), want)
            self.assertEqual(self.pull("hf://%s" % ORG, "m.Q8_0.gguf").returncode, 2)
            self.assertIn("bad model", self.pull_err("hf://%s" % ORG.split("/")[0]))

    def test_errors(self):
        cases = [(("x.gguf", ORG, "-"), "not both"), (("-", "-", "f.gguf"), "--hf-file needs --hf-repo"),
                 (("-", "-", "-"), "no model given"), (("hf://onlyorg", "-", "-"), "bad model"),
                 (("hf://", "-", "-"), "bad model"), (("hf://a/b@/f", "-", "-"), "bad model")]
        for args, msg in cases:
            r = self.resolve(*args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn(msg, r.stderr.decode(), args)


@unittest.skipUnless(HAVE_TOOL, NO_TOOL)
class TestSha256(unittest.TestCase):
    def test_against_hashlib(self):
        tmp = tempfile.mkdtemp(prefix="llamita-sha-")
        try:
            sizes = (0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 4099, 4099 * 3 + 5, 1 << 20)
            paths, want = [], []
            for n in sizes:
                data = payload(n, n)
                paths.append(os.path.join(tmp, "f%d" % n))
                with open(paths[-1], "wb") as fh:
                    fh.write(data)
                want.append(hashlib.sha256(data).hexdigest())
            r = subprocess.run([TOOL, "sha256"] + paths, stdout=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0)
            self.assertEqual(r.stdout.decode().split(), want)
        finally:
            shutil.rmtree(tmp)


@unittest.skipUnless(HAVE_CLI, NO_CLI)
class TestProgress(HubCase):
    def test_bar_on_tty_only(self):
        data = payload(2 * MB, 60)
        self.hub.add_file(ORG, "p.gguf", data)
        master, slave = os.openpty()
        p = subprocess.Popen([CLI, "pull", ORG, "p.gguf"], stdout=subprocess.PIPE, stderr=slave, env=self.env())
        os.close(slave)
        out = b""
        exited = False
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child side is closed and drained
                    break
                if not chunk:
                    break
                out += chunk
            elif exited:  # exited and nothing more to read
                break
            else:
                exited = p.poll() is not None
        p.wait(timeout=TIMEOUT)
        p.stdout.close()
        os.close(master)
        self.assertEqual(p.returncode, 0, out)
        text = out.decode(errors="replace")
        self.assertIn("p.gguf", text)
        self.assertIn("100%", text)
        self.assertIn("2.0 MiB / 2.0 MiB", text)
        self.assertIn("/s", text)
        # and no bar when stderr is not a terminal, nor with -q
        self.hub.add_file(ORG, "q.gguf", payload(MB, 61))
        self.assertEqual(self.pull(ORG, "q.gguf").stderr, b"")


SHARED = os.environ.get("LLAMITA_SHARED") or os.path.join(REPO, "..", "shared")
STORIES = os.path.join(SHARED, "fixtures", "models", "stories260K.gguf")


@unittest.skipUnless(HAVE_CLI, NO_CLI)
@unittest.skipUnless(os.path.isfile(STORIES), "../shared not found (set LLAMITA_SHARED to its path)")
class TestModelArgInCommands(HubCase):
    """The other commands take -m hf://... and --hf-repo/--hf-file (through lm_resolve_model_arg)."""

    def setUp(self):
        super().setUp()
        with open(STORIES, "rb") as fh:
            self.data = fh.read()
        self.hub.add_file(ORG, "stories.Q8_0.gguf", self.data)

    def test_info_hf_uri(self):
        r = self.run_cmd([CLI, "info", "-m", "hf://%s/*Q8_0.gguf" % ORG])
        if r.returncode != 0 and b"hf://" in r.stderr:
            self.skipTest("load_model() does not resolve hf:// yet: %s" % r.stderr.decode().strip())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.isfile(self.snapshot("stories.Q8_0.gguf")))

    def test_chat_hf_repo(self):
        r = self.run_cmd([CLI, "chat", "--hf-repo", ORG, "--hf-file", "stories.Q8_0.gguf", "-c", "64"],
                         input=b"/exit\n")
        if r.returncode == 2 and b"unknown command" in r.stderr:
            self.skipTest("no chat command in this build")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.hub.gets("/blobs/")), 1)
        with open(self.snapshot("stories.Q8_0.gguf"), "rb") as fh:
            self.assertEqual(fh.read(), self.data)


class TestMakeChatScript(HubCase):
    """scripts/chat with a stub $BUILD/llamita: the real `pull` against the fake hub, `chat` recorded."""

    def stub_build(self):
        d = os.path.join(self.tmp, "stubbuild")
        os.makedirs(d)
        stub = os.path.join(d, "llamita")
        log = os.path.join(self.tmp, "stub.log")
        with open(stub, "w") as fh:
            fh.write("#!/bin/sh\nif [ \"$1\" = pull ]; then exec %s \"$@\"; fi\n"
                     "printf '%%s\\n' \"$@\" > %s\n" % (CLI, log))
        os.chmod(stub, 0o755)
        return d, log

    @unittest.skipUnless(HAVE_CLI, NO_CLI)
    def test_no_network(self):
        d, log = self.stub_build()
        r = self.run_cmd([os.path.join(REPO, "scripts", "chat")],
                         env=self.env(BUILD=d, HF_ENDPOINT=closed_port_endpoint()))
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode()
        self.assertIn("cannot reach", err)
        self.assertIn("llamita chat -m /path/to/tinyllama-1.1b-chat-v1.0.Q8_0.gguf", err)
        self.assertIn("make chat MODEL=/path/to/tinyllama-1.1b-chat-v1.0.Q8_0.gguf", err)
        self.assertFalse(os.path.exists(log))

    @unittest.skipUnless(HAVE_CLI, NO_CLI)
    def test_download_then_chat(self):
        d, log = self.stub_build()
        data = payload(50000, 70)
        self.hub.add_file("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "tinyllama-1.1b-chat-v1.0.Q8_0.gguf", data)
        r = self.run_cmd([os.path.join(REPO, "scripts", "chat")], env=self.env(BUILD=d))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(log) as fh:
            argv = fh.read().splitlines()
        self.assertEqual(argv[:2], ["chat", "-m"])
        self.assertTrue(argv[2].endswith("/snapshots/%s/tinyllama-1.1b-chat-v1.0.Q8_0.gguf"
                                         % self.hub.commit("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF")), argv)

    def test_model_variable(self):
        d, log = self.stub_build()
        r = self.run_cmd([os.path.join(REPO, "scripts", "chat")],
                         env=self.env(BUILD=d, MODEL="/some/model.gguf", HF_ENDPOINT=closed_port_endpoint()))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(log) as fh:
            self.assertEqual(fh.read().splitlines(), ["chat", "-m", "/some/model.gguf"])
        self.assertEqual(self.hub.requests, [])


if __name__ == "__main__":
    unittest.main()
