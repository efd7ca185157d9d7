"""The HTTP face: the ASGI app and its fast lane, endpoints, error rendering, read deadlines."""
