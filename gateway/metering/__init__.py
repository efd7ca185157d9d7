"""Metering: quotas, budgets, usage records and cost alerts over a Redis or in-memory store.

The request pipeline uses ``Meter`` (``admit`` before forwarding, ``finish`` after), built on
``create_store(REDIS_URL, settings)``.
"""

from gateway.metering.export import parse_range, parse_time, to_csv, to_json
from gateway.metering.factory import create_store
from gateway.metering.meter import Meter
from gateway.metering.store import Store, StoreError
from gateway.metering.types import Admission, Amounts, MeterRequest, Outcome

__all__ = [
    "Admission",
    "Amounts",
    "Meter",
    "MeterRequest",
    "Outcome",
    "Store",
    "StoreError",
    "create_store",
    "parse_range",
    "parse_time",
    "to_csv",
    "to_json",
]
