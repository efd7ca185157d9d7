"""Metering: the quota domain — counters, limits, windows, prices, the reservation, settlement.

The request pipeline uses ``Meter`` (``admit`` before forwarding, ``finish`` after) over a store
from ``gateway.store.factory.create_store``.
"""

from gateway.metering.meter import Meter
from gateway.metering.types import Admission, Amounts, MeterRequest, Outcome

__all__ = ["Admission", "Amounts", "Meter", "MeterRequest", "Outcome"]
