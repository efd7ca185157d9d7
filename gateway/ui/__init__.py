"""The web dashboard: operator pages under /ui/, user pages under /ui/me, over the admin API."""
