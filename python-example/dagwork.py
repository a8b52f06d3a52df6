"""A minimal dagwork client in plain Python, written from proto/dagwork.proto alone.

Framing: every request and reply is ONE ZeroMQ frame holding ONE length-delimited protobuf
message: a base-128 varint with the message's length, then the message bytes.

The Python protobuf module is generated from the .proto with protoc when it is missing or older
than the .proto (into python-example/gen/, never committed), so it cannot drift from the contract.
"""
import hashlib
import importlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import zmq

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent / "proto" / "dagwork.proto"
GEN = HERE / "gen"


def _load_pb2():
    module = GEN / "dagwork_pb2.py"
    if not module.exists() or module.stat().st_mtime < PROTO.stat().st_mtime:
        GEN.mkdir(exist_ok=True)
        # Generate beside, then rename: several processes may start at once.
        scratch = tempfile.mkdtemp(dir=GEN)
        try:
            subprocess.run(["protoc", f"-I{PROTO.parent}", f"--python_out={scratch}", str(PROTO)], check=True)
            os.replace(os.path.join(scratch, "dagwork_pb2.py"), module)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    sys.path.insert(0, str(GEN))
    return importlib.import_module("dagwork_pb2")


pb = _load_pb2()


def encode_frame(message):
    """A message, length-delimited: varint length, then the bytes."""
    body = message.SerializeToString()
    n, prefix = len(body), bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        prefix.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(prefix) + body


