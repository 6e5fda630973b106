"""Reads a server's Prometheus metrics into a flat dict, for tests and labs."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def read_metrics(url: str, timeout: float = 2.0) -> dict[str, float]:
    """`{'name{label=value,...}': value}` for every sample; names without labels stand alone."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values
