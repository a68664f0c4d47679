#!/usr/bin/env python3
"""Produces movements at a steady rate with kafka-python and reports when each was sent.

Usage: python3 paced_produce.py BOOTSTRAP TOPIC RATE_PER_SEC < movements.jsonl

Each stdin line is a movement JSON object; it is sent keyed by its "sku". For every record,
once the broker acknowledged it, prints "INDEX SENT_MS" where SENT_MS is the wall-clock
time (milliseconds since the Unix epoch) just before the send. Exits non-zero on failure.
"""
import json
import sys
import time

from kafka import KafkaProducer


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: paced_produce.py BOOTSTRAP TOPIC RATE_PER_SEC < movements.jsonl")
    bootstrap, topic, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
    movements = [json.loads(line) for line in sys.stdin if line.strip()]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5, linger_ms=0)
    try:
        started = time.monotonic()
        for index, movement in enumerate(movements):
            due = started + index / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent_ms = int(time.time() * 1000)
            future = producer.send(
                topic,
                key=movement["sku"].encode("utf-8"),
                value=json.dumps(movement).encode("utf-8"),
            )
            future.get(timeout=30)
            print(f"{index} {sent_ms}", flush=True)
        producer.flush()
    finally:
        producer.close(timeout=10)


if __name__ == "__main__":
    main()
