#!/usr/bin/env python3
"""Spike for issue 13: does tansu's group coordinator reassign partitions correctly?

Three kafka-python consumers join one group on a 6-partition topic. Once the six
partitions are split between them, one consumer is paused with SIGSTOP for longer than
the session timeout; the two others must take all six partitions. It is then resumed
with SIGCONT; it must learn that it lost its partitions (a revocation or an empty
assignment) and the group must settle again with every partition owned exactly once.

Usage: python3 scripts/spikes/group_rebalance.py [--tansu PATH] [--session-timeout-ms N]
Prints each consumer's assignments as they change and ends with PASS or FAIL (exit 0/1).
Not part of the test suite: it is the experiment that chooses how issue 13 takes
ownership (the broker's group coordinator, or leases in the store).

Result on tansu 0.6.0 (memory storage, kafka-python 2.3.3, session timeout 6 s), run twice
on 2026-12-01: FAIL both times. The three-way split formed; once the third consumer was
stopped, one survivor went through a revoke/assign and got back only the two partitions
it already had, the other survivor saw no rebalance at all, and the stopped consumer's
two partitions stayed with it for the whole 90-second wait (the broker logged nothing).
So the broker's coordinator cannot be trusted to move a paused member's partitions:
issue 13 takes partition ownership from leases in the store (compare-and-set claims,
manual assignment), as the issue allows.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

CONSUMER = r"""
import json, sys, time
from kafka import KafkaConsumer, ConsumerRebalanceListener
name, bootstrap, topic, session_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def say(event, parts):
    print(json.dumps({"name": name, "event": event, "t": time.time(),
                      "partitions": sorted(p.partition for p in parts)}), flush=True)
class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        say("revoked", revoked)
    def on_partitions_assigned(self, assigned):
        say("assigned", assigned)
consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="spike",
                         session_timeout_ms=session_ms, heartbeat_interval_ms=1000,
                         max_poll_interval_ms=300000, auto_offset_reset="earliest",
                         enable_auto_commit=False)
consumer.subscribe([topic], listener=Listener())
while True:
    consumer.poll(timeout_ms=200)
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tansu", default=os.path.expanduser("~/.cargo/bin/tansu"))
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    args = parser.parse_args()

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="tansu-spike-", suffix=".log", delete=False)
    broker = subprocess.Popen(
        [args.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    children = []
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        bootstrap = f"127.0.0.1:{port}"
        from kafka.admin import KafkaAdminClient, NewTopic
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic("movements", num_partitions=6, replication_factor=1)])
        admin.close()

        owned = {}
        lock = threading.Lock()
        events = []

        def read(name, proc):
            for line in proc.stdout:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                with lock:
                    events.append(record)
                    if record["event"] == "assigned":
                        owned[name] = set(record["partitions"])
                    else:
                        owned[name] = owned.get(name, set()) - set(record["partitions"])
                print(f"{record['t']:.1f} {name} {record['event']} {record['partitions']}",
                      flush=True)

        for name in ("c1", "c2", "c3"):
            proc = subprocess.Popen(
                [sys.executable, "-c", CONSUMER, name, bootstrap, "movements",
                 str(args.session_timeout_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            children.append((name, proc))
            threading.Thread(target=read, args=(name, proc), daemon=True).start()

        def wait_for(predicate, seconds, what):
            end = time.time() + seconds
            while time.time() < end:
                with lock:
                    if predicate({k: set(v) for k, v in owned.items()}):
                        return True
                time.sleep(0.2)
            print(f"timed out waiting for: {what}; owned={owned}", flush=True)
            return False

        def split_among(names):
            def check(state):
                parts = [p for n in names for p in state.get(n, set())]
                others = [p for n, s in state.items() if n not in names for p in s]
                return sorted(parts) == list(range(6)) and all(state.get(n) for n in names) \
                    and not others
            return check

        ok = wait_for(split_among(["c1", "c2", "c3"]), 60, "three-way split")
        paused_name, paused = children[2]
        if ok:
            print(f"pausing {paused_name} (SIGSTOP) for {args.session_timeout_ms * 2.5 / 1000:.0f} s",
                  flush=True)
            paused.send_signal(signal.SIGSTOP)
            # While c3 is stopped its reader sees nothing; c1 and c2 must take all six.
            def two_take_all(state):
                parts = sorted(state.get("c1", set()) | state.get("c2", set()))
                both = state.get("c1", set()) & state.get("c2", set())
                return parts == list(range(6)) and not both
            ok = wait_for(two_take_all, args.session_timeout_ms * 2.5 / 1000 + 75,
                          "c1 and c2 own all six while c3 is paused")
            time.sleep(max(0, args.session_timeout_ms * 2.5 / 1000 - 1))
            paused.send_signal(signal.SIGCONT)
            print(f"resumed {paused_name} (SIGCONT)", flush=True)
        if ok:
            ok = wait_for(split_among(["c1", "c2", "c3"]), 90,
                          "three-way split again after the resume")
        print("PASS" if ok else "FAIL", flush=True)
        return 0 if ok else 1
    finally:
        for _, proc in children:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        broker.kill()
        broker.wait()
        print(f"broker log: {log.name}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
