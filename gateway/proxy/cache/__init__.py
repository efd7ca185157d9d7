"""The exact response cache: which requests use it (``exact``) and what an entry holds."""
