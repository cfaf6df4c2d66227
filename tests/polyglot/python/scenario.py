"""The polyglot scenario in Python (see ../README.md).

A client of baa-logd made with grpcio, from stubs that grpcio-tools
generates from proto/ into a temporary directory when this starts. Usage:

    scenario.py HOST:PORT

Exits with status 0 when every check passed; an assertion names the first
one that failed.
"""

import importlib.resources
import json
import re
import sys
import tempfile
import threading
from pathlib import Path

import grpc
from google.protobuf import json_format
from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE.parents[2] / "proto"
SCENARIO = HERE.parent / "scenario.json"
# Deadline of every call, the follow included: the scenario takes well
# under a second, so reaching it means something hangs.
TIMEOUT_S = 30
# How many of the items already sent the reconnecting writer re-sends.
RESENT = 3


def generate_stubs(out_dir):
    """Generates the Python stubs of every file in proto/ into out_dir."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    protos = sorted(str(path) for path in PROTO_DIR.rglob("*.proto"))
    status = protoc.main(
        [
            "protoc",
            f"--proto_path={PROTO_DIR}",
            f"--proto_path={well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
    )
    if status != 0:
        sys.exit(f"protoc failed with status {status}")


# The stubs are imported once, then their directory goes: Python keeps the
# modules it loaded.
with tempfile.TemporaryDirectory() as stubs_dir:
    generate_stubs(stubs_dir)
    sys.path.insert(0, stubs_dir)
    from baa.logging.v1 import contracts_pb2 as contracts
    from baa.logging.v1 import logging_service_pb2 as service
    from baa.logging.v1 import logging_service_pb2_grpc as service_grpc

    sys.path.remove(stubs_dir)


# === contract names <-> Protobuf enums ===


def enum_prefix(enum):
    """The prefix of an enum's values: LogLevel -> LOG_LEVEL."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper()


def to_enum(enum, name):
    """A contract name as a Protobuf value: (LogLevel, "info") -> LOG_LEVEL_INFO."""
    return enum.Value(f"{enum_prefix(enum)}_{name.upper()}")


def from_enum(enum, value):
    """A Protobuf value as a contract name, the inverse of to_enum."""
    return enum.Name(value).removeprefix(enum_prefix(enum) + "_").lower()


# === scenario data -> requests ===


def to_append_item(writer_seq, item):
    """An item of scenario.json as an AppendItem."""
    if "event" in item:
        event = item["event"]
        message = contracts.WorkerLifecycleEventInput(
            type=to_enum(contracts.WorkerLifecycleEventType, event["type"]),
            level=to_enum(contracts.LogLevel, event["level"]),
            message=event["message"],
        )
        if "createdAt" in event:
            message.created_at = event["createdAt"]
        if "data" in event:
            message.data.update(event["data"])  # dict -> google.protobuf.Struct
        return service.AppendItem(writer_seq=writer_seq, event=message)
    [(channel, chunk)] = item.items()  # "stdout" or "stderr"
    message = contracts.StreamChunkInput(text=chunk["text"])
    if "createdAt" in chunk:
        message.created_at = chunk["createdAt"]
    return service.AppendItem(writer_seq=writer_seq, **{channel: message})


def snake_case(fields):
    """Contract (camelCase) keys as Protobuf field names: stepName -> step_name."""
    return {re.sub(r"(?=[A-Z])", "_", key).lower(): value for key, value in fields.items()}


def prepare_request(scenario):
    """The PrepareRun request of scenario.json's metadata and state."""
    return service.PrepareRunRequest(
        metadata=contracts.RunMetadataInput(**snake_case(scenario["metadata"])),
        state=contracts.RunStateSnapshotInput(**snake_case(scenario["state"])),
    )


# === checks ===


def same(expected, actual):
    """Whether two JSON values are equal, types included: true is not 1, and
    numbers, which Protobuf carries as doubles, compare by value."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, float)):
        return isinstance(actual, (int, float)) and float(expected) == float(actual)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(same(value, actual[key]) for key, value in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(map(same, expected, actual))
        )
    return type(expected) is type(actual) and expected == actual


def check_entry(seq, item, entry, scenario):
    """Checks that a followed entry is the scenario item sent as run seq `seq`."""
    kind = entry.WhichOneof("entry")
    body = getattr(entry, kind)
    where = f"seq {seq}"
    assert body.seq == seq, f"{where}: got seq {body.seq}"
    context = (body.task_id, body.step_id, body.run_id)
    metadata = scenario["metadata"]
    assert context == (metadata["taskId"], metadata["stepId"], metadata["runId"]), where
    sent = next(iter(item.values()))
    if "createdAt" in sent:
        assert body.created_at == sent["createdAt"], f"{where}: {body.created_at}"
    else:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body.created_at), where
    if "event" in item:
        assert kind == "lifecycle", f"{where}: a {kind}, not an event"
        assert from_enum(contracts.WorkerLogChannel, body.channel) == "worker", where
        assert from_enum(contracts.WorkerLifecycleEventType, body.type) == sent["type"], where
        assert from_enum(contracts.LogLevel, body.level) == sent["level"], where
        assert body.message == sent["message"], f"{where}: {body.message!r}"
        data = json_format.MessageToDict(body.data)
        assert same(sent.get("data", {}), data), f"{where}: data {data!r}"
        assert body.event_id and body.rendered_line, where
    else:
        [channel] = item.keys()
        assert kind == "chunk", f"{where}: a {kind}, not a chunk"
        assert from_enum(contracts.StreamLogChannel, body.channel) == channel, where
        assert body.text == sent["text"], f"{where}: text {body.text!r}"


# === the follower ===


class Follower(threading.Thread):
    """Follows the run on its own connection, from seq 1 until the stream ends."""

    def __init__(self, address, request):
        super().__init__(daemon=True)
        self.address = address
        self.request = request
        self.entries = []
        self.states = []
        self.error = None
        self.changed = threading.Condition()

    def run(self):
        try:
            # A channel of its own: without a local subchannel pool, gRPC
            # would share the writer's connection.
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(self.address, options=options) as channel:
                stub = service_grpc.LoggingServiceStub(channel)
                for response in stub.FollowRun(self.request, timeout=TIMEOUT_S):
                    with self.changed:
                        self.entries.extend(response.entries)
                        if response.HasField("state"):
                            self.states.append(response.state)
                        self.changed.notify_all()
        except grpc.RpcError as error:
            self.error = error

    def wait_for_seq(self, seq):
        """Waits until the follower received run seq `seq`; False on timeout."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.entries) >= seq, TIMEOUT_S)


