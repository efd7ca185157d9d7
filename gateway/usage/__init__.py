"""Usage reporting: the records the meter writes, read back, rolled up, exported and alerted on."""
