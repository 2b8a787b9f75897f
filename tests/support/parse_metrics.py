#!/usr/bin/python3
"""Parses Prometheus exposition text (stdin) with the prometheus_client library's parser and
prints every sample as one JSON object a line: {"name", "labels", "value", "type"}.
Exits non-zero when the text does not parse, so a test sees a malformed /metrics."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
for family in text_string_to_metric_families(text):
    for sample in family.samples:
        print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value,
                          "type": family.type}))