# === the scenario ===


def main(address):
    """Runs the scenario against the server at `address`."""
    scenario = json.loads(SCENARIO.read_text(encoding="utf-8"))
    metadata = scenario["metadata"]
    run = {"task_id": metadata["taskId"], "run_id": metadata["runId"]}
    items = [to_append_item(seq, item) for seq, item in enumerate(scenario["items"], 1)]
    n = len(items)

    with grpc.insecure_channel(address) as channel:
        stub = service_grpc.LoggingServiceStub(channel)

        info = stub.GetServerInfo(service.GetServerInfoRequest(), timeout=TIMEOUT_S)
        assert info.run_layout_version == "local-run-v1", info

        prepared = stub.PrepareRun(prepare_request(scenario), timeout=TIMEOUT_S)
        assert prepared.created, "the run is new"
        assert from_enum(contracts.RunStatus, prepared.state.status) == "prepared"
        [first] = prepared.session.worker.entries
        first_type = from_enum(contracts.WorkerLifecycleEventType, first.type)
        assert (first.seq, first_type) == (1, "run_prepared"), first

        follower = Follower(address, service.FollowRunRequest(from_seq=1, **run))
        follower.start()

        def set_status(status, **patch):
            """Moves the run to `status`, with the other fields of the patch."""
            patch = contracts.RunStatePatch(status=to_enum(contracts.RunStatus, status), **patch)
            request = service.UpdateRunStateRequest(**run, patch=patch)
            return stub.UpdateRunState(request, timeout=TIMEOUT_S).state

        set_status("running")

        # One stream for items 1..n-1, in two messages; the second goes only
        # once the follower has the first, so the follow is live, not history.
        half = (n - 1) // 2
        opening = service.AppendOpen(writer_id=scenario["writerId"], **run)
        live = []

        def first_stream():
            yield service.AppendLogsRequest(open=opening, items=items[:half])
            live.append(follower.wait_for_seq(1 + half))
            yield service.AppendLogsRequest(items=items[half : n - 1])

        appended = stub.AppendLogs(first_stream(), timeout=TIMEOUT_S)
        assert live == [True], "the follower got the first half while the stream was open"
        assert (appended.stored_count, appended.duplicate_count) == (n - 1, 0), appended
        assert appended.last_writer_seq == n - 1, appended

        cursor = stub.GetWriterCursor(
            service.GetWriterCursorRequest(writer_id=scenario["writerId"], **run),
            timeout=TIMEOUT_S,
        )
        assert (cursor.last_writer_seq, cursor.last_seq) == (n - 1, n), cursor

        # A writer that reconnects re-sends what it is unsure of, and the last item.
        again = service.AppendLogsRequest(open=opening, items=items[n - 1 - RESENT :])
        resent = stub.AppendLogs(iter([again]), timeout=TIMEOUT_S)
        assert (resent.stored_count, resent.duplicate_count) == (1, RESENT), resent
        assert (resent.last_writer_seq, resent.summary.last_seq) == (n, n + 1), resent

        finish = scenario["finish"]
        final = set_status("completed", exit_code=finish["exitCode"], summary=finish["summary"])
        assert final.HasField("finished_at") and final.last_event_seq == n + 1, final

        follower.join(TIMEOUT_S)
        assert not follower.is_alive(), "the follow ends by itself"
        assert follower.error is None, f"the follow failed: {follower.error}"
        seqs = [getattr(entry, entry.WhichOneof("entry")).seq for entry in follower.entries]
        assert seqs == list(range(1, n + 2)), f"each seq once, in order: {seqs}"
        for seq, (item, entry) in enumerate(
            zip(scenario["items"], follower.entries[1:], strict=True), 2
        ):
            check_entry(seq, item, entry, scenario)
        last = follower.states[-1]
        assert from_enum(contracts.RunStatus, last.status) == "completed", last
        assert (last.exit_code, last.summary) == (finish["exitCode"], finish["summary"]), last

        got = stub.GetRun(service.GetRunRequest(**run), timeout=TIMEOUT_S).run
        events = sum("event" in item for item in scenario["items"])
        stdout = sum("stdout" in item for item in scenario["items"])
        counts = (
            got.summary.lifecycle_event_count,
            got.summary.stdout_chunk_count,
            got.summary.stderr_chunk_count,
        )
        assert counts == (1 + events, stdout, n - events - stdout), got.summary
        assert got.state == final, got.state

    print(f"python: the scenario passed ({n + 1} entries)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} HOST:PORT")
    main(sys.argv[1])