def decode_frame(frame, message_type):
    """The one length-delimited message filling `frame`."""
    length = shift = pos = 0
    while True:
        byte = frame[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if pos + length != len(frame):
        raise ValueError("frame does not hold exactly one length-delimited message")
    return message_type.FromString(frame[pos:])


class HubError(Exception):
    """The hub refused a request; `code` is the ErrorCode name (e.g. 'CYCLE')."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


def read_keys(path):
    """The keys of a file written by `dquery keygen`: {'public': ..., 'secret': ...}."""
    keys = {}
    with open(path) as f:
        for line in f:
            name, sep, value = line.partition("=")
            if sep and name.strip() in ("public-key", "secret-key"):
                keys[name.strip().split("-")[0]] = value.strip().strip('"')
    return keys


ENDPOINT = re.compile(r"^(tcp://(\[[0-9a-fA-F:.]+\]|[^:/\s\[\]]+):\d{1,5}|(ipc|inproc)://\S+)$")


def parse_endpoints(value):
    """A hub's endpoints: one, or several separated by commas (a hub and its standbys)."""
    endpoints = [part.strip() for part in value.split(",")]
    for i, endpoint in enumerate(endpoints):
        if not ENDPOINT.match(endpoint):
            where = f"endpoint {i + 1} of {len(endpoints)}: " if len(endpoints) > 1 else ""
            raise ValueError(f"{where}{endpoint!r} is not a ZeroMQ endpoint: write tcp://HOST:PORT")
    return endpoints


class Hub:
    """One REQ socket to dhub. A reply that does not come in time: rebuild the socket and resend
    (every dagwork operation is safe to repeat).

    Several endpoints ("tcp://a:6125,tcp://b:6125": one hub active, standbys on the same store):
    an answer STANDBY (or, with several endpoints, SHUTTING_DOWN), or no reply in time, moves the request to the next endpoint, where it is
    sent again; a whole round of STANDBY answers waits a little first (0.1 s, doubling up to 2 s).
    The request gives up after (retries + 1) timeouts in all, naming what each endpoint answered.
    The endpoint that answered is kept for the next request.

    CURVE: set DAGWORK_CURVE_SERVER_KEY (the hub's .pub file) and DAGWORK_CURVE_KEY (this
    client's key pair file), and connect to the endpoint of the role the key has."""

    def __init__(self, endpoint=None, worker=None, timeout_ms=5000, retries=2):
        self.endpoints = parse_endpoints(endpoint or os.environ.get("DAGWORK_HUB") or "tcp://127.0.0.1:6125")
        self.current = 0
        self.worker = worker or os.environ.get("DAGWORK_WORKER") or f"{os.uname().nodename}-{os.getpid()}"
        self.timeout_ms, self.retries = timeout_ms, retries
        self.context = zmq.Context.instance()
        self.socket = None
        self.curve = None
        server, mine = os.environ.get("DAGWORK_CURVE_SERVER_KEY"), os.environ.get("DAGWORK_CURVE_KEY")
        if server and mine:
            server_key = server if len(server) == 40 and not os.path.exists(server) else read_keys(server)["public"]
            self.curve = (server_key, read_keys(mine))

    @property
    def endpoint(self):
        """The endpoint requests go to: the one that answered last."""
        return self.endpoints[self.current]

    def _connect(self):
        if self.socket is None:
            self.socket = self.context.socket(zmq.REQ)
            self.socket.setsockopt(zmq.LINGER, 0)
            if self.curve:
                server_key, keys = self.curve
                self.socket.curve_serverkey = server_key.encode()
                self.socket.curve_publickey = keys["public"].encode()
                self.socket.curve_secretkey = keys["secret"].encode()
            self.socket.connect(self.endpoint)
        return self.socket

    def call(self, request, wait_ms=0):
        """Sends a Request, returns the Reply; raises HubError if the hub refused it."""
        frame = encode_frame(request)
        timeout = self.timeout_ms + wait_ms
        tries = self.retries + 1
        deadline = time.monotonic() + timeout * tries / 1000
        heard = {}  # endpoint -> what it answered, in order
        silent = in_round = 0
        round_waited, pause = False, 0.1
        while True:
            socket = self._connect()
            socket.setsockopt(zmq.RCVTIMEO, max(1, min(timeout, int((deadline - time.monotonic()) * 1000))))
            socket.send(frame)
            try:
                reply = decode_frame(socket.recv(), pb.Reply)
            except zmq.Again:
                reply = None
            # STANDBY, and with several endpoints SHUTTING_DOWN (that hub is stopping; a standby takes over), move on.
            code = pb.ErrorCode.Name(reply.error.code) if reply is not None and reply.HasField("error") else None
            moves_on = code == "STANDBY" or (code == "SHUTTING_DOWN" and len(self.endpoints) > 1)
            if reply is not None and not moves_on:
                if code is not None:
                    raise HubError(code, reply.error.message)
                return reply
            # No answer here: a REQ socket without its reply is stuck, and the next endpoint needs
            # its own socket anyway.
            self.close()
            heard.setdefault(self.endpoint, []).append(code if reply is not None else f"no reply within {timeout} ms")
            if reply is None:
                silent += 1
                round_waited = True
            if silent >= tries or time.monotonic() >= deadline:
                raise ConnectionError(self._unreachable(heard))
            self.current = (self.current + 1) % len(self.endpoints)
            in_round += 1
            if in_round == len(self.endpoints):
                if not round_waited:
                    time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                    pause = min(pause * 2, 2.0)
                in_round, round_waited = 0, False

    def _unreachable(self, heard):
        if len(self.endpoints) == 1 and all(h != "STANDBY" for h in heard.get(self.endpoints[0], [])):
            return f"no reply from the hub at {self.endpoints[0]}: is dhub running there?"
        said = []
        for endpoint in self.endpoints:
            answers = heard.get(endpoint)
            said.append(f"{endpoint}: " + (", ".join(f"{a} x{answers.count(a)}" for a in dict.fromkeys(answers)) if answers else "not tried"))
        return "no active hub answered (" + "; ".join(said) + ")"

    # One method per operation used by the examples.
    def create(self, tasks):
        return self.call(pb.Request(create=pb.CreateRequest(tasks=tasks))).create

    def steal_args(self, n=1, wait_ms=0):
        return pb.StealRequest(worker=self.worker, n=n, wait_ms=wait_ms)

    def steal(self, n=1, wait_ms=0):
        return self.call(pb.Request(steal=self.steal_args(n, wait_ms)), wait_ms).steal

    def complete(self, completions, next_n=0, wait_ms=0):
        request = pb.CompleteRequest(worker=self.worker, tasks=completions)
        if next_n:
            request.next.CopyFrom(self.steal_args(next_n, wait_ms))
        return self.call(pb.Request(complete=request), wait_ms).complete

    def fail(self, name, reason):
        return self.call(pb.Request(fail=pb.FailRequest(worker=self.worker, name=name, reason=reason))).fail

    def heartbeat(self, names):
        return self.call(pb.Request(heartbeat=pb.HeartbeatRequest(worker=self.worker, names=names))).heartbeat.lost

    def status(self):
        return self.call(pb.Request(status=pb.StatusRequest())).status

    def lookup(self, name):
        return self.call(pb.Request(lookup=pb.LookupRequest(name=name))).lookup.task

    # Files: content-addressed, sent and fetched a chunk at a time (see "Files" in the .proto).
    def chunk_bytes(self):
        """The hub's largest chunk (StatusReply.limits.max_chunk_bytes), asked once."""
        if not getattr(self, "_chunk", 0):
            self._chunk = self.status().limits.max_chunk_bytes or (4 << 20)
        return self._chunk

    def put_file(self, path, name=None):
        """Uploads a local file unless the hub holds it (resuming an interrupted upload); returns
        the FileRef for a task's inputs or a completion's outputs."""
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
        sha = digest.hexdigest()
        ref = pb.FileRef(name=name or os.path.basename(path), sha256=sha, size=size, executable=os.access(path, os.X_OK))
        known = self.call(pb.Request(file_stat=pb.FileStatRequest(sha256=[sha]))).file_stat.files[0]
        if known.held:
            return ref
        offset, chunk = known.received, self.chunk_bytes()
        with open(path, "rb") as f:
            while True:
                f.seek(offset)
                data = f.read(chunk)
                put = self.call(pb.Request(file_put=pb.FilePutRequest(sha256=sha, size=size, offset=offset, data=data))).file_put
                if put.held:
                    return ref
                offset = put.received  # where the hub is: after this chunk, or where it says

    def get_file(self, sha, dest, executable=False):
        """Downloads a held file to `dest` through a temporary name, its SHA-256 checked first."""
        temp, digest, offset = f"{dest}.part-{os.getpid()}", hashlib.sha256(), 0
        with open(temp, "wb") as f:
            while True:
                got = self.call(pb.Request(file_get=pb.FileGetRequest(sha256=sha, offset=offset))).file_get
                f.write(got.data)
                digest.update(got.data)
                offset += len(got.data)
                if offset >= got.size or not got.data:
                    break
        if digest.hexdigest() != sha:
            os.unlink(temp)
            raise HubError("HASH_MISMATCH", f"downloaded {sha} has the SHA-256 {digest.hexdigest()}")
        os.chmod(temp, 0o755 if executable else 0o644)
        os.replace(temp, dest)

    def close(self):
        if self.socket is not None:
            self.socket.close()
            self.socket = None
