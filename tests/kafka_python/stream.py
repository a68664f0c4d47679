#!/usr/bin/env python3
"""Streams generated receipts to a Kafka topic with kafka-python, as fast as the broker takes
them (the several-instance test's WMS producer).

Usage: python3 stream.py BOOTSTRAP TOPIC COUNT SKUS

Record i (0 <= i < COUNT) is keyed by its SKU, `DEMO-{i mod SKUS + 1:04}` (the demo's SKU names,
which the demo storefronts list), and is a receipt of
`1 + i mod 3` units at WH-1 with idempotency key `stream:{i}`; the producer uses kafka-python's
default partitioner (murmur2 of the key), acks=all. Prints "PRODUCED n" once every record
is acknowledged by the broker; exits non-zero on any failure.
"""
import json
import sys

from kafka import KafkaProducer


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: stream.py BOOTSTRAP TOPIC COUNT SKUS")
    bootstrap, topic, count, skus = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", retries=10, linger_ms=5,
        batch_size=256 * 1024, max_in_flight_requests_per_connection=1,
    )
    futures = []
    for i in range(count):
        sku = f"DEMO-{i % skus + 1:04}"
        movement = {
            "schema_version": 1, "sku": sku, "idempotency_key": f"stream:{i}",
            "source": "wms", "type": "receipt", "location": "WH-1", "quantity": 1 + i % 3,
        }
        futures.append(producer.send(topic, key=sku.encode(), value=json.dumps(movement).encode()))
        if len(futures) >= 5000:
            for future in futures:
                future.get(timeout=60)
            futures.clear()
    for future in futures:
        future.get(timeout=60)
    producer.flush()
    producer.close()
    print(f"PRODUCED {count}", flush=True)


if __name__ == "__main__":
    main()
