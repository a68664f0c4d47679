#!/usr/bin/env python3
"""Produces records to a Kafka broker with kafka-python (a non-Rust producer for the tests).

Usage: python3 produce.py BOOTSTRAP < records.jsonl

Each stdin line is a JSON object: {"topic": str, "key": str|null, "value": str|null,
"partition": int (optional), "headers": {str: str} (optional)}. "value" is sent as raw UTF-8
bytes, so it may be invalid JSON on purpose. For every record, once the broker acknowledged
it, prints one line "PARTITION OFFSET" to stdout. Exits non-zero on any failure.
"""
import json
import sys

from kafka import KafkaProducer


def encode(text):
    return None if text is None else text.encode("utf-8")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: produce.py BOOTSTRAP < records.jsonl")
    producer = KafkaProducer(bootstrap_servers=sys.argv[1], acks="all", retries=5)
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            record = json.loads(line)
            headers = [(k, encode(v)) for k, v in record.get("headers", {}).items()]
            future = producer.send(
                record["topic"],
                key=encode(record.get("key")),
                value=encode(record.get("value")),
                partition=record.get("partition"),
                headers=headers or None,
            )
            metadata = future.get(timeout=30)
            print(f"{metadata.partition} {metadata.offset}", flush=True)
        producer.flush()
    finally:
        producer.close(timeout=10)


if __name__ == "__main__":
    main()
